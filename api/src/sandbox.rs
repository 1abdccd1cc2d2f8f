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
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::extract::{ApiForm, ApiJson, ApiPath, ApiQuery};
use crate::html::{escape, page, page_html};

/// How long an authorization code is good for.
const CODE_SECS: i64 = 60;
/// How long an access token is good for.
const ACCESS_SECS: i64 = 15 * 60;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(accounts))
        .routes(routes!(publish, find_posts))
        .routes(routes!(show_post))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_a_failure_an_argument_and_how_many_attempts_it_lasts() {
        let parse = |text| marker(text).map(|m| (m.kind, m.argument, m.first_attempts));
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("a [fail:500x2] b"), Some(("500".into(), None, Some(2))));
        assert_eq!(parse("[fail:429:3x1]"), Some(("429".into(), Some(3), Some(1))));
        assert_eq!(parse("[fail:timeout-after-success]"), Some(("timeout-after-success".into(), None, None)));
        assert_eq!(parse("[fail:slow:1500]"), Some(("slow".into(), Some(1500), None)));
        assert_eq!(parse("[fail:401]"), Some(("401".into(), None, None)));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuthorizeQuery {
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
async fn authorize(State(state): State<AppState>, ApiQuery(query): ApiQuery<AuthorizeQuery>) -> Response {
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
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

/// An OAuth token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
struct TokenAnswer {
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
async fn token(State(state): State<AppState>, headers: HeaderMap, ApiForm(form): ApiForm<TokenForm>) -> Response {
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
struct RevokeForm {
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
async fn revoke(State(state): State<AppState>, ApiForm(form): ApiForm<RevokeForm>) -> Response {
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

/// The accounts a sandbox grant reaches.
///
/// The person who approved and two pages, for the access token in `Authorization: Bearer`.
#[utoipa::path(get, operation_id = "listSandboxAccounts", path = "/sandbox/api/accounts", tag = "sandbox", responses(
    (status = 200, description = "`{\"data\": [{\"id\", \"kind\", \"username\", \"name\"}]}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 503, description = "The sandbox cannot check the token just now: try again (a problem)", body = Object),
))]
async fn accounts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let data = json!([
        { "id": format!("person-{login}"), "kind": "person", "username": login, "name": login },
        { "id": format!("page-{login}-1"), "kind": "page", "username": format!("{login}-news"), "name": format!("{login} News") },
        { "id": format!("page-{login}-2"), "kind": "page", "username": format!("{login}-shop"), "name": format!("{login} Shop") },
    ]);
    axum::Json(json!({ "data": data })).into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
struct PublishBody {
    /// One of the grant's accounts.
    account_id: String,
    text: String,
    /// The publisher's reference, to find the post again.
    client_ref: Option<String>,
}

/// A failure the text asks for: `[fail:KIND]`, `[fail:KIND:ARG]`, with `xN` to apply it to the
/// first N attempts of the client reference only (e.g. `[fail:500x2]`). Kinds: `401`,
/// `429:SECONDS` (with `Retry-After`), `500`, `timeout` (no answer), `timeout-after-success`
/// (publishes, then no answer), `slow:MILLISECONDS` (publishes after a delay).
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    kind: String,
    argument: Option<u64>,
    first_attempts: Option<i32>,
}

fn marker(text: &str) -> Option<Marker> {
    let start = text.find("[fail:")? + "[fail:".len();
    let spec = &text[start..start + text[start..].find(']')?];
    let (spec, first_attempts) = match spec.rsplit_once('x') {
        Some((head, count)) if !count.is_empty() && count.chars().all(|c| c.is_ascii_digit()) => {
            (head, count.parse().ok())
        }
        _ => (spec, None),
    };
    let (kind, argument) = match spec.split_once(':') {
        Some((kind, argument)) if kind != "timeout-after-success" => (kind, argument.parse().ok()),
        _ => (spec, None),
    };
    Some(Marker { kind: kind.to_owned(), argument, first_attempts })
}

/// How long "no answer" lasts: longer than any publisher waits.
const NO_ANSWER: std::time::Duration = std::time::Duration::from_secs(300);

/// Publish a sandbox post.
///
/// Publishes the text on one of the grant's accounts, or fails the way its text asks: `[fail:401]`,
/// `[fail:429:SECONDS]`, `[fail:500]`, `[fail:timeout]`, `[fail:timeout-after-success]`,
/// `[fail:slow:MILLISECONDS]`, with `xN` to fail only the first N attempts of a `client_ref`.
#[utoipa::path(post, operation_id = "publishSandboxPost", path = "/sandbox/api/posts", tag = "sandbox", request_body = PublishBody, responses(
    (status = 201, description = "`{\"id\", \"url\"}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 403, description = "Not one of the grant's accounts", body = Object),
    (status = 429, description = "Rate limited; `Retry-After` says for how long", body = Object),
    (status = 500, description = "An injected failure", body = Object),
    (status = 503, description = "The sandbox's database failed (checking the token or storing the post); try again (a problem)"),
    (status = 504, description = "An injected timeout (`[fail:timeout]`, `[fail:timeout-after-success]`), after 300 s"),
))]
async fn publish(State(state): State<AppState>, headers: HeaderMap, ApiJson(body): ApiJson<PublishBody>) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let owned = [format!("person-{login}"), format!("page-{login}-1"), format!("page-{login}-2")];
    if !owned.contains(&body.account_id) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({ "error": "not one of this grant's accounts" })))
            .into_response();
    }
    let attempt = match &body.client_ref {
        Some(client_ref) => {
            let counted = sqlx::query_scalar!(
                "INSERT INTO sandbox_publish_attempts (client_ref, attempts) VALUES ($1, 1)
                 ON CONFLICT (client_ref) DO UPDATE
                 SET attempts = sandbox_publish_attempts.attempts + 1, updated_at = now()
                 RETURNING attempts",
                client_ref
            )
            .fetch_one(&state.pool)
            .await;
            match counted {
                Ok(attempt) => attempt,
                Err(error) => {
                    tracing::error!(%error, "the sandbox cannot count a publish attempt");
                    return unavailable_problem("The sandbox could not take the post; try again.");
                }
            }
        }
        None => 1,
    };
    let failure = marker(&body.text).filter(|marker| marker.first_attempts.is_none_or(|first| attempt <= first));
    match failure.as_ref().map(|marker| (marker.kind.as_str(), marker.argument)) {
        Some(("401", _)) => {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_token" }))).into_response();
        }
        Some(("429", seconds)) => {
            let seconds = seconds.unwrap_or(60);
            let reset = chrono::Utc::now().timestamp() + i64::try_from(seconds).unwrap_or(60);
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({ "error": "rate_limited" }))).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            response.headers_mut().insert("x-rate-limit-reset", reset.into());
            return response;
        }
        Some(("500", _)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "injected failure" })))
                .into_response();
        }
        Some(("timeout", _)) => {
            tokio::time::sleep(NO_ANSWER).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(("slow", milliseconds)) => {
            tokio::time::sleep(std::time::Duration::from_millis(milliseconds.unwrap_or(1000))).await
        }
        _ => {}
    }
    let id = Uuid::now_v7();
    let stored = sqlx::query!(
        "INSERT INTO sandbox_posts (id, login, account_id, text, client_ref) VALUES ($1, $2, $3, $4, $5)",
        id,
        login,
        body.account_id,
        body.text,
        body.client_ref
    )
    .execute(&state.pool)
    .await;
    if let Err(error) = stored {
        tracing::error!(%error, "the sandbox cannot store a post");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if failure.is_some_and(|marker| marker.kind == "timeout-after-success") {
        tokio::time::sleep(NO_ANSWER).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let url = format!("{}/sandbox/posts/{id}", state.config.public_url());
    (StatusCode::CREATED, axum::Json(json!({ "id": id, "url": url }))).into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FindQuery {
    client_ref: String,
}

/// Find sandbox posts by client reference.
///
/// The grant's posts made with `client_ref`, oldest first: how a publisher checks whether an
/// unanswered publish happened.
#[utoipa::path(get, operation_id = "findSandboxPosts", path = "/sandbox/api/posts", tag = "sandbox", params(FindQuery), responses(
    (status = 200, description = "`{\"data\": [{\"id\", \"url\"}]}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 503, description = "The sandbox's database failed (checking the token or reading the posts); try again (a problem)"),
))]
async fn find_posts(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FindQuery>,
) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let found = sqlx::query_scalar!(
        "SELECT id FROM sandbox_posts WHERE client_ref = $1 AND login = $2 ORDER BY created_at",
        query.client_ref,
        login
    )
    .fetch_all(&state.pool)
    .await;
    match found {
        Ok(ids) => {
            let base = state.config.public_url();
            let data: Vec<_> =
                ids.iter().map(|id| json!({ "id": id, "url": format!("{base}/sandbox/posts/{id}") })).collect();
            axum::Json(json!({ "data": data })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "the sandbox cannot search its posts");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// A published sandbox post.
///
/// The post's public page, the URL a publish answers with.
#[utoipa::path(get, operation_id = "getSandboxPost", path = "/sandbox/posts/{id}", tag = "sandbox",
    params(("id" = Uuid, Path, description = "The post's id on the sandbox")),
    responses(
        (status = 200, description = "The post", content_type = "text/html", body = String),
        (status = 404, description = "No such post", content_type = "text/html", body = String),
        (status = 503, description = "The sandbox could not read the post; try again", content_type = "text/html", body = String),
    ))]
async fn show_post(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>) -> Response {
    let found = sqlx::query!("SELECT account_id, text, created_at FROM sandbox_posts WHERE id = $1", id)
        .fetch_optional(&state.pool)
        .await;
    match found {
        Ok(Some(post)) => {
            let body = format!(
                "<p>{}</p><p><small>{} · {}</small></p>",
                escape(&post.text),
                escape(&post.account_id),
                post.created_at.to_rfc3339()
            );
            page_html(StatusCode::OK, "A sandbox post", &body)
        }
        Ok(None) => page(StatusCode::NOT_FOUND, "No such post", "The sandbox has no post with this id."),
        Err(error) => {
            tracing::error!(%error, "the sandbox cannot read a post");
            page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The sandbox could not read the post.")
        }
    }
}

/// The login behind a live access token in `Authorization: Bearer`, or the answer to send: a
/// 401 `invalid_token` for a missing, unknown, expired or revoked token, a 503 when the
/// sandbox's own database fails (which a client must take for "try again", never for a dead
/// grant: a database blip must not disconnect anyone's test accounts).
async fn grant_login(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let invalid_token = || (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_token" }))).into_response();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(invalid_token)?;
    let login = sqlx::query_scalar!(
        "SELECT g.login FROM sandbox_tokens t JOIN sandbox_grants g ON g.id = t.grant_id
         WHERE t.token_hash = $1 AND t.kind = 'access' AND t.expires_at > now() AND g.revoked_at IS NULL",
        digest(token)
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "the sandbox cannot look up a token");
        unavailable_problem("The sandbox could not check the access token; try again.")
    })?;
    login.ok_or_else(invalid_token)
}

/// A 503 problem: the sandbox's database failed, the client may try again.
fn unavailable_problem(detail: &str) -> Response {
    crate::error::ApiError::unavailable("sandbox_unavailable", detail).into_response()
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

fn digest(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
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
