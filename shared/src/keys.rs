//! API keys: how they look, how they are stored, what they may do, and the operator's
//! commands that create projects and keys.
//!
//! A key is `hk_live_` (or `hk_test_`, sandbox only) followed by 32 lowercase hex digits from a
//! CSPRNG, so secret scanners can match `hk_(live|test)_[a-f0-9]{32}`. Only its
//! SHA-256 and its first 12 characters are stored; the key itself is shown once, at creation.

use chrono::{DateTime, Utc};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::api_key::{self, ApiKey, KeySpec};
use crate::domain::project::{self, Project};
use crate::events::{EventMetadata, ExecuteError, execute};

/// Every scope a key can hold.
pub const SCOPES: &[&str] = &[
    "posts:read",
    "posts:write",
    "posts:delete",
    "posts:approve",
    "media:read",
    "media:upload",
    "queue:read",
    "queue:write",
    "schedule:read",
    "schedule:write",
    "analytics:read",
    "connections:read",
    "connections:write",
    "apps:read",
    "apps:write",
    "keys:read",
    "keys:write",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "feeds:read",
    "feeds:write",
    "ai:generate",
];

/// The length of the prefix shown in lists (`hk_live_` and four hex digits).
pub const PREFIX_LEN: usize = 12;

/// Which platforms a key reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Every platform.
    Live,
    /// Only the sandbox platform.
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    fn marker(self) -> &'static str {
        match self {
            Environment::Live => "hk_live_",
            Environment::Test => "hk_test_",
        }
    }
}

/// A freshly generated key: the secret (shown once) and what is stored of it.
#[derive(Debug)]
pub struct GeneratedKey {
    pub secret: SecretString,
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
}

/// Makes a new key.
pub fn generate(environment: Environment) -> GeneratedKey {
    // The thread-local generator is a CSPRNG (ChaCha) seeded and reseeded from the OS.
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let key = format!("{}{}", environment.marker(), hex::encode(bytes));
    GeneratedKey { prefix: key[..PREFIX_LEN].to_owned(), hash: hash(&key), secret: SecretString::from(key) }
}

/// SHA-256 of `key`, hex: what the database holds and what a presented key is looked up by.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `text` has the shape of a key (not whether it exists).
pub fn is_well_formed(text: &str) -> bool {
    let Some(hex_part) = text.strip_prefix("hk_live_").or_else(|| text.strip_prefix("hk_test_")) else {
        return false;
    };
    hex_part.len() == 32 && hex_part.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Expands `read` and `write` and checks every name; the answer is sorted and without repeats.
/// `read` is every `*:read` scope; `write` is every other one.
pub fn expand_scopes(requested: &[String]) -> Result<Vec<String>, String> {
    let mut scopes = Vec::new();
    for scope in requested {
        match scope.as_str() {
            "read" => scopes.extend(SCOPES.iter().filter(|scope| scope.ends_with(":read")).map(|s| (*s).to_owned())),
            "write" => scopes.extend(SCOPES.iter().filter(|scope| !scope.ends_with(":read")).map(|s| (*s).to_owned())),
            known if SCOPES.contains(&known) => scopes.push(known.to_owned()),
            unknown => return Err(format!("unknown scope `{unknown}`")),
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

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
        environment: request.environment.as_str().to_owned(),
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

/// An allowed-IP entry: a CIDR block, or a single address.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Reads a secret for printing once. Kept here so the one place a key is revealed is easy to find.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_are_stored_as_hashes() {
        let key = generate(Environment::Live);
        let text = key.secret.expose_secret();
        assert!(is_well_formed(text), "{}", key.prefix);
        assert!(text.starts_with("hk_live_") && text.len() == 40);
        assert_eq!(key.prefix, text[..12]);
        assert_eq!(key.hash, hash(text));
        assert_eq!(key.hash.len(), 64);
        assert_ne!(generate(Environment::Live).hash, key.hash);
        assert!(generate(Environment::Test).secret.expose_secret().starts_with("hk_test_"));
        assert!(!is_well_formed("hk_live_0123"));
        assert!(!is_well_formed(&"hk_live_".repeat(5)));
        assert!(!is_well_formed("hk_live_0123456789ABCDEF0123456789abcdef"));
    }

    #[test]
    fn shorthands_expand_and_unknown_scopes_are_refused() {
        let read = expand_scopes(&["read".into()]).unwrap();
        assert!(read.iter().all(|scope| scope.ends_with(":read")));
        assert!(read.contains(&"events:read".to_owned()));
        let both = expand_scopes(&["read".into(), "write".into(), "posts:read".into()]).unwrap();
        assert_eq!(both.len(), SCOPES.len());
        assert_eq!(expand_scopes(&["posts:publish".into()]).unwrap_err(), "unknown scope `posts:publish`");
    }
}
