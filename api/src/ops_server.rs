//! The ops server: `/healthz`, `/readyz` and `/metrics` for a process that serves nothing else
//! (a worker or scheduler, on `HERALD_OPS_LISTEN`), and for the api while it waits for its
//! database (then every other path answers a 503 problem, so a load balancer sees "not yet",
//! not a refused connection).
//!
//! The api's own routes (`routes/ops.rs`) answer the same three paths once it runs; both render
//! the process's one metrics recorder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use herald_shared::health::Health;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

/// How long the ops server lets a request finish at shutdown.
const GRACE: Duration = Duration::from_secs(2);

/// The three paths over `health`; any other path is a 404 problem.
pub fn router(health: Arc<Health>) -> Router {
    paths().fallback(|| async { ApiError::not_found("no such path on the ops server") }).with_state(health)
}

/// What the api serves on its own address while it waits for the database: the three paths,
/// and a 503 `starting` problem for every other.
pub fn router_while_starting(health: Arc<Health>) -> Router {
    paths()
        .fallback(|| async { ApiError::unavailable("starting", "herald is starting: waiting for its database") })
        .with_state(health)
}

/// The same three paths as the api's own (documented there; this router is not part of the
/// api's document).
fn paths() -> Router<Arc<Health>> {
    let (router, _) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts();
    router
}

/// A running ops server.
pub struct OpsServer {
    /// Where it listens (useful when the configured port was 0).
    pub local_addr: SocketAddr,
    /// Ends when the server has stopped.
    pub task: JoinHandle<Result<()>>,
}

/// Binds `listen` and serves [`router`] until `shutdown`. A worker or scheduler that cannot
/// bind its ops address does not start: an unobservable worker is what this exists to prevent.
pub async fn start(listen: SocketAddr, health: Arc<Health>, shutdown: CancellationToken) -> Result<OpsServer> {
    herald_shared::telemetry::metrics();
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("HERALD_OPS_LISTEN: cannot listen on {listen}"))?;
    let local_addr = listener.local_addr()?;
    tracing::info!("ops endpoints (/healthz, /readyz, /metrics) on http://{local_addr}");
    let task = tokio::spawn(crate::serve(listener, router(health), shutdown, GRACE));
    Ok(OpsServer { local_addr, task })
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Whether the process is ready: 200, or a 503 problem whose `code` says why
/// (`database_unreachable`, `migrations_missing`, `cannot_claim`, `stopping`).
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Object), (status = 503, body = Object)))]
async fn readyz(State(health): State<Arc<Health>>) -> Result<Json<serde_json::Value>, ApiError> {
    match health.readiness().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        Err(not_ready) => Err(ApiError::unavailable(not_ready.code, not_ready.detail)),
    }
}

/// The process's metrics, Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String)))]
async fn metrics() -> Response {
    metrics_page(herald_shared::telemetry::render())
}

/// `body` as the Prometheus text format.
pub(crate) fn metrics_page(body: String) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
