//! `/v1/keys`: a project's API keys. A key is shown once, in the answer that creates it; its
//! scope cannot be edited (create a new key, revoke the old).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use herald_shared::events::EventMetadata;
use herald_shared::keys::{self, Environment, KeyError, KeyRequest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, current_request_id, page_limit};
use crate::extract::{ApiJson, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/keys", get(list).post(create)).route("/v1/keys/{id}", get(show).delete(revoke))
}

/// A key as the api shows it: never the key itself, never its hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    id: Uuid,
    name: String,
    description: Option<String>,
    prefix: String,
    environment: String,
    scopes: Vec<String>,
    platforms: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    requests_per_minute: i32,
    requests_per_day: i32,
    allowed_ips: Vec<String>,
    allowed_origins: Vec<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    view: KeyView,
    /// The key. This is the only time it is shown.
    key: String,
}

#[derive(Debug, Serialize)]
struct Page {
    data: Vec<KeyView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    description: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    environment: Option<String>,
    platforms: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    requests_per_minute: Option<i32>,
    requests_per_day: Option<i32>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<Uuid>,
}

fn metadata(caller: &Caller) -> EventMetadata {
    EventMetadata {
        request_id: current_request_id(),
        project_id: Some(caller.project_id),
        actor: Some(caller.actor()),
        ..EventMetadata::default()
    }
}

async fn load(state: &AppState, project_id: Uuid, key_id: Uuid) -> Result<KeyView, ApiError> {
    sqlx::query_as!(
        KeyView,
        r#"SELECT k.id, k.name, k.description, k.prefix, k.environment, k.scopes, k.platforms, k.accounts,
                  k.expires_at, k.requests_per_minute, k.requests_per_day, k.allowed_ips, k.allowed_origins,
                  k.created_at, u.last_used_at AS "last_used_at?", k.revoked_at
           FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
           WHERE k.id = $1 AND k.project_id = $2"#,
        key_id,
        project_id,
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| ApiError::internal(&error))?
    .ok_or_else(|| ApiError::not_found("no such key"))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page>, ApiError> {
    caller.require("keys:read")?;
    let limit = page_limit(query.limit, 50, 100)?;
    let mut data = sqlx::query_as!(
        KeyView,
        r#"SELECT k.id, k.name, k.description, k.prefix, k.environment, k.scopes, k.platforms, k.accounts,
                  k.expires_at, k.requests_per_minute, k.requests_per_day, k.allowed_ips, k.allowed_origins,
                  k.created_at, u.last_used_at AS "last_used_at?", k.revoked_at
           FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
           WHERE k.project_id = $1 AND ($2::uuid IS NULL OR k.id < $2)
           ORDER BY k.id DESC
           LIMIT $3"#,
        caller.project_id,
        query.cursor,
        limit + 1,
    )
    .fetch_all(&state.pool)
    .await
    .map_err(|error| ApiError::internal(&error))?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|key| key.id.to_string())
    } else {
        None
    };
    Ok(ApiJson(Page { data, next_cursor }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<ApiJson<KeyView>, ApiError> {
    caller.require("keys:read")?;
    Ok(ApiJson(load(&state, caller.project_id, id).await?))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, ApiJson<Created>), ApiError> {
    caller.require("keys:write")?;
    let mut errors = Vec::new();
    let environment = match body.environment.as_deref() {
        None if caller.environment == "test" => Environment::Test,
        None | Some("live") => Environment::Live,
        Some("test") => Environment::Test,
        Some(_) => {
            errors.push(FieldError::new("environment", "must be `live` or `test`"));
            Environment::Live
        }
    };
    if caller.environment == "test" && environment == Environment::Live {
        errors.push(FieldError::new("environment", "a test key can create only test keys"));
    }
    if body.name.trim().is_empty() || body.name.len() > 100 {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
    if let Err(message) = keys::expand_scopes(&body.scopes) {
        errors.push(FieldError::new("scopes", message));
    } else if body.scopes.is_empty() {
        errors.push(FieldError::new("scopes", "a key needs at least one scope"));
    }
    let per_minute = body.requests_per_minute.unwrap_or(60);
    let per_day = body.requests_per_day.unwrap_or(10_000);
    if per_minute < 1 {
        errors.push(FieldError::new("requests_per_minute", "must be at least 1"));
    }
    if per_day < 1 {
        errors.push(FieldError::new("requests_per_day", "must be at least 1"));
    }
    if let Some(at) = body.expires_at
        && at <= Utc::now()
    {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    for (index, network) in body.allowed_ips.iter().enumerate() {
        if keys::parse_network(network).is_none() {
            errors.push(FieldError::new(format!("allowed_ips[{index}]"), "not an IP address or CIDR block"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let request = KeyRequest {
        name: body.name,
        description: body.description,
        environment,
        scopes: body.scopes,
        platforms: body.platforms,
        accounts: body.accounts,
        expires_at: body.expires_at,
        requests_per_minute: per_minute,
        requests_per_day: per_day,
        allowed_ips: body.allowed_ips,
        allowed_origins: body.allowed_origins,
    };
    let max = state.config.max_live_keys;
    let (id, secret) =
        keys::create_key(&state.pool, caller.project_id, request, max, &metadata(&caller)).await.map_err(key_error)?;
    let view = load(&state, caller.project_id, id).await?;
    Ok((StatusCode::CREATED, ApiJson(Created { view, key: keys::reveal(&secret).to_owned() })))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<ApiJson<KeyView>, ApiError> {
    caller.require("keys:write")?;
    keys::revoke_key(&state.pool, caller.project_id, id, &metadata(&caller)).await.map_err(key_error)?;
    Ok(ApiJson(load(&state, caller.project_id, id).await?))
}

fn key_error(error: KeyError) -> ApiError {
    match error {
        KeyError::NoSuchKey | KeyError::NoSuchProject => ApiError::not_found("no such key"),
        KeyError::TooManyKeys(_) | KeyError::AlreadyRevoked => ApiError::conflict(error.to_string()),
        KeyError::Invalid(message) => ApiError::validation(vec![FieldError::new("body", message)]),
        KeyError::Database(error) => ApiError::internal(&error),
        KeyError::Store(message) => ApiError::internal(&message),
    }
}
