//! Sealed secrets in their own tables: accounts' tokens, connect sessions' PKCE verifiers and
//! codes, projects' OAuth client secrets. Every value is sealed (AES-256-GCM, [`crate::crypto`])
//! with `<table>:<row id>:<column>` as associated data, so a value copied into another row or
//! column does not open. Values are [`SecretString`] in memory and never logged.
//!
//! A token pair belongs to the grant (one authorization, which may reach several accounts), in
//! `grant_credentials`; an account points at its grant, and holds a token of its own only where
//! the platform issues one per account (Facebook Pages). A pair is replaced by compare-and-set
//! on `version`: a refresh writes only if nobody wrote since it read, so two refreshes can never
//! leave the older pair behind, and one grant is refreshed once for all its accounts.
//!
//! This module alone reads the sealed tables: the jobs' reads of an account with its tokens
//! (`accounts`) and the OAuth client a connect or refresh uses (`clients`) live here too.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::{CryptoError, Keyring};
use crate::domain::tokens::TokenSet;

mod accounts;
mod checkpoints;
mod clients;
mod webhooks;

pub use accounts::{ExpiringPair, JobAccount, PublishAccount, expiring_pairs, job_account, publish_accounts};
pub use checkpoints::{forget_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint};
pub use clients::{ClientError, client_for};
pub use webhooks::{
    ROTATION_OVERLAP, WebhookSigning, forget_webhook_secret, generate_secret as generate_webhook_secret,
    replace_webhook_headers, rotate_webhook_secret, store_webhook_secret, webhook_header_names, webhook_signing,
};

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

pub(crate) fn seal(
    keyring: &Keyring,
    table: &str,
    id: Uuid,
    column: &str,
    value: &SecretString,
) -> Result<String, CryptoError> {
    keyring.seal(value, &associated_data(table, id, column))
}

pub(crate) fn open(
    keyring: &Keyring,
    table: &str,
    id: Uuid,
    column: &str,
    sealed: &str,
) -> Result<SecretString, CryptoError> {
    keyring.open(sealed, &associated_data(table, id, column))
}

/// Whose token pair a sealed token belongs to; its associated data names the owner's row, so a
/// grant's token never opens as an account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairOwner {
    /// The pair of one authorization, shared by every account it reaches.
    Grant(Uuid),
    /// An account's own token (a Facebook Page's), or the pair of an account connected before
    /// grants existed.
    Account(Uuid),
}

impl PairOwner {
    fn table(self) -> &'static str {
        match self {
            PairOwner::Grant(_) => "grant_credentials",
            PairOwner::Account(_) => "account_credentials",
        }
    }

    fn id(self) -> Uuid {
        match self {
            PairOwner::Grant(id) | PairOwner::Account(id) => id,
        }
    }

    /// The grant, when the pair is one.
    pub fn grant_id(self) -> Option<Uuid> {
        match self {
            PairOwner::Grant(id) => Some(id),
            PairOwner::Account(_) => None,
        }
    }

    fn seal(self, keyring: &Keyring, column: &str, value: &SecretString) -> Result<String, CryptoError> {
        seal(keyring, self.table(), self.id(), column, value)
    }

    /// Opens a token of this owner's sealed in `column`.
    pub fn open(self, keyring: &Keyring, column: &str, sealed: &str) -> Result<SecretString, CryptoError> {
        open(keyring, self.table(), self.id(), column, sealed)
    }
}

/// An account's usable tokens as stored, with the owner and version a compare-and-set needs.
#[derive(Debug)]
pub struct StoredTokens {
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub owner: PairOwner,
    /// When the pair was last refreshed (grants keep it; an account's own pair does not).
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// The grant an exchange's tokens are stored for.
#[derive(Debug, Clone, Copy)]
pub struct GrantRef<'a> {
    pub id: Uuid,
    pub project_id: Uuid,
    pub platform: &'a str,
}

/// Writes an authorization's pair (a connect or reconnect). A `None` refresh token keeps the
/// stored one: a grant without one never erases it.
pub async fn store_grant_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    grant: GrantRef<'_>,
    tokens: &TokenSet,
) -> Result<(), CredentialError> {
    let owner = PairOwner::Grant(grant.id);
    let access = owner.seal(keyring, "access_token", &tokens.access_token)?;
    let refresh = tokens.refresh_token.as_ref().map(|token| owner.seal(keyring, "refresh_token", token)).transpose()?;
    sqlx::query!(
        "INSERT INTO grant_credentials (id, project_id, platform, access_token, refresh_token, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE
             SET access_token = excluded.access_token,
                 refresh_token = COALESCE(excluded.refresh_token, grant_credentials.refresh_token),
                 expires_at = excluded.expires_at,
                 version = grant_credentials.version + 1,
                 updated_at = now()",
        grant.id,
        grant.project_id,
        grant.platform,
        access,
        refresh,
        tokens.expires_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Points `account_id` at `grant_id`'s pair, with the token the platform issued for this account
/// alone if it did (`own`). Returns the grant it used before, if another.
pub async fn link_account(
    tx: &mut PgConnection,
    keyring: &Keyring,
    account_id: Uuid,
    grant_id: Uuid,
    own: Option<&TokenSet>,
) -> Result<Option<Uuid>, CredentialError> {
    let owner = PairOwner::Account(account_id);
    let access = own.map(|tokens| owner.seal(keyring, "access_token", &tokens.access_token)).transpose()?;
    let refresh = own
        .and_then(|tokens| tokens.refresh_token.as_ref())
        .map(|token| owner.seal(keyring, "refresh_token", token))
        .transpose()?;
    let before =
        sqlx::query_scalar!("SELECT grant_id FROM account_credentials WHERE account_id = $1 FOR UPDATE", account_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    sqlx::query!(
        "INSERT INTO account_credentials (account_id, grant_id, access_token, refresh_token, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id) DO UPDATE
             SET grant_id = excluded.grant_id, access_token = excluded.access_token,
                 refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
                 version = account_credentials.version + 1, updated_at = now()",
        account_id,
        grant_id,
        access,
        refresh,
        own.and_then(|tokens| tokens.expires_at),
    )
    .execute(&mut *tx)
    .await?;
    Ok(before.filter(|before| *before != grant_id))
}

/// Forgets grant `grant_id`'s pair if no account uses it any more (every account it reached was
/// reconnected through a newer grant).
pub async fn forget_unused_grant(tx: &mut PgConnection, grant_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM grant_credentials g WHERE g.id = $1
         AND NOT EXISTS (SELECT 1 FROM account_credentials c WHERE c.grant_id = g.id)",
        grant_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The grants `account_ids` use now (accounts without one are left out).
pub async fn grants_of(tx: &mut PgConnection, account_ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT grant_id AS "grant_id!" FROM account_credentials
           WHERE account_id = ANY($1) AND grant_id IS NOT NULL ORDER BY account_id"#,
        account_ids
    )
    .fetch_all(&mut *tx)
    .await
}

/// Replaces `owner`'s pair only if its version is still `version`; true if it did.
pub async fn replace_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    owner: PairOwner,
    version: i64,
    tokens: &TokenSet,
) -> Result<bool, CredentialError> {
    let access = owner.seal(keyring, "access_token", &tokens.access_token)?;
    let refresh = tokens.refresh_token.as_ref().map(|token| owner.seal(keyring, "refresh_token", token)).transpose()?;
    let replaced = match owner {
        PairOwner::Grant(id) => sqlx::query!(
            "UPDATE grant_credentials
             SET access_token = $3, refresh_token = COALESCE($4, refresh_token), expires_at = $5,
                 version = version + 1, refreshed_at = now(), updated_at = now()
             WHERE id = $1 AND version = $2",
            id,
            version,
            access,
            refresh,
            tokens.expires_at,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        PairOwner::Account(id) => sqlx::query!(
            "UPDATE account_credentials
             SET access_token = $3, refresh_token = COALESCE($4, refresh_token), expires_at = $5,
                 version = version + 1, updated_at = now()
             WHERE account_id = $1 AND version = $2",
            id,
            version,
            access,
            refresh,
            tokens.expires_at,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    Ok(replaced == 1)
}

/// Where an account's usable pair lives: its own columns when it has a token of its own (or no
/// grant), else its grant's.
async fn pair_owner(tx: &mut PgConnection, account_id: Uuid) -> Result<Option<PairOwner>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT grant_id, access_token IS NOT NULL AS \"own!\" FROM account_credentials WHERE account_id = $1",
        account_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|row| match row.grant_id {
        Some(grant_id) if !row.own => PairOwner::Grant(grant_id),
        _ => PairOwner::Account(account_id),
    }))
}

/// The owner and version of the pair `account_id` uses: what a refresh job is asked to refresh.
pub async fn pair_version(tx: &mut PgConnection, account_id: Uuid) -> Result<Option<(PairOwner, i64)>, sqlx::Error> {
    let Some(owner) = pair_owner(tx, account_id).await? else { return Ok(None) };
    let version = match owner {
        PairOwner::Grant(id) => {
            sqlx::query_scalar!("SELECT version FROM grant_credentials WHERE id = $1", id)
                .fetch_optional(&mut *tx)
                .await?
        }
        PairOwner::Account(id) => {
            sqlx::query_scalar!("SELECT version FROM account_credentials WHERE account_id = $1", id)
                .fetch_optional(&mut *tx)
                .await?
        }
    };
    Ok(version.map(|version| (owner, version)))
}

/// The tokens `account_id` publishes with, opened. Takes the owner's row lock until the
/// transaction ends (at once outside one), which serialises refreshes of one pair (every account
/// of a grant) across every worker, and makes a reader wait for a refresh under way.
pub async fn load_account_tokens(
    tx: &mut PgConnection,
    keyring: &Keyring,
    account_id: Uuid,
) -> Result<Option<StoredTokens>, CredentialError> {
    let Some(owner) = pair_owner(tx, account_id).await? else { return Ok(None) };
    let row = match owner {
        PairOwner::Grant(id) => sqlx::query!(
            "SELECT access_token, refresh_token, expires_at, version, refreshed_at FROM grant_credentials
             WHERE id = $1 FOR UPDATE",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.access_token, row.refresh_token, row.expires_at, row.version, row.refreshed_at)),
        PairOwner::Account(id) => sqlx::query!(
            "SELECT access_token, refresh_token, expires_at, version FROM account_credentials
             WHERE account_id = $1 FOR UPDATE",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.access_token, row.refresh_token, row.expires_at, row.version, None)),
    };
    let Some((access, refresh, expires_at, version, refreshed_at)) = row else { return Ok(None) };
    let access_token = access.map(|sealed| owner.open(keyring, "access_token", &sealed)).transpose()?;
    let refresh_token = refresh.map(|sealed| owner.open(keyring, "refresh_token", &sealed)).transpose()?;
    Ok(Some(StoredTokens { access_token, refresh_token, expires_at, version, owner, refreshed_at }))
}

/// The connected accounts that use `owner`'s pair (a grant's: every account it reached that
/// has no token of its own), and, with `all`, also those with a token of their own.
pub async fn accounts_using(tx: &mut PgConnection, owner: PairOwner, all: bool) -> Result<Vec<Uuid>, sqlx::Error> {
    match owner {
        PairOwner::Account(id) => Ok(vec![id]),
        PairOwner::Grant(id) => {
            sqlx::query_scalar!(
                "SELECT c.account_id FROM account_credentials c JOIN accounts a ON a.id = c.account_id
                 WHERE c.grant_id = $1 AND a.status = 'connected' AND ($2 OR c.access_token IS NULL)
                 ORDER BY c.account_id",
                id,
                all
            )
            .fetch_all(&mut *tx)
            .await
        }
    }
}

/// A token to revoke on the platform, still sealed for its owner.
#[derive(Debug)]
pub struct Revocation {
    pub owner: PairOwner,
    /// `refresh_token` or `access_token`.
    pub column: String,
    pub sealed: String,
}

/// Forgets an account's tokens (a disconnect): its own are wiped and it leaves its grant. The
/// grant's pair is forgotten too, and handed back for revocation, only when no other connected
/// account uses the grant: disconnecting one page must not log out its siblings. The account's
/// row stays, so a reconnect bumps the version. Call it after the account is marked
/// disconnected, in the same transaction.
pub async fn wipe_account_tokens(tx: &mut PgConnection, account_id: Uuid) -> Result<Option<Revocation>, sqlx::Error> {
    let old = sqlx::query!(
        "SELECT grant_id, access_token, refresh_token FROM account_credentials WHERE account_id = $1 FOR UPDATE",
        account_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE account_credentials
         SET access_token = NULL, refresh_token = NULL, expires_at = NULL, grant_id = NULL,
             version = version + 1, updated_at = now()
         WHERE account_id = $1",
        account_id
    )
    .execute(&mut *tx)
    .await?;
    let Some(old) = old else { return Ok(None) };
    let Some(grant_id) = old.grant_id else {
        return Ok(revocation(PairOwner::Account(account_id), old.refresh_token, old.access_token));
    };
    // Held until commit: two siblings disconnected at once both count the other, in turn.
    let grant =
        sqlx::query!("SELECT access_token, refresh_token FROM grant_credentials WHERE id = $1 FOR UPDATE", grant_id)
            .fetch_optional(&mut *tx)
            .await?;
    let others = accounts_using(tx, PairOwner::Grant(grant_id), true).await?;
    if !others.is_empty() {
        return Ok(None);
    }
    sqlx::query!(
        "UPDATE account_credentials SET grant_id = NULL, version = version + 1, updated_at = now() WHERE grant_id = $1",
        grant_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM grant_credentials WHERE id = $1", grant_id).execute(&mut *tx).await?;
    Ok(grant.and_then(|grant| revocation(PairOwner::Grant(grant_id), grant.refresh_token, grant.access_token)))
}

/// The token to revoke with: the refresh token if there is one (it reaches the whole grant),
/// else the access token.
fn revocation(owner: PairOwner, refresh: Option<String>, access: Option<String>) -> Option<Revocation> {
    match (refresh, access) {
        (Some(sealed), _) => Some(Revocation { owner, column: "refresh_token".into(), sealed }),
        (None, Some(sealed)) => Some(Revocation { owner, column: "access_token".into(), sealed }),
        (None, None) => None,
    }
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

/// Every sealed column: (table, key column, sealed column). Re-encryption walks these.
const SEALED_COLUMNS: &[(&str, &str, &str)] = &[
    ("account_credentials", "account_id", "access_token"),
    ("account_credentials", "account_id", "refresh_token"),
    ("grant_credentials", "id", "access_token"),
    ("grant_credentials", "id", "refresh_token"),
    ("connect_session_secrets", "session_id", "pkce_verifier"),
    ("connect_session_secrets", "session_id", "code"),
    ("oauth_app_secrets", "app_id", "client_secret"),
    ("idempotency_keys", "claim", "sealed_body"),
    ("publish_checkpoints", "id", "state"),
    ("webhook_secrets", "endpoint_id", "secret"),
    ("webhook_secrets", "endpoint_id", "previous_secret"),
    ("webhook_secrets", "endpoint_id", "headers"),
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
