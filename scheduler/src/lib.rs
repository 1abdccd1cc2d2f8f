//! herald's scheduler: turns due state into jobs (publish due deliveries, refresh expiring
//! credentials, prune finished jobs). Replicas are safe: every job it emits carries a dedup key,
//! so two replicas emitting the same job leave one in the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use herald_shared::Config;
use herald_shared::heartbeat::{self, Role};
use herald_shared::jobs::PruneExpired;
use herald_shared::queue::{self, Enqueued, NewJob};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);

/// Runs a scheduler until `shutdown`.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let pool = herald_shared::db::connect_and_migrate(&config).await?;
    let scheduler_id = Uuid::now_v7();
    tracing::info!(%scheduler_id, "scheduler started");
    let heartbeat =
        tokio::spawn(heartbeat::run(pool.clone(), Role::Scheduler, scheduler_id, config.heartbeat(), shutdown.clone()));
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = prune.tick() => emit_prune(&pool).await,
        }
    }
    let _ = heartbeat.await;
    tracing::info!(%scheduler_id, "scheduler stopped");
    Ok(())
}

async fn emit_prune(pool: &PgPool) {
    let emitted = match NewJob::of(&PruneExpired {}) {
        Ok(job) => queue::enqueue(pool, job).await.map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    match emitted {
        Ok(Enqueued::Queued(id)) => tracing::debug!(job.id = %id, "queued pruning of finished jobs"),
        Ok(Enqueued::Duplicate { .. }) => tracing::debug!("pruning of finished jobs is already queued"),
        Err(error) => tracing::warn!(%error, "cannot queue pruning of finished jobs"),
    }
}
