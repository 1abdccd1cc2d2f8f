//! `/v1/keys`: a project's API keys. A key is shown once, in the answer that creates it; its
//! scope cannot be edited (create a new key, revoke the old).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_shared::commands::keys::{self, KeyError, KeyRequest};
use herald_shared::domain::api_key::{self, Environment, Reach};
use herald_shared::platforms;
use herald_shared::views::keys::KeyView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, page_limit, split_page};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show, revoke))
}

/// A new key, with its secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedKey)]
struct Created {
    #[serde(flatten)]
    view: KeyView,
    /// The key. This is the only time it is shown.
    key: String,
}

/// One page of keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyPage)]
struct Page {
    data: Vec<KeyView>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

/// A key to create. Its scopes can never be edited afterwards.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateKey)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// 1 to 100 characters.
    name: String,
    description: Option<String>,
    /// Scopes as in the design (`posts:write`, ...) or the shorthands `read` and `write`.
    scopes: Vec<String>,
    /// `live` (the default for a live caller) or `test`. A test key can create only test keys.
    #[serde(default)]
    environment: Option<String>,
    platforms: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    /// Must be in the future.
    expires_at: Option<DateTime<Utc>>,
    /// Default 60.
    requests_per_minute: Option<i32>,
    /// Default 10,000.
    requests_per_day: Option<i32>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// How many keys a list reads at a time while it filters by reach.
const KEY_BATCH: i64 = 200;

/// Key `key_id` of the caller's project, if it lies within the caller's reach: 404 when there is
/// no such key, 403 naming what the key reaches beyond the caller's.
async fn load_within(state: &AppState, caller: &Caller, key_id: Uuid) -> Result<KeyView, ApiError> {
    let key = load(state, caller.project_id, key_id).await?;
    caller.covers(&key.reach())?;
    Ok(key)
}

async fn load(state: &AppState, project_id: Uuid, key_id: Uuid) -> Result<KeyView, ApiError> {
    sqlx::query_as!(
        KeyView,
        r#"SELECT k.id, k.name, k.description, k.prefix, k.environment AS "environment: Environment", k.scopes, k.platforms, k.accounts,
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

/// List API keys.
///
/// The project's keys within this key's reach (its environment, scopes, platforms and accounts),
/// revoked ones included. Needs `keys:read`.
#[utoipa::path(get, operation_id = "listKeys", security(("api_key" = ["keys:read"])), path = "/v1/keys", tag = "keys", params(ListQuery),
    responses((status = 200, description = "A page of keys", body = Page)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page>, ApiError> {
    let limit = page_limit(query.limit, 50, 100)?;
    // Reach is compared in Rust (array containment per key would need the same rules twice),
    // so read on until the page is full: a project holds few keys.
    let mut data = Vec::new();
    let mut cursor = query.cursor;
    loop {
        let batch = sqlx::query_as!(
            KeyView,
            r#"SELECT k.id, k.name, k.description, k.prefix, k.environment AS "environment: Environment", k.scopes, k.platforms, k.accounts,
                      k.expires_at, k.requests_per_minute, k.requests_per_day, k.allowed_ips, k.allowed_origins,
                      k.created_at, u.last_used_at AS "last_used_at?", k.revoked_at
               FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
               WHERE k.project_id = $1 AND ($2::uuid IS NULL OR k.id < $2)
               ORDER BY k.id DESC
               LIMIT $3"#,
            caller.project_id,
            cursor,
            KEY_BATCH,
        )
        .fetch_all(&state.pool)
        .await
        .map_err(|error| ApiError::internal(&error))?;
        let exhausted = batch.len() < KEY_BATCH as usize;
        cursor = batch.last().map(|key| key.id);
        data.extend(batch.into_iter().filter(|key| caller.covers(&key.reach()).is_ok()));
        if exhausted || data.len() > limit as usize {
            break;
        }
    }
    data.truncate(limit as usize + 1);
    let (data, next_cursor) = split_page(data, limit, |key| key.id.to_string());
    Ok(ApiJson(Page { data, next_cursor }))
}

/// Get an API key.
///
/// One key. Needs `keys:read`; a key beyond this key's reach is a 403 naming what it lacks.
#[utoipa::path(get, operation_id = "getKey", security(("api_key" = ["keys:read"])), path = "/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path, description = "The key's id")),
    responses((status = 200, description = "The key", body = KeyView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<KeyView>, ApiError> {
    Ok(ApiJson(load_within(&state, &caller, id).await?))
}

/// Create an API key.
///
/// Creates a key; the answer is the only place its secret is ever shown. Needs `keys:write`.
/// At most `HERALD_MAX_LIVE_KEYS` (10) live keys per project: 409 beyond. A key can create only
/// keys within its own reach: a scope, platform, account or environment beyond it is a 403.
#[utoipa::path(post, operation_id = "createKey", security(("api_key" = ["keys:write"])), path = "/v1/keys", tag = "keys", request_body = CreateBody,
    responses((status = 201, description = "The new key and its secret", body = Created)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, ApiJson<Created>), ApiError> {
    let Checked { environment, scopes, per_minute, per_day } = check_create(&body, &caller)?;
    caller.covers(&Reach {
        test_only: environment == Environment::Test,
        scopes: &scopes,
        platforms: body.platforms.as_deref(),
        accounts: body.accounts.as_deref(),
    })?;
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
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let (id, secret) = keys::create_key_in(&mut tx, caller.project_id, request, max, &caller.event_metadata())
        .await
        .map_err(key_error)?;
    tx.commit().await?;
    let view = load(&state, caller.project_id, id).await?;
    Ok((StatusCode::CREATED, ApiJson(Created { view, key: keys::reveal(&secret).to_owned() })))
}

/// What [`check_create`] read from a valid body.
struct Checked {
    environment: Environment,
    /// The scopes granted, expanded.
    scopes: Vec<String>,
    per_minute: i32,
    per_day: i32,
}

/// Checks a new key's fields, all at once: a 422 naming every field that is wrong.
fn check_create(body: &CreateBody, caller: &Caller) -> Result<Checked, ApiError> {
    let mut errors = Vec::new();
    let environment = match body.environment.as_deref() {
        None if caller.environment == Environment::Test => Environment::Test,
        None | Some("live") => Environment::Live,
        Some("test") => Environment::Test,
        Some(_) => {
            errors.push(FieldError::new("environment", "must be `live` or `test`"));
            Environment::Live
        }
    };
    if body.name.trim().is_empty() || body.name.len() > 100 {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
    let scopes = match api_key::expand_scopes(&body.scopes) {
        Err(message) => {
            errors.push(FieldError::new("scopes", message));
            Vec::new()
        }
        Ok(_) if body.scopes.is_empty() => {
            errors.push(FieldError::new("scopes", "a key needs at least one scope"));
            Vec::new()
        }
        Ok(scopes) => scopes,
    };
    if let Some(platforms) = &body.platforms {
        check_list("platforms", platforms, &mut errors, |name| {
            (!platforms::is_known(name)).then(|| format!("unknown platform `{name}`"))
        });
    }
    if let Some(accounts) = &body.accounts {
        check_list("accounts", accounts, &mut errors, |entry| {
            (entry.trim() != entry || entry.len() > 255 || entry.chars().any(char::is_control))
                .then(|| "must be an account id or external id: 1 to 255 characters, no spaces around".to_owned())
        });
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
        if api_key::parse_network(network).is_none() {
            errors.push(FieldError::new(format!("allowed_ips[{index}]"), "not an IP address or CIDR block"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(Checked { environment, scopes, per_minute, per_day })
}

/// Revoke an API key.
///
/// Revokes a key, on every api process at once. Needs `keys:write`, and the key within this key's
/// reach (403 otherwise). Revoking twice is a 409.
#[utoipa::path(delete, operation_id = "revokeKey", security(("api_key" = ["keys:write"])), path = "/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path, description = "The key's id")),
    responses((status = 200, description = "The revoked key", body = KeyView)))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<KeyView>, ApiError> {
    load_within(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    keys::revoke_key_in(&mut tx, caller.project_id, id, &caller.event_metadata()).await.map_err(key_error)?;
    tx.commit().await?;
    Ok(ApiJson(load(&state, caller.project_id, id).await?))
}

/// Checks a key's platform or account list: not empty (leave it out to reach every one), no
/// repeats, and each entry by `bad`; one error per entry.
fn check_list(field: &str, entries: &[String], errors: &mut Vec<FieldError>, bad: impl Fn(&str) -> Option<String>) {
    if entries.is_empty() {
        errors.push(FieldError::new(field, "must name at least one, or be left out to reach every one"));
    }
    for (index, entry) in entries.iter().enumerate() {
        let problem = if entry.is_empty() {
            Some("must not be empty".to_owned())
        } else if entries[..index].contains(entry) {
            Some(format!("`{entry}` is listed twice"))
        } else {
            bad(entry)
        };
        if let Some(problem) = problem {
            errors.push(FieldError::new(format!("{field}[{index}]"), problem));
        }
    }
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
