//! Projects and their API keys: creating a project with its first key, creating and revoking
//! keys, listing them. Used by the operator's CLI and by `/v1/keys`. What a key looks like and
//! what it reaches is `crate::domain::api_key`.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::{ExecuteError, execute};
use crate::domain::api_key::{self, ApiKey, Environment, KeySpec, expand_scopes, generate, parse_network};
use crate::domain::project::{self, Project};
use crate::events::EventMetadata;

/// What a new key may do, as an operator or the api asks for it.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub description: Option<String>,
    pub environment: Environment,
    /// Names or the `read` / `write` shorthands.
    pub scopes: Vec<String>,
    pub platforms: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub requests_per_minute: i32,
    pub requests_per_day: i32,
    pub allowed_ips: Vec<String>,
    pub allowed_origins: Vec<String>,
}

impl KeyRequest {
    /// A key with every scope and the default limits.
    pub fn admin(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: None,
            environment: Environment::Live,
            scopes: vec!["read".into(), "write".into()],
            platforms: None,
            accounts: None,
            expires_at: None,
            requests_per_minute: 60,
            requests_per_day: 10_000,
            allowed_ips: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Why a key was not created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no such project")]
    NoSuchProject,
    #[error("no such key")]
    NoSuchKey,
    #[error("the project already has {0} live keys, the most allowed; revoke one first")]
    TooManyKeys(usize),
    #[error("{0}")]
    Invalid(String),
    #[error("the key is already revoked")]
    AlreadyRevoked,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Store(String),
}

impl<R: std::error::Error> From<ExecuteError<R>> for KeyError {
    fn from(error: ExecuteError<R>) -> Self {
        match error {
            ExecuteError::Database(error) => KeyError::Database(error),
            other => KeyError::Store(other.to_string()),
        }
    }
}

/// A key as lists show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates project `name` and its first key, with every scope, in one transaction.
pub async fn create_project(
    pool: &PgPool,
    name: &str,
    metadata: &EventMetadata,
) -> Result<(Uuid, Uuid, SecretString), KeyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyError::Invalid("a project needs a name".into()));
    }
    let project_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let metadata = EventMetadata { project_id: Some(project_id), ..metadata.clone() };
    execute::<Project>(&mut tx, project_id, project::Command::Create { name: name.to_owned() }, &metadata).await?;
    let (key_id, secret) =
        create_key_in(&mut tx, project_id, KeyRequest::admin("admin"), usize::MAX, &metadata).await?;
    tx.commit().await?;
    Ok((project_id, key_id, secret))
}

/// Creates a key in `project_id`, unless the project already has `max_live` live keys.
pub async fn create_key(
    pool: &PgPool,
    project_id: Uuid,
    request: KeyRequest,
    max_live: usize,
    metadata: &EventMetadata,
) -> Result<(Uuid, SecretString), KeyError> {
    let mut tx = pool.begin().await?;
    let created = create_key_in(&mut tx, project_id, request, max_live, metadata).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create_key`] inside the caller's transaction.
pub async fn create_key_in(
    tx: &mut sqlx::PgConnection,
    project_id: Uuid,
    request: KeyRequest,
    max_live: usize,
    metadata: &EventMetadata,
) -> Result<(Uuid, SecretString), KeyError> {
    // Lock the project row: concurrent creations count live keys one at a time.
    let exists = sqlx::query_scalar!("SELECT id FROM projects WHERE id = $1 FOR UPDATE", project_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(KeyError::NoSuchProject);
    }
    let live = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM api_keys
           WHERE project_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"#,
        project_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if usize::try_from(live).unwrap_or(usize::MAX) >= max_live {
        return Err(KeyError::TooManyKeys(max_live));
    }
    let scopes = expand_scopes(&request.scopes).map_err(KeyError::Invalid)?;
    if request.name.trim().is_empty() {
        return Err(KeyError::Invalid("a key needs a name".into()));
    }
    if let Some(bad) = request.allowed_ips.iter().find(|ip| parse_network(ip).is_none()) {
        return Err(KeyError::Invalid(format!("`{bad}` is not an IP address or CIDR block")));
    }
    let generated = generate(request.environment);
    let spec = KeySpec {
        project_id,
        name: request.name.trim().to_owned(),
        description: request.description,
        prefix: generated.prefix,
        key_hash: generated.hash,
        environment: request.environment,
        scopes,
        platforms: request.platforms,
        accounts: request.accounts,
        expires_at: request.expires_at,
        requests_per_minute: request.requests_per_minute,
        requests_per_day: request.requests_per_day,
        allowed_ips: request.allowed_ips,
        allowed_origins: request.allowed_origins,
    };
    let key_id = Uuid::now_v7();
    // The event belongs to the project whatever the caller passed: the feed filters on it.
    let metadata = EventMetadata { project_id: Some(project_id), ..metadata.clone() };
    match execute::<ApiKey>(tx, key_id, api_key::Command::Create(Box::new(spec)), &metadata).await {
        Ok(_) => Ok((key_id, generated.secret)),
        Err(ExecuteError::Rejected(rejection)) => Err(KeyError::Invalid(rejection.to_string())),
        Err(other) => Err(other.into()),
    }
}

/// Revokes key `key_id` of `project_id`; it is refused from the next request on.
pub async fn revoke_key(
    pool: &PgPool,
    project_id: Uuid,
    key_id: Uuid,
    metadata: &EventMetadata,
) -> Result<(), KeyError> {
    let mut tx = pool.begin().await?;
    revoke_key_in(&mut tx, project_id, key_id, metadata).await?;
    tx.commit().await?;
    Ok(())
}

/// [`revoke_key`] inside the caller's transaction.
pub async fn revoke_key_in(
    tx: &mut sqlx::PgConnection,
    project_id: Uuid,
    key_id: Uuid,
    metadata: &EventMetadata,
) -> Result<(), KeyError> {
    let owner =
        sqlx::query_scalar!("SELECT project_id FROM api_keys WHERE id = $1", key_id).fetch_optional(&mut *tx).await?;
    if owner != Some(project_id) {
        return Err(KeyError::NoSuchKey);
    }
    let metadata = EventMetadata { project_id: Some(project_id), ..metadata.clone() };
    match execute::<ApiKey>(tx, key_id, api_key::Command::Revoke, &metadata).await {
        Ok(_) => Ok(()),
        Err(ExecuteError::Rejected(api_key::Rejection::AlreadyRevoked)) => Err(KeyError::AlreadyRevoked),
        Err(ExecuteError::Rejected(_)) => Err(KeyError::NoSuchKey),
        Err(other) => Err(other.into()),
    }
}

/// The keys of `project_id`, newest first, revoked ones included.
pub async fn list_keys(pool: &PgPool, project_id: Uuid) -> Result<Vec<KeySummary>, sqlx::Error> {
    sqlx::query_as!(
        KeySummary,
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys
         WHERE project_id = $1 ORDER BY created_at DESC, id DESC",
        project_id
    )
    .fetch_all(pool)
    .await
}

/// The channel a trigger notifies with a key's id whenever its row changes (`*`: all of them).
pub const CHANGED_CHANNEL: &str = "herald_api_keys";

/// Reads a secret for printing once. Kept here so the one place a key is revealed is easy to find.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}
