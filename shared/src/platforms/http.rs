//! What every adapter does with a platform's HTTP answer: a success is read, anything else is
//! classified into a [`PlatformError`] by status and rate-limit headers. Reasons quote the
//! platform's status and a short piece of its body, never a token (bodies of error answers do
//! not carry tokens).

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::PlatformError;

/// The headers platforms name their request ids in, first found wins: `x-request-id` (Mastodon,
/// the sandbox and most others), `x-fb-trace-id` (Facebook, Instagram, Threads), `x-li-uuid`
/// (LinkedIn), `x-transaction-id` (X).
const REQUEST_ID_HEADERS: [&str; 4] = ["x-request-id", "x-fb-trace-id", "x-li-uuid", "x-transaction-id"];

tokio::task_local! {
    /// The request id of the last answer [`send`] received inside [`with_request_id`].
    static LAST_REQUEST_ID: std::cell::RefCell<Option<String>>;
}

/// Runs `call` (an adapter's publish, say) and returns, beside its result, the request id the
/// platform put on the last answer it sent: what a person quotes to the platform's support
/// about a failed delivery. Adapters need not carry it: every answer passes through [`send`].
pub async fn with_request_id<T>(call: impl Future<Output = T>) -> (T, Option<String>) {
    LAST_REQUEST_ID
        .scope(std::cell::RefCell::new(None), async {
            let result = call.await;
            (result, LAST_REQUEST_ID.with(|last| last.borrow_mut().take()))
        })
        .await
}

/// How much of an error body a reason quotes.
const REASON_BODY_CHARS: usize = 300;

/// Sends `request` and reads a JSON answer, or classifies the failure. `platform` names the
/// platform in reasons.
pub async fn send_json<T: DeserializeOwned>(platform: &str, request: RequestBuilder) -> Result<T, PlatformError> {
    let response = send(platform, request).await?;
    response
        .json()
        .await
        .map_err(|error| PlatformError::Transient(format!("{platform} sent an unreadable answer: {error}")))
}

/// Sends `request`; a non-success answer becomes the classified error.
pub async fn send(platform: &str, request: RequestBuilder) -> Result<Response, PlatformError> {
    let response = send_answered(platform, request).await?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Err(classify(platform, status, &headers, &body, Utc::now()))
}

/// Sends `request` and answers whatever the platform answered, success or not (for adapters
/// that classify error bodies themselves, such as Graph's); only a failure to get an answer is
/// an error. Keeps the answer's request id, as [`send`] does.
pub async fn send_answered(platform: &str, request: RequestBuilder) -> Result<Response, PlatformError> {
    let response = request.send().await.map_err(|error| {
        if error.is_connect() {
            // It never reached the platform.
            PlatformError::Transient(format!("{platform} unreachable: {}", without_url(&error)))
        } else {
            PlatformError::Ambiguous(format!("no answer from {platform}: {}", without_url(&error)))
        }
    })?;
    let request_id = REQUEST_ID_HEADERS
        .iter()
        .find_map(|name| response.headers().get(*name)?.to_str().ok())
        .map(|id| id.chars().take(200).collect::<String>());
    // Outside `with_request_id` there is nowhere to keep it, and nothing asks.
    let _ = LAST_REQUEST_ID.try_with(|last| *last.borrow_mut() = request_id);
    Ok(response)
}

/// The error an unsuccessful answer means.
pub fn classify(
    platform: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: DateTime<Utc>,
) -> PlatformError {
    let excerpt: String = body.chars().take(REASON_BODY_CHARS).collect();
    let reason = format!("{platform} answered {status}: {excerpt}");
    match status.as_u16() {
        429 => PlatformError::RateLimited {
            until: reset_time(headers, now).unwrap_or(now + chrono::Duration::seconds(60)),
            reason,
        },
        401 => PlatformError::AuthDead(reason),
        408 => PlatformError::Transient(reason),
        code if code >= 500 => PlatformError::Transient(reason),
        _ => PlatformError::Permanent(reason),
    }
}

/// When a rate limit resets, from whichever header the platform uses: `x-rate-limit-reset`
/// (X: unix seconds), `Retry-After` (seconds or an HTTP date), `X-RateLimit-Reset` (Mastodon:
/// an RFC 3339 time), `ratelimit-reset` (Bluesky: unix seconds).
pub fn reset_time(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    if let Some(seconds) = header("retry-after").and_then(|value| value.parse::<i64>().ok()) {
        return Some(now + chrono::Duration::seconds(seconds));
    }
    if let Some(date) = header("retry-after").and_then(|value| DateTime::parse_from_rfc2822(value).ok()) {
        return Some(date.with_timezone(&Utc));
    }
    for name in ["x-rate-limit-reset", "x-ratelimit-reset", "ratelimit-reset"] {
        if let Some(value) = header(name) {
            if let Ok(unix) = value.parse::<i64>() {
                // Some send seconds until the reset rather than a time: small numbers are that.
                let at = if unix < 1_000_000_000 { now.timestamp() + unix } else { unix };
                return DateTime::from_timestamp(at, 0);
            }
            if let Ok(at) = DateTime::parse_from_rfc3339(value) {
                return Some(at.with_timezone(&Utc));
            }
        }
    }
    None
}

/// A reqwest error without its URL (a URL may carry a code or token in its query).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn rate_limits_wait_for_the_time_the_platform_names() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let x =
            classify("x", StatusCode::TOO_MANY_REQUESTS, &headers(&[("x-rate-limit-reset", "1800000900")]), "", now);
        assert_eq!(
            x,
            PlatformError::RateLimited {
                until: now + chrono::Duration::seconds(900),
                reason: "x answered 429 Too Many Requests: ".into()
            }
        );
        let retry_after = reset_time(&headers(&[("retry-after", "30")]), now).unwrap();
        assert_eq!(retry_after, now + chrono::Duration::seconds(30));
        let mastodon = reset_time(&headers(&[("x-ratelimit-reset", "2027-01-15T08:00:00.000Z")]), now).unwrap();
        assert_eq!(mastodon.to_rfc3339(), "2027-01-15T08:00:00+00:00");
        let unnamed = classify("linkedin", StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "", now);
        assert!(
            matches!(unnamed, PlatformError::RateLimited { until, .. } if until == now + chrono::Duration::seconds(60))
        );
    }

    #[test]
    fn statuses_say_what_to_do() {
        let now = Utc::now();
        let none = HeaderMap::new();
        assert!(matches!(classify("x", StatusCode::UNAUTHORIZED, &none, "{}", now), PlatformError::AuthDead(_)));
        assert!(matches!(classify("x", StatusCode::BAD_GATEWAY, &none, "", now), PlatformError::Transient(_)));
        assert!(matches!(classify("x", StatusCode::FORBIDDEN, &none, "duplicate", now), PlatformError::Permanent(_)));
    }
}
