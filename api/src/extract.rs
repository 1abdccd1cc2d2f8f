//! Extractors whose rejections are problems, not axum's plain-text defaults.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use crate::error::ApiError;

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
            JsonRejection::JsonDataError(error) => ApiError::validation(vec![crate::error::FieldError {
                field: "body".into(),
                message: error.body_text(),
            }]),
            JsonRejection::JsonSyntaxError(error) => ApiError::bad_request(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::unsupported_media_type("expected a body with `Content-Type: application/json`")
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::payload_too_large("the request body is larger than this server accepts")
            }
            other => ApiError::bad_request(other.body_text()),
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
