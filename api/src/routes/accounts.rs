//! `/v1/accounts`: the social accounts connected to a project, with their health. A key sees
//! only accounts within its reach (its platform and account lists; a test key, the sandbox);
//! any other is a 404, as if it did not exist.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, AccountStatus};
use herald_shared::domain::api_key::Environment;
use herald_shared::jobs::{RefreshCredentials, RevokeGrant};
use herald_shared::queue::{self, NewJob};
use herald_shared::views::accounts::AccountView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, Rejected, page_limit, split_page};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, update))
        .routes(routes!(disconnect))
        .routes(routes!(refresh))
        .routes(routes!(boards))
}

/// One page of accounts, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AccountPage)]
struct Page {
    data: Vec<AccountView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    external_id: Option<String>,
    platform: Option<String>,
    /// `connected`, `needs_reconnect` or `disconnected`.
    status: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<Uuid>,
}

/// What `PATCH /v1/accounts/{id}` may change.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateAccount)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// Your id for the user; `null` clears it.
    external_id: Option<String>,
}

/// List connected accounts.
///
/// The project's social accounts within the key's reach, oldest first, filtered by `external_id`,
/// `platform` and `status` (`connected`, `needs_reconnect`, `disconnected`) and paged with `limit`
/// and `cursor`. Needs `connections:read`.
#[utoipa::path(get, operation_id = "listAccounts", security(("api_key" = ["connections:read"])), path = "/v1/accounts", tag = "accounts",
    params(ListQuery), responses((status = 200, description = "A page of accounts", body = Page)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page>, ApiError> {
    let limit = page_limit(query.limit, 50, 100)?;
    if let Some(status) = &query.status
        && AccountStatus::parse(status).is_none()
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "status",
            "must be connected, needs_reconnect or disconnected",
        )]));
    }
    // The key's reach is applied in SQL too, so a page is never short because of it.
    let test_only = caller.environment == Environment::Test;
    let data = sqlx::query_as!(
        AccountView,
        r#"SELECT id, platform, platform_user_id, kind, username, display_name, external_id, app_id, status AS "status: AccountStatus", scopes,
                expires_at, last_refresh_at, last_error, connected_at, updated_at
         FROM accounts
         WHERE project_id = $1 AND ($2::uuid IS NULL OR id > $2)
           AND ($3::text IS NULL OR external_id = $3) AND ($4::text IS NULL OR platform = $4)
           AND ($5::text IS NULL OR status = $5)
           AND ($6::text[] IS NULL OR platform = ANY($6)) AND (NOT $7 OR platform = 'sandbox')
           AND ($8::text[] IS NULL OR id::text = ANY($8) OR external_id = ANY($8))
         ORDER BY id LIMIT $9"#,
        caller.project_id,
        query.cursor,
        query.external_id,
        query.platform,
        query.status,
        caller.platforms.as_deref(),
        test_only,
        caller.accounts.as_deref(),
        limit + 1,
    )
    .fetch_all(&state.pool)
    .await?;
    let (data, next_cursor) = split_page(data, limit, |account| account.id.to_string());
    Ok(ApiJson(Page { data, next_cursor }))
}

async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<AccountView, ApiError> {
    let account = sqlx::query_as!(
        AccountView,
        r#"SELECT id, platform, platform_user_id, kind, username, display_name, external_id, app_id, status AS "status: AccountStatus", scopes,
                expires_at, last_refresh_at, last_error, connected_at, updated_at
         FROM accounts WHERE id = $1 AND project_id = $2"#,
        id,
        caller.project_id
    )
    .fetch_optional(&state.pool)
    .await?;
    account
        .filter(|account| caller.reaches_account(&account.platform, account.id, account.external_id.as_deref()))
        .ok_or_else(|| ApiError::not_found("no such account"))
}

/// Get an account and its health.
///
/// The account's status, token expiry, scopes, last refresh and its error, as herald last saw them.
/// Needs `connections:read`; an account outside the key's reach is a 404.
#[utoipa::path(get, operation_id = "getAccount", security(("api_key" = ["connections:read"])), path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 200, description = "The account", body = AccountView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<AccountView>, ApiError> {
    Ok(ApiJson(load(&state, &caller, id).await?))
}

/// Change an account's `external_id`.
///
/// Maps the account to another of your users, or (with `null`) to none. Needs `connections:write`.
#[utoipa::path(patch, operation_id = "updateAccount", security(("api_key" = ["connections:write"])), path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = Uuid, Path, description = "The account's id")), request_body = UpdateBody,
    responses((status = 200, description = "The account", body = AccountView)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<ApiJson<AccountView>, ApiError> {
    load(&state, &caller, id).await?;
    if body.external_id.as_ref().is_some_and(|external_id| external_id.is_empty() || external_id.len() > 255) {
        return Err(ApiError::validation(vec![FieldError::new("external_id", "must be 1 to 255 characters, or null")]));
    }
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let command = account::Command::SetExternalId { external_id: body.external_id };
    match execute::<Account>(&mut tx, id, command, &caller.event_metadata()).await {
        Ok(_) | Err(ExecuteError::Rejected(account::Rejection::Unchanged)) => {}
        Err(error) => return Err(error.into()),
    }
    tx.commit().await?;
    Ok(ApiJson(load(&state, &caller, id).await?))
}

/// Disconnect an account.
///
/// Its tokens are wiped at once; when it was the last connected account of its grant, a job asks
/// the platform to revoke the grant (its siblings keep working otherwise). A later connect of the
/// same platform account revives it with the same id. Needs `connections:write`.
#[utoipa::path(post, operation_id = "disconnectAccount", security(("api_key" = ["connections:write"])), path = "/v1/accounts/{id}/disconnect", tag = "accounts",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 200, description = "The disconnected account", body = AccountView)))]
async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<AccountView>, ApiError> {
    load(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    execute::<Account>(&mut tx, id, account::Command::Disconnect, &caller.event_metadata()).await?;
    if let Some(revocation) = credentials::wipe_account_tokens(&mut tx, id).await? {
        let grant_id = revocation.owner.grant_id();
        let revoke =
            RevokeGrant { account_id: id, grant_id, token_column: revocation.column, sealed_token: revocation.sealed };
        let job = NewJob::of(&revoke).map_err(|error| ApiError::internal(&error))?;
        queue::enqueue(&mut *tx, job).await?;
    }
    tx.commit().await?;
    Ok(ApiJson(load(&state, &caller, id).await?))
}

/// Refresh an account's credentials now.
///
/// Queues a refresh job (several requests make one refresh) and answers the account as it is now.
/// Needs `connections:write`; 409 unless the account is connected.
#[utoipa::path(post, operation_id = "refreshAccount", security(("api_key" = ["connections:write"])), path = "/v1/accounts/{id}/refresh", tag = "accounts",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 202, description = "A refresh is queued; the account as it is now", body = AccountView)))]
async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, ApiJson<AccountView>), ApiError> {
    let account = load(&state, &caller, id).await?;
    if account.status != AccountStatus::Connected {
        let status = account.status.as_str();
        return Err(ApiError::conflict(format!("the account is {status}; reconnect it instead")));
    }
    let mut connection = state.pool.acquire().await?;
    let (owner, version) = credentials::pair_version(&mut connection, id)
        .await?
        .ok_or_else(|| ApiError::conflict("the account has no credentials; reconnect it"))?;
    drop(connection);
    let job =
        NewJob::of(&RefreshCredentials { account_id: id, grant_id: owner.grant_id(), seen_version: Some(version) })
            .map_err(|error| ApiError::internal(&error))?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    queue::enqueue(&mut *tx, job).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, ApiJson(account)))
}

/// A board the account can publish to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Board)]
struct BoardView {
    /// What a Pinterest target's `board_id` option takes.
    id: String,
    name: String,
    description: Option<String>,
    /// `PUBLIC`, `PROTECTED` or `SECRET`.
    privacy: Option<String>,
}

/// The account's boards.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = BoardList)]
struct Boards {
    data: Vec<BoardView>,
}

/// List an account's boards.
///
/// The boards a Pinterest account can pin to, as Pinterest lists them now: a Pinterest target's
/// `board_id` option names one. Needs `connections:read`; an account outside the key's reach is a
/// 404, and so is an account on a platform without boards. 409 when the account must be
/// reconnected or Pinterest refuses; 503 `platform_unavailable` when Pinterest does not answer.
#[utoipa::path(get, operation_id = "listAccountBoards", security(("api_key" = ["connections:read"])), path = "/v1/accounts/{id}/boards", tag = "accounts",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 200, description = "The account's boards", body = Boards)))]
async fn boards(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Boards>, ApiError> {
    let account = load(&state, &caller, id).await?;
    let adapter = state.platforms.get(&account.platform).filter(|adapter| adapter.has_boards());
    let Some(adapter) = adapter else {
        return Err(ApiError::not_found(format!("{} accounts have no boards", account.platform)));
    };
    if account.status != AccountStatus::Connected {
        let status = account.status.as_str();
        return Err(ApiError::conflict(format!("the account is {status}; reconnect it")));
    }
    let mut connection = state.pool.acquire().await?;
    let stored = credentials::load_account_tokens(&mut connection, &state.keyring, id)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    drop(connection);
    let Some((access_token, expires_at)) = stored.and_then(|stored| Some((stored.access_token?, stored.expires_at)))
    else {
        return Err(ApiError::conflict("the account has no credentials; reconnect it"));
    };
    let tokens =
        herald_shared::platforms::TokenSet { access_token, refresh_token: None, expires_at, scopes: Vec::new() };
    let boards = adapter.boards(&tokens).await.map_err(platform_error)?;
    let data = boards
        .into_iter()
        .map(|board| BoardView {
            id: board.id,
            name: board.name,
            description: board.description,
            privacy: board.privacy,
        })
        .collect();
    Ok(ApiJson(Boards { data }))
}

/// A platform's refusal as the client sees it (its reasons carry no token).
fn platform_error(error: herald_shared::platforms::PlatformError) -> ApiError {
    use herald_shared::platforms::PlatformError;
    match error {
        PlatformError::AuthDead(reason) => ApiError::conflict(format!("the account must be reconnected: {reason}")),
        PlatformError::Permanent(reason) => ApiError::conflict(reason),
        PlatformError::RateLimited { until, reason } => {
            let seconds = u64::try_from((until - Utc::now()).num_seconds()).unwrap_or(0).max(1);
            ApiError::rate_limited(reason, seconds)
        }
        PlatformError::Transient(reason) | PlatformError::Ambiguous(reason) => {
            ApiError::unavailable("platform_unavailable", reason)
        }
    }
}

impl Rejected for account::Rejection {
    const NOUN: &'static str = "account";

    fn into_api_error(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found("no such account"),
            rejection => ApiError::conflict(rejection.to_string()),
        }
    }
}
