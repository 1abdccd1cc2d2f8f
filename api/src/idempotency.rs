//! `Idempotency-Key` on every POST, PATCH and DELETE under `/v1`.
//!
//! The first request with a key claims it (an insert that names the claim), runs, and stores its
//! response, sealed with the encryption keyring (a new API key's secret is in its response). A
//! later request with the same key and the same method, path and body gets that response again,
//! marked `Idempotent-Replayed: true`, without acting; with another body it gets a 409
//! `idempotency_conflict`. A request that arrives while the first is still running waits for it
//! and then replays it, so two racing requests act once. Keys last 24 hours; a 5xx response
//! from a request that changed nothing is not kept, so the client can try again.
//!
//! **Crashes.** Claiming the key, committing the effect and storing the response are three
//! writes, and a process can die between any two. So a write handler opens its transaction with
//! [`begin`], which marks the claim applied *inside* that transaction, fenced on the claim: the
//! mark commits exactly when the effect does. A retry that finds a claim older than
//! [`idempotency::ABANDONED_AFTER`] without a response then knows which side of the commit the first request
//! died on:
//! - not applied: nothing happened; the retry takes the claim over and acts. Should the first
//!   request still be alive, its fence no longer matches and it is refused before acting
//!   (`idempotency_taken_over`); if it is already inside its transaction, the takeover waits on
//!   the row it locked and then finds it applied.
//! - applied: the effect committed but its response is gone; the retry gets a 409
//!   `idempotency_response_lost` instead of a second effect.
//!
//! **Streamed bodies.** A media upload (`POST /v1/media`, [`STREAMED`]) is not read here: it
//! may be gigabytes, and its multipart framing (a boundary a client picks afresh on each try)
//! says nothing about the file. Its handler streams the file into the store first and then
//! calls [`run_streamed`] with the stored object's SHA-256 and size as the body's fingerprint:
//! the same file again with the same key replays the first response (the new copy is
//! discarded), another file is a 409 `idempotency_conflict`. An upload refused before that
//! (too large, an unsupported type) acted on nothing, and is refused the same way again.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_shared::idempotency::{self, Claim};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// How long a retry waits for the first request to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);
/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// The routes whose body the handler streams and fingerprints itself ([`run_streamed`]).
const STREAMED: &[(Method, &str)] = &[(Method::POST, "/v1/media")];

/// The checked `Idempotency-Key` of a request to a [`STREAMED`] route, for its handler.
#[derive(Debug, Clone)]
pub struct StreamedKey(String);

tokio::task_local! {
    /// Set while a claimed request's handler runs, for [`begin`] to fence its transaction on.
    static CLAIM: Claim;
}

/// Begins the transaction a write handler records its effect in. When the request holds an
/// `Idempotency-Key`, the transaction first marks the claim applied, so the mark commits exactly
/// when the effect does; a request whose claim a retry took over is refused here, before acting.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, ApiError> {
    let mut tx = pool.begin().await?;
    let Ok(claim) = CLAIM.try_with(Claim::clone) else {
        return Ok(tx);
    };
    let fenced = idempotency::mark_applied(&mut tx, &claim).await?;
    if !fenced {
        return Err(ApiError::idempotency_taken_over(
            "this request ran so long that a retry with its Idempotency-Key took over; this one did nothing",
        ));
    }
    Ok(tx)
}

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
    let path = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if STREAMED.iter().any(|(method, streamed)| method == request.method() && Some(*streamed) == path) {
        let mut request = request;
        request.extensions_mut().insert(StreamedKey(key));
        return Ok(next.run(request).await);
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.config.max_body_bytes).await.map_err(|_| {
        ApiError::payload_too_large("the request body is larger than this server accepts").into_response()
    })?;
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &body);
    let token = match wait_for_claim(state, caller.project_id, &key, &fingerprint).await? {
        Turn::Act(token) => token,
        Turn::Replay(response) => return Ok(response),
    };
    let claim = Claim { project_id: caller.project_id, key, token };
    let response = CLAIM.scope(claim.clone(), next.run(Request::from_parts(parts, Body::from(body)))).await;
    Ok(remember(state, &claim, response).await)
}

/// What identifies a request with a key: its method, its path and its body.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> Vec<u8> {
    let mut fingerprint = Sha256::new();
    fingerprint.update(method.as_str().as_bytes());
    fingerprint.update(b" ");
    fingerprint.update(path.as_bytes());
    fingerprint.update(b"\n");
    fingerprint.update(body);
    fingerprint.finalize().to_vec()
}

/// What [`run_streamed`] did.
pub enum Streamed {
    /// `act` ran under the key's claim; its response, kept for replays.
    Acted(Response),
    /// `act` did not run: the first request's response again, or why not (a 409).
    NotActed(Response),
}

/// For a request to a [`STREAMED`] route whose body is stored: runs `act` under the key's claim,
/// with `stored` (what the stored body was: its SHA-256 and size) as the body's fingerprint, or
/// answers as the first request with the key did.
pub async fn run_streamed(
    state: &AppState,
    caller: &Caller,
    key: StreamedKey,
    method: &Method,
    path: &str,
    stored: &str,
    act: impl Future<Output = Response>,
) -> Streamed {
    let fingerprint = fingerprint(method, path, format!("stored {stored}").as_bytes());
    let token = match wait_for_claim(state, caller.project_id, &key.0, &fingerprint).await {
        Ok(Turn::Act(token)) => token,
        Ok(Turn::Replay(response)) | Err(response) => return Streamed::NotActed(response),
    };
    let claim = Claim { project_id: caller.project_id, key: key.0, token };
    let response = CLAIM.scope(claim.clone(), act).await;
    Streamed::Acted(remember(state, &claim, response).await)
}

/// What a request with a key does: act under its claim, or answer as the first request did.
enum Turn {
    Act(Uuid),
    Replay(Response),
}

/// Claims the key, takes over an abandoned claim, or waits for the first request's response.
async fn wait_for_claim(state: &AppState, project_id: Uuid, key: &str, fingerprint: &[u8]) -> Result<Turn, Response> {
    let internal = |error: sqlx::Error| ApiError::internal(&error).into_response();
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    loop {
        // Claim the key, or take over one older than the window.
        let claimed = idempotency::claim(&state.pool, project_id, key, fingerprint).await.map_err(internal)?;
        if let Some(token) = claimed {
            return Ok(Turn::Act(token));
        }
        let first = idempotency::find(&state.pool, project_id, key).await.map_err(internal)?;
        // No record: the first request failed with a 5xx and gave the key back, and the next
        // round claims it.
        if let Some(first) = first {
            if first.fingerprint != fingerprint {
                return Err(ApiError::idempotency_conflict(
                    "this Idempotency-Key was used with another method, path or body",
                )
                .into_response());
            }
            if let Some(status) = first.status {
                return Ok(Turn::Replay(replay(state, first.claim, status, first.content_type, first.sealed_body)));
            }
            if first.abandoned && first.applied {
                return Err(response_lost());
            }
            if first.abandoned {
                // Waits on the row while the first request's transaction holds it, and then
                // finds it applied.
                let taken =
                    idempotency::take_over(&state.pool, project_id, key, first.claim).await.map_err(internal)?;
                if let Some(token) = taken {
                    tracing::warn!("took over an Idempotency-Key whose first request never committed");
                    return Ok(Turn::Act(token));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::idempotency_in_progress(
                "the first request with this Idempotency-Key is still running",
            )
            .into_response());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps `response` for replays and returns it. A 5xx from a request that changed nothing gives
/// the key back instead, so the client can try again; one after its effect committed is kept
/// without a body, so a retry learns the effect happened.
async fn remember(state: &AppState, claim: &Claim, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal(&"the response body could not be read").into_response();
    };
    let status = i16::try_from(parts.status.as_u16()).unwrap_or(500);
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let sealed = if parts.status.is_server_error() {
        None
    } else {
        // `/v1` answers JSON, which is text; anything else is kept without its body.
        String::from_utf8(bytes.to_vec()).ok().and_then(|text| {
            idempotency::seal_response(&state.keyring, claim.token, &SecretString::from(text))
                .inspect_err(|error| tracing::warn!(%error, "cannot seal the response of an idempotent request"))
                .ok()
        })
    };
    let given_back =
        parts.status.is_server_error() && matches!(idempotency::give_back(&state.pool, claim).await, Ok(true));
    if !given_back {
        let stored = idempotency::keep_response(&state.pool, claim, status, content_type, sealed).await;
        if let Err(error) = stored {
            tracing::warn!(%error, "cannot record the response of an idempotent request");
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The first request's response again, or why it cannot be had.
fn replay(
    state: &AppState,
    claim: Uuid,
    status: i16,
    content_type: Option<String>,
    sealed_body: Option<String>,
) -> Response {
    let Some(sealed) = sealed_body else {
        return response_lost();
    };
    let body = match idempotency::open_response(&state.keyring, claim, &sealed) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "cannot open the kept response of an idempotent request");
            return response_lost();
        }
    };
    let status = u16::try_from(status).ok().and_then(|status| StatusCode::from_u16(status).ok());
    let mut response = Response::new(Body::from(body.expose_secret().to_owned()));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    if let Some(content_type) = content_type.and_then(|value| HeaderValue::from_str(&value).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// The first request acted, and its response is not to be had.
fn response_lost() -> Response {
    ApiError::idempotency_response_lost(
        "the first request with this Idempotency-Key acted, but its response was not kept \
         (its server stopped before answering); look the result up instead of retrying",
    )
    .into_response()
}
