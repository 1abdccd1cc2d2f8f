//! What the jobs read of an account, typed, with its tokens opened where they need them: one
//! read each, shared, instead of an account query per job.

use crate::domain::account::AccountStatus;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{CredentialError, PairOwner};
use crate::crypto::Keyring;

/// An account as the account jobs (refresh, revoke) see it: whose it is, where, through which
/// app. Its tokens come with [`super::load_account_tokens`], under the pair's lock.
#[derive(Debug, Clone)]
pub struct JobAccount {
    pub project_id: Uuid,
    pub platform: String,
    /// The project's own OAuth app; `None`: the platform's managed one.
    pub app_id: Option<Uuid>,
    pub status: AccountStatus,
    pub last_refresh_at: Option<DateTime<Utc>>,
}

/// Account `account_id`, if it exists.
pub async fn job_account(tx: &mut PgConnection, account_id: Uuid) -> Result<Option<JobAccount>, sqlx::Error> {
    sqlx::query_as!(
        JobAccount,
        r#"SELECT project_id, platform, app_id, status AS "status: AccountStatus", last_refresh_at FROM accounts WHERE id = $1"#,
        account_id
    )
    .fetch_optional(&mut *tx)
    .await
}

/// An account as a publish sees it: where it publishes, and the access token it uses (its own
/// where the platform issued one, else its grant's), opened.
#[derive(Clone)]
pub struct PublishAccount {
    pub platform: String,
    pub platform_user_id: String,
    pub status: AccountStatus,
    pub app_id: Option<Uuid>,
    /// The project's own app's client id (the per-app limit's key), when it has one.
    pub app_client_id: Option<String>,
    pub access_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The accounts `account_ids` as publishes see them, by id: one statement for a whole batch of
/// publish jobs (the hot path of publishing).
pub async fn publish_accounts(
    connection: &mut PgConnection,
    keyring: &Keyring,
    account_ids: &[Uuid],
) -> Result<HashMap<Uuid, PublishAccount>, CredentialError> {
    let rows = sqlx::query!(
        r#"SELECT a.id AS "id!", a.platform AS "platform!",
                  a.platform_user_id AS "platform_user_id!", a.status AS "status!: AccountStatus", a.app_id,
                  o.client_id AS "app_client_id?", c.access_token AS "own_access_token?",
                  c.expires_at AS "own_expires_at?", g.id AS "grant_id?", g.access_token AS "grant_access_token?",
                  g.expires_at AS "grant_expires_at?"
           FROM accounts a
           LEFT JOIN oauth_apps o ON o.id = a.app_id AND o.project_id = a.project_id AND o.platform = a.platform
                                 AND o.deleted_at IS NULL
           LEFT JOIN account_credentials c ON c.account_id = a.id
           LEFT JOIN grant_credentials g ON g.id = c.grant_id
           WHERE a.id = ANY($1)"#,
        account_ids,
    )
    .fetch_all(&mut *connection)
    .await?;
    let mut accounts = HashMap::with_capacity(rows.len());
    for row in rows {
        // The account's own token where the platform issued one, else its grant's.
        let (owner, sealed, expires_at) = match (row.own_access_token, row.grant_id) {
            (Some(own), _) => (PairOwner::Account(row.id), Some(own), row.own_expires_at),
            (None, Some(grant_id)) => (PairOwner::Grant(grant_id), row.grant_access_token, row.grant_expires_at),
            (None, None) => (PairOwner::Account(row.id), None, None),
        };
        let access_token = sealed.map(|sealed| owner.open(keyring, "access_token", &sealed)).transpose()?;
        let account = PublishAccount {
            platform: row.platform,
            platform_user_id: row.platform_user_id,
            status: row.status,
            app_id: row.app_id,
            app_client_id: row.app_client_id,
            access_token,
            expires_at,
        };
        accounts.insert(row.id, account);
    }
    Ok(accounts)
}

/// A pair about to expire: the account to refresh it through, its grant (`None`: the
/// account's own pair), and the version seen, so the refresh renews that one only.
#[derive(Debug, Clone, Copy)]
pub struct ExpiringPair {
    pub account_id: Uuid,
    pub grant_id: Option<Uuid>,
    pub version: i64,
}

/// The pairs with a refresh token that expire within their platform's margin (`margins`, by
/// platform name): each grant with a connected account that uses it (named after one of its
/// accounts), and each account's own pair (accounts connected before grants existed). At most
/// 10 000 of each a call.
pub async fn expiring_pairs(
    pool: &PgPool,
    margins: &[(&str, chrono::Duration)],
) -> Result<Vec<ExpiringPair>, sqlx::Error> {
    let platforms: Vec<String> = margins.iter().map(|(name, _)| (*name).to_owned()).collect();
    let margins: Vec<f64> = margins.iter().map(|(_, margin)| margin.num_seconds() as f64).collect();
    let due = sqlx::query!(
        r#"(SELECT DISTINCT ON (g.id) c.account_id AS "account_id!", g.id AS grant_id, g.version AS "version!"
            FROM grant_credentials g
            JOIN account_credentials c ON c.grant_id = g.id AND c.access_token IS NULL
            JOIN accounts a ON a.id = c.account_id AND a.status = 'connected'
            JOIN unnest($1::text[], $2::float8[]) AS m(platform, margin_secs) ON m.platform = g.platform
            WHERE g.refresh_token IS NOT NULL AND g.expires_at < now() + make_interval(secs => m.margin_secs)
            ORDER BY g.id, c.account_id
            LIMIT 10000)
           UNION ALL
           (SELECT c.account_id, NULL::uuid, c.version
            FROM account_credentials c
            JOIN accounts a ON a.id = c.account_id
            JOIN unnest($1::text[], $2::float8[]) AS m(platform, margin_secs) ON m.platform = a.platform
            WHERE a.status = 'connected' AND c.grant_id IS NULL AND c.refresh_token IS NOT NULL
              AND c.expires_at < now() + make_interval(secs => m.margin_secs)
            LIMIT 10000)"#,
        &platforms,
        &margins,
    )
    .fetch_all(pool)
    .await?;
    Ok(due
        .into_iter()
        .map(|row| ExpiringPair { account_id: row.account_id, grant_id: row.grant_id, version: row.version })
        .collect())
}
