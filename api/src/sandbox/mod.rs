//! The `sandbox` platform's server side: a small OAuth 2.0 provider and API that herald serves
//! itself under `/sandbox`, so customers (with `hk_test_` keys) and herald's own tests can run
//! the whole connect flow without a real platform. herald's sandbox adapter
//! (`herald_shared::platforms::sandbox`) talks to it over HTTP like to any other platform.
//!
//! It behaves like a strict platform: authorization code + PKCE (S256) with single-use codes
//! that live 60 s and are bound to the client and redirect URI; access tokens that live 15
//! minutes; refresh tokens that rotate on every use, where reusing an old one is
//! `invalid_grant` and revokes the whole grant (as X and TikTok do). A grant reaches a person
//! and two pages. The authorize page asks for a login name, or approves at once when the URL
//! already has `login=` (what automated tests do); `decision=deny` answers `access_denied`.
//! Codes and tokens are stored as SHA-256 only.
//!
//! `oauth` is the provider (authorize, token, revoke), `api` the platform's API (accounts,
//! posts, a post's page) and `failures` the `[fail:...]` markers a post's text injects.

mod api;
mod failures;
mod oauth;

use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oauth::authorize))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(api::accounts))
        .routes(routes!(api::publish, api::find_posts))
        .routes(routes!(api::show_post))
}

/// Codes and tokens are stored as this digest only.
fn digest(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}
