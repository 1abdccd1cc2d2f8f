//! One error type for every failure the api reports: an RFC 9457 problem
//! (`application/problem+json`) with a stable `code` clients can branch on and the request id an
//! operator can grep for. It never carries SQL, a stack trace or a secret: internal errors are
//! logged with their cause and answered with a generic 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_shared::commands::ExecuteError;
use serde::Serialize;

tokio::task_local! {
    /// The request id of the request being served, so errors built anywhere can name it.
    pub static REQUEST_ID: String;
}

/// The request id of the current request, if called while serving one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer-ish path of the field, e.g. `targets[0].account_id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl From<herald_shared::commands::posts::Invalid> for FieldError {
    fn from(invalid: herald_shared::commands::posts::Invalid) -> Self {
        Self { field: invalid.field, message: invalid.message }
    }
}

/// A list's `limit` parameter: `default` when absent, a 422 outside `1..=max`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::validation(vec![FieldError::new("limit", format!("must be between 1 and {max}"))]))
    }
}

/// Cuts a list fetched with `limit + 1` rows to `limit`, and names the cursor of the next page
/// (the last row's, by `cursor_of`) if there was one more row.
pub fn split_page<T>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(cursor_of);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// A failed request, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// An RFC 9457 problem: the body of every error (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    /// A URL naming the kind of problem: the documentation base plus `code`.
    r#type: String,
    /// A short summary of the kind of problem.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What went wrong with this request, for a human.
    detail: &'a str,
    /// Stable, for code to branch on: `unauthorized`, `forbidden`, `not_found`,
    /// `validation_failed`, `rate_limited`, `conflict`, `idempotency_conflict`, `in_use`,
    /// `payload_too_large`, `too_large`, `bad_request`, `unsupported_media_type`,
    /// `range_not_satisfiable`, `method_not_allowed`, `internal`, or a 503 code naming the
    /// dependency that is down.
    code: &'a str,
    /// The request's `X-Request-Id`, to quote when asking for help.
    request_id: Option<String>,
    /// With `validation_failed`: each invalid field and why.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

/// Where the problem types are documented; `type` is this plus the code.
pub const PROBLEM_TYPE_BASE: &str = "https://herald.dev/problems/";

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, title, detail: detail.into(), errors: Vec::new(), headers: Vec::new() }
    }

    /// 400: the request could not be read (malformed JSON, a bad query string).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request", detail)
    }

    /// 401: no usable credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: nothing here, or nothing this key may see.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", detail)
    }

    /// 409: the state changed underneath the request.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 409: an `Idempotency-Key` reused with another request.
    pub fn idempotency_conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency_conflict", "Idempotency conflict", detail)
    }

    /// 409: the first request with this `Idempotency-Key` is still being served.
    pub fn idempotency_in_progress(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency_in_progress", "Idempotent request in progress", detail)
    }

    /// 409: the first request with this `Idempotency-Key` acted, but its response was not kept
    /// (its process stopped between committing and answering, or the answer could not be stored).
    pub fn idempotency_response_lost(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency_response_lost", "Idempotent response lost", detail)
    }

    /// 409: this request held its `Idempotency-Key` so long that a retry took the key over; this
    /// request acted not at all.
    pub fn idempotency_taken_over(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency_taken_over", "Idempotency key taken over", detail)
    }

    /// 413: the body is larger than the configured limit.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large", detail)
    }

    /// 413: an uploaded file is over the limit for its kind (a setting); `detail` names it.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "File too large", detail)
    }

    /// 422: an uploaded file's bytes are of a type herald does not take; `detail` names what
    /// they were sniffed as.
    pub fn unsupported_file(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_media_type", "Unsupported media type", detail)
    }

    /// 409: something still uses what the request would delete.
    pub fn in_use(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "in_use", "In use", detail)
    }

    /// 416: no byte of the `Range` asked for is in the object of `size` bytes.
    pub fn range_not_satisfiable(size: u64) -> Self {
        let detail = format!("the range asked for is not within the {size} bytes of this object");
        let content_range = HeaderValue::from_str(&format!("bytes */{size}")).unwrap_or(HeaderValue::from_static("*"));
        Self::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "Range not satisfiable", detail)
            .with_header(header::CONTENT_RANGE, content_range)
    }

    /// 415: the body is not JSON.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type", detail)
    }

    /// 422: the body is JSON but breaks the rules; `errors` says which field and why.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed", detail) }
    }

    /// 503 `overloaded`: the api sheds this request rather than queue it; `Retry-After: 1`.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::unavailable("overloaded", detail).with_header(header::RETRY_AFTER, HeaderValue::from(1))
    }

    /// 429: over a rate limit; `Retry-After` says when to come back.
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let retry_after = HeaderValue::from(retry_after_secs.max(1));
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests", detail)
            .with_header(header::RETRY_AFTER, retry_after)
    }

    /// 503: a dependency is down; the client may try again.
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, "Service unavailable", detail)
    }

    /// 500: something broke on our side. The cause is logged here, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "something went wrong on our side; the request id identifies it in the logs",
        )
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            r#type: format!("{PROBLEM_TYPE_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: current_request_id(),
            errors: &self.errors,
        };
        let mut response = (self.status, Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    /// No free connection in time, or the database away: a 503 the client may retry (the
    /// request did nothing); anything else is an internal error.
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => Self::overloaded("no database connection was free in time; try again shortly"),
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable("database_unreachable", "the database does not answer; try again shortly")
                    .with_header(header::RETRY_AFTER, HeaderValue::from(1))
            }
            error => Self::internal(&error),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(&format!("{error:#}"))
    }
}

/// How the api answers an aggregate's refusal of a command: each aggregate's `Rejection` says
/// it once (beside its routes), and `?` on an [`ExecuteError`] does the rest.
pub trait Rejected: std::error::Error {
    /// The aggregate as a client names it, for "the post changed meanwhile".
    const NOUN: &'static str;

    /// The problem this refusal is answered with.
    fn into_api_error(self) -> ApiError;
}

/// The one mapping of a command's failure: a refusal as its aggregate says, a lost race a 409
/// the client may retry, anything else (database, decoding, projections) an internal error.
impl<R: Rejected> From<ExecuteError<R>> for ApiError {
    fn from(error: ExecuteError<R>) -> Self {
        match error {
            ExecuteError::Rejected(rejection) => rejection.into_api_error(),
            ExecuteError::Conflict { .. } => Self::conflict(format!("the {} changed meanwhile; try again", R::NOUN)),
            other => Self::internal(&other),
        }
    }
}
