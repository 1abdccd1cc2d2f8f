//! The api's routes, one file a resource. Each is registered with `utoipa_axum::routes!`, so
//! the OpenAPI document ([`crate::openapi`]) is built from the same list as the router.

// utoipa's macros expand the types we name into fully qualified paths.
#![allow(unused_qualifications)]

mod accounts;
mod apps;
mod connect;
mod events;
mod keys;
mod media;
mod media_import;
mod media_uploads;
mod ops;
mod posts;
mod webhooks;

use axum::Router;
use axum::http::{Method, Uri};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi;

/// The `/v1` routes, which need a key.
fn authenticated() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(keys::routes())
        .merge(events::routes())
        .merge(connect::routes())
        .merge(accounts::routes())
        .merge(apps::routes())
        .merge(posts::routes())
        .merge(media::routes())
        .merge(media_import::routes())
        .merge(media_uploads::routes())
        .merge(webhooks::routes())
}

/// The routes anyone may call: operations, the API's own documentation, the OAuth callback (its
/// state is the credential) and media content (its signature is). The sandbox platform's are
/// public too, when it is on.
fn public() -> OpenApiRouter<AppState> {
    ops::routes()
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs))
        .routes(routes!(openapi::docs_renderer))
        .merge(connect::public_routes())
        .merge(media::public_routes())
}

/// Every route. The `/v1` routes need a key ([`crate::auth::authenticate`] runs first), and
/// their writes honour `Idempotency-Key`.
pub fn routes(state: AppState) -> Router<AppState> {
    let sandbox = state.config.sandbox_enabled();
    let (v1, _) = authenticated().split_for_parts();
    let v1 = v1
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::idempotency))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::auth::authenticate));
    let (public, _) = public().split_for_parts();
    let router = public.merge(v1);
    if !sandbox {
        // Turned off: `/sandbox/...` is an unknown path (a 404 problem).
        return router;
    }
    let (sandbox, _) = crate::sandbox::routes().split_for_parts();
    router.merge(sandbox)
}

/// The OpenAPI document of every route in [`routes`].
pub fn document() -> OpenApi {
    let (_, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(authenticated())
        .merge(public())
        .merge(crate::sandbox::routes())
        .split_for_parts();
    openapi::apply_conventions(&mut document);
    document
}

/// The 404 for any path no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource at {}", uri.path()))
}

/// The 405 for a known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{} does not accept {method}", uri.path()))
}
