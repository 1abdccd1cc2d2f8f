//! `/v1/posts`: posts aimed at several accounts, now or later, and what became of each target.
//!
//! Every target must be a connected account of the project within the key's reach, and its
//! content and media must fit the platform (media are the library's, `POST /v1/media`). A post is visible to a key only if every one of its targets is
//! within its reach. Each command that makes deliveries due (creation, approval, a draft's
//! publish, an edit, a retry) queues their publish jobs in its own transaction
//! (`herald_shared::commands::posts`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_shared::commands::load;
use herald_shared::commands::posts::{self, Draft, TargetRequest};
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::post::{self, Post, Target};
use herald_shared::platforms::{self, ContentRules, Platforms};
use herald_shared::views::posts::{DeliveryView, MediaBody, PostRow, PostView, ThreadItemBody, deliveries_of};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json as JsonColumn;
use utoipa::openapi::schema::{AllOfBuilder, Discriminator, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, Rejected, page_limit, split_page};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, cancel))
        .routes(routes!(approve))
        .routes(routes!(publish_now))
        .routes(routes!(retry))
        .routes(routes!(results))
}

/// One target of a new or edited post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    account_id: Uuid,
    /// This target's text instead of the post's.
    content: Option<String>,
    /// This target's media instead of the post's (`[]`: none).
    media: Option<Vec<MediaBody>>,
    /// This target's thread instead of the post's (`[]`: none).
    thread: Option<Vec<ThreadItemBody>>,
    /// This target's first comment instead of the post's.
    first_comment: Option<String>,
    /// The target's options, tagged with its account's platform
    /// (`{"platform": "mastodon", "visibility": "unlisted"}`): one of the platforms' option types.
    #[serde(default)]
    #[schema(value_type = Option<TargetOptions>)]
    options: Value,
}

impl TargetBody {
    fn into_request(self) -> TargetRequest {
        TargetRequest {
            account_id: self.account_id,
            content: self.content,
            options: self.options,
            media: self.media.map(MediaBody::into_refs),
            thread: self.thread.map(ThreadItemBody::into_items),
            first_comment: self.first_comment,
        }
    }
}

/// A post to create.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreatePost)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    content: String,
    /// Images and videos for every target without its own `media`, in order; each target's
    /// platform rules (types, counts, sizes, dimensions, durations) are checked at creation.
    #[serde(default)]
    media: Vec<MediaBody>,
    /// The items after `content`, each published as a reply to the one before, where the
    /// target's platform takes replies (X, Bluesky, Threads, Mastodon); refused elsewhere.
    #[serde(default)]
    thread: Vec<ThreadItemBody>,
    /// Posted on the published post (Instagram, Facebook, LinkedIn, YouTube) or as a last reply
    /// (X, Bluesky, Threads, Mastodon); refused elsewhere.
    first_comment: Option<String>,
    targets: Vec<TargetBody>,
    /// RFC 3339 with an offset; absent: now.
    scheduled_at: Option<DateTime<Utc>>,
    /// Keep it as a draft until `POST /v1/posts/{id}/publish`.
    #[serde(default)]
    draft: bool,
    /// Publish only after `POST /v1/posts/{id}/approve` (`posts:approve`).
    #[serde(default)]
    requires_approval: bool,
    external_id: Option<String>,
}

/// What an edit may change, while no target has started publishing.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdatePost)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    content: Option<String>,
    /// The post's media instead of the current ones (`[]`: none).
    media: Option<Vec<MediaBody>>,
    /// The post's thread instead of the current one (`[]`: none).
    thread: Option<Vec<ThreadItemBody>>,
    /// The post's first comment instead of the current one (`""`: none).
    first_comment: Option<String>,
    targets: Option<Vec<TargetBody>>,
    scheduled_at: Option<DateTime<Utc>>,
}

/// What `POST /v1/posts/{id}/retry` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = RetryPost)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// Also retry `unknown` deliveries (which may have been published already).
    #[serde(default)]
    force: bool,
}

/// A page of posts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PostPage)]
struct Page {
    data: Vec<PostView>,
    next_cursor: Option<String>,
}

/// Per-target outcomes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PostResults)]
struct Results {
    post_id: Uuid,
    status: String,
    data: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    external_id: Option<String>,
    /// Posts with a target on this account.
    account_id: Option<Uuid>,
    /// Scheduled at or after.
    from: Option<DateTime<Utc>>,
    /// Scheduled before.
    to: Option<DateTime<Utc>>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<Uuid>,
}

/// A target's `options` in the OpenAPI document: one variant per platform, each its options type
/// with the `platform` tag (`herald_shared::platforms::options`).
struct TargetOptions;

/// The name of `platform`'s variant of [`TargetOptions`].
fn variant_name(spec: &platforms::PlatformSpec) -> String {
    let mut name: Vec<char> = spec.name.chars().collect();
    name[0] = name[0].to_ascii_uppercase();
    format!("{}TargetOptions", name.into_iter().collect::<String>())
}

impl utoipa::PartialSchema for TargetOptions {
    fn schema() -> RefOr<Schema> {
        let mut union = OneOfBuilder::new();
        let mut discriminator = Discriminator::new(platforms::options::TAG);
        for spec in platforms::ALL {
            let reference = format!("#/components/schemas/{}", variant_name(spec));
            union = union.item(Ref::new(reference.clone()));
            discriminator.mapping.insert(spec.name.to_owned(), reference);
        }
        union.discriminator(Some(discriminator)).into()
    }
}

impl ToSchema for TargetOptions {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for spec in platforms::ALL {
            let platforms::options::OptionsSchema { name, schema, referred } = (spec.options.schema)();
            schemas.push((name.clone().into_owned(), schema));
            schemas.extend(referred);
            let tag = ObjectBuilder::new()
                .property(
                    platforms::options::TAG,
                    ObjectBuilder::new().schema_type(Type::String).enum_values(Some([spec.name])),
                )
                .required(platforms::options::TAG);
            let variant = AllOfBuilder::new().item(tag).item(Ref::from_schema_name(name));
            schemas.push((variant_name(spec), variant.into()));
        }
    }
}

/// The platforms' rules as their specs state them, for the post validation.
struct SpecRules<'a>(&'a Platforms);

impl posts::PlatformRules for SpecRules<'_> {
    fn content(&self, platform: &str) -> Result<ContentRules, String> {
        match self.0.get(platform) {
            Some(adapter) => Ok(adapter.content_rules()),
            None => Err(self.0.unavailable(platform, "publish to")),
        }
    }

    fn option_problems(&self, platform: &str, options: &Value) -> Vec<(String, String)> {
        let Some(adapter) = self.0.get(platform) else { return Vec::new() };
        platforms::options::problems(platform, &adapter.spec().options, options)
            .into_iter()
            .map(|problem| (problem.field, problem.message))
            .collect()
    }
}

/// Checks `targets` of `draft` with the platforms' content and media rules, in `tx`
/// (`herald_shared::commands::posts`); the problems become one 422 together with `errors`.
async fn check_targets(
    state: &AppState,
    tx: &mut PgConnection,
    caller: &Caller,
    draft: Draft<'_>,
    targets: Vec<TargetRequest>,
    errors: &mut Vec<FieldError>,
) -> Result<Vec<Target>, ApiError> {
    let rules = SpecRules(&state.platforms);
    let mut problems = Vec::new();
    let checked =
        posts::check_targets(tx, caller.project_id, &caller.reach(), &rules, draft, targets, &mut problems).await?;
    errors.extend(problems.into_iter().map(FieldError::from));
    Ok(checked)
}

/// Create a post.
///
/// A post aimed at one or more accounts, published at `scheduled_at` (RFC 3339 with an offset;
/// absent: now), kept as a draft, or held for approval, with `media` from the library (on the post,
/// or per target). Every target must be a connected account within the key's reach and the
/// content and media must fit its platform: one 422 names each bad field and each rule a target's
/// media break. Needs `posts:write`.
#[utoipa::path(post, operation_id = "createPost", security(("api_key" = ["posts:write"])), path = "/v1/posts", tag = "posts", request_body = CreateBody,
    responses((status = 201, description = "The post and its deliveries", body = PostView)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, ApiJson<PostView>), ApiError> {
    let mut problems = Vec::new();
    posts::check_external_id(body.external_id.as_deref(), &mut problems);
    let mut errors: Vec<FieldError> = problems.into_iter().map(FieldError::from).collect();
    let media = MediaBody::into_refs(body.media);
    let thread = ThreadItemBody::into_items(body.thread);
    let targets = body.targets.into_iter().map(TargetBody::into_request).collect();
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let draft =
        Draft { content: &body.content, media: &media, thread: &thread, first_comment: body.first_comment.as_deref() };
    let targets = check_targets(&state, &mut tx, &caller, draft, targets, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let id = Uuid::now_v7();
    let metadata = caller.event_metadata();
    let command = post::Command::Create {
        project_id: caller.project_id,
        content: body.content,
        media,
        thread,
        first_comment: body.first_comment,
        targets,
        scheduled_at: body.scheduled_at,
        draft: body.draft,
        requires_approval: body.requires_approval,
        external_id: body.external_id,
        now: Utc::now(),
    };
    posts::execute_and_queue(&mut tx, id, command, &metadata).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, ApiJson(load_view(&state, &caller, id).await?)))
}

/// List posts.
///
/// The project's posts within the key's reach, newest first, filtered by `status`, `external_id`,
/// `account_id` and the scheduled time (`from`, `to`), paged with `limit` and `cursor`. Needs
/// `posts:read`.
#[utoipa::path(get, operation_id = "listPosts", security(("api_key" = ["posts:read"])), path = "/v1/posts", tag = "posts", params(ListQuery),
    responses((status = 200, description = "A page of posts", body = Page)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page>, ApiError> {
    let limit = page_limit(query.limit, 50, 100)?;
    let rows = sqlx::query_as!(
        PostRow,
        r#"SELECT p.id, p.status, p.content, p.media AS "media: JsonColumn<Vec<MediaBody>>",
                p.thread AS "thread: JsonColumn<Vec<ThreadItemBody>>", p.first_comment, p.external_id, p.scheduled_at,
                p.requires_approval, p.approved_at, p.created_at, p.updated_at
         FROM posts p
         WHERE p.project_id = $1 AND ($2::uuid IS NULL OR p.id < $2)
           AND ($3::text IS NULL OR p.status = $3) AND ($4::text IS NULL OR p.external_id = $4)
           AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.post_id = p.id AND d.account_id = $5))
           AND ($6::timestamptz IS NULL OR p.scheduled_at >= $6) AND ($7::timestamptz IS NULL OR p.scheduled_at < $7)
           AND NOT EXISTS (
               SELECT 1 FROM deliveries d JOIN accounts a ON a.id = d.account_id
               WHERE d.post_id = p.id
                 AND NOT (($8::text[] IS NULL OR a.platform = ANY($8)) AND (NOT $9 OR a.platform = 'sandbox')
                          AND ($10::text[] IS NULL OR a.id::text = ANY($10) OR a.external_id = ANY($10))))
         ORDER BY p.id DESC LIMIT $11"#,
        caller.project_id,
        query.cursor,
        query.status,
        query.external_id,
        query.account_id,
        query.from,
        query.to,
        caller.platforms.as_deref(),
        caller.environment == Environment::Test,
        caller.accounts.as_deref(),
        limit + 1,
    )
    .fetch_all(&state.pool)
    .await?;
    let (rows, next_cursor) = split_page(rows, limit, |post| post.id.to_string());
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let deliveries = deliveries_of(&state.pool, row.id).await?;
        data.push(PostView::of(row, deliveries));
    }
    Ok(ApiJson(Page { data, next_cursor }))
}

/// The post, if it is the project's and every target is within the key's reach.
async fn load_view(state: &AppState, caller: &Caller, id: Uuid) -> Result<PostView, ApiError> {
    let row = sqlx::query_as!(
        PostRow,
        r#"SELECT id, status, content, media AS "media: JsonColumn<Vec<MediaBody>>",
                  thread AS "thread: JsonColumn<Vec<ThreadItemBody>>", first_comment, external_id, scheduled_at,
                  requires_approval, approved_at, created_at, updated_at
           FROM posts WHERE id = $1 AND project_id = $2"#,
        id,
        caller.project_id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such post"))?;
    let reach = sqlx::query!(
        "SELECT a.id, a.platform, a.external_id FROM deliveries d JOIN accounts a ON a.id = d.account_id WHERE d.post_id = $1",
        id
    )
    .fetch_all(&state.pool)
    .await?;
    let visible = reach
        .iter()
        .all(|account| caller.reaches_account(&account.platform, account.id, account.external_id.as_deref()));
    if !visible {
        return Err(ApiError::not_found("no such post"));
    }
    Ok(PostView::of(row, deliveries_of(&state.pool, id).await?))
}

/// Get a post and its deliveries.
///
/// A key sees a post only if every target is within its reach; otherwise it is a 404. Needs
/// `posts:read`.
#[utoipa::path(get, operation_id = "getPost", security(("api_key" = ["posts:read"])), path = "/v1/posts/{id}", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")),
    responses((status = 200, description = "The post", body = PostView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<PostView>, ApiError> {
    Ok(ApiJson(load_view(&state, &caller, id).await?))
}

/// Runs `command` on post `id` (after checking the key may see it), queues what it makes due,
/// and answers the post as it is then.
async fn change(state: &AppState, caller: &Caller, id: Uuid, command: post::Command) -> Result<PostView, ApiError> {
    load_view(state, caller, id).await?;
    let metadata = caller.event_metadata();
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    posts::execute_and_queue(&mut tx, id, command, &metadata).await?;
    tx.commit().await?;
    load_view(state, caller, id).await
}

/// Edit a post.
///
/// Changes its content, media, targets or scheduled time while no target has started publishing
/// (409 after); the targets are checked again against what the post will say. Needs `posts:write`.
#[utoipa::path(patch, operation_id = "updatePost", security(("api_key" = ["posts:write"])), path = "/v1/posts/{id}", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")), request_body = UpdateBody,
    responses((status = 200, description = "The post", body = PostView)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<ApiJson<PostView>, ApiError> {
    load_view(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let (post, _) = load::<Post>(&mut tx, id).await?;
    let content = body.content.clone().unwrap_or_else(|| post.content.clone());
    let media = body.media.map(MediaBody::into_refs);
    let thread = body.thread.map(ThreadItemBody::into_items);
    // `""` removes the first comment.
    let first_comment = body.first_comment.map(|comment| Some(comment).filter(|comment| !comment.is_empty()));
    let draft = Draft {
        content: &content,
        media: media.as_deref().unwrap_or(&post.media),
        thread: thread.as_deref().unwrap_or(&post.thread),
        first_comment: match &first_comment {
            Some(given) => given.as_deref(),
            None => post.first_comment.as_deref(),
        },
    };
    let mut errors = Vec::new();
    // New targets are checked; so are the current ones when what they publish changed.
    let changed = body.content.is_some() || media.is_some() || thread.is_some() || first_comment.is_some();
    let targets = match body.targets {
        Some(targets) => Some(targets.into_iter().map(TargetBody::into_request).collect()),
        None if changed => Some(posts::current_targets(&post)),
        None => None,
    };
    let targets = match targets {
        Some(targets) => Some(check_targets(&state, &mut tx, &caller, draft, targets, &mut errors).await?),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let command = post::Command::Update {
        content: body.content,
        media,
        thread,
        first_comment,
        targets,
        scheduled_at: body.scheduled_at,
    };
    posts::execute_and_queue(&mut tx, id, command, &caller.event_metadata()).await?;
    tx.commit().await?;
    Ok(ApiJson(load_view(&state, &caller, id).await?))
}

/// Cancel a post.
///
/// Cancels the deliveries that have not started (a scheduled post, a draft); one already publishing
/// is not touched. Needs `posts:delete`.
#[utoipa::path(delete, operation_id = "cancelPost", security(("api_key" = ["posts:delete"])), path = "/v1/posts/{id}", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")),
    responses((status = 200, description = "The canceled post", body = PostView)))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<PostView>, ApiError> {
    Ok(ApiJson(change(&state, &caller, id, post::Command::Cancel).await?))
}

/// Approve a post.
///
/// A post created with `requires_approval` is then published at its time. Needs `posts:approve`.
#[utoipa::path(post, operation_id = "approvePost", security(("api_key" = ["posts:approve"])), path = "/v1/posts/{id}/approve", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")),
    responses((status = 200, description = "The approved post", body = PostView)))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<PostView>, ApiError> {
    Ok(ApiJson(change(&state, &caller, id, post::Command::Approve).await?))
}

/// Publish a draft now.
///
/// Queues the draft's deliveries for now. Needs `posts:write`.
#[utoipa::path(post, operation_id = "publishPost", security(("api_key" = ["posts:write"])), path = "/v1/posts/{id}/publish", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")),
    responses((status = 200, description = "The post", body = PostView)))]
async fn publish_now(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<PostView>, ApiError> {
    Ok(ApiJson(change(&state, &caller, id, post::Command::Publish { now: Utc::now() }).await?))
}

/// Retry a post's failed deliveries.
///
/// Puts failed deliveries back in line; `unknown` ones (they may have been published) only with
/// `"force": true`. Needs `posts:write`.
#[utoipa::path(post, operation_id = "retryPost", security(("api_key" = ["posts:write"])), path = "/v1/posts/{id}/retry", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")), request_body = RetryBody,
    responses((status = 200, description = "The post", body = PostView)))]
async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RetryBody>,
) -> Result<ApiJson<PostView>, ApiError> {
    Ok(ApiJson(change(&state, &caller, id, post::Command::Retry { force: body.force, now: Utc::now() }).await?))
}

/// Get a post's per-target outcomes.
///
/// Each delivery's status, the platform's post id and URL once published, and the last error with
/// the platform's request id. Needs `posts:read`.
#[utoipa::path(get, operation_id = "getPostResults", security(("api_key" = ["posts:read"])), path = "/v1/posts/{id}/results", tag = "posts",
    params(("id" = Uuid, Path, description = "The post's id")),
    responses((status = 200, description = "Each delivery's outcome", body = Results)))]
async fn results(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Results>, ApiError> {
    let post = load_view(&state, &caller, id).await?;
    Ok(ApiJson(Results { post_id: post.id, status: post.status, data: post.deliveries }))
}

impl Rejected for post::Rejection {
    const NOUN: &'static str = "post";

    fn into_api_error(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found("no such post"),
            Self::NoTargets | Self::DuplicateTarget(_) => {
                ApiError::validation(vec![FieldError::new("targets", self.to_string())])
            }
            rejection => ApiError::conflict(rejection.to_string()),
        }
    }
}
