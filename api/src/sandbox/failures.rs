//! The failures a sandbox post's text asks for, so herald's tests (and a customer's) can watch
//! every path of a publish: `[fail:KIND]`, `[fail:KIND:ARG]`, with `xN` to apply it to the
//! first N attempts of the client reference only.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure the text asks for: `[fail:KIND]`, `[fail:KIND:ARG]`, with `xN` to apply it to the
/// first N attempts of the client reference only (e.g. `[fail:500x2]`). Kinds: `400` (refused
/// for good), `401`,
/// `429:SECONDS` (with `Retry-After`), `500`, `timeout` (no answer), `timeout-after-success`
/// (publishes, then no answer), `slow:MILLISECONDS` (publishes after a delay).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Marker {
    kind: String,
    argument: Option<u64>,
    first_attempts: Option<i32>,
}

fn marker(text: &str) -> Option<Marker> {
    let start = text.find("[fail:")? + "[fail:".len();
    let spec = &text[start..start + text[start..].find(']')?];
    let (spec, first_attempts) = match spec.rsplit_once('x') {
        Some((head, count)) if !count.is_empty() && count.chars().all(|c| c.is_ascii_digit()) => {
            (head, count.parse().ok())
        }
        _ => (spec, None),
    };
    let (kind, argument) = match spec.split_once(':') {
        Some((kind, argument)) if kind != "timeout-after-success" => (kind, argument.parse().ok()),
        _ => (spec, None),
    };
    Some(Marker { kind: kind.to_owned(), argument, first_attempts })
}

/// How long "no answer" lasts: longer than any publisher waits.
const NO_ANSWER: std::time::Duration = std::time::Duration::from_secs(300);

/// The failure `text` asks for on this attempt of its client reference (the first, without one).
pub(super) fn for_attempt(text: &str, attempt: i32) -> Option<Marker> {
    marker(text).filter(|marker| marker.first_attempts.is_none_or(|first| attempt <= first))
}

impl Marker {
    /// The answer in place of publishing, for a failure that does not publish; a `slow` one
    /// waits, then lets the post through (`None`).
    pub(super) async fn before_publishing(&self) -> Option<Response> {
        match (self.kind.as_str(), self.argument) {
            ("401", _) => {
                Some((StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_token" }))).into_response())
            }
            ("400", _) => {
                Some((StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "injected refusal" }))).into_response())
            }
            ("429", seconds) => Some(rate_limited(seconds.unwrap_or(60))),
            ("500", _) => Some(
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "injected failure" }))).into_response(),
            ),
            ("timeout", _) => Some(no_answer().await),
            ("slow", milliseconds) => {
                tokio::time::sleep(std::time::Duration::from_millis(milliseconds.unwrap_or(1000))).await;
                None
            }
            _ => None,
        }
    }

    /// The answer in place of the post's, for a failure that publishes first.
    pub(super) async fn after_publishing(&self) -> Option<Response> {
        if self.kind == "timeout-after-success" { Some(no_answer().await) } else { None }
    }
}

/// A 429 with `Retry-After` and the reset time, as X sends them.
fn rate_limited(seconds: u64) -> Response {
    let reset = chrono::Utc::now().timestamp() + i64::try_from(seconds).unwrap_or(60);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({ "error": "rate_limited" }))).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    response.headers_mut().insert("x-rate-limit-reset", reset.into());
    response
}

/// Waits longer than any publisher does, then gives up with a 504.
async fn no_answer() -> Response {
    tokio::time::sleep(NO_ANSWER).await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_a_failure_an_argument_and_how_many_attempts_it_lasts() {
        let parse = |text| marker(text).map(|m| (m.kind, m.argument, m.first_attempts));
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("a [fail:500x2] b"), Some(("500".into(), None, Some(2))));
        assert_eq!(parse("[fail:429:3x1]"), Some(("429".into(), Some(3), Some(1))));
        assert_eq!(parse("[fail:timeout-after-success]"), Some(("timeout-after-success".into(), None, None)));
        assert_eq!(parse("[fail:slow:1500]"), Some(("slow".into(), Some(1500), None)));
        assert_eq!(parse("[fail:401]"), Some(("401".into(), None, None)));
    }
}
