//! Publish checkpoints (`crate::platforms::PublishCheckpoints`), sealed: the small state an
//! adapter keeps so another worker can resume or look up a publish (an upload session URI grants
//! the upload, so it is never stored in the clear).

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::{CredentialError, open, seal};
use crate::crypto::Keyring;

const TABLE: &str = "publish_checkpoints";

/// The state kept for `reference`, opened.
pub async fn load_checkpoint(
    pool: &PgPool,
    keyring: &Keyring,
    reference: &str,
) -> Result<Option<String>, CredentialError> {
    let Some(row) = sqlx::query!("SELECT id, state FROM publish_checkpoints WHERE reference = $1", reference)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let state = open(keyring, TABLE, row.id, "state", &row.state)?;
    Ok(Some(state.expose_secret().to_owned()))
}

/// Saves (or replaces) `state` for `reference` on `platform`, sealed.
pub async fn save_checkpoint(
    pool: &PgPool,
    keyring: &Keyring,
    reference: &str,
    platform: &str,
    state: &str,
) -> Result<(), CredentialError> {
    // A replaced row keeps its id, so the state is sealed for the id it is stored under.
    let id = sqlx::query_scalar!("SELECT id FROM publish_checkpoints WHERE reference = $1", reference)
        .fetch_optional(pool)
        .await?
        .unwrap_or_else(Uuid::now_v7);
    let sealed = seal(keyring, TABLE, id, "state", &SecretString::from(state.to_owned()))?;
    sqlx::query!(
        "INSERT INTO publish_checkpoints (id, reference, platform, state) VALUES ($1, $2, $3, $4)
         ON CONFLICT (reference) DO UPDATE SET state = excluded.state, updated_at = now()
         WHERE publish_checkpoints.id = excluded.id",
        id,
        reference,
        platform,
        sealed
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets `reference`'s state.
pub async fn forget_checkpoint(pool: &PgPool, reference: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM publish_checkpoints WHERE reference = $1", reference).execute(pool).await?;
    Ok(())
}

/// Deletes checkpoints last written before `before`, `batch` a statement; how many went.
pub async fn prune_checkpoints(pool: &PgPool, before: DateTime<Utc>, batch: i64) -> Result<u64, sqlx::Error> {
    let mut pruned = 0;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM publish_checkpoints WHERE id IN (
                 SELECT id FROM publish_checkpoints WHERE updated_at < $1 LIMIT $2)",
            before,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += deleted;
        if deleted < batch as u64 {
            return Ok(pruned);
        }
    }
}
