//! Extractors whose rejections are problems, not axum's plain-text defaults. Every handler
//! takes its path, query, form and JSON body through these, so a request that cannot be read
//! is answered like any other error: `application/problem+json` with a stable `code`.
//!
//! They also refuse a NUL character (U+0000) anywhere in what they read, as a 400: PostgreSQL
//! stores none in `text` or `jsonb`, so one that reached a query was a 500.

use axum::body::Bytes;
use axum::extract::rejection::{
    FormRejection, InvalidFormContentType, JsonRejection, MissingJsonContentType, PathRejection, QueryRejection,
};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body. A malformed body is a 400 problem, a body of the wrong shape a 422, a wrong
/// content type a 415 and an oversized one a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_content_type(&request, |essence| {
            essence
                .split_once('/')
                .is_some_and(|(kind, sub)| kind == "application" && (sub == "json" || sub.ends_with("+json")))
        }) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let body = body_without_nul(request, state, json_has_nul).await?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(Self(value))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => {
                ApiError::validation(vec![FieldError { field: "body".into(), message: error.body_text() }])
            }
            JsonRejection::JsonSyntaxError(error) => ApiError::bad_request(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::unsupported_media_type("expected a body with `Content-Type: application/json`")
            }
            other => body_unreadable(other.status(), other.body_text()),
        }
    }
}

/// A query string, with rejections as 400 problems.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(|query| encodes_nul(query.as_bytes())) {
            return Err(nul_refused("the query string"));
        }
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Path parameters. One that does not parse (an id that is not a UUID) is a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path().as_bytes()) {
            return Err(nul_refused("the path"));
        }
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // A 500 here is a route whose parameters do not match its handler: our bug, not the
        // caller's, and logged as such.
        if rejection.status().is_server_error() {
            return ApiError::internal(&rejection.body_text());
        }
        ApiError::bad_request(rejection.body_text())
    }
}

/// An `application/x-www-form-urlencoded` body. Another content type is a 415 problem, a form
/// of the wrong shape a 422 and an oversized one a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if request.uri().query().is_some_and(|query| encodes_nul(query.as_bytes())) {
            return Err(nul_refused("the query string"));
        }
        if !has_content_type(&request, |essence| essence == "application/x-www-form-urlencoded") {
            return Err(FormRejection::from(InvalidFormContentType::default()).into());
        }
        let body = body_without_nul(request, state, encodes_nul).await?;
        let value = serde_urlencoded::from_bytes(&body).map_err(|error| {
            ApiError::validation(vec![FieldError {
                field: "body".into(),
                message: format!("Failed to deserialize form body: {error}"),
            }])
        })?;
        Ok(Self(value))
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => ApiError::unsupported_media_type(
                "expected a body with `Content-Type: application/x-www-form-urlencoded`",
            ),
            FormRejection::FailedToDeserializeFormBody(error) => {
                ApiError::validation(vec![FieldError { field: "body".into(), message: error.body_text() }])
            }
            FormRejection::FailedToDeserializeForm(error) => ApiError::bad_request(error.body_text()),
            other => body_unreadable(other.status(), other.body_text()),
        }
    }
}

/// A body that could not be read at all: over the size limit, or cut off.
fn body_unreadable(status: StatusCode, detail: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large("the request body is larger than this server accepts")
    } else {
        ApiError::bad_request(detail)
    }
}

/// Reads the body (within the body limit) and refuses it if `has_nul` finds a NUL in it.
async fn body_without_nul<S: Send + Sync>(
    request: Request,
    state: &S,
    has_nul: fn(&[u8]) -> bool,
) -> Result<Bytes, ApiError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| body_unreadable(rejection.status(), rejection.body_text()))?;
    if has_nul(&body) {
        return Err(nul_refused("the body"));
    }
    Ok(body)
}

/// Whether the request's `Content-Type`, without its parameters and in lower case, passes `is`.
fn has_content_type(request: &Request, is: impl Fn(&str) -> bool) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    is(&essence)
}

fn nul_refused(place: &str) -> ApiError {
    ApiError::bad_request(format!("{place} contains a NUL character (U+0000), which herald does not accept"))
}

/// Whether percent-encoded text (a path, a query string, a form) encodes a NUL: `%00`.
fn encodes_nul(text: &[u8]) -> bool {
    text.windows(3).any(|window| window == b"%00") || text.contains(&0)
}

/// Whether JSON text holds a NUL in a string: the escape `\u0000` (a raw NUL is not JSON). A
/// backslash that is itself escaped (`\\u0000`) starts no escape.
fn json_has_nul(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (at, byte) in json.iter().enumerate() {
        if *byte == b'\\' {
            backslashes += 1;
            continue;
        }
        if *byte == b'u' && backslashes % 2 == 1 && json[at + 1..].starts_with(b"0000") {
            return true;
        }
        backslashes = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_found_in_json_strings_and_percent_encoded_text_only() {
        assert!(json_has_nul(br#"{"content": "a\u0000b"}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#));
        assert!(!json_has_nul(br#"{"content": "a\\u0000b"}"#));
        assert!(json_has_nul(br#"{"content": "\u00001"}"#));
        assert!(!json_has_nul(br#"{"content": "u0000", "n": "\u0001"}"#));
        assert!(encodes_nul(b"status=%00"));
        assert!(!encodes_nul(b"status=%200"));
        assert!(!encodes_nul(b"/v1/posts/100"));
    }
}
