//! Pruning finished jobs past the retention window, expired idempotency records, the sandbox's
//! spent state and old connect-session secrets, and sweeping the media store of deleted items'
//! objects, expired uploads and orphans (`herald_shared::retention`), in batches so no
//! statement holds locks for long.

use anyhow::Context as _;
use herald_shared::jobs::PruneExpired;
use herald_shared::queue::maintenance;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

/// Rows one delete takes.
const BATCH: i64 = 10_000;
/// How long a publish checkpoint outlives its last write: longer than any retry of a publish
/// (its job's attempts and a look-up's waits), so only those of deliveries that ended without
/// an outcome the adapter saw (ended `unknown` by the scheduler) are left for this.
const CHECKPOINT_RETENTION_DAYS: i64 = 8;

impl Perform<Context> for PruneExpired {
    async fn perform(self, context: &Context, _run: JobRun) -> JobResult {
        let retention = context.config.queue.retention();
        let mut pruned = 0;
        loop {
            let deleted = maintenance::prune_finished(&context.pool, retention, BATCH)
                .await
                .with_context(|| format!("pruning stopped after {pruned} jobs"))?;
            pruned += deleted;
            if deleted < BATCH as u64 {
                break;
            }
        }
        let forgotten = herald_shared::idempotency::prune(&context.pool, BATCH)
            .await
            .context("pruning idempotency records stopped")?;
        if pruned + forgotten > 0 {
            tracing::info!(pruned, forgotten, "pruned finished jobs and expired idempotency records");
        }
        let spent = herald_shared::retention::prune(&context.pool, BATCH)
            .await
            .context("pruning sandbox state and session secrets stopped")?;
        if spent.total() > 0 {
            tracing::info!(?spent, "pruned spent sandbox state and session secrets");
        }
        let checkpoints = herald_shared::credentials::prune_checkpoints(
            &context.pool,
            chrono::Utc::now() - chrono::Duration::days(CHECKPOINT_RETENTION_DAYS),
            BATCH,
        )
        .await
        .context("pruning publish checkpoints stopped")?;
        if checkpoints > 0 {
            tracing::info!(checkpoints, "pruned publish checkpoints of publishes that ended without forgetting them");
        }
        let messages =
            herald_shared::webhooks::outbox::prune(&context.pool, context.config.webhooks.retention(), BATCH)
                .await
                .context("pruning webhook messages stopped")?;
        if messages > 0 {
            tracing::info!(messages, "pruned ended webhook messages and their attempts");
        }
        // Built here rather than kept in the context: the job runs rarely, and a client made
        // per run costs nothing next to what it sweeps.
        let store = herald_shared::media::MediaStore::from_config(&context.config).context("the media store")?;
        let swept = herald_shared::retention::sweep_media(
            &context.pool,
            &store,
            herald_shared::retention::MEDIA_PURGE_AFTER,
            herald_shared::retention::ORPHAN_GRACE,
            BATCH,
        )
        .await
        .context("sweeping the media store stopped")?;
        if swept != herald_shared::retention::MediaSwept::default() {
            tracing::info!(?swept, "swept the media store");
        }
        Ok(Outcome::Done)
    }
}
