//! The api's routes, one file a resource.

mod ops;

use axum::Router;
use axum::http::{Method, Uri};

use crate::AppState;
use crate::error::ApiError;

/// Every route, without layers or state.
pub fn routes() -> Router<AppState> {
    Router::new().merge(ops::routes())
}

/// The 404 for any path no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource at {}", uri.path()))
}

/// The 405 for a known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{} does not accept {method}", uri.path()))
}
