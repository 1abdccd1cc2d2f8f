//! `/v1/media/uploads`: resumable uploads, for files too large to send in one request. Create an
//! upload, `PUT` its parts (numbered from 1, in any order; a part sent again replaces the
//! first), then `complete` it with the parts in order: they are joined, sniffed, limited and
//! described like a single upload, and become a media item. An upload not completed within
//! [`UPLOAD_LIFETIME`] is aborted by the maintenance job.
//!
//! The upload's row holds who made it (the same walls as media items) and which parts arrived
//! with their sizes, so `complete` names a missing part and refuses a total over the limit
//! before reading anything; the parts themselves are objects in the store.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_shared::commands::media::record_upload;
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::media_item;
use herald_shared::media::MediaLimits;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use herald_shared::views::media::MediaView;

use super::media::{discard, ingest_error, load};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath};

/// How long an upload may take, from its creation to its completion.
pub const UPLOAD_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The most parts one upload may have (S3's limit on a multipart upload).
pub const MAX_PARTS: u32 = 10_000;
/// A completion that has not finished after this long died with its process; another may start.
const STALE_COMPLETION: Duration = Duration::from_secs(60 * 60);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(put_part))
        .routes(routes!(complete))
        .routes(routes!(abort))
}

/// A resumable upload.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MediaUploadSession)]
struct UploadView {
    id: Uuid,
    /// Complete it before this, or it is aborted.
    expires_at: DateTime<Utc>,
    /// The largest one part may be.
    max_part_bytes: u64,
    /// Parts are numbered from 1 to this.
    max_parts: u32,
}

/// A stored part.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MediaUploadPart)]
struct PartView {
    part_number: u32,
    size_bytes: u64,
}

/// What `complete` joins.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CompleteMediaUpload)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    /// The part numbers, in the order their bytes are joined; each once. (Missing reads as
    /// none, refused after the upload is found, so another project's upload is a 404 first.)
    #[serde(default)]
    parts: Vec<u32>,
}

/// An upload as its row says.
struct UploadRow {
    expires_at: DateTime<Utc>,
    completing_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    media_id: Option<Uuid>,
}

/// Upload `id` if `caller` may see it (its project; a test key, only test keys' uploads).
async fn find(state: &AppState, caller: &Caller, id: Uuid) -> Result<UploadRow, ApiError> {
    let row = sqlx::query_as!(
        UploadRow,
        "SELECT expires_at, completing_at, completed_at, media_id FROM media_uploads
         WHERE id = $1 AND project_id = $2 AND (NOT $3 OR environment = 'test')",
        id,
        caller.project_id,
        caller.environment == Environment::Test,
    )
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or_else(|| ApiError::not_found("no such upload"))
}

/// A 409 unless the upload still takes parts.
fn open(upload: &UploadRow) -> Result<(), ApiError> {
    if upload.completed_at.is_some() {
        return Err(ApiError::conflict("the upload is already complete"));
    }
    if upload.completing_at.is_some() {
        return Err(ApiError::conflict("the upload is being completed"));
    }
    if upload.expires_at <= Utc::now() {
        return Err(ApiError::not_found("the upload expired"));
    }
    Ok(())
}

fn limits(state: &AppState) -> MediaLimits {
    MediaLimits::from_settings(&state.config.media)
}

/// Start a resumable upload.
///
/// Answers the upload's id, when it expires and how large a part may be. Needs `media:upload`.
#[utoipa::path(post, operation_id = "createMediaUpload", security(("api_key" = ["media:upload"])), path = "/v1/media/uploads", tag = "media",
    responses((status = 201, description = "The upload", body = UploadView)))]
async fn create(State(state): State<AppState>, caller: Caller) -> Result<(StatusCode, ApiJson<UploadView>), ApiError> {
    let id = Uuid::now_v7();
    let lifetime = chrono::Duration::from_std(UPLOAD_LIFETIME).map_err(|error| ApiError::internal(&error))?;
    let expires_at = Utc::now() + lifetime;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    sqlx::query!(
        "INSERT INTO media_uploads (id, project_id, environment, expires_at) VALUES ($1, $2, $3, $4)",
        id,
        caller.project_id,
        caller.environment.as_str(),
        expires_at,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let view = UploadView { id, expires_at, max_part_bytes: limits(&state).largest(), max_parts: MAX_PARTS };
    Ok((StatusCode::CREATED, ApiJson(view)))
}

/// Send one part of an upload.
///
/// The raw bytes of part `n` (1 to 10000); sending a part again replaces it. A part over the
/// largest file herald takes is a 413 `too_large`. Needs `media:upload`.
#[utoipa::path(put, operation_id = "putMediaUploadPart", security(("api_key" = ["media:upload"])), path = "/v1/media/uploads/{id}/parts/{n}", tag = "media",
    params(("id" = Uuid, Path, description = "The upload's id"), ("n" = u32, Path, description = "The part's number, from 1")),
    request_body(content = String, content_type = "application/octet-stream", description = "The part's bytes"),
    responses((status = 200, description = "The part is stored", body = PartView)))]
async fn put_part(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, part)): ApiPath<(Uuid, u32)>,
    body: Body,
) -> Result<ApiJson<PartView>, ApiError> {
    if !(1..=MAX_PARTS).contains(&part) {
        return Err(ApiError::validation(vec![FieldError::new("n", format!("must be between 1 and {MAX_PARTS}"))]));
    }
    open(&find(&state, &caller, id).await?)?;
    let limits = limits(&state);
    let size = state.media.put_part(id, part, body.into_data_stream(), &limits).await.map_err(ingest_error)?;
    let size_bytes = i64::try_from(size).map_err(|error| ApiError::internal(&error))?;
    let part_number = i32::try_from(part).map_err(|error| ApiError::internal(&error))?;
    sqlx::query!(
        "INSERT INTO media_upload_parts (upload_id, part_number, size_bytes) VALUES ($1, $2, $3)
         ON CONFLICT (upload_id, part_number) DO UPDATE SET size_bytes = EXCLUDED.size_bytes",
        id,
        part_number,
        size_bytes,
    )
    .execute(&state.pool)
    .await?;
    Ok(ApiJson(PartView { part_number: part, size_bytes: size }))
}

/// Complete an upload.
///
/// Joins `parts`, in that order, into one file, which is sniffed, limited and described like a
/// single upload, and answers the new media item. A part never sent is a 422; completing an
/// upload again answers the same item. Needs `media:upload`.
#[utoipa::path(post, operation_id = "completeMediaUpload", security(("api_key" = ["media:upload"])), path = "/v1/media/uploads/{id}/complete", tag = "media",
    params(("id" = Uuid, Path, description = "The upload's id")), request_body = CompleteBody,
    responses((status = 201, description = "The new media item", body = MediaView),
              (status = 200, description = "The upload was already complete: its media item", body = MediaView)))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<(StatusCode, ApiJson<MediaView>), ApiError> {
    let upload = find(&state, &caller, id).await?;
    if let Some(media_id) = upload.media_id {
        return Ok((
            StatusCode::OK,
            ApiJson(load(&state, &caller, media_id).await?.view(&state.config, &state.media_url_key[..])),
        ));
    }
    open(&upload)?;
    check_parts(&state, id, &body.parts).await?;
    claim(&state, id).await?;
    let media_id = Uuid::now_v7();
    let key = media_item::object_key(media_id);
    let facts = match state.media.complete(id, &body.parts, &key, &limits(&state)).await {
        Ok(facts) => facts,
        Err(error) => {
            release(&state, id).await;
            return Err(ingest_error(error));
        }
    };
    if let Err(error) = record_completion(&state, &caller, id, media_id, facts, key.clone()).await {
        discard(&state, &key).await;
        release(&state, id).await;
        return Err(error);
    }
    Ok((
        StatusCode::CREATED,
        ApiJson(load(&state, &caller, media_id).await?.view(&state.config, &state.media_url_key[..])),
    ))
}

/// A 422 naming each part asked for twice or never sent, or a 413 when they add up to more
/// than the largest file herald takes: before a byte is read.
async fn check_parts(state: &AppState, id: Uuid, parts: &[u32]) -> Result<(), ApiError> {
    if parts.is_empty() {
        return Err(ApiError::validation(vec![FieldError::new("parts", "must name at least one part")]));
    }
    let numbers: Vec<i32> = parts.iter().map(|part| i32::try_from(*part).unwrap_or(-1)).collect();
    let sent = sqlx::query!(
        "SELECT part_number, size_bytes FROM media_upload_parts WHERE upload_id = $1 AND part_number = ANY($2)",
        id,
        &numbers,
    )
    .fetch_all(&state.pool)
    .await?;
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, number) in numbers.iter().enumerate() {
        if !seen.insert(*number) {
            problems.push(FieldError::new(format!("parts[{index}]"), format!("part {number} is named twice")));
        } else if !sent.iter().any(|row| row.part_number == *number) {
            problems.push(FieldError::new(format!("parts[{index}]"), format!("part {number} was not uploaded")));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let total: i64 = sent.iter().map(|row| row.size_bytes).sum();
    let largest = limits(state).largest();
    if u64::try_from(total).unwrap_or(u64::MAX) > largest {
        return Err(ApiError::too_large(format!(
            "the parts add up to {total} bytes, over the limit of {largest} bytes"
        )));
    }
    Ok(())
}

/// Marks the upload as being completed, so parts and a second completion wait their turn; a
/// claim left by a process that died is taken over after [`STALE_COMPLETION`].
async fn claim(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let claimed = sqlx::query!(
        "UPDATE media_uploads SET completing_at = now()
         WHERE id = $1 AND completed_at IS NULL
           AND (completing_at IS NULL OR completing_at < now() - make_interval(secs => $2))",
        id,
        STALE_COMPLETION.as_secs_f64(),
    )
    .execute(&state.pool)
    .await?;
    if claimed.rows_affected() == 0 {
        return Err(ApiError::conflict("the upload is being completed"));
    }
    Ok(())
}

/// Gives the claim back after a failed completion: the parts are kept, for another try.
async fn release(state: &AppState, id: Uuid) {
    let released =
        sqlx::query!("UPDATE media_uploads SET completing_at = NULL WHERE id = $1", id).execute(&state.pool).await;
    if let Err(error) = released {
        tracing::warn!(upload = %id, %error, "could not release an upload's completion claim");
    }
}

/// Records the item and marks the upload complete, in one transaction: the parts' rows go
/// with it (the store deleted the parts themselves).
async fn record_completion(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    media_id: Uuid,
    facts: herald_shared::domain::media::MediaFacts,
    key: String,
) -> Result<(), ApiError> {
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let metadata = caller.event_metadata();
    record_upload(&mut tx, media_id, caller.project_id, caller.environment, facts, key, &metadata).await?;
    sqlx::query!("UPDATE media_uploads SET completed_at = now(), media_id = $2 WHERE id = $1", id, media_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM media_upload_parts WHERE upload_id = $1", id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Abort an upload.
///
/// Deletes its parts. A completed upload cannot be aborted (delete its media item instead).
/// Needs `media:upload`.
#[utoipa::path(delete, operation_id = "abortMediaUpload", security(("api_key" = ["media:upload"])), path = "/v1/media/uploads/{id}", tag = "media",
    params(("id" = Uuid, Path, description = "The upload's id")),
    responses((status = 204, description = "Aborted")))]
async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let upload = find(&state, &caller, id).await?;
    if upload.completed_at.is_some() || upload.completing_at.is_some() {
        return Err(ApiError::conflict("the upload is complete or being completed; delete its media item instead"));
    }
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    sqlx::query!("DELETE FROM media_uploads WHERE id = $1 AND completing_at IS NULL AND completed_at IS NULL", id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.media.abort(id).await;
    Ok(StatusCode::NO_CONTENT)
}
