//! Operational routes: liveness, readiness and metrics. No key needed: they reveal nothing of any
//! tenant.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use herald_shared::db::{self, Readiness};
use herald_shared::heartbeat::{self, Role};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// The process is up and serving.
///
/// Liveness: answers 200 while the process serves requests, without asking the database. No key.
#[utoipa::path(get, operation_id = "getHealth", path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Whether this process is ready to serve.
///
/// The database answers and the schema is current (and, with `HERALD_READY_REQUIRES_WORKER`, a
/// worker reported recently): 200, else a 503 problem saying which (`database_unreachable`,
/// `migrations_missing`, `no_live_worker`).
#[utoipa::path(get, operation_id = "getReadiness", path = "/readyz", tag = "operations", responses(
    (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
    (status = 503, description = "Not ready; `code` says why", content_type = "application/problem+json", body = crate::error::Problem<'static>),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match db::readiness(&state.pool, READINESS_TIMEOUT).await {
        Readiness::Ready if state.config.ready_requires_worker => {
            let fresh_within = state.config.heartbeat() * 3;
            match heartbeat::live_count(&state.pool, Role::Worker, fresh_within).await {
                Ok(live) if live > 0 => Ok(Json(json!({ "status": "ready", "workers": live }))),
                Ok(_) => Err(ApiError::unavailable(
                    "no_live_worker",
                    format!("no worker has reported in the last {} s", fresh_within.as_secs()),
                )),
                Err(_) => Err(ApiError::unavailable("database_unreachable", "the database does not answer")),
            }
        }
        Readiness::Ready => Ok(Json(json!({ "status": "ready" }))),
        Readiness::Unreachable => Err(ApiError::unavailable("database_unreachable", "the database does not answer")),
        Readiness::MigrationsMissing(versions) => Err(ApiError::unavailable(
            "migrations_missing",
            format!("database migrations not applied: {versions:?}; run `herald migrate`"),
        )),
    }
}

/// Prometheus metrics of this process.
///
/// Requests, latencies, queue depth and age, job outcomes and more, in Prometheus text exposition
/// format. No key.
#[utoipa::path(get, operation_id = "getMetrics", path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    herald_shared::telemetry::record_pool("main", &state.pool);
    herald_shared::telemetry::record_pool("limiter", &state.limiter);
    crate::ops_server::metrics_page(herald_shared::telemetry::render())
}
