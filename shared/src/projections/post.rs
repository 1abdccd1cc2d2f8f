//! `posts` and `deliveries` from the post stream.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::post::{DeliveryStatus, Event, MediaRef, Target, ThreadItem};
use crate::events::RecordedEvent;

/// The event type [`insert_created`] handles.
pub const CREATED: &str = "post.created";

/// Inserts the `posts` and `deliveries` rows of many `post.created` events in two statements.
pub async fn insert_created(tx: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut posts = PostRows::default();
    let mut deliveries = DeliveryRows::default();
    let mut attachments = AttachmentRows::default();
    for recorded in events {
        let post_id = stream_uuid(&recorded.stream_id)?;
        let Event::Created {
            project_id,
            content,
            media,
            thread,
            first_comment,
            targets,
            scheduled_at,
            status,
            requires_approval,
            external_id,
        } = Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)?
        else {
            return Err(ProjectionError::Invalid("expected post.created"));
        };
        deliveries.push(post_id, project_id, &content, &targets, 1, recorded.recorded_at)?;
        attachments.push(post_id, &media, &thread, &targets);
        posts.media.push(serde_json::to_value(&media)?);
        posts.threads.push(serde_json::to_value(&thread)?);
        posts.first_comments.push(first_comment);
        posts.ids.push(post_id);
        posts.projects.push(project_id);
        posts.statuses.push(status.as_str().to_owned());
        posts.contents.push(content);
        posts.external_ids.push(external_id);
        posts.scheduled.push(scheduled_at);
        posts.approvals.push(requires_approval);
        posts.recorded.push(recorded.recorded_at);
    }
    sqlx::query!(
        "INSERT INTO posts (id, project_id, status, content, external_id, scheduled_at, requires_approval,
                            generation, created_at, updated_at, media, thread, first_comment)
         SELECT id, project_id, status, content, external_id, scheduled_at, requires_approval, 1, recorded_at, recorded_at,
                media, thread, first_comment
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bool[],
                     $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::text[])
              AS p(id, project_id, status, content, external_id, scheduled_at, requires_approval, recorded_at, media,
                   thread, first_comment)",
        &posts.ids,
        &posts.projects,
        &posts.statuses,
        &posts.contents,
        &posts.external_ids as &[Option<String>],
        &posts.scheduled as &[Option<DateTime<Utc>>],
        &posts.approvals,
        &posts.recorded,
        &posts.media,
        &posts.threads,
        &posts.first_comments as &[Option<String>],
    )
    .execute(&mut *tx)
    .await?;
    deliveries.insert(&mut *tx).await?;
    attachments.insert(tx).await?;
    Ok(())
}

#[derive(Default)]
struct PostRows {
    ids: Vec<Uuid>,
    projects: Vec<Uuid>,
    statuses: Vec<String>,
    contents: Vec<String>,
    external_ids: Vec<Option<String>>,
    scheduled: Vec<Option<DateTime<Utc>>>,
    approvals: Vec<bool>,
    recorded: Vec<DateTime<Utc>>,
    media: Vec<Value>,
    threads: Vec<Value>,
    first_comments: Vec<Option<String>>,
}

/// `post_media` rows (one per attachment, in order) to insert in one statement. Their ids are
/// derived from the post, the target and the position, so a rebuild makes the same ones.
#[derive(Default)]
struct AttachmentRows {
    ids: Vec<Uuid>,
    posts: Vec<Uuid>,
    deliveries: Vec<Option<Uuid>>,
    media: Vec<Uuid>,
    positions: Vec<i32>,
    alt_texts: Vec<Option<String>>,
    thread_items: Vec<Option<i32>>,
}

impl AttachmentRows {
    /// The post's own media and thread (`delivery_id` NULL) and each target's own.
    fn push(&mut self, post_id: Uuid, post_media: &[MediaRef], post_thread: &[ThreadItem], targets: &[Target]) {
        self.push_list(post_id, None, None, post_media);
        self.push_thread(post_id, None, post_thread);
        for target in targets {
            if let Some(media) = &target.media {
                self.push_list(post_id, Some(target.delivery_id), None, media);
            }
            if let Some(thread) = &target.thread {
                self.push_thread(post_id, Some(target.delivery_id), thread);
            }
        }
    }

    fn push_thread(&mut self, post_id: Uuid, delivery_id: Option<Uuid>, thread: &[ThreadItem]) {
        for (index, item) in (0..).zip(thread) {
            self.push_list(post_id, delivery_id, Some(index), &item.media);
        }
    }

    fn push_list(&mut self, post_id: Uuid, delivery_id: Option<Uuid>, thread_item: Option<i32>, media: &[MediaRef]) {
        for (position, item) in (0..).zip(media) {
            let name = match thread_item {
                None => format!("{}:{position}", delivery_id.unwrap_or_default()),
                Some(index) => format!("{}:thread:{index}:{position}", delivery_id.unwrap_or_default()),
            };
            self.thread_items.push(thread_item);
            self.ids.push(Uuid::new_v5(&post_id, name.as_bytes()));
            self.posts.push(post_id);
            self.deliveries.push(delivery_id);
            self.media.push(item.id);
            self.positions.push(position);
            self.alt_texts.push(item.alt_text.clone());
        }
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO post_media (id, post_id, delivery_id, media_id, position, alt_text, thread_item)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::text[], $7::int[])",
            &self.ids,
            &self.posts,
            &self.deliveries as &[Option<Uuid>],
            &self.media,
            &self.positions,
            &self.alt_texts as &[Option<String>],
            &self.thread_items as &[Option<i32>],
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// `deliveries` rows to insert in one statement.
#[derive(Default)]
struct DeliveryRows {
    ids: Vec<Uuid>,
    posts: Vec<Uuid>,
    projects: Vec<Uuid>,
    accounts: Vec<Uuid>,
    contents: Vec<String>,
    options: Vec<Value>,
    media: Vec<Option<Value>>,
    threads: Vec<Option<Value>>,
    first_comments: Vec<Option<String>>,
    generations: Vec<i32>,
    recorded: Vec<DateTime<Utc>>,
}

impl DeliveryRows {
    fn push(
        &mut self,
        post_id: Uuid,
        project_id: Uuid,
        post_content: &str,
        targets: &[Target],
        generation: i32,
        at: DateTime<Utc>,
    ) -> Result<(), serde_json::Error> {
        for target in targets {
            self.ids.push(target.delivery_id);
            self.posts.push(post_id);
            self.projects.push(project_id);
            self.accounts.push(target.account_id);
            self.contents.push(target.content.clone().unwrap_or_else(|| post_content.to_owned()));
            self.options.push(if target.options.is_null() {
                Value::Object(Default::default())
            } else {
                target.options.clone()
            });
            self.media.push(target.media.as_ref().map(serde_json::to_value).transpose()?);
            self.threads.push(target.thread.as_ref().map(serde_json::to_value).transpose()?);
            self.first_comments.push(target.first_comment.clone());
            self.generations.push(generation);
            self.recorded.push(at);
        }
        Ok(())
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO deliveries (id, post_id, project_id, account_id, content, options, media, status, generation,
                                     updated_at, thread, first_comment)
             SELECT id, post_id, project_id, account_id, content, options, media, 'pending', generation, updated_at,
                    thread, first_comment
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::jsonb[], $7::jsonb[], $8::int[],
                         $9::timestamptz[], $10::jsonb[], $11::text[])
                  AS d(id, post_id, project_id, account_id, content, options, media, generation, updated_at, thread,
                       first_comment)",
            &self.ids,
            &self.posts,
            &self.projects,
            &self.accounts,
            &self.contents,
            &self.options,
            &self.media as &[Option<Value>],
            &self.generations,
            &self.recorded,
            &self.threads as &[Option<Value>],
            &self.first_comments as &[Option<String>],
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// What one `delivery.*` event changes in `deliveries` (and in `posts`, when it moves the post's
/// status). A busy worker records these by the thousand, so they are applied set-wise.
#[derive(Debug)]
pub struct DeliveryChange {
    pub delivery_id: Uuid,
    pub post_id: Uuid,
    status: DeliveryStatus,
    attempts: Option<i32>,
    published: Option<(String, Option<String>, DateTime<Utc>)>,
    last_error: Option<Value>,
    post_status: Option<&'static str>,
    at: DateTime<Utc>,
}

/// The change a `delivery.*` event makes; `None` for any other event.
pub fn delivery_change(recorded: &RecordedEvent) -> Result<Option<DeliveryChange>, ProjectionError> {
    // A chain's step events are rare (one per item) and applied one by one (`apply`).
    if !recorded.event_type.starts_with("delivery.") || recorded.event_type.starts_with("delivery.step_") {
        return Ok(None);
    }
    let post_id = stream_uuid(&recorded.stream_id)?;
    let event = Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)?;
    let change = |delivery_id, status| DeliveryChange {
        delivery_id,
        post_id,
        status,
        attempts: None,
        published: None,
        last_error: None,
        post_status: None,
        at: recorded.recorded_at,
    };
    Ok(Some(match event {
        Event::DeliveryQueued { delivery_id, .. } => change(delivery_id, DeliveryStatus::Queued),
        Event::DeliveryPublishing { delivery_id, attempt } => DeliveryChange {
            attempts: Some(attempt),
            post_status: Some("publishing"),
            ..change(delivery_id, DeliveryStatus::Publishing)
        },
        Event::DeliveryPublished { delivery_id, platform_post_id, platform_url, published_at, post_status } => {
            DeliveryChange {
                published: Some((platform_post_id, platform_url, published_at)),
                post_status: Some(post_status.as_str()),
                ..change(delivery_id, DeliveryStatus::Published)
            }
        }
        Event::DeliveryRetrying { delivery_id, error, .. } => DeliveryChange {
            last_error: Some(serde_json::to_value(error)?),
            ..change(delivery_id, DeliveryStatus::Queued)
        },
        Event::DeliveryFailed { delivery_id, error, post_status } => DeliveryChange {
            last_error: Some(serde_json::to_value(error)?),
            post_status: Some(post_status.as_str()),
            ..change(delivery_id, DeliveryStatus::Failed)
        },
        Event::DeliveryUnknown { delivery_id, error, post_status } => DeliveryChange {
            last_error: Some(serde_json::to_value(error)?),
            post_status: Some(post_status.as_str()),
            ..change(delivery_id, DeliveryStatus::Unknown)
        },
        _ => return Err(ProjectionError::Invalid("a delivery.* event of no known kind")),
    }))
}

/// Applies `changes` in two statements. Each delivery and each post appears at most once (the
/// caller starts a new set where one repeats, so the order of events is kept).
pub async fn apply_delivery_changes(tx: &mut PgConnection, changes: &[DeliveryChange]) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changes.iter().map(|change| change.delivery_id).collect();
    let statuses: Vec<&str> = changes.iter().map(|change| change.status.as_str()).collect();
    let attempts: Vec<Option<i32>> = changes.iter().map(|change| change.attempts).collect();
    let post_ids: Vec<Option<String>> =
        changes.iter().map(|change| change.published.as_ref().map(|(id, _, _)| id.clone())).collect();
    let urls: Vec<Option<String>> =
        changes.iter().map(|change| change.published.as_ref().and_then(|(_, url, _)| url.clone())).collect();
    let published_at: Vec<Option<DateTime<Utc>>> =
        changes.iter().map(|change| change.published.as_ref().map(|(_, _, at)| *at)).collect();
    let errors: Vec<Option<Value>> = changes.iter().map(|change| change.last_error.clone()).collect();
    let at: Vec<DateTime<Utc>> = changes.iter().map(|change| change.at).collect();
    sqlx::query!(
        r#"UPDATE deliveries d
           SET status = c.status, attempts = COALESCE(c.attempts, d.attempts),
               platform_post_id = CASE WHEN c.published THEN c.platform_post_id ELSE d.platform_post_id END,
               platform_url = CASE WHEN c.published THEN c.platform_url ELSE d.platform_url END,
               published_at = CASE WHEN c.published THEN c.published_at ELSE d.published_at END,
               last_error = COALESCE(c.last_error, d.last_error), updated_at = c.at
           FROM (SELECT *, published_at IS NOT NULL AS published
                 FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[],
                             $8::timestamptz[])
                      AS c(id, status, attempts, platform_post_id, platform_url, published_at, last_error, at)) c
           WHERE d.id = c.id"#,
        &ids,
        &statuses as &[&str],
        &attempts as &[Option<i32>],
        &post_ids as &[Option<String>],
        &urls as &[Option<String>],
        &published_at as &[Option<DateTime<Utc>>],
        &errors as &[Option<Value>],
        &at,
    )
    .execute(&mut *tx)
    .await?;
    let moved: Vec<&DeliveryChange> = changes.iter().filter(|change| change.post_status.is_some()).collect();
    if !moved.is_empty() {
        let posts: Vec<Uuid> = moved.iter().map(|change| change.post_id).collect();
        let statuses: Vec<&str> = moved.iter().filter_map(|change| change.post_status).collect();
        let at: Vec<DateTime<Utc>> = moved.iter().map(|change| change.at).collect();
        sqlx::query!(
            "UPDATE posts p SET status = c.status, updated_at = c.at
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS c(id, status, at)
             WHERE p.id = c.id",
            &posts,
            &statuses as &[&str],
            &at,
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let post_id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    let event = Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)?;
    match event {
        Event::Created { .. } => insert_created(tx, &[recorded]).await?,
        Event::Updated { content, media, thread, first_comment, targets, scheduled_at, generation } => {
            let body = Body { content, media, thread, first_comment, targets };
            apply_updated(tx, post_id, body, scheduled_at, generation, at).await?;
        }
        Event::DeliveryStepPublishing { .. }
        | Event::DeliveryStepPublished { .. }
        | Event::DeliveryStepRetrying { .. } => {
            apply_step(tx, event, at).await?;
        }
        Event::Approved { status } => {
            sqlx::query!(
                "UPDATE posts SET status = $2, approved_at = $3, updated_at = $3 WHERE id = $1",
                post_id,
                status.as_str(),
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::PublishRequested { scheduled_at, status } => {
            sqlx::query!(
                "UPDATE posts SET status = $2, scheduled_at = $3, updated_at = $4 WHERE id = $1",
                post_id,
                status.as_str(),
                scheduled_at,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::Canceled { delivery_ids, status } => {
            set_delivery_status(tx, &delivery_ids, DeliveryStatus::Canceled, at).await?;
            set_post_status(tx, post_id, status.as_str(), at).await?;
        }
        Event::Retried { delivery_ids, generation, scheduled_at } => {
            sqlx::query!(
                "UPDATE deliveries SET status = 'pending', generation = $2, updated_at = $3 WHERE id = ANY($1)",
                &delivery_ids,
                generation,
                at,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE posts SET status = 'publishing', generation = $2, scheduled_at = $3, updated_at = $4 WHERE id = $1",
                post_id,
                generation,
                scheduled_at,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::DeliveryQueued { .. }
        | Event::DeliveryPublishing { .. }
        | Event::DeliveryPublished { .. }
        | Event::DeliveryRetrying { .. }
        | Event::DeliveryFailed { .. }
        | Event::DeliveryUnknown { .. } => {
            if let Some(change) = delivery_change(recorded)? {
                apply_delivery_changes(tx, &[change]).await?;
            }
        }
    }
    Ok(())
}

/// A chain's step: when its call began (`updated_at`, which a rescued job waits on), the post
/// itself once published (its id and URL), a later item appended to `items`, an error.
async fn apply_step(tx: &mut PgConnection, event: Event, at: DateTime<Utc>) -> Result<(), ProjectionError> {
    match event {
        Event::DeliveryStepPublishing { delivery_id, .. } => {
            // `updated_at` is when the step's call began: a rescued job waits for it to be over.
            sqlx::query!("UPDATE deliveries SET updated_at = $2 WHERE id = $1", delivery_id, at)
                .execute(&mut *tx)
                .await?;
        }
        Event::DeliveryStepPublished { delivery_id, item } if item.index == 0 => {
            sqlx::query!(
                "UPDATE deliveries SET platform_post_id = $2, platform_url = $3, updated_at = $4 WHERE id = $1",
                delivery_id,
                item.platform_post_id,
                item.platform_url,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::DeliveryStepPublished { delivery_id, item } => {
            let item = serde_json::json!([{
                "index": item.index,
                "platform_post_id": item.platform_post_id,
                "platform_url": item.platform_url,
            }]);
            sqlx::query!(
                "UPDATE deliveries SET items = items || $2, updated_at = $3 WHERE id = $1",
                delivery_id,
                item,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::DeliveryStepRetrying { delivery_id, error, .. } => {
            sqlx::query!(
                "UPDATE deliveries SET last_error = $2, updated_at = $3 WHERE id = $1",
                delivery_id,
                serde_json::to_value(error)?,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// What a `post.updated` event says the post is now.
struct Body {
    content: String,
    media: Vec<MediaRef>,
    thread: Vec<ThreadItem>,
    first_comment: Option<String>,
    targets: Vec<Target>,
}

/// Rewrites the post's row, and replaces its deliveries and attachments with the edited ones.
async fn apply_updated(
    tx: &mut PgConnection,
    post_id: Uuid,
    body: Body,
    scheduled_at: Option<DateTime<Utc>>,
    generation: i32,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    let Body { content, media, thread, first_comment, targets } = body;
    let project_id = sqlx::query_scalar!(
        "UPDATE posts SET content = $2, scheduled_at = $3, generation = $4, updated_at = $5, media = $6, thread = $7,
                          first_comment = $8
         WHERE id = $1
         RETURNING project_id",
        post_id,
        content,
        scheduled_at,
        generation,
        at,
        serde_json::to_value(&media)?,
        serde_json::to_value(&thread)?,
        first_comment,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM deliveries WHERE post_id = $1", post_id).execute(&mut *tx).await?;
    sqlx::query!("DELETE FROM post_media WHERE post_id = $1", post_id).execute(&mut *tx).await?;
    let mut rows = DeliveryRows::default();
    rows.push(post_id, project_id, &content, &targets, generation, at)?;
    rows.insert(&mut *tx).await?;
    let mut attachments = AttachmentRows::default();
    attachments.push(post_id, &media, &thread, &targets);
    attachments.insert(tx).await?;
    Ok(())
}

async fn set_delivery_status(
    tx: &mut PgConnection,
    ids: &[Uuid],
    status: DeliveryStatus,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE deliveries SET status = $2, updated_at = $3 WHERE id = ANY($1)", ids, status.as_str(), at)
        .execute(tx)
        .await?;
    Ok(())
}

async fn set_post_status(
    tx: &mut PgConnection,
    post_id: Uuid,
    status: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE posts SET status = $2, updated_at = $3 WHERE id = $1", post_id, status, at)
        .execute(tx)
        .await?;
    Ok(())
}
