//! The sandbox's OAuth 2.0 provider: the authorize page, the token endpoint (code + PKCE,
//! rotating refresh tokens) and revocation.

// utoipa's macros expand the types we name into fully qualified paths.
#![allow(unused_qualifications)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::digest;
use crate::AppState;
use crate::extract::{ApiForm, ApiQuery};
use crate::html::{escape, page, page_html};

/// How long an authorization code is good for.
const CODE_SECS: i64 = 60;
/// How long an access token is good for.
const ACCESS_SECS: i64 = 15 * 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    /// The sandbox user's name; without it the consent page asks for one.
    login: Option<String>,
    /// `deny` refuses, as a user pressing "Deny" would.
    decision: Option<String>,
}

/// The sandbox's authorize page.
///
/// Asks for a sandbox login name, or approves at once when the URL has `login=` (what automated
/// tests do); `decision=deny` refuses. Approving redirects with a code that lives 60 s, bound to
/// the client, the redirect URI and the PKCE challenge.
#[utoipa::path(get, operation_id = "authorizeSandboxApp", path = "/sandbox/oauth/authorize", tag = "sandbox", params(AuthorizeQuery), responses(
    (status = 303, description = "Back to the redirect URI with `code` and `state`, or `error=access_denied`"),
    (status = 200, description = "The consent page", content_type = "text/html", body = String),
    (status = 400, description = "A request no client should send", content_type = "text/html", body = String),
    (status = 503, description = "The sandbox could not store a code; try again", content_type = "text/html", body = String),
))]
pub(super) async fn authorize(State(state): State<AppState>, ApiQuery(query): ApiQuery<AuthorizeQuery>) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (query.client_id.as_deref(), query.redirect_uri.as_deref()) else {
        return page(StatusCode::BAD_REQUEST, "Bad request", "client_id and redirect_uri are required.");
    };
    if query.response_type.as_deref() != Some("code") {
        return page(StatusCode::BAD_REQUEST, "Bad request", "response_type must be code.");
    }
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return page(StatusCode::BAD_REQUEST, "Bad request", "redirect_uri must be an http(s) URL.");
    }
    if query.code_challenge.is_some() && query.code_challenge_method.as_deref() != Some("S256") {
        return page(StatusCode::BAD_REQUEST, "Bad request", "code_challenge_method must be S256.");
    }
    let client_state = query.state.clone().unwrap_or_default();
    if query.decision.as_deref() == Some("deny") {
        let target = with_params(redirect_uri, &[("error", "access_denied"), ("state", &client_state)]);
        return Redirect::to(&target).into_response();
    }
    let Some(login) = query.login.as_deref().map(str::trim).filter(|login| !login.is_empty()) else {
        return consent_page(&query);
    };
    let code = random_token();
    let scopes: Vec<String> =
        query.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let stored = sqlx::query!(
        "INSERT INTO sandbox_codes (code_hash, client_id, redirect_uri, code_challenge, login, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        digest(&code),
        client_id,
        redirect_uri,
        query.code_challenge,
        login,
        &scopes,
        CODE_SECS as f64,
    )
    .execute(&state.pool)
    .await;
    if let Err(error) = stored {
        tracing::error!(%error, "the sandbox cannot store a code");
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The sandbox could not issue a code.");
    }
    Redirect::to(&with_params(redirect_uri, &[("code", &code), ("state", &client_state)])).into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

/// An OAuth token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

/// The sandbox's token endpoint.
///
/// `authorization_code` (with PKCE) and `refresh_token` grants. Access tokens live 15 minutes;
/// refresh tokens rotate on every use, and reusing an old one is `invalid_grant` and revokes the
/// whole grant.
#[utoipa::path(post, operation_id = "issueSandboxToken", path = "/sandbox/oauth/token", tag = "sandbox",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "New tokens", body = TokenAnswer),
        (status = 400, description = "`{\"error\": \"invalid_grant\" | \"invalid_request\" | \"unsupported_grant_type\"}`", body = Object),
        (status = 401, description = "`{\"error\": \"invalid_client\"}`", body = Object),
        (status = 503, description = "`{\"error\": \"temporarily_unavailable\"}`: the sandbox's database failed; try again", body = Object),
    ))]
pub(super) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<TokenForm>,
) -> Response {
    let Some(client_id) = basic_client_id(&headers).or(form.client_id.clone()) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "no client id");
    };
    let answer = match form.grant_type.as_str() {
        "authorization_code" => code_grant(&state, &client_id, &form).await,
        "refresh_token" => refresh_grant(&state, &client_id, &form).await,
        _ => Err(("unsupported_grant_type", "use authorization_code or refresh_token".to_owned())),
    };
    match answer {
        Ok(tokens) => (StatusCode::OK, axum::Json(tokens)).into_response(),
        // Its own database failed: a 503, which clients retry (a 400 would read as a refusal,
        // failing the connect or the refresh for good).
        Err((error @ "temporarily_unavailable", description)) => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, error, &description)
        }
        Err((error, description)) => oauth_error(StatusCode::BAD_REQUEST, error, &description),
    }
}

type Refusal = (&'static str, String);

async fn code_grant(state: &AppState, client_id: &str, form: &TokenForm) -> Result<TokenAnswer, Refusal> {
    let code = form.code.as_deref().ok_or(("invalid_request", "code is required".to_owned()))?;
    let mut tx = state.pool.begin().await.map_err(unavailable)?;
    let issued = sqlx::query!(
        "UPDATE sandbox_codes SET used_at = now()
         WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING client_id, redirect_uri, code_challenge, login, scopes",
        digest(code)
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?
    .ok_or(("invalid_grant", "the code is unknown, used or expired".to_owned()))?;
    if issued.client_id != client_id {
        return Err(("invalid_grant", "the code was issued to another client".to_owned()));
    }
    if form.redirect_uri.as_deref() != Some(issued.redirect_uri.as_str()) {
        return Err(("invalid_grant", "redirect_uri does not match the authorization request".to_owned()));
    }
    if let Some(challenge) = &issued.code_challenge {
        let verifier =
            form.code_verifier.as_deref().ok_or(("invalid_grant", "code_verifier is required".to_owned()))?;
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return Err(("invalid_grant", "the PKCE verifier does not match the challenge".to_owned()));
        }
    }
    let grant_id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO sandbox_grants (id, client_id, login, scopes) VALUES ($1, $2, $3, $4)",
        grant_id,
        client_id,
        issued.login,
        &issued.scopes
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    let answer = issue_tokens(&mut tx, grant_id, &issued.scopes).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(answer)
}

async fn refresh_grant(state: &AppState, client_id: &str, form: &TokenForm) -> Result<TokenAnswer, Refusal> {
    let presented = form.refresh_token.as_deref().ok_or(("invalid_request", "refresh_token is required".to_owned()))?;
    let mut tx = state.pool.begin().await.map_err(unavailable)?;
    let found = sqlx::query!(
        "SELECT t.grant_id, t.used_at, g.client_id, g.scopes, g.revoked_at
         FROM sandbox_tokens t JOIN sandbox_grants g ON g.id = t.grant_id
         WHERE t.token_hash = $1 AND t.kind = 'refresh'
         FOR UPDATE OF t, g",
        digest(presented)
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?
    .ok_or(("invalid_grant", "unknown refresh token".to_owned()))?;
    if found.client_id != client_id {
        return Err(("invalid_grant", "the token was issued to another client".to_owned()));
    }
    if found.revoked_at.is_some() {
        return Err(("invalid_grant", "the grant was revoked".to_owned()));
    }
    if found.used_at.is_some() {
        // A rotated token came back: someone holds a copy. Kill the grant, as X and TikTok do.
        sqlx::query!(
            "UPDATE sandbox_grants SET revoked_at = now(), revoked_because = 'refresh token reused' WHERE id = $1",
            found.grant_id
        )
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        return Err(("invalid_grant", "the refresh token was already used; the grant is revoked".to_owned()));
    }
    sqlx::query!("UPDATE sandbox_tokens SET used_at = now() WHERE token_hash = $1", digest(presented))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let answer = issue_tokens(&mut tx, found.grant_id, &found.scopes).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(answer)
}

async fn issue_tokens(tx: &mut sqlx::PgConnection, grant_id: Uuid, scopes: &[String]) -> Result<TokenAnswer, Refusal> {
    let (access, refresh) = (random_token(), random_token());
    sqlx::query!(
        "INSERT INTO sandbox_tokens (token_hash, grant_id, kind, expires_at)
         VALUES ($1, $3, 'access', now() + make_interval(secs => $4)), ($2, $3, 'refresh', NULL)",
        digest(&access),
        digest(&refresh),
        grant_id,
        ACCESS_SECS as f64,
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    Ok(TokenAnswer {
        access_token: access,
        token_type: "bearer",
        expires_in: ACCESS_SECS,
        refresh_token: refresh,
        scope: scopes.join(" "),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct RevokeForm {
    token: String,
}

/// Revoke a sandbox grant.
///
/// Revokes the grant the token belongs to (RFC 7009: 200 whether or not there was one).
#[utoipa::path(post, operation_id = "revokeSandboxToken", path = "/sandbox/oauth/revoke", tag = "sandbox",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 503, description = "The sandbox's database failed; try again"),
    ))]
pub(super) async fn revoke(State(state): State<AppState>, ApiForm(form): ApiForm<RevokeForm>) -> Response {
    let revoked = sqlx::query!(
        "UPDATE sandbox_grants SET revoked_at = now(), revoked_because = 'revoked by the client'
         WHERE revoked_at IS NULL AND id = (SELECT grant_id FROM sandbox_tokens WHERE token_hash = $1)",
        digest(&form.token)
    )
    .execute(&state.pool)
    .await;
    match revoked {
        Ok(_) => StatusCode::OK.into_response(),
        Err(error) => {
            tracing::error!(%error, "the sandbox cannot revoke");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (client_id, _secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: the id is form-urlencoded inside the Basic credentials.
    form_urlencoded::parse(format!("id={client_id}").as_bytes()).next().map(|(_, id)| id.into_owned())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unavailable(error: sqlx::Error) -> Refusal {
    tracing::error!(%error, "the sandbox's database failed");
    ("temporarily_unavailable", "try again".to_owned())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response()
}

fn with_params(base: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{query}")
}

fn consent_page(query: &AuthorizeQuery) -> Response {
    let hidden: String = [
        ("response_type", &query.response_type),
        ("client_id", &query.client_id),
        ("redirect_uri", &query.redirect_uri),
        ("state", &query.state),
        ("code_challenge", &query.code_challenge),
        ("code_challenge_method", &query.code_challenge_method),
        ("scope", &query.scope),
    ]
    .iter()
    .filter_map(|(name, value)| value.as_ref().map(|value| (name, value)))
    .map(|(name, value)| format!(r#"<input type="hidden" name="{name}" value="{}">"#, escape(value)))
    .collect();
    let body = format!(
        r#"<form method="get" action="/sandbox/oauth/authorize">{hidden}
<p>An app asks to post on your behalf to the herald sandbox.</p>
<label>Sandbox login <input name="login" required autofocus></label>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></form>"#
    );
    page_html(StatusCode::OK, "Authorize — herald sandbox", &body)
}
