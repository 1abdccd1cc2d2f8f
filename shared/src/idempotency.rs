//! The storage side of `Idempotency-Key`: how long a key is remembered, the claim a request
//! holds on it, the response kept for replays and the pruning of expired records, each as the
//! one statement that does it. The HTTP side (which requests carry a key, waiting for the first
//! request, replaying its answer) is the api's middleware (`herald_api`'s `idempotency`). The
//! kept response is sealed ([`seal_response`]): it can carry a secret (a new API key's).

use std::time::Duration;

use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::crypto::{CryptoError, Keyring};

/// How long an `Idempotency-Key` is remembered.
pub const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A claim this old without a response belongs to a request that died (or is so slow that a
/// retry may take its place).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// The key a request holds while it is served.
#[derive(Clone, Debug)]
pub struct Claim {
    pub project_id: Uuid,
    pub key: String,
    /// Which request holds the key: a new one on every claim and takeover.
    pub token: Uuid,
}

/// The record of a key some request already claimed.
#[derive(Debug)]
pub struct Record {
    /// The method, path and body it was claimed for.
    pub fingerprint: Vec<u8>,
    pub claim: Uuid,
    /// The kept response's status, once there is one.
    pub status: Option<i16>,
    pub content_type: Option<String>,
    pub sealed_body: Option<String>,
    /// The claimer's effect committed.
    pub applied: bool,
    /// Older than [`ABANDONED_AFTER`].
    pub abandoned: bool,
}

/// Claims `key` for a request with `fingerprint`, or takes over a record older than [`WINDOW`];
/// the new claim's token, `None` when a live record holds the key.
pub async fn claim(
    pool: &PgPool,
    project_id: Uuid,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys AS k (project_id, idempotency_key, fingerprint)
               VALUES ($1, $2, $3)
               ON CONFLICT (project_id, idempotency_key) DO UPDATE
                   SET fingerprint = excluded.fingerprint, claim = excluded.claim, applied_at = NULL,
                       status = NULL, content_type = NULL, sealed_body = NULL, created_at = now()
                   WHERE k.created_at < now() - make_interval(secs => $4)
               RETURNING claim"#,
        project_id,
        key,
        fingerprint,
        WINDOW.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await
}

/// The record holding `key`, if any (a first request that failed with a 5xx gave it back).
pub async fn find(pool: &PgPool, project_id: Uuid, key: &str) -> Result<Option<Record>, sqlx::Error> {
    sqlx::query_as!(
        Record,
        r#"SELECT fingerprint, claim, status, content_type, sealed_body, applied_at IS NOT NULL AS "applied!",
                      created_at < now() - make_interval(secs => $3) AS "abandoned!"
               FROM idempotency_keys WHERE project_id = $1 AND idempotency_key = $2"#,
        project_id,
        key,
        ABANDONED_AFTER.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await
}

/// Takes over the abandoned claim `claim` of `key` if its effect never committed; the new
/// token. Waits on the row while the first request's transaction holds it, and then finds it
/// applied (`None`).
pub async fn take_over(pool: &PgPool, project_id: Uuid, key: &str, claim: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE idempotency_keys SET claim = gen_random_uuid(), created_at = now()
                     WHERE project_id = $1 AND idempotency_key = $2 AND claim = $3
                       AND applied_at IS NULL AND status IS NULL
                     RETURNING claim",
        project_id,
        key,
        claim,
    )
    .fetch_optional(pool)
    .await
}

/// Marks `claim` applied inside the transaction that records its effect, so the mark commits
/// exactly when the effect does; `false` when a retry took the key over (nothing is marked).
pub async fn mark_applied(tx: &mut PgConnection, claim: &Claim) -> Result<bool, sqlx::Error> {
    let fenced = sqlx::query!(
        "UPDATE idempotency_keys SET applied_at = now()
         WHERE project_id = $1 AND idempotency_key = $2 AND claim = $3 AND status IS NULL",
        claim.project_id,
        claim.key,
        claim.token,
    )
    .execute(tx)
    .await?;
    Ok(fenced.rows_affected() == 1)
}

/// Gives `claim`'s key back, unless its effect committed; whether it did.
pub async fn give_back(pool: &PgPool, claim: &Claim) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM idempotency_keys
             WHERE project_id = $1 AND idempotency_key = $2 AND claim = $3 AND applied_at IS NULL",
        claim.project_id,
        claim.key,
        claim.token,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Keeps the response `claim`'s request answered, its body sealed (or none), for replays.
pub async fn keep_response(
    pool: &PgPool,
    claim: &Claim,
    status: i16,
    content_type: Option<&str>,
    sealed_body: Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status = $4, content_type = $5, sealed_body = $6
             WHERE project_id = $1 AND idempotency_key = $2 AND claim = $3",
        claim.project_id,
        claim.key,
        claim.token,
        status,
        content_type,
        sealed_body,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes the records older than [`WINDOW`], `batch` rows a statement; how many in all.
pub async fn prune(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    crate::db::delete_in_batches(batch, || prune_batch(pool, batch)).await
}

async fn prune_batch(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))",
        WINDOW.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Seals the response kept for the claim `claim`, bound to it (a sealed body cannot be replayed
/// for another claim).
pub fn seal_response(keyring: &Keyring, claim: Uuid, body: &SecretString) -> Result<String, CryptoError> {
    crate::credentials::seal(keyring, "idempotency_keys", claim, "sealed_body", body)
}

/// Opens what [`seal_response`] sealed.
pub fn open_response(keyring: &Keyring, claim: Uuid, sealed: &str) -> Result<SecretString, CryptoError> {
    crate::credentials::open(keyring, "idempotency_keys", claim, "sealed_body", sealed)
}
