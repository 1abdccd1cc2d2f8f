//! `Idempotency-Key` on every POST, PATCH and DELETE under `/v1`.
//!
//! The first request with a key claims it (an insert), runs, and stores its response. A later
//! request with the same key and the same method, path and body gets that response again,
//! marked `Idempotent-Replayed: true`, without acting; with another body it gets a 409
//! `idempotency_conflict`. A request that arrives while the first is still running waits for it
//! and then replays it, so two racing requests act once. Keys last 24 hours; a 5xx response is
//! not kept, so the client can try again.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// How long a retry waits for the first request to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);
/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match replay_or_run(&state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn replay_or_run(state: &AppState, request: Request, next: Next) -> Result<Response, Response> {
    let is_write = matches!(*request.method(), Method::POST | Method::PATCH | Method::DELETE);
    let Some(key) = request.headers().get("idempotency-key").filter(|_| is_write) else {
        return Ok(next.run(request).await);
    };
    let key = match key.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => key.to_owned(),
        _ => return Err(ApiError::bad_request("Idempotency-Key must be 1 to 255 visible characters").into_response()),
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return Ok(next.run(request).await);
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.config.max_body_bytes).await.map_err(|_| {
        ApiError::payload_too_large("the request body is larger than this server accepts").into_response()
    })?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(parts.method.as_str().as_bytes());
    fingerprint.update(b" ");
    fingerprint.update(parts.uri.path().as_bytes());
    fingerprint.update(b"\n");
    fingerprint.update(&body);
    let fingerprint = fingerprint.finalize().to_vec();

    let internal = |error: sqlx::Error| ApiError::internal(&error).into_response();
    // Claim the key, or take over one older than the window.
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys AS k (project_id, idempotency_key, fingerprint)
           VALUES ($1, $2, $3)
           ON CONFLICT (project_id, idempotency_key) DO UPDATE
               SET fingerprint = excluded.fingerprint, status = NULL, content_type = NULL, body = NULL,
                   created_at = now()
               WHERE k.created_at < now() - make_interval(secs => $4)
           RETURNING true AS "claimed!""#,
        caller.project_id,
        key,
        fingerprint,
        herald_shared::keys::IDEMPOTENCY_WINDOW.as_secs_f64(),
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(internal)?
    .is_some();

    if claimed {
        let response = next.run(Request::from_parts(parts, Body::from(body))).await;
        return Ok(remember(state, &caller, &key, response).await);
    }
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    loop {
        let first = sqlx::query!(
            "SELECT fingerprint, status, content_type, body FROM idempotency_keys
             WHERE project_id = $1 AND idempotency_key = $2",
            caller.project_id,
            key,
        )
        .fetch_optional(&state.pool)
        .await
        .map_err(internal)?;
        let Some(first) = first else {
            // The first request failed with a 5xx and gave the key back: try again from the top.
            return Err(ApiError::conflict("the first request with this Idempotency-Key failed; retry").into_response());
        };
        if first.fingerprint != fingerprint {
            return Err(ApiError::idempotency_conflict(
                "this Idempotency-Key was used with another method, path or body",
            )
            .into_response());
        }
        if let Some(status) = first.status {
            return Ok(replayed(status, first.content_type, first.body.unwrap_or_default()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                ApiError::conflict("the first request with this Idempotency-Key is still running").into_response()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stores `response` for replays (a 5xx gives the key back instead) and returns it.
async fn remember(state: &AppState, caller: &Caller, key: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal(&"the response body could not be read").into_response();
    };
    let stored = if parts.status.is_server_error() {
        sqlx::query!(
            "DELETE FROM idempotency_keys WHERE project_id = $1 AND idempotency_key = $2",
            caller.project_id,
            key
        )
        .execute(&state.pool)
        .await
    } else {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        sqlx::query!(
            "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5
             WHERE project_id = $1 AND idempotency_key = $2",
            caller.project_id,
            key,
            i16::try_from(parts.status.as_u16()).unwrap_or(500),
            content_type,
            bytes.as_ref(),
        )
        .execute(&state.pool)
        .await
    };
    if let Err(error) = stored {
        tracing::warn!(%error, "cannot record the response of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replayed(status: i16, content_type: Option<String>, body: Vec<u8>) -> Response {
    let status = u16::try_from(status).ok().and_then(|status| StatusCode::from_u16(status).ok());
    let mut response = Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    if let Some(content_type) = content_type.and_then(|value| HeaderValue::from_str(&value).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
