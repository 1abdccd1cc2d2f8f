//! Idempotency keys: how long herald remembers them and the pruning of older ones. The api's
//! middleware (`herald_api::idempotency`) keeps and replays the answers.

use sqlx::PgPool;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Deletes up to `batch` idempotency records older than [`IDEMPOTENCY_WINDOW`]; returns how many.
pub async fn prune_idempotency_keys(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))",
        IDEMPOTENCY_WINDOW.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
