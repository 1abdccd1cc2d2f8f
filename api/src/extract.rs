//! Extractors whose rejections are problems, not axum's plain-text defaults. Every handler
//! takes its path, query, form and JSON body through these, so a request that cannot be read
//! is answered like any other error: `application/problem+json` with a stable `code`.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use crate::error::{ApiError, FieldError};

/// A JSON body. A malformed body is a 400 problem, a body of the wrong shape a 422, a wrong
/// content type a 415 and an oversized one a 413.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

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
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Path parameters. One that does not parse (an id that is not a UUID) is a 400 problem.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

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
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Form), rejection(ApiError))]
pub struct ApiForm<T>(pub T);

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
