//! The api's routes, one file a resource.

mod events;
mod keys;
mod ops;

use axum::Router;
use axum::http::{Method, Uri};

use crate::AppState;
use crate::error::ApiError;

/// Every route. The `/v1` routes need a key ([`crate::auth::authenticate`] runs first), and
/// their writes honour `Idempotency-Key`.
pub fn routes(state: AppState) -> Router<AppState> {
    let v1 = Router::new()
        .merge(keys::routes())
        .merge(events::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::idempotency))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::auth::authenticate));
    Router::new().merge(ops::routes()).merge(v1)
}

/// The 404 for any path no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource at {}", uri.path()))
}

/// The 405 for a known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{} does not accept {method}", uri.path()))
}
