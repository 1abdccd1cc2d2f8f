//! Connecting a social account: `POST /v1/connect/{platform}` starts a session and answers the
//! URL to send the user to; the platform sends the user back to
//! `GET /v1/connect/{platform}/callback`, which records the grant, enqueues the exchange job
//! (in the same transaction), waits a few seconds for it, and sends the user on to the
//! client's `redirect_uri` with the outcome. `GET /v1/connect/sessions/{id}` tells it later.
//!
//! The state parameter is 32 random bytes, single use, good for 10 minutes; only its SHA-256 is
//! stored, so the callback needs no key: the state is the credential. The PKCE verifier and the
//! code are sealed in `connect_session_secrets`, never in the log or a job payload.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials::ClientError;
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::connect_session::{self, ConnectSession, SessionSpec, SessionStatus};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::ExchangeCode;
use herald_shared::platforms::{self, ClientCredentials, Platform};
use herald_shared::queue::{self, NewJob};
use herald_shared::{credentials, platforms::oauth};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, current_request_id};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::html::page;

/// How long a connect link is good for.
const SESSION_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);
/// How long the callback waits for the exchange before answering `pending`.
const CALLBACK_WAIT: Duration = Duration::from_secs(5);

/// The routes that need a key.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start)).routes(routes!(session))
}

/// The platform's redirect back: no key (the state is the credential).
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(callback))
}

/// What `POST /v1/connect/{platform}` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StartConnect)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// One of the project's own OAuth apps for this platform; absent: the managed app.
    app_id: Option<Uuid>,
    /// Where to send the user afterwards, with `session_id`, `status` and `account_ids`;
    /// absent: herald shows a small result page.
    redirect_uri: Option<String>,
    /// Your id for the user; stored on every account the grant reaches.
    external_id: Option<String>,
    /// Scopes to ask for instead of the platform's defaults.
    scopes: Option<Vec<String>>,
    /// Bluesky only: the handle or email the app password belongs to.
    identifier: Option<String>,
    /// Bluesky only: an app password. Used once to open a session, never stored or shown.
    #[schema(value_type = Option<String>)]
    app_password: Option<SecretString>,
}

/// A started connect session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConnectStarted)]
struct Started {
    /// Send the user here (absent for Bluesky, which connects at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    session_id: Uuid,
    /// The link stops working then.
    expires_at: DateTime<Utc>,
    /// Bluesky only: the outcome, as a callback would report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    status: Option<SessionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_ids: Option<Vec<Uuid>>,
}

/// A connect session and how it ended.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConnectSession)]
pub struct SessionView {
    id: Uuid,
    platform: String,
    /// `started`, `pending` (the exchange runs), `connected`, `denied` or `failed`.
    #[schema(value_type = String, example = "connected")]
    status: SessionStatus,
    /// The accounts the grant reached.
    account_ids: Vec<Uuid>,
    /// Why it was denied or failed.
    error: Option<String>,
    external_id: Option<String>,
    redirect_uri: Option<String>,
    app_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Start connecting an account.
///
/// Opens a connect session on `platform` and answers the URL to send the user to (single use, 10
/// minutes). Bluesky takes an `identifier` and app password instead and connects at once. Needs
/// `connections:write`.
#[utoipa::path(post, operation_id = "startConnectSession", security(("api_key" = ["connections:write"])), path = "/v1/connect/{platform}", tag = "connect",
    params(("platform" = String, Path, description = "x, linkedin, facebook, instagram, threads, youtube, tiktok, pinterest, bluesky, mastodon or sandbox")),
    request_body = StartBody,
    responses((status = 201, description = "The URL to send the user to", body = Started)))]
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(platform): ApiPath<String>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, ApiJson<Started>), ApiError> {
    if !platforms::is_known(&platform) {
        return Err(ApiError::not_found(format!("herald knows no platform called {platform}")));
    }
    caller.reaches_platform(&platform)?;
    let Some(adapter) = state.platforms.get(&platform) else {
        return Err(ApiError::validation(vec![FieldError::new(
            "platform",
            state.platforms.unavailable(&platform, "connect"),
        )]));
    };
    if let Some(uri) = &body.redirect_uri
        && !(uri.starts_with("https://") || uri.starts_with("http://"))
    {
        return Err(ApiError::validation(vec![FieldError::new("redirect_uri", "must be an http(s) URL")]));
    }
    let password_login = password_login(adapter.as_ref(), &platform, &body)?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let client = client_for(&state, &mut tx, caller.project_id, &platform, body.app_id).await?;

    let session_id = Uuid::now_v7();
    let state_token = {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let verifier = adapter.supports_pkce().then(oauth::new_pkce_verifier);
    let expires_at = Utc::now() + SESSION_LIFETIME;
    let scopes = body.scopes.clone().unwrap_or_default();
    let spec = SessionSpec {
        project_id: caller.project_id,
        platform: platform.clone(),
        app_id: body.app_id,
        redirect_uri: body.redirect_uri,
        external_id: body.external_id,
        scopes: scopes.clone(),
        state_hash: hex::encode(Sha256::digest(state_token.as_bytes())),
        expires_at,
    };
    let metadata = caller.event_metadata();
    execute::<ConnectSession>(&mut tx, session_id, connect_session::Command::Start(Box::new(spec)), &metadata)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    if verifier.is_some() {
        let secrets = credentials::SessionSecrets { pkce_verifier: verifier.clone(), code: None };
        credentials::store_session_secrets(&mut tx, &state.keyring, session_id, &secrets)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    if let Some(login) = password_login {
        let started = connect_with_password(&state, &caller, tx, session_id, login, expires_at).await?;
        return Ok((StatusCode::CREATED, ApiJson(started)));
    }
    let url = adapter
        .authorize_url(&client, &state.config.callback_url(&platform), &state_token, verifier.as_ref(), &scopes)
        .map_err(|error| ApiError::validation(vec![FieldError::new("platform", error.to_string())]))?;
    tx.commit().await?;
    let started = Started { url: Some(url), session_id, expires_at, status: None, account_ids: None };
    Ok((StatusCode::CREATED, ApiJson(started)))
}

/// The identifier and app password of a platform that connects with them (Bluesky), as the
/// session's code; `None` for an OAuth platform. A 422 when the body does not match the platform.
fn password_login(adapter: &dyn Platform, platform: &str, body: &StartBody) -> Result<Option<String>, ApiError> {
    match (adapter.connects_with_password(), &body.identifier, &body.app_password) {
        (true, Some(identifier), Some(password)) => {
            Ok(Some(serde_json::json!({ "identifier": identifier, "password": password.expose_secret() }).to_string()))
        }
        (true, _, _) => Err(ApiError::validation(vec![FieldError::new(
            "app_password",
            format!("{platform} connects with `identifier` and `app_password`"),
        )])),
        (false, None, None) => Ok(None),
        (false, _, _) => Err(ApiError::validation(vec![FieldError::new(
            "app_password",
            format!("{platform} connects through OAuth: leave out `identifier` and `app_password`"),
        )])),
    }
}

/// No redirect: the session is authorized at once with `login` as its code, the exchange job
/// opens it, and the answer waits (up to [`CALLBACK_WAIT`]) for its outcome.
async fn connect_with_password(
    state: &AppState,
    caller: &Caller,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    session_id: Uuid,
    login: String,
    expires_at: DateTime<Utc>,
) -> Result<Started, ApiError> {
    let secrets = credentials::SessionSecrets { pkce_verifier: None, code: Some(SecretString::from(login)) };
    credentials::store_session_secrets(&mut tx, &state.keyring, session_id, &secrets)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    let authorize = connect_session::Command::Authorize { now: Utc::now() };
    execute::<ConnectSession>(&mut tx, session_id, authorize, &caller.event_metadata())
        .await
        .map_err(|error| ApiError::internal(&error))?;
    let job = NewJob::of(&ExchangeCode { session_id }).map_err(|error| ApiError::internal(&error))?;
    queue::enqueue(&mut *tx, job).await?;
    tx.commit().await?;
    let outcome = wait_for_outcome(state, session_id).await;
    let (status, account_ids) =
        outcome.map_or((SessionStatus::Pending, Vec::new()), |view| (view.status, view.account_ids));
    let account_ids = reachable(state, caller, account_ids).await?;
    Ok(Started { url: None, session_id, expires_at, status: Some(status), account_ids: Some(account_ids) })
}

/// The OAuth client for a connect, or a 422 naming `app_id`.
async fn client_for(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    project_id: Uuid,
    platform: &str,
    app_id: Option<Uuid>,
) -> Result<ClientCredentials, ApiError> {
    let managed = state.platforms.managed_app(platform);
    match credentials::client_for(tx, &state.keyring, managed, project_id, platform, app_id).await {
        Ok(client) => Ok(client),
        Err(ClientError::NoManagedApp) => {
            let name = platform.to_uppercase();
            Err(ApiError::validation(vec![FieldError::new(
                "app_id",
                format!("no managed {platform} app is configured (HERALD_PLATFORMS__{name}__CLIENT_ID): pass app_id"),
            )]))
        }
        Err(ClientError::NoSuchApp) => {
            Err(ApiError::validation(vec![FieldError::new("app_id", format!("no {platform} app with this id"))]))
        }
        Err(ClientError::Credential(error)) => Err(ApiError::internal(&error)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    /// The platform's refusal, e.g. `access_denied`.
    error: Option<String>,
    error_description: Option<String>,
}

struct CallbackSession {
    id: Uuid,
    platform: String,
    redirect_uri: Option<String>,
}

/// Where the platform sends the user back.
///
/// No key: the state is the credential. Records the outcome, queues the code exchange, waits up to
/// 5 s for it and redirects to the session's `redirect_uri` (or shows a small page). Unknown,
/// expired and used links get a clear page.
#[utoipa::path(get, operation_id = "completeConnectSession", path = "/v1/connect/{platform}/callback", tag = "connect",
    params(("platform" = String, Path, description = "The platform the session is for"), CallbackQuery),
    responses(
        (status = 303, description = "To the session's redirect_uri with `session_id`, `status` and `account_ids`"),
        (status = 200, description = "A result page, when the session has no redirect_uri", content_type = "text/html", body = String),
        (status = 400, description = "An unknown, expired or used link, or a callback without a code", content_type = "text/html", body = String),
    ))]
async fn callback(
    State(state): State<AppState>,
    ApiPath(platform): ApiPath<String>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Response {
    let Some(state_token) = query.state.as_deref().filter(|token| !token.is_empty()) else {
        return page(StatusCode::BAD_REQUEST, "This link is not valid", "The platform sent no state parameter.");
    };
    let state_hash = Sha256::digest(state_token.as_bytes()).to_vec();
    let found = sqlx::query_as!(
        CallbackSession,
        "SELECT id, platform, redirect_uri FROM connect_sessions WHERE state_hash = $1",
        state_hash
    )
    .fetch_optional(&state.pool)
    .await;
    let session = match found {
        Ok(Some(session)) if session.platform == platform => session,
        Ok(_) => {
            tracing::warn!(%platform, "a connect callback with an unknown state");
            return page(
                StatusCode::BAD_REQUEST,
                "This link is not valid",
                "It is unknown or belongs to another platform. Start connecting again from the app.",
            );
        }
        Err(error) => return ApiError::internal(&error).into_response(),
    };
    match record_callback(&state, &session, &query).await {
        Ok(()) => {}
        Err(CallbackRefusal::Page(status, message)) => {
            return page(status, "This link cannot be used", &message);
        }
        Err(CallbackRefusal::Internal(error)) => return error.into_response(),
    }
    let view = wait_for_outcome(&state, session.id).await;
    finish(&session, view)
}

enum CallbackRefusal {
    Page(StatusCode, String),
    Internal(ApiError),
}

impl From<sqlx::Error> for CallbackRefusal {
    fn from(error: sqlx::Error) -> Self {
        CallbackRefusal::Internal(ApiError::internal(&error))
    }
}

/// Records what the callback brought: a code (and enqueues the exchange), a refusal, or
/// nothing usable. An expired session is recorded as failed.
async fn record_callback(
    state: &AppState,
    session: &CallbackSession,
    query: &CallbackQuery,
) -> Result<(), CallbackRefusal> {
    let metadata =
        EventMetadata { request_id: current_request_id(), actor: Some("platform".into()), ..EventMetadata::default() };
    let now = Utc::now();
    let mut tx = state.pool.begin().await?;
    let command = match (&query.error, &query.code) {
        (Some(error), _) => {
            let reason = match &query.error_description {
                Some(description) => format!("{error}: {description}"),
                None => error.clone(),
            };
            connect_session::Command::Deny { reason, now }
        }
        (None, Some(code)) if !code.is_empty() => {
            let secrets = credentials::SessionSecrets { pkce_verifier: None, code: Some(code.clone().into()) };
            credentials::store_session_secrets(&mut tx, &state.keyring, session.id, &secrets)
                .await
                .map_err(|error| CallbackRefusal::Internal(ApiError::internal(&error)))?;
            connect_session::Command::Authorize { now }
        }
        (None, _) => connect_session::Command::Fail { reason: "the platform sent no code".into() },
    };
    let authorized = matches!(command, connect_session::Command::Authorize { .. });
    match execute::<ConnectSession>(&mut tx, session.id, command, &metadata).await {
        Ok(_) => {}
        Err(ExecuteError::Rejected(connect_session::Rejection::Expired)) => {
            drop(tx);
            let mut tx = state.pool.begin().await?;
            let fail = connect_session::Command::Fail { reason: "the connect link expired".into() };
            if execute::<ConnectSession>(&mut tx, session.id, fail, &metadata).await.is_ok() {
                tx.commit().await?;
            }
            return Err(CallbackRefusal::Page(
                StatusCode::BAD_REQUEST,
                "The connect link expired (links last 10 minutes). Start connecting again from the app.".into(),
            ));
        }
        Err(ExecuteError::Rejected(_)) | Err(ExecuteError::Conflict { .. }) => {
            return Err(CallbackRefusal::Page(
                StatusCode::BAD_REQUEST,
                "This connect link was already used. Start connecting again from the app.".into(),
            ));
        }
        Err(error) => return Err(CallbackRefusal::Internal(ApiError::internal(&error))),
    }
    if authorized {
        let job = NewJob::of(&ExchangeCode { session_id: session.id })
            .map_err(|error| CallbackRefusal::Internal(ApiError::internal(&error)))?;
        queue::enqueue(&mut *tx, job).await?;
    } else if query.code.as_deref().is_none_or(str::is_empty) && query.error.is_none() {
        tx.commit().await?;
        return Err(CallbackRefusal::Page(StatusCode::BAD_REQUEST, "The platform sent no authorization code.".into()));
    }
    tx.commit().await?;
    Ok(())
}

/// The session once the exchange has ended, or as it is after [`CALLBACK_WAIT`].
async fn wait_for_outcome(state: &AppState, session_id: Uuid) -> Option<SessionView> {
    let deadline = tokio::time::Instant::now() + CALLBACK_WAIT;
    loop {
        let view = load_session(state, None, session_id).await.ok();
        let settled = view.as_ref().is_none_or(|view| view.status != SessionStatus::Pending);
        if settled || tokio::time::Instant::now() >= deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finish(session: &CallbackSession, view: Option<SessionView>) -> Response {
    let (status, account_ids, error) = match &view {
        Some(view) => (view.status, view.account_ids.clone(), view.error.clone()),
        None => (SessionStatus::Pending, Vec::new(), None),
    };
    if let Some(redirect_uri) = &session.redirect_uri {
        let ids = account_ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",");
        let session_id = session.id.to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("session_id", &session_id)
            .append_pair("status", status.as_str())
            .append_pair("account_ids", &ids)
            .finish();
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        return Redirect::to(&format!("{redirect_uri}{separator}{query}")).into_response();
    }
    let message = match status {
        SessionStatus::Connected => format!("{} account(s) connected. You can close this window.", account_ids.len()),
        SessionStatus::Pending => {
            "Almost there: herald is finishing the connection. You can close this window.".to_owned()
        }
        SessionStatus::Denied => "The connection was declined on the platform.".to_owned(),
        SessionStatus::Failed | SessionStatus::Started => {
            format!("The connection failed: {}", error.unwrap_or_else(|| "unknown reason".into()))
        }
    };
    page(StatusCode::OK, &format!("Connect: {}", status.as_str()), &message)
}

/// Get a connect session.
///
/// Its status (`pending`, `connected`, `denied`, `failed`), the accounts the grant reached and why
/// it failed. Needs `connections:read`.
#[utoipa::path(get, operation_id = "getConnectSession", security(("api_key" = ["connections:read"])), path = "/v1/connect/sessions/{id}", tag = "connect",
    params(("id" = Uuid, Path, description = "The session id from POST /v1/connect/{platform}")),
    responses((status = 200, description = "The session", body = SessionView)))]
async fn session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<SessionView>, ApiError> {
    let mut view = load_session(&state, Some(caller.project_id), id).await?;
    caller.reaches_platform(&view.platform).map_err(|_| ApiError::not_found("no such session"))?;
    view.account_ids = reachable(&state, &caller, std::mem::take(&mut view.account_ids)).await?;
    Ok(ApiJson(view))
}

/// The accounts of `ids` within the caller's reach, in their order: a grant may reach accounts
/// a key limited to some accounts must not learn of.
async fn reachable(state: &AppState, caller: &Caller, ids: Vec<Uuid>) -> Result<Vec<Uuid>, ApiError> {
    if caller.accounts.is_none() && caller.platforms.is_none() && caller.environment != Environment::Test {
        return Ok(ids);
    }
    let accounts = sqlx::query!(
        "SELECT id, platform, external_id FROM accounts WHERE id = ANY($1) AND project_id = $2",
        &ids,
        caller.project_id
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(ids
        .into_iter()
        .filter(|id| {
            accounts.iter().any(|account| {
                account.id == *id
                    && caller.reaches_account(&account.platform, account.id, account.external_id.as_deref())
            })
        })
        .collect())
}

async fn load_session(state: &AppState, project_id: Option<Uuid>, id: Uuid) -> Result<SessionView, ApiError> {
    sqlx::query_as!(
        SessionView,
        r#"SELECT id, platform, status AS "status: SessionStatus", account_ids, error, external_id, redirect_uri, app_id,
                  expires_at, created_at, updated_at
           FROM connect_sessions WHERE id = $1 AND ($2::uuid IS NULL OR project_id = $2)"#,
        id,
        project_id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such session"))
}
