//! `/v1/media`: the project's media library (upload, list, get, delete), and `/media/{id}`, where
//! an item's bytes are served at a signed, expiring URL (the signature is the credential: the
//! platforms that pull media by URL have no key).
//!
//! The walls: a key sees only its project's items, and a test key (`hk_test_`) only the items
//! test keys made; a live key sees all of its project's. Anything else is a 404, as if it did
//! not exist. An upload's type is sniffed from its bytes (`herald_shared::media`), never taken
//! from its name or `Content-Type`; resumable uploads are `media_uploads.rs`.

use axum::Extension;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use herald_shared::commands::media::{self as media_commands, DeleteError};
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::media::MediaKind;
use herald_shared::domain::media_item::{self, MediaStatus};
use herald_shared::media::{IngestError, MediaLimits, signing};
use herald_shared::views::media::{MediaRow, MediaView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, Rejected, page_limit, split_page};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::{Streamed, StreamedKey};

pub fn routes() -> OpenApiRouter<AppState> {
    // The upload streams its body into the store, which stops it at the limit of the kind its
    // bytes turn out to be: the api's JSON body limit must not cut it off first.
    let uploads = OpenApiRouter::new().routes(routes!(upload)).layer(DefaultBodyLimit::disable());
    OpenApiRouter::new().merge(uploads).routes(routes!(list)).routes(routes!(show, delete))
}

/// The routes without a key: an item's bytes, behind its signature.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(content))
}

/// One page of media, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MediaPage)]
struct Page {
    data: Vec<MediaView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `image` or `video`.
    kind: Option<String>,
    /// `importing`, `ready` or `failed`.
    status: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// The multipart form `POST /v1/media` reads.
#[derive(ToSchema)]
#[schema(as = MediaUpload)]
#[allow(dead_code)]
struct UploadForm {
    /// The file. Its type is read from its bytes: JPEG, PNG, GIF or WebP images, MP4, MOV or
    /// WebM videos.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload an image or a video.
///
/// A `multipart/form-data` body with one field, `file`, streamed into the store. Its type is
/// sniffed from its bytes (a name or `Content-Type` that says otherwise is ignored); an
/// unsupported type is a 422 `unsupported_media_type` naming what it was sniffed as, and a file
/// over its kind's limit a 413 `too_large` naming the limit. Needs `media:upload`.
///
/// `Idempotency-Key` works on uploads of any size: the file is streamed into the store and then
/// recognised by its SHA-256 and size (not by its multipart framing, so a retry may use another
/// boundary). The same file again with the same key answers the first response, marked
/// `Idempotent-Replayed: true`, and stores nothing; another file with that key is a 409
/// `idempotency_conflict`. An upload refused before it was stored (413, 422) is not kept: sent
/// again, it is refused again.
#[utoipa::path(post, operation_id = "uploadMedia", security(("api_key" = ["media:upload"])), path = "/v1/media", tag = "media",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "The stored item", body = MediaView)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    idempotency_key: Option<Extension<StreamedKey>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::unsupported_media_type(format!("expected a multipart/form-data body: {}", rejection.body_text()))
    })?;
    let id = Uuid::now_v7();
    let key = media_item::object_key(id);
    let limits = MediaLimits::from_settings(&state.config.media);
    let first = multipart.next_field().await.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let field = match first {
        Some(field) if field.name() == Some("file") => field,
        Some(field) => {
            let name = field.name().unwrap_or_default().to_owned();
            return Err(ApiError::validation(vec![FieldError::new(name, "unknown field; send only `file`")]));
        }
        None => return Err(ApiError::validation(vec![FieldError::new("file", "is required")])),
    };
    let facts = state.media.ingest(&key, Box::pin(field), &limits).await.map_err(ingest_error)?;
    let rest = multipart.next_field().await;
    if !matches!(rest, Ok(None)) {
        discard(&state, &key).await;
        return Err(ApiError::validation(vec![FieldError::new(
            "file",
            "send one field, `file`, and nothing after it",
        )]));
    }
    let Some(Extension(idempotency_key)) = idempotency_key else {
        return created(&state, &caller, id, facts, key).await.map(IntoResponse::into_response);
    };
    let stored = format!("sha256={} size={}", facts.sha256, facts.size_bytes);
    let act = async { created(&state, &caller, id, facts, key.clone()).await.into_response() };
    match crate::idempotency::run_streamed(&state, &caller, idempotency_key, &Method::POST, "/v1/media", &stored, act)
        .await
    {
        Streamed::Acted(response) => Ok(response),
        Streamed::NotActed(response) => {
            // The first upload with this key has the item; this copy is nobody's.
            discard(&state, &key).await;
            Ok(response)
        }
    }
}

/// Records the stored object as item `id` and answers it (a 201), or discards the object.
async fn created(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    facts: herald_shared::domain::media::MediaFacts,
    key: String,
) -> Result<(StatusCode, ApiJson<MediaView>), ApiError> {
    let recorded = record(state, caller, id, facts, key.clone()).await;
    if recorded.is_err() {
        discard(state, &key).await;
    }
    recorded?;
    Ok((StatusCode::CREATED, ApiJson(load(state, caller, id).await?.view(&state.config, &state.media_url_key[..]))))
}

/// Records the stored object as item `id`: the row exists exactly when this commits.
pub(super) async fn record(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    facts: herald_shared::domain::media::MediaFacts,
    key: String,
) -> Result<(), ApiError> {
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let metadata = caller.event_metadata();
    media_commands::record_upload(&mut tx, id, caller.project_id, caller.environment, facts, key, &metadata).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes an object no row will name (the orphan sweep would find it later, but need not).
pub(super) async fn discard(state: &AppState, key: &str) {
    if let Err(error) = state.media.delete(key).await {
        tracing::warn!(key, %error, "could not delete an unrecorded media object; the sweep will");
    }
}

/// The answer to a body the store did not take.
pub(super) fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::TooLarge { limit } => {
            ApiError::too_large(format!("the file is larger than the limit for its kind, {limit} bytes"))
        }
        IngestError::Unsupported(sniffed) => ApiError::unsupported_file(format!(
            "the file's bytes are {sniffed}; herald takes JPEG, PNG, GIF and WebP images and MP4, MOV and WebM videos"
        )),
        IngestError::Malformed { content_type, problem } => ApiError::unsupported_file(format!(
            "the file looks like {content_type} but cannot be read as one: {problem}"
        )),
        IngestError::Empty => ApiError::validation(vec![FieldError::new("file", "is empty")]),
        IngestError::MissingPart(part) => {
            ApiError::validation(vec![FieldError::new("parts", format!("part {part} was not uploaded"))])
        }
        IngestError::Source(problem) => ApiError::bad_request(format!("the body could not be read: {problem}")),
        IngestError::Store(error) => ApiError::internal(&error),
    }
}

/// List media.
///
/// The project's media items (a test key: only those test keys made), newest first, filtered by
/// `kind` (`image`, `video`) and `status` (`importing`, `ready`, `failed`) and paged with `limit`
/// and `cursor`. Deleted items are not listed. Needs `media:read`.
#[utoipa::path(get, operation_id = "listMedia", security(("api_key" = ["media:read"])), path = "/v1/media", tag = "media",
    params(ListQuery), responses((status = 200, description = "A page of media items", body = Page)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page>, ApiError> {
    let limit = page_limit(query.limit, 50, 100)?;
    let mut problems = Vec::new();
    if query.kind.as_deref().is_some_and(|kind| !matches!(kind, "image" | "video")) {
        problems.push(FieldError::new("kind", "must be image or video"));
    }
    if query.status.as_deref().is_some_and(|status| MediaStatus::parse(status).is_none()) {
        problems.push(FieldError::new("status", "must be importing, ready or failed"));
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let rows = sqlx::query_as!(
        MediaRow,
        r#"SELECT id, kind AS "kind: MediaKind", content_type, size_bytes, sha256, width, height, duration_ms, frame_rate,
                  video_codec, audio_codec, status AS "status: MediaStatus", source_url, failure_reason, created_at, updated_at
           FROM media
           WHERE project_id = $1 AND deleted_at IS NULL AND (NOT $2 OR environment = 'test')
             AND ($3::uuid IS NULL OR id < $3) AND ($4::text IS NULL OR kind = $4) AND ($5::text IS NULL OR status = $5)
           ORDER BY id DESC LIMIT $6"#,
        caller.project_id,
        caller.environment == Environment::Test,
        query.cursor,
        query.kind,
        query.status,
        limit + 1,
    )
    .fetch_all(&state.pool)
    .await?;
    let (rows, next_cursor) = split_page(rows, limit, |row| row.id.to_string());
    let data = rows.into_iter().map(|row| row.view(&state.config, &state.media_url_key[..])).collect();
    Ok(ApiJson(Page { data, next_cursor }))
}

/// Item `id` as `caller` may see it, or a 404.
pub(super) async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<MediaRow, ApiError> {
    let row = sqlx::query_as!(
        MediaRow,
        r#"SELECT id, kind AS "kind: MediaKind", content_type, size_bytes, sha256, width, height, duration_ms, frame_rate,
                  video_codec, audio_codec, status AS "status: MediaStatus", source_url, failure_reason, created_at, updated_at
           FROM media
           WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL AND (NOT $3 OR environment = 'test')"#,
        id,
        caller.project_id,
        caller.environment == Environment::Test,
    )
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or_else(|| ApiError::not_found("no such media item"))
}

/// Get a media item.
///
/// Its facts (type, size, SHA-256, dimensions, duration, codecs), its status and, when ready, a
/// fresh signed URL of its bytes. Needs `media:read`.
#[utoipa::path(get, operation_id = "getMedia", security(("api_key" = ["media:read"])), path = "/v1/media/{id}", tag = "media",
    params(("id" = Uuid, Path, description = "The media item's id")),
    responses((status = 200, description = "The media item", body = MediaView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<MediaView>, ApiError> {
    Ok(ApiJson(load(&state, &caller, id).await?.view(&state.config, &state.media_url_key[..])))
}

/// Delete a media item.
///
/// It is no longer listed or served (its URLs answer 404) and its object is removed by the
/// maintenance job soon after. A 409 `in_use` while a post that has not finished publishing uses
/// it. Needs `media:upload`.
#[utoipa::path(delete, operation_id = "deleteMedia", security(("api_key" = ["media:upload"])), path = "/v1/media/{id}", tag = "media",
    params(("id" = Uuid, Path, description = "The media item's id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    load(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    match media_commands::delete(&mut tx, id, &caller.event_metadata()).await {
        Ok(()) => {}
        Err(DeleteError::InUse) => {
            return Err(ApiError::in_use("a post that has not finished publishing uses this media item"));
        }
        Err(DeleteError::Failed(error)) => return Err(error.into()),
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

impl Rejected for media_item::Rejection {
    const NOUN: &'static str = "media item";

    fn into_api_error(self) -> ApiError {
        match self {
            Self::NotFound | Self::Deleted => ApiError::not_found("no such media item"),
            rejection => ApiError::conflict(rejection.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContentQuery {
    /// When the URL stops working, in Unix seconds.
    expires: Option<i64>,
    /// Hex HMAC-SHA256 of the item's id and `expires`.
    signature: Option<String>,
}

/// Fetch a media item's bytes.
///
/// The URL in a media item's `url`: no key, the signature is the credential, and it expires.
/// Serves the bytes with their sniffed `Content-Type` and `Content-Length`, and one `Range`
/// (`206` with `Content-Range`; `416` when no byte of it is in the object). When the store is S3,
/// a `302` to a presigned URL of the bucket instead. A bad or expired signature is a 403, a
/// deleted item a 404.
#[utoipa::path(get, operation_id = "getMediaContent", path = "/media/{id}", tag = "media",
    params(("id" = Uuid, Path, description = "The media item's id"), ContentQuery,
           ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`")),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = String),
        (status = 206, description = "The bytes of the range asked for", content_type = "application/octet-stream", body = String),
        (status = 302, description = "The bytes are at `Location`: a presigned URL of the S3 bucket"),
        (status = 403, description = "The signature is missing, wrong or expired (`forbidden`)", content_type = "application/problem+json", body = crate::error::Problem<'static>),
        (status = 416, description = "No byte of the range is in the object (`range_not_satisfiable`)", content_type = "application/problem+json", body = crate::error::Problem<'static>),
    ))]
async fn content(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ContentQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (Some(expires), Some(signature)) = (query.expires, query.signature.as_deref()) else {
        return Err(ApiError::forbidden("this URL needs its `expires` and `signature`"));
    };
    if !signing::verify(&state.media_url_key[..], id, expires, signature, now.timestamp()) {
        return Err(ApiError::forbidden("the signature is wrong or has expired; fetch the media item for a fresh URL"));
    }
    let item = sqlx::query!(
        r#"SELECT object_key, content_type, size_bytes FROM media
           WHERE id = $1 AND deleted_at IS NULL AND status = 'ready'"#,
        id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such media item"))?;
    let remaining = u64::try_from(expires - now.timestamp()).unwrap_or(0).max(1);
    if let Some(presigned) =
        state.media.presigned_get(&item.object_key, std::time::Duration::from_secs(remaining)).await
    {
        let url = presigned.map_err(|error| ApiError::internal(&error))?;
        let location = HeaderValue::from_str(url.as_str()).map_err(|error| ApiError::internal(&error))?;
        return Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response());
    }
    let size = u64::try_from(item.size_bytes.unwrap_or(0)).unwrap_or(0);
    let range = requested_range(&headers, size)?;
    let (stream, size) = match state.media.read(&item.object_key, range.clone()).await {
        Ok(read) => read,
        Err(object_store::Error::NotFound { .. }) => return Err(ApiError::not_found("no such media item")),
        Err(error) => return Err(ApiError::internal(&error)),
    };
    let content_type = item.content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).map_err(|e| ApiError::internal(&e))?);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-transform"));
    match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.end - range.start));
            let content_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).map_err(|e| ApiError::internal(&e))?,
            );
        }
        None => {
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(response)
}

/// The one byte range `Range` asks for within `size` bytes (end exclusive), `None` for the whole
/// object (no `Range`, or several ranges: a server may answer those with everything), or a 416.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::range_not_satisfiable(size))?;
    let ranges = http_range_header::parse_range_header(value)
        .and_then(|parsed| parsed.validate(size))
        .map_err(|_| ApiError::range_not_satisfiable(size))?;
    match ranges.as_slice() {
        [one] => Ok(Some(*one.start()..one.end() + 1)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, StatusCode> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers, size).map_err(|error| error.status())
    }

    #[test]
    fn one_range_is_served_several_are_answered_whole_and_outside_ones_refused() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(range("bytes=0-1000", 100), Ok(Some(0..100)));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("bytes=100-", 100), Err(StatusCode::RANGE_NOT_SATISFIABLE));
        assert_eq!(range("pages=1-2", 100), Err(StatusCode::RANGE_NOT_SATISFIABLE));
        assert_eq!(requested_range(&HeaderMap::new(), 100).map_err(|error| error.status()), Ok(None));
    }
}
