//! Posts and their deliveries as the api shows them (`GET /v1/posts/{id}`), and as webhook
//! messages carry them: one shape, loaded in one place.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json as JsonColumn;
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::post::{MediaRef, ThreadItem};

/// One media item of the library on a post or a target, in order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = PostMedia)]
#[serde(deny_unknown_fields)]
pub struct MediaBody {
    /// A ready item of the media library (`GET /v1/media/{id}`).
    pub id: Uuid,
    /// Read to people who cannot see the image or video, where the platform takes alt text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
}

impl MediaBody {
    pub fn into_refs(media: Vec<MediaBody>) -> Vec<MediaRef> {
        media.into_iter().map(|item| MediaRef { id: item.id, alt_text: item.alt_text }).collect()
    }
}

/// One item of a thread, after the post's own content: published as a reply to the one before
/// (X, Bluesky, Threads, Mastodon, the sandbox).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = ThreadItem)]
#[serde(deny_unknown_fields)]
pub struct ThreadItemBody {
    /// Its text, checked as a post's on each target's platform (empty when it carries media).
    #[serde(default)]
    pub content: String,
    /// Its images and videos, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaBody>,
}

impl ThreadItemBody {
    pub fn into_items(thread: Vec<ThreadItemBody>) -> Vec<ThreadItem> {
        thread
            .into_iter()
            .map(|item| ThreadItem { content: item.content, media: MediaBody::into_refs(item.media) })
            .collect()
    }
}

/// One published step of a delivery's chain: a thread's item or the first comment.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = PublishedItem)]
pub struct PublishedItemView {
    /// Its place in the chain: 1 is the first item after the post itself (the first comment comes
    /// after the thread's items).
    pub index: usize,
    pub platform_post_id: String,
    pub platform_url: Option<String>,
}

/// One target's delivery and its outcome.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub content: String,
    /// This target's own media; `null`: the post's.
    #[schema(value_type = Option<Vec<MediaBody>>)]
    pub media: Option<JsonColumn<Vec<MediaBody>>>,
    /// This target's own thread; `null`: the post's.
    #[schema(value_type = Option<Vec<ThreadItemBody>>)]
    pub thread: Option<JsonColumn<Vec<ThreadItemBody>>>,
    /// This target's own first comment; `null`: the post's.
    pub first_comment: Option<String>,
    /// `pending`, `queued`, `publishing`, `published`, `failed`, `unknown` or `canceled`.
    pub status: String,
    /// Calls made to the platform.
    pub attempts: i32,
    /// The post itself on the platform (the chain's first post).
    pub platform_post_id: Option<String>,
    pub platform_url: Option<String>,
    /// The chain's later steps published so far (a thread's items, then the first comment): a
    /// failed or retried delivery keeps them, and a retry resumes after the last.
    #[schema(value_type = Vec<PublishedItemView>)]
    pub items: JsonColumn<Vec<PublishedItemView>>,
    pub published_at: Option<DateTime<Utc>>,
    /// `{code, message, platform_request_id}` of the last failure.
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Value>,
}

/// A post and its deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Post)]
pub struct PostView {
    pub id: Uuid,
    /// `draft`, `pending_approval`, `scheduled`, `publishing`, `published`, `partial`, `failed` or
    /// `canceled`.
    pub status: String,
    pub content: String,
    /// The media of every target without its own.
    #[schema(value_type = Vec<MediaBody>)]
    pub media: JsonColumn<Vec<MediaBody>>,
    /// The thread of every target without its own.
    #[schema(value_type = Vec<ThreadItemBody>)]
    pub thread: JsonColumn<Vec<ThreadItemBody>>,
    /// The first comment of every target without its own.
    pub first_comment: Option<String>,
    pub external_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub requires_approval: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryView>,
}

/// The row of a post, before its deliveries are attached.
pub struct PostRow {
    pub id: Uuid,
    pub status: String,
    pub content: String,
    pub media: JsonColumn<Vec<MediaBody>>,
    pub thread: JsonColumn<Vec<ThreadItemBody>>,
    pub first_comment: Option<String>,
    pub external_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub requires_approval: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The deliveries of `post_id`, in id order.
pub async fn deliveries_of<'e>(executor: impl PgExecutor<'e>, post_id: Uuid) -> Result<Vec<DeliveryView>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryView,
        r#"SELECT id, account_id, content, media AS "media: JsonColumn<Vec<MediaBody>>",
                  thread AS "thread: JsonColumn<Vec<ThreadItemBody>>", first_comment, status, attempts, platform_post_id,
                  platform_url, items AS "items: JsonColumn<Vec<PublishedItemView>>", published_at, last_error
           FROM deliveries WHERE post_id = $1 ORDER BY id"#,
        post_id
    )
    .fetch_all(executor)
    .await
}

impl PostView {
    /// The view of `row` with its `deliveries`.
    pub fn of(row: PostRow, deliveries: Vec<DeliveryView>) -> PostView {
        PostView {
            id: row.id,
            status: row.status,
            content: row.content,
            media: row.media,
            thread: row.thread,
            first_comment: row.first_comment,
            external_id: row.external_id,
            scheduled_at: row.scheduled_at,
            requires_approval: row.requires_approval,
            approved_at: row.approved_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deliveries,
        }
    }
}

/// Post `id` of `project_id` as the api shows it, reach aside (the caller checks it).
pub async fn load(pool: &PgPool, project_id: Uuid, id: Uuid) -> Result<Option<PostView>, sqlx::Error> {
    Ok(load_many(pool, project_id, &[id]).await?.pop())
}

/// The posts of `ids` of `project_id` as the api shows them, in two queries whatever their
/// number (the webhook dispatcher's pages name many).
pub async fn load_many(pool: &PgPool, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<PostView>, sqlx::Error> {
    let rows = sqlx::query_as!(
        PostRow,
        r#"SELECT id, status, content, media AS "media: JsonColumn<Vec<MediaBody>>",
                  thread AS "thread: JsonColumn<Vec<ThreadItemBody>>", first_comment, external_id, scheduled_at,
                  requires_approval, approved_at, created_at, updated_at
           FROM posts WHERE id = ANY($1) AND project_id = $2"#,
        ids,
        project_id
    )
    .fetch_all(pool)
    .await?;
    let found: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut deliveries: HashMap<Uuid, Vec<DeliveryView>> = HashMap::new();
    for row in sqlx::query!(
        r#"SELECT post_id, id, account_id, content, media AS "media: JsonColumn<Vec<MediaBody>>",
                  thread AS "thread: JsonColumn<Vec<ThreadItemBody>>", first_comment, status, attempts, platform_post_id,
                  platform_url, items AS "items: JsonColumn<Vec<PublishedItemView>>", published_at, last_error
           FROM deliveries WHERE post_id = ANY($1) ORDER BY id"#,
        &found
    )
    .fetch_all(pool)
    .await?
    {
        deliveries.entry(row.post_id).or_default().push(DeliveryView {
            id: row.id,
            account_id: row.account_id,
            content: row.content,
            media: row.media,
            thread: row.thread,
            first_comment: row.first_comment,
            status: row.status,
            attempts: row.attempts,
            platform_post_id: row.platform_post_id,
            platform_url: row.platform_url,
            items: row.items,
            published_at: row.published_at,
            last_error: row.last_error,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let own = deliveries.remove(&row.id).unwrap_or_default();
            PostView::of(row, own)
        })
        .collect())
}
