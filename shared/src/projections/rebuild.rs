//! `herald projections rebuild`: replay the whole log into empty read models.
//!
//! Runs in one transaction that first stops appends (`SHARE` lock on `events`), so the rebuilt
//! models match the log exactly, and a failure leaves the old models in place.

use sqlx::PgPool;

use super::{ProjectionError, apply};
use crate::events::RecordedEvent;

const BATCH: i64 = 2_000;

/// Every read model, children first (the order `TRUNCATE` needs without `CASCADE` surprises).
pub const READ_MODELS: &[&str] = &[
    "webhook_endpoints",
    "post_media",
    "deliveries",
    "posts",
    "media",
    "accounts",
    "connect_sessions",
    "oauth_apps",
    "api_keys",
    "projects",
];

/// Empties the read models and replays every event into them. Returns how many events it applied.
pub async fn rebuild(pool: &PgPool) -> Result<u64, ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("LOCK TABLE events IN SHARE MODE").execute(&mut *tx).await?;
    sqlx::query!(
        "TRUNCATE webhook_endpoints, post_media, deliveries, posts, media, accounts, connect_sessions, oauth_apps, api_keys, projects"
    )
    .execute(&mut *tx)
    .await?;
    let mut after = 0i64;
    let mut applied = 0u64;
    loop {
        // Position order is insertion order: a row is always inserted after the rows it refers to.
        let batch = sqlx::query_as!(
            RecordedEvent,
            r#"SELECT position, stream_id, version, event_type, schema_version, payload, metadata, project_id,
                      recorded_at, transaction_id::text::bigint AS "transaction_id!"
               FROM events WHERE position > $1 ORDER BY position LIMIT $2"#,
            after,
            BATCH,
        )
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            apply(&mut tx, event).await?;
            applied += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}
