//! Sealed secrets in their own tables: accounts' tokens, connect sessions' PKCE verifiers and
//! codes, projects' OAuth client secrets. Every value is sealed (AES-256-GCM, [`crate::crypto`])
//! with `<table>:<row id>:<column>` as associated data, so a value copied into another row or
//! column does not open. Values are [`SecretString`] in memory and never logged.
//!
//! An account's token pair is replaced by compare-and-set on `version`: a refresh writes only if
//! nobody wrote since it read, so two refreshes can never leave the older pair behind.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::{CryptoError, Keyring};
use crate::platforms::TokenSet;

/// Reading or writing a sealed value failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

fn associated_data(table: &str, id: Uuid, column: &str) -> String {
    format!("{table}:{id}:{column}")
}

fn seal(keyring: &Keyring, table: &str, id: Uuid, column: &str, value: &SecretString) -> Result<String, CryptoError> {
    keyring.seal(value, &associated_data(table, id, column))
}

fn open(keyring: &Keyring, table: &str, id: Uuid, column: &str, sealed: &str) -> Result<SecretString, CryptoError> {
    keyring.open(sealed, &associated_data(table, id, column))
}

/// An account's tokens as stored, with the version a compare-and-set needs.
#[derive(Debug)]
pub struct StoredTokens {
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// Writes `tokens` for `account_id` (a connect or reconnect). A `None` refresh token keeps the
/// stored one: a grant without one never erases it.
pub async fn store_account_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    account_id: Uuid,
    tokens: &TokenSet,
) -> Result<(), CredentialError> {
    let access = seal(keyring, "account_credentials", account_id, "access_token", &tokens.access_token)?;
    let refresh = match &tokens.refresh_token {
        Some(token) => Some(seal(keyring, "account_credentials", account_id, "refresh_token", token)?),
        None => None,
    };
    sqlx::query!(
        "INSERT INTO account_credentials (account_id, access_token, refresh_token, expires_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id) DO UPDATE
             SET access_token = excluded.access_token,
                 refresh_token = COALESCE(excluded.refresh_token, account_credentials.refresh_token),
                 expires_at = excluded.expires_at,
                 version = account_credentials.version + 1,
                 updated_at = now()",
        account_id,
        access,
        refresh,
        tokens.expires_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Replaces the token pair only if the stored version is still `version`; true if it did.
pub async fn replace_account_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    account_id: Uuid,
    version: i64,
    tokens: &TokenSet,
) -> Result<bool, CredentialError> {
    let access = seal(keyring, "account_credentials", account_id, "access_token", &tokens.access_token)?;
    let refresh = match &tokens.refresh_token {
        Some(token) => Some(seal(keyring, "account_credentials", account_id, "refresh_token", token)?),
        None => None,
    };
    let replaced = sqlx::query!(
        "UPDATE account_credentials
         SET access_token = $3, refresh_token = COALESCE($4, refresh_token), expires_at = $5,
             version = version + 1, updated_at = now()
         WHERE account_id = $1 AND version = $2",
        account_id,
        version,
        access,
        refresh,
        tokens.expires_at,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(replaced == 1)
}

/// The account's tokens, opened. `lock` takes the row lock until the transaction ends, which
/// serialises refreshes of one account across every worker.
pub async fn load_account_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    account_id: Uuid,
    lock: bool,
) -> Result<Option<StoredTokens>, CredentialError> {
    let row = if lock {
        sqlx::query!(
            "SELECT access_token, refresh_token, expires_at, version FROM account_credentials
             WHERE account_id = $1 FOR UPDATE",
            account_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.access_token, row.refresh_token, row.expires_at, row.version))
    } else {
        sqlx::query!(
            "SELECT access_token, refresh_token, expires_at, version FROM account_credentials WHERE account_id = $1",
            account_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.access_token, row.refresh_token, row.expires_at, row.version))
    };
    let Some((access, refresh, expires_at, version)) = row else { return Ok(None) };
    let access_token =
        access.map(|sealed| open(keyring, "account_credentials", account_id, "access_token", &sealed)).transpose()?;
    let refresh_token =
        refresh.map(|sealed| open(keyring, "account_credentials", account_id, "refresh_token", &sealed)).transpose()?;
    Ok(Some(StoredTokens { access_token, refresh_token, expires_at, version }))
}

/// Forgets an account's tokens (a disconnect). The row stays, so a reconnect bumps the version.
/// Returns the sealed token to revoke on the platform (the refresh token if there was one,
/// else the access token) as `(column, sealed value)`: it leaves this table now and lives only
/// in the revocation job, still sealed, until the platform has been told.
pub async fn wipe_account_tokens(
    tx: &mut PgConnection,
    account_id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let old = sqlx::query!(
        "SELECT access_token, refresh_token FROM account_credentials WHERE account_id = $1 FOR UPDATE",
        account_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE account_credentials
         SET access_token = NULL, refresh_token = NULL, expires_at = NULL, version = version + 1, updated_at = now()
         WHERE account_id = $1",
        account_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(old.and_then(|old| match (old.refresh_token, old.access_token) {
        (Some(refresh), _) => Some(("refresh_token".to_owned(), refresh)),
        (None, Some(access)) => Some(("access_token".to_owned(), access)),
        (None, None) => None,
    }))
}

/// Opens an account's token sealed in `column` of `account_credentials`: one read beside other
/// rows (a batch of publish jobs), or one [`wipe_account_tokens`] handed over for revocation.
pub fn open_account_token(
    keyring: &Keyring,
    account_id: Uuid,
    column: &str,
    sealed: &str,
) -> Result<SecretString, CryptoError> {
    open(keyring, "account_credentials", account_id, column, sealed)
}

/// What a connect session keeps secret between its steps.
#[derive(Debug, Default)]
pub struct SessionSecrets {
    pub pkce_verifier: Option<SecretString>,
    pub code: Option<SecretString>,
}

/// Stores what `secrets` holds (the PKCE verifier when the session starts, the code when the
/// callback brings it); a `None` keeps what is stored.
pub async fn store_session_secrets(
    tx: &mut PgConnection,
    keyring: &Keyring,
    session_id: Uuid,
    secrets: &SessionSecrets,
) -> Result<(), CredentialError> {
    let table = "connect_session_secrets";
    let verifier = secrets
        .pkce_verifier
        .as_ref()
        .map(|value| seal(keyring, table, session_id, "pkce_verifier", value))
        .transpose()?;
    let code = secrets.code.as_ref().map(|value| seal(keyring, table, session_id, "code", value)).transpose()?;
    sqlx::query!(
        "INSERT INTO connect_session_secrets AS s (session_id, pkce_verifier, code) VALUES ($1, $2, $3)
         ON CONFLICT (session_id) DO UPDATE
             SET pkce_verifier = COALESCE(excluded.pkce_verifier, s.pkce_verifier), code = COALESCE(excluded.code, s.code)",
        session_id,
        verifier,
        code
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The session's secrets, opened.
pub async fn load_session_secrets(
    tx: &mut PgConnection,
    keyring: &Keyring,
    session_id: Uuid,
) -> Result<SessionSecrets, CredentialError> {
    let row = sqlx::query!("SELECT pkce_verifier, code FROM connect_session_secrets WHERE session_id = $1", session_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(SessionSecrets::default()) };
    Ok(SessionSecrets {
        pkce_verifier: row
            .pkce_verifier
            .map(|sealed| open(keyring, "connect_session_secrets", session_id, "pkce_verifier", &sealed))
            .transpose()?,
        code: row
            .code
            .map(|sealed| open(keyring, "connect_session_secrets", session_id, "code", &sealed))
            .transpose()?,
    })
}

/// Forgets a session's secrets once they served (the code is single use anyway).
pub async fn forget_session_secrets(tx: &mut PgConnection, session_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM connect_session_secrets WHERE session_id = $1", session_id).execute(&mut *tx).await?;
    Ok(())
}

/// Stores (or replaces) a project's own OAuth app's client secret.
pub async fn store_app_secret(
    tx: &mut PgConnection,
    keyring: &Keyring,
    app_id: Uuid,
    secret: &SecretString,
) -> Result<(), CredentialError> {
    let sealed = seal(keyring, "oauth_app_secrets", app_id, "client_secret", secret)?;
    sqlx::query!(
        "INSERT INTO oauth_app_secrets (app_id, client_secret) VALUES ($1, $2)
         ON CONFLICT (app_id) DO UPDATE SET client_secret = excluded.client_secret",
        app_id,
        sealed
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Forgets an app's client secret (the app was deleted).
pub async fn forget_app_secret(tx: &mut PgConnection, app_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM oauth_app_secrets WHERE app_id = $1", app_id).execute(&mut *tx).await?;
    Ok(())
}

/// A project's own OAuth app's client secret, opened.
pub async fn load_app_secret(
    tx: &mut PgConnection,
    keyring: &Keyring,
    app_id: Uuid,
) -> Result<Option<SecretString>, CredentialError> {
    let sealed = sqlx::query_scalar!("SELECT client_secret FROM oauth_app_secrets WHERE app_id = $1", app_id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(sealed.map(|sealed| open(keyring, "oauth_app_secrets", app_id, "client_secret", &sealed)).transpose()?)
}

/// Seals the response kept for an `Idempotency-Key` (it can carry a secret: a new API key's) for
/// the claim that made it.
pub fn seal_idempotent_response(keyring: &Keyring, claim: Uuid, body: &SecretString) -> Result<String, CryptoError> {
    seal(keyring, "idempotency_keys", claim, "sealed_body", body)
}

/// Opens what [`seal_idempotent_response`] sealed.
pub fn open_idempotent_response(keyring: &Keyring, claim: Uuid, sealed: &str) -> Result<SecretString, CryptoError> {
    open(keyring, "idempotency_keys", claim, "sealed_body", sealed)
}

/// Every sealed column: (table, key column, sealed column). Re-encryption walks these.
const SEALED_COLUMNS: &[(&str, &str, &str)] = &[
    ("account_credentials", "account_id", "access_token"),
    ("account_credentials", "account_id", "refresh_token"),
    ("connect_session_secrets", "session_id", "pkce_verifier"),
    ("connect_session_secrets", "session_id", "code"),
    ("oauth_app_secrets", "app_id", "client_secret"),
    ("idempotency_keys", "claim", "sealed_body"),
];

/// What [`reencrypt_all`] did, per column (`table.column`).
#[derive(Debug, Default)]
pub struct Reencrypted {
    pub moved: Vec<(String, u64)>,
}

impl Reencrypted {
    pub fn total(&self) -> u64 {
        self.moved.iter().map(|(_, count)| count).sum()
    }
}

/// Re-seals every value not sealed with the keyring's newest key, in batches of `batch` rows.
/// Each row is replaced only if it still holds the value that was read (compare-and-set), so a
/// refresh that writes meanwhile wins and its new value is already under the newest key.
pub async fn reencrypt_all(pool: &sqlx::PgPool, keyring: &Keyring, batch: i64) -> Result<Reencrypted, CredentialError> {
    let current = keyring.current_key_id().ok_or(CryptoError::NoKey)?.to_owned();
    let prefix = format!("v1.{current}.%");
    let mut report = Reencrypted::default();
    for (table, key, column) in SEALED_COLUMNS {
        // Table and column names are the constants above, never input.
        let select =
            format!("SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 LIMIT $2");
        let update = format!("UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3");
        let mut moved = 0;
        loop {
            let rows: Vec<(Uuid, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(select.clone())).bind(&prefix).bind(batch).fetch_all(pool).await?;
            if rows.is_empty() {
                break;
            }
            let mut tx = pool.begin().await?;
            for (id, sealed) in &rows {
                let plain = open(keyring, table, *id, column, sealed)?;
                let resealed = seal(keyring, table, *id, column, &plain)?;
                let query = sqlx::AssertSqlSafe(update.clone());
                moved +=
                    sqlx::query(query).bind(resealed).bind(id).bind(sealed).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        }
        report.moved.push((format!("{table}.{column}"), moved));
    }
    Ok(report)
}
