//! What wraps every request: its id, its span, its metrics, and a problem for a panic.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ApiError, REQUEST_ID};

/// The header that carries the request id, in and out.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Takes the caller's `X-Request-Id` (if it is short and printable) or makes one, runs the
/// request inside a span that carries it (so every log line of the request names it), echoes it
/// on the response and records the request's metrics.
pub async fn request_context(mut request: Request, next: Next) -> Response<Body> {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", %method, path = %request.uri().path(), %request_id);
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(request_id.clone(), next.run(request)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1000.0, "served");
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let labels = [("method", method.to_string()), ("route", route), ("status", status.as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    response
}

/// Sheds load: a request beyond `HERALD_MAX_IN_FLIGHT` requests at once gets a 503
/// `overloaded` problem with `Retry-After: 1` at once, instead of queueing for a database
/// connection until it times out. Bounded work in flight keeps latency and memory bounded at
/// any offered load; the operations paths are never shed (a probe must see the process).
pub async fn shed_load(
    axum::extract::State(gate): axum::extract::State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let Ok(_permit) = gate.try_acquire() else {
        metrics::counter!("herald_requests_shed_total").increment(1);
        return ApiError::overloaded("too many requests in flight; try again shortly").into_response();
    };
    next.run(request).await
}

fn is_acceptable_request_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|byte| byte.is_ascii_graphic())
}

/// A panic in a handler becomes a 500 problem; the process lives on.
pub fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned());
    ApiError::internal(&format!("panic: {message}")).into_response()
}
