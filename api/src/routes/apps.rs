//! `/v1/apps`: a project's own OAuth apps ("bring your own app"), used by a connect that names
//! `app_id` instead of the platform's managed app. The client secret is write-only: it is
//! sealed on arrival and never shown again. Platform and client id never change (register a new
//! app instead); an app that accounts still use cannot be deleted.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials;
use herald_shared::domain::oauth_app::{self, OAuthApp};
use herald_shared::platforms;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, Rejected};
use crate::extract::{ApiJson, ApiPath};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, register)).routes(routes!(show, update, delete))
}

/// An OAuth app as the api shows it: never its client secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = App)]
pub struct AppView {
    id: Uuid,
    platform: String,
    name: String,
    image_url: Option<String>,
    client_id: String,
    /// Whether a client secret is stored (it is never shown).
    has_client_secret: bool,
    /// Accounts connected through this app and not disconnected.
    integration_count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A page of apps.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AppList)]
struct List {
    data: Vec<AppView>,
}

/// An app to register.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = RegisterApp)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    /// x, linkedin, facebook, instagram, threads, youtube, tiktok, pinterest, bluesky, mastodon or sandbox.
    platform: String,
    /// 1 to 100 characters.
    name: String,
    image_url: Option<String>,
    client_id: String,
    /// Write-only.
    #[schema(value_type = Option<String>)]
    client_secret: Option<SecretString>,
}

/// What `PATCH /v1/apps/{id}` may change. `platform` and `client_id` are immutable.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateApp)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    /// `null` removes the image.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    image_url: Option<Option<String>>,
    /// Write-only.
    #[schema(value_type = Option<String>)]
    client_secret: Option<SecretString>,
    /// Refused: an app's platform never changes.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    platform: Option<serde_json::Value>,
    /// Refused: an app's client id never changes.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    client_id: Option<serde_json::Value>,
}

/// A field that is present (possibly `null`) is `Some`; an absent one stays `None` (`default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn load_all(state: &AppState, caller: &Caller, id: Option<Uuid>) -> Result<Vec<AppView>, ApiError> {
    let apps = sqlx::query_as!(
        AppView,
        r#"SELECT a.id, a.platform, a.name, a.image_url, a.client_id,
                  EXISTS (SELECT 1 FROM oauth_app_secrets s WHERE s.app_id = a.id) AS "has_client_secret!",
                  (SELECT count(*) FROM accounts c WHERE c.app_id = a.id AND c.status <> 'disconnected') AS "integration_count!",
                  a.created_at, a.updated_at
           FROM oauth_apps a
           WHERE a.project_id = $1 AND a.deleted_at IS NULL AND ($2::uuid IS NULL OR a.id = $2)
           ORDER BY a.created_at, a.id"#,
        caller.project_id,
        id,
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(apps.into_iter().filter(|app| caller.reaches_platform(&app.platform).is_ok()).collect())
}

async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<AppView, ApiError> {
    load_all(state, caller, Some(id)).await?.pop().ok_or_else(|| ApiError::not_found("no such app"))
}

/// List your OAuth apps.
///
/// The project's own OAuth apps within the key's reach, oldest first. Their client secrets are
/// never shown. Needs `apps:read`.
#[utoipa::path(get, operation_id = "listApps", security(("api_key" = ["apps:read"])), path = "/v1/apps", tag = "apps",
    responses((status = 200, description = "Every app of the project within the key's reach", body = List)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<List>, ApiError> {
    Ok(ApiJson(List { data: load_all(&state, &caller, None).await? }))
}

/// Get an OAuth app.
///
/// The app's platform, client id, name and image; its client secret is never shown. Needs
/// `apps:read`.
#[utoipa::path(get, operation_id = "getApp", security(("api_key" = ["apps:read"])), path = "/v1/apps/{id}", tag = "apps",
    params(("id" = Uuid, Path, description = "The app's id")),
    responses((status = 200, description = "The app", body = AppView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<AppView>, ApiError> {
    Ok(ApiJson(load(&state, &caller, id).await?))
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() || name.len() > 100 {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
}

fn check_image(image_url: Option<&str>, errors: &mut Vec<FieldError>) {
    if image_url.is_some_and(|url| !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048) {
        errors.push(FieldError::new("image_url", "must be an http(s) URL of at most 2048 characters"));
    }
}

/// Register an OAuth app.
///
/// Brings your own OAuth app for a platform: connects through it (`app_id` on `POST
/// /v1/connect/{platform}`) use your client id and secret instead of herald's managed app. The
/// secret is sealed and write-only. Needs `apps:write`.
#[utoipa::path(post, operation_id = "createApp", security(("api_key" = ["apps:write"])), path = "/v1/apps", tag = "apps", request_body = RegisterBody,
    responses((status = 201, description = "The app (its secret is never shown)", body = AppView)))]
async fn register(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, ApiJson<AppView>), ApiError> {
    let mut errors = Vec::new();
    if !platforms::is_known(&body.platform) {
        errors.push(FieldError::new("platform", format!("must be one of {}", platforms::known_names())));
    }
    check_name(&body.name, &mut errors);
    check_image(body.image_url.as_deref(), &mut errors);
    if body.client_id.trim().is_empty() || body.client_id.len() > 255 {
        errors.push(FieldError::new("client_id", "must be 1 to 255 characters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    caller.reaches_platform(&body.platform)?;
    let id = Uuid::now_v7();
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let command = oauth_app::Command::Register {
        project_id: caller.project_id,
        platform: body.platform,
        name: body.name,
        image_url: body.image_url,
        client_id: body.client_id,
    };
    execute::<OAuthApp>(&mut tx, id, command, &caller.event_metadata()).await?;
    if let Some(secret) = &body.client_secret {
        credentials::store_app_secret(&mut tx, &state.keyring, id, secret)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, ApiJson(load(&state, &caller, id).await?)))
}

/// Change an OAuth app.
///
/// Changes its name, image or client secret. `platform` and `client_id` are immutable: a 422 names
/// them. Needs `apps:write`.
#[utoipa::path(patch, operation_id = "updateApp", security(("api_key" = ["apps:write"])), path = "/v1/apps/{id}", tag = "apps",
    params(("id" = Uuid, Path, description = "The app's id")), request_body = UpdateBody,
    responses((status = 200, description = "The app", body = AppView)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<ApiJson<AppView>, ApiError> {
    load(&state, &caller, id).await?;
    let mut errors = Vec::new();
    if body.platform.is_some() {
        errors.push(FieldError::new("platform", "is immutable: register a new app"));
    }
    if body.client_id.is_some() {
        errors.push(FieldError::new("client_id", "is immutable: register a new app"));
    }
    if let Some(name) = &body.name {
        check_name(name, &mut errors);
    }
    if let Some(image_url) = &body.image_url {
        check_image(image_url.as_deref(), &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let command = oauth_app::Command::Update {
        name: body.name,
        image_url: body.image_url,
        secret_changed: body.client_secret.is_some(),
    };
    match execute::<OAuthApp>(&mut tx, id, command, &caller.event_metadata()).await {
        Ok(_) | Err(ExecuteError::Rejected(oauth_app::Rejection::Unchanged)) => {}
        Err(error) => return Err(error.into()),
    }
    if let Some(secret) = &body.client_secret {
        credentials::store_app_secret(&mut tx, &state.keyring, id, secret)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    tx.commit().await?;
    Ok(ApiJson(load(&state, &caller, id).await?))
}

/// Delete an OAuth app.
///
/// Needs `apps:write`. 409 while connected accounts still use it: disconnect them first.
#[utoipa::path(delete, operation_id = "deleteApp", security(("api_key" = ["apps:write"])), path = "/v1/apps/{id}", tag = "apps",
    params(("id" = Uuid, Path, description = "The app's id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    load(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    // Lock the app's row so no connect completes through it between the count and the delete.
    sqlx::query!("SELECT id FROM oauth_apps WHERE id = $1 FOR UPDATE", id).fetch_one(&mut *tx).await?;
    let accounts_using = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM accounts WHERE app_id = $1 AND status <> 'disconnected'"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    execute::<OAuthApp>(&mut tx, id, oauth_app::Command::Delete { accounts_using }, &caller.event_metadata()).await?;
    credentials::forget_app_secret(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

impl Rejected for oauth_app::Rejection {
    const NOUN: &'static str = "app";

    fn into_api_error(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found("no such app"),
            Self::InUse(count) => {
                ApiError::conflict(format!("{count} connected account(s) use this app; disconnect them first"))
            }
            Self::Blank => ApiError::validation(vec![FieldError::new("name", "must not be blank")]),
            rejection => ApiError::conflict(rejection.to_string()),
        }
    }
}
