//! Pruning finished jobs past the retention window, expired idempotency records, the sandbox's
//! spent state and old connect-session secrets (`herald_shared::retention`), in batches so no
//! statement holds locks for long.

use herald_shared::jobs::PruneExpired;
use herald_shared::queue::maintenance;

use super::Context;
use crate::runtime::{JobRun, Outcome, Perform};

/// Rows one delete takes.
const BATCH: i64 = 10_000;

impl Perform<Context> for PruneExpired {
    async fn perform(self, context: &Context, _run: JobRun) -> Outcome {
        let retention = context.config.queue.retention();
        let mut pruned = 0;
        loop {
            match maintenance::prune_finished(&context.pool, retention, BATCH).await {
                Ok(deleted) => {
                    pruned += deleted;
                    if deleted < BATCH as u64 {
                        break;
                    }
                }
                Err(error) => return Outcome::Retry(format!("pruning stopped after {pruned} jobs: {error}")),
            }
        }
        let mut forgotten = 0;
        loop {
            match herald_shared::idempotency::prune_idempotency_keys(&context.pool, BATCH).await {
                Ok(deleted) => {
                    forgotten += deleted;
                    if deleted < BATCH as u64 {
                        break;
                    }
                }
                Err(error) => return Outcome::Retry(format!("pruning idempotency records stopped: {error}")),
            }
        }
        if pruned + forgotten > 0 {
            tracing::info!(pruned, forgotten, "pruned finished jobs and expired idempotency records");
        }
        match herald_shared::retention::prune(&context.pool, BATCH).await {
            Ok(spent) if spent.total() > 0 => tracing::info!(?spent, "pruned spent sandbox state and session secrets"),
            Ok(_) => {}
            Err(error) => return Outcome::Retry(format!("pruning sandbox state and session secrets stopped: {error}")),
        }
        Outcome::Done
    }
}
