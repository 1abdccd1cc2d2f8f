//! `POST /v1/media/import`: a media item fetched from a URL by a job. The route only checks the
//! URL's shape (http or https, no credentials, at most 2048 characters, and no forbidden IP
//! literal) and records the request; the fetch happens in `herald_worker::jobs::import` through
//! the outbound guard, which judges every address actually connected to. The item is `importing`
//! until the job records `ready` or `failed` with the reason.

use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::commands::execute;
use herald_shared::domain::media_item::{self, Command, Media};
use herald_shared::jobs::ImportMedia;
use herald_shared::outbound;
use herald_shared::queue::{self, NewJob};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::ApiJson;
use herald_shared::views::media::MediaView;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// A URL to import media from.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ImportMedia)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    /// An http or https URL of an image or a video, at most 2048 characters, without a user
    /// name or password. Redirects are followed (at most 5).
    #[schema(example = "https://example.com/photo.jpg")]
    url: String,
}

/// Import media from a URL.
///
/// Records a media item with status `importing` and fetches the URL in the background. The
/// item becomes `ready` (with its type, size, SHA-256 and dimensions or duration read from the
/// bytes) or `failed` with a `failure_reason`: an address herald may not reach (loopback,
/// private, link-local, metadata, ...), the server's error status, too large for its kind, an
/// unsupported type, or a timeout. Poll `GET /v1/media/{id}`. Needs `media:upload`.
#[utoipa::path(post, operation_id = "importMedia", security(("api_key" = ["media:upload"])), path = "/v1/media/import", tag = "media", request_body = ImportBody,
    responses((status = 202, description = "The media item, importing", body = MediaView)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<(StatusCode, ApiJson<MediaView>), ApiError> {
    let url = outbound::parse_url(body.url.trim(), state.config.allow_private_networks)
        .map_err(|error| ApiError::validation(vec![FieldError::new("url", error.to_string())]))?;
    let id = Uuid::now_v7();
    let command = Command::RequestImport {
        project_id: caller.project_id,
        environment: caller.environment,
        source_url: url.to_string(),
        object_key: media_item::object_key(id),
    };
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    execute::<Media>(&mut tx, id, command, &caller.event_metadata()).await?;
    let job = NewJob::of(&ImportMedia { media_id: id }).map_err(|error| ApiError::internal(&error))?;
    queue::enqueue(&mut *tx, job).await?;
    tx.commit().await?;
    let item = super::media::load(&state, &caller, id).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(item.view(&state.config, &state.media_url_key[..]))))
}
