//! Operational routes: liveness, readiness and metrics. No key needed: they reveal nothing of any
//! tenant.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use herald_shared::db::{self, Readiness};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up and serving.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and the schema is current: 200, else a 503 problem saying which.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match db::readiness(&state.pool, READINESS_TIMEOUT).await {
        Readiness::Ready => Ok(Json(json!({ "status": "ready" }))),
        Readiness::Unreachable => Err(ApiError::unavailable("database_unreachable", "the database does not answer")),
        Readiness::MigrationsMissing(versions) => Err(ApiError::unavailable(
            "migrations_missing",
            format!("database migrations not applied: {versions:?}; run `herald migrate`"),
        )),
    }
}

/// Prometheus text exposition of this process's metrics.
async fn metrics() -> Response {
    let handle = herald_shared::telemetry::metrics();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
