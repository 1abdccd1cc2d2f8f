//! Pruning finished jobs past the retention window, in batches so no statement holds locks
//! for long.

use herald_shared::jobs::PruneFinishedJobs;
use herald_shared::queue::maintenance;

use super::Context;
use crate::runtime::{JobRun, Outcome, Perform};

/// Rows one delete takes.
const BATCH: i64 = 10_000;

impl Perform<Context> for PruneFinishedJobs {
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
        if pruned > 0 {
            tracing::info!(pruned, "pruned finished jobs");
        }
        Outcome::Done
    }
}
