//! `/v1/webhooks`: endpoints that hear the project's events as Standard Webhooks messages
//! (`herald_shared::webhooks`), their attempt log, test messages, replays and resends.
//!
//! An endpoint hears within the reach of the key that created it, and a key sees and manages
//! only endpoints whose reach lies within its own (as with keys), so no key hears or handles
//! more through an endpoint than it could read. The signing secret is shown once, at creation
//! and at each rotation; custom header values are write-only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials;
use herald_shared::domain::api_key::{Environment, Reach};
use herald_shared::domain::webhook::{self, KeyReach, Settings, WebhookEndpoint};
use herald_shared::outbound;
use herald_shared::webhooks::catalog;
use herald_shared::webhooks::dispatch;
use herald_shared::webhooks::payload::PayloadContext;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
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
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(attempts))
        .routes(routes!(test))
        .routes(routes!(replay))
        .routes(routes!(resend))
}

/// The most custom headers an endpoint carries.
const MOST_HEADERS: usize = 20;
/// Headers herald sets itself, which a custom header may not replace.
const RESERVED_HEADERS: &[&str] =
    &["content-type", "content-length", "host", "connection", "transfer-encoding", "user-agent", "te", "upgrade"];

/// A webhook endpoint as the api shows it: never its secret, never its header values.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
struct EndpointView {
    id: Uuid,
    url: String,
    description: Option<String>,
    /// The types it hears; `null`: every type.
    event_types: Option<Vec<String>>,
    /// `false` once disabled (by a 410, days of failures, or a client); `PATCH` with `enabled`
    /// turns it on again.
    enabled: bool,
    disabled_reason: Option<String>,
    /// Messages sent at once: 1 (the default) keeps log order strictly.
    max_in_flight: i32,
    /// The names of its custom headers (their values are never shown).
    header_names: Vec<String>,
    /// `live`, or `test` when a test key made it: it hears only the sandbox.
    #[schema(value_type = String, example = "live")]
    environment: Environment,
    /// The creating key's scopes: it hears only what they could read.
    scopes: Vec<String>,
    platforms: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct EndpointRow {
    id: Uuid,
    url: String,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    enabled: bool,
    disabled_reason: Option<String>,
    max_in_flight: i32,
    environment: Environment,
    scopes: Vec<String>,
    platforms: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EndpointRow {
    fn reach(&self) -> Reach<'_> {
        Reach::stored(self.environment, &self.scopes, self.platforms.as_deref(), self.accounts.as_deref())
    }

    fn settings(&self) -> Settings {
        Settings {
            url: self.url.clone(),
            description: self.description.clone(),
            event_types: self.event_types.clone(),
            max_in_flight: self.max_in_flight,
        }
    }

    fn view(self, header_names: Vec<String>) -> EndpointView {
        EndpointView {
            id: self.id,
            url: self.url,
            description: self.description,
            event_types: self.event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            max_in_flight: self.max_in_flight,
            header_names,
            environment: self.environment,
            scopes: self.scopes,
            platforms: self.platforms,
            accounts: self.accounts,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A new endpoint, with its signing secret (shown only now).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedWebhookEndpoint)]
struct Created {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` and base64: verify `webhook-signature` with it (Standard Webhooks). Never shown
    /// again.
    secret: String,
}

/// A page of endpoints, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
struct List {
    data: Vec<EndpointView>,
}

/// An endpoint to create.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateWebhookEndpoint)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `https://...` (plain `http://` only where private networks are allowed, for local
    /// development); at most 2048 characters.
    url: String,
    /// At most 500 characters.
    description: Option<String>,
    /// The types to hear (`GET /v1/webhooks` describes each in the document); absent or `null`: all.
    event_types: Option<Vec<String>>,
    /// Sent with every message, e.g. an `Authorization` your receiver checks. Write-only.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    headers: Option<BTreeMap<String, SecretString>>,
    /// 1 to 100, default 1.
    #[schema(minimum = 1, maximum = 100)]
    max_in_flight: Option<i32>,
}

/// What `PATCH /v1/webhooks/{id}` may change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateWebhookEndpoint)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    url: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// `null`: every type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Option<Vec<String>>>,
    /// Replaces every custom header (`{}` or `null` removes them).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    headers: Option<Option<BTreeMap<String, SecretString>>>,
    /// `true` turns a disabled endpoint on again; its pending messages go out.
    enabled: Option<bool>,
    #[schema(minimum = 1, maximum = 100)]
    max_in_flight: Option<i32>,
}

/// A field that is present (possibly `null`) is `Some`; an absent one stays `None` (`default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn load_all(state: &AppState, caller: &Caller, id: Option<Uuid>) -> Result<Vec<EndpointRow>, ApiError> {
    let rows = sqlx::query_as!(
        EndpointRow,
        r#"SELECT id, url, description, event_types, enabled, disabled_reason, max_in_flight,
                  environment AS "environment: Environment", scopes, platforms, accounts, created_at, updated_at
           FROM webhook_endpoints
           WHERE project_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id = $2)
           ORDER BY created_at, id"#,
        caller.project_id,
        id,
    )
    .fetch_all(&state.pool)
    .await?;
    let mine = caller.reach();
    Ok(rows.into_iter().filter(|row| mine.lacks(&row.reach()).is_none()).collect())
}

/// Endpoint `id` if the caller may see it; a 404 otherwise.
async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<EndpointRow, ApiError> {
    load_all(state, caller, Some(id)).await?.pop().ok_or_else(|| ApiError::not_found("no such webhook endpoint"))
}

async fn view(state: &AppState, row: EndpointRow) -> Result<EndpointView, ApiError> {
    let mut connection = state.pool.acquire().await?;
    let names = credentials::webhook_header_names(&mut connection, &state.keyring, row.id)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    Ok(row.view(names))
}

fn check_url(url: &str, allow_private: bool, errors: &mut Vec<FieldError>) {
    match outbound::parse_url(url, allow_private) {
        Err(error) => errors.push(FieldError::new("url", error.to_string())),
        Ok(parsed) if parsed.scheme() != "https" && !allow_private => {
            errors.push(FieldError::new("url", "must be https (plain http only where private networks are allowed)"));
        }
        Ok(_) => {}
    }
}

fn check_description(description: Option<&str>, errors: &mut Vec<FieldError>) {
    if description.is_some_and(|text| text.chars().count() > 500) {
        errors.push(FieldError::new("description", "must be at most 500 characters"));
    }
}

fn check_event_types(types: Option<&[String]>, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let types = types?;
    if types.is_empty() {
        errors.push(FieldError::new("event_types", "must name at least one type, or be null for all"));
    }
    for name in types {
        if !catalog::is_known(name) {
            let known: Vec<&str> = catalog::TYPES.iter().map(|(name, _)| *name).collect();
            errors.push(FieldError::new("event_types", format!("unknown type {name:?}; one of {}", known.join(", "))));
        }
    }
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    Some(types)
}

fn check_max_in_flight(max_in_flight: Option<i32>, errors: &mut Vec<FieldError>) {
    if max_in_flight.is_some_and(|value| !(1..=100).contains(&value)) {
        errors.push(FieldError::new("max_in_flight", "must be between 1 and 100"));
    }
}

fn check_headers(headers: &BTreeMap<String, SecretString>, errors: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    if headers.len() > MOST_HEADERS {
        errors.push(FieldError::new("headers", format!("at most {MOST_HEADERS} headers")));
    }
    let mut checked = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let token = !name.is_empty()
            && name.len() <= 100
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
        if !token {
            errors.push(FieldError::new("headers", format!("{name:?} is not a header name")));
            continue;
        }
        if lower.starts_with("webhook-") || RESERVED_HEADERS.contains(&lower.as_str()) {
            errors.push(FieldError::new("headers", format!("{name} is set by herald")));
            continue;
        }
        let value = value.expose_secret();
        if value.len() > 4096 || !value.bytes().all(|byte| byte == b'\t' || (0x20..0x7f).contains(&byte)) {
            // The value is never echoed: it may be a credential.
            errors.push(FieldError::new(
                "headers",
                format!("the value of {name} must be at most 4096 visible ASCII characters"),
            ));
            continue;
        }
        checked.insert(lower, value.to_owned());
    }
    checked
}

/// List webhook endpoints.
///
/// The project's endpoints within the key's reach, oldest first. Secrets and header values are
/// never shown. Needs `webhooks:read`.
#[utoipa::path(get, operation_id = "listWebhookEndpoints", security(("api_key" = ["webhooks:read"])), path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "The endpoints", body = List)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<List>, ApiError> {
    let mut data = Vec::new();
    for row in load_all(&state, &caller, None).await? {
        data.push(view(&state, row).await?);
    }
    Ok(ApiJson(List { data }))
}

/// Get a webhook endpoint.
///
/// Needs `webhooks:read`; an endpoint made by a key reaching beyond this one is a 404.
#[utoipa::path(get, operation_id = "getWebhookEndpoint", security(("api_key" = ["webhooks:read"])), path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The endpoint", body = EndpointView)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    let row = load(&state, &caller, id).await?;
    Ok(ApiJson(view(&state, row).await?))
}

/// Create a webhook endpoint.
///
/// From now on the endpoint hears the project's events of the types it names, within this key's
/// reach (a test key's endpoint hears only the sandbox), as Standard Webhooks messages signed
/// with the secret in the answer, which is never shown again. Needs `webhooks:write`.
#[utoipa::path(post, operation_id = "createWebhookEndpoint", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks", tag = "webhooks", request_body = CreateBody,
    responses((status = 201, description = "The endpoint and its secret", body = Created)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, ApiJson<Created>), ApiError> {
    let mut errors = Vec::new();
    check_url(&body.url, state.config.allow_private_networks, &mut errors);
    check_description(body.description.as_deref(), &mut errors);
    let event_types = check_event_types(body.event_types.as_deref(), &mut errors);
    check_max_in_flight(body.max_in_flight, &mut errors);
    let headers = check_headers(&body.headers.unwrap_or_default(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let id = Uuid::now_v7();
    let settings = Settings {
        url: body.url,
        description: body.description,
        event_types,
        max_in_flight: body.max_in_flight.unwrap_or(1),
    };
    let reach = KeyReach {
        environment: caller.environment,
        scopes: caller.scopes.clone(),
        platforms: caller.platforms.clone(),
        accounts: caller.accounts.clone(),
    };
    let secret = credentials::generate_webhook_secret();
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let command = webhook::Command::Create { project_id: caller.project_id, settings, reach };
    execute::<WebhookEndpoint>(&mut tx, id, command, &caller.event_metadata()).await?;
    credentials::store_webhook_secret(&mut tx, &state.keyring, id, &secret, &headers)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    tx.commit().await?;
    let endpoint = view(&state, load(&state, &caller, id).await?).await?;
    Ok((StatusCode::CREATED, ApiJson(Created { endpoint, secret: secret.expose_secret().to_owned() })))
}

/// Change a webhook endpoint.
///
/// Its URL, description, types, custom headers (replaced whole), `max_in_flight`, or `enabled`
/// (turning a disabled endpoint on again sends what is pending). Needs `webhooks:write`.
#[utoipa::path(patch, operation_id = "updateWebhookEndpoint", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")), request_body = UpdateBody,
    responses((status = 200, description = "The endpoint", body = EndpointView)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    let row = load(&state, &caller, id).await?;
    let mut errors = Vec::new();
    let mut settings = row.settings();
    if let Some(url) = body.url {
        check_url(&url, state.config.allow_private_networks, &mut errors);
        settings.url = url;
    }
    if let Some(description) = body.description {
        check_description(description.as_deref(), &mut errors);
        settings.description = description;
    }
    if let Some(event_types) = body.event_types {
        settings.event_types = check_event_types(event_types.as_deref(), &mut errors);
    }
    check_max_in_flight(body.max_in_flight, &mut errors);
    if let Some(max_in_flight) = body.max_in_flight {
        settings.max_in_flight = max_in_flight;
    }
    let headers = body.headers.map(|headers| check_headers(&headers.unwrap_or_default(), &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let enabled = body.enabled.unwrap_or(row.enabled);
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    let command = webhook::Command::Update { settings, enabled, headers_changed: headers.is_some() };
    match execute::<WebhookEndpoint>(&mut tx, id, command, &caller.event_metadata()).await {
        Ok(_) | Err(ExecuteError::Rejected(webhook::Rejection::Unchanged)) => {}
        Err(error) => return Err(error.into()),
    }
    if let Some(headers) = &headers {
        credentials::replace_webhook_headers(&mut tx, &state.keyring, id, headers)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    tx.commit().await?;
    let row = load(&state, &caller, id).await?;
    Ok(ApiJson(view(&state, row).await?))
}

/// Delete a webhook endpoint.
///
/// Nothing more is sent to it; its secret and headers are forgotten. Needs `webhooks:write`.
#[utoipa::path(delete, operation_id = "deleteWebhookEndpoint", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    load(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    execute::<WebhookEndpoint>(&mut tx, id, webhook::Command::Delete, &caller.event_metadata()).await?;
    credentials::forget_webhook_secret(&mut tx, id).await?;
    sqlx::query!(
        "UPDATE webhook_messages SET state = 'failed', ended_at = now() WHERE endpoint_id = $1 AND state = 'pending'",
        id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RotatedWebhookSecret)]
struct Rotated {
    /// The new secret, shown only now.
    secret: String,
    /// Until then messages carry a signature with the old secret too.
    previous_valid_until: DateTime<Utc>,
}

/// Rotate an endpoint's signing secret.
///
/// Answers a new secret; for 24 hours every message is signed with both the old and the new one
/// (two signatures in `webhook-signature`), so the receiver can switch without missing one.
/// Needs `webhooks:write`.
#[utoipa::path(post, operation_id = "rotateWebhookSecret", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The new secret", body = Rotated)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Rotated>, ApiError> {
    load(&state, &caller, id).await?;
    let secret = credentials::generate_webhook_secret();
    let now = Utc::now();
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    execute::<WebhookEndpoint>(&mut tx, id, webhook::Command::RotateSecret, &caller.event_metadata()).await?;
    credentials::rotate_webhook_secret(&mut tx, &state.keyring, id, &secret, now)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    tx.commit().await?;
    Ok(ApiJson(Rotated {
        secret: secret.expose_secret().to_owned(),
        previous_valid_until: now + credentials::ROTATION_OVERLAP,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AttemptsQuery {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the page before.
    cursor: Option<Uuid>,
}

/// One attempt to deliver a message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
struct AttemptView {
    id: Uuid,
    /// The message's `webhook-id`: the same on each of its attempts.
    webhook_id: String,
    event_type: String,
    attempted_at: DateTime<Utc>,
    /// The receiver's status; absent when it did not answer.
    status_code: Option<i32>,
    duration_ms: i32,
    /// The first kilobyte of the answer.
    response_snippet: Option<String>,
    /// Why there was no answer (timeout, refused address, network).
    error: Option<String>,
    succeeded: bool,
}

/// A page of attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttemptPage)]
struct AttemptPage {
    data: Vec<AttemptView>,
    next_cursor: Option<String>,
}

/// List an endpoint's delivery attempts.
///
/// Newest first: when, which message, the status, how long it took, the start of the answer or
/// the error. Kept for the retention window (`HERALD_WEBHOOKS__RETENTION_DAYS`). Needs
/// `webhooks:read`.
#[utoipa::path(get, operation_id = "listWebhookAttempts", security(("api_key" = ["webhooks:read"])), path = "/v1/webhooks/{id}/attempts", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), AttemptsQuery),
    responses((status = 200, description = "A page of attempts", body = AttemptPage)))]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AttemptsQuery>,
) -> Result<ApiJson<AttemptPage>, ApiError> {
    load(&state, &caller, id).await?;
    let limit = page_limit(query.limit, 50, 100)?;
    let rows = sqlx::query_as!(
        AttemptView,
        "SELECT id, webhook_id, event_type, attempted_at, status_code, duration_ms, response_snippet, error, succeeded
         FROM webhook_attempts WHERE endpoint_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        id,
        query.cursor,
        limit + 1,
    )
    .fetch_all(&state.pool)
    .await?;
    let (data, next_cursor) = split_page(rows, limit, |attempt| attempt.id.to_string());
    Ok(ApiJson(AttemptPage { data, next_cursor }))
}

/// What was queued.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookQueued)]
struct Queued {
    /// Messages queued for the endpoint.
    queued: u64,
    /// The replay stopped after reading its most events; replay again from the last message's time.
    truncated: bool,
}

/// Send a test message.
///
/// Queues a `webhook.test` message to this endpoint only, through the log like any other, so it
/// shows in the attempts. 409 when the endpoint is disabled. Needs `webhooks:write`.
#[utoipa::path(post, operation_id = "testWebhookEndpoint", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 202, description = "Queued", body = Queued)))]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, ApiJson<Queued>), ApiError> {
    load(&state, &caller, id).await?;
    let mut tx = crate::idempotency::begin(&state.pool).await?;
    execute::<WebhookEndpoint>(&mut tx, id, webhook::Command::Test, &caller.event_metadata()).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, ApiJson(Queued { queued: 1, truncated: false })))
}

/// Since when to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ReplayWebhooks)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Every message the project's events since then make for this endpoint (its types and
    /// reach as they are now) is sent again, with its original `webhook-id`. Required.
    #[schema(required = true)]
    since: Option<DateTime<Utc>>,
}

/// Replay messages since a time.
///
/// Queues again every message this endpoint would have heard since `since` (up to 100,000
/// events read; `truncated` says when it stopped there), with the original `webhook-id`s, so a
/// receiver that lost them can catch up. Needs `webhooks:write`.
#[utoipa::path(post, operation_id = "replayWebhooks", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")), request_body = ReplayBody,
    responses((status = 202, description = "Queued", body = Queued)))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<(StatusCode, ApiJson<Queued>), ApiError> {
    // The endpoint first: another project's is a 404 whatever the body says.
    let row = load(&state, &caller, id).await?;
    let since = body.since.ok_or_else(|| ApiError::validation(vec![FieldError::new("since", "is required")]))?;
    if since > Utc::now() {
        return Err(ApiError::validation(vec![FieldError::new("since", "must not be in the future")]));
    }
    if !row.enabled {
        return Err(ApiError::conflict("the endpoint is disabled; enable it first"));
    }
    let context = PayloadContext { config: state.config.clone(), media_url_key: *state.media_url_key };
    let (queued, truncated) =
        dispatch::replay(&state.pool, &context, id, since).await.map_err(|error| ApiError::internal(&error))?;
    Ok((StatusCode::ACCEPTED, ApiJson(Queued { queued, truncated })))
}

/// Resend one attempt's message.
///
/// Queues the message of that attempt once more, with the same `webhook-id` and body. Needs
/// `webhooks:write`.
#[utoipa::path(post, operation_id = "resendWebhookAttempt", security(("api_key" = ["webhooks:write"])), path = "/v1/webhooks/{id}/attempts/{attempt_id}/resend", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), ("attempt_id" = Uuid, Path, description = "The attempt's id")),
    responses((status = 202, description = "Queued", body = Queued)))]
async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, attempt_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<(StatusCode, ApiJson<Queued>), ApiError> {
    let row = load(&state, &caller, id).await?;
    if !row.enabled {
        return Err(ApiError::conflict("the endpoint is disabled; enable it first"));
    }
    if !dispatch::resend(&state.pool, id, attempt_id).await.map_err(|error| ApiError::internal(&error))? {
        return Err(ApiError::not_found("no such attempt of this endpoint"));
    }
    Ok((StatusCode::ACCEPTED, ApiJson(Queued { queued: 1, truncated: false })))
}

impl Rejected for webhook::Rejection {
    const NOUN: &'static str = "webhook endpoint";

    fn into_api_error(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found("no such webhook endpoint"),
            Self::Disabled => ApiError::conflict("the endpoint is disabled; enable it first"),
            rejection => ApiError::conflict(rejection.to_string()),
        }
    }
}
