//! herald's scheduler: turns due state into jobs (publish due deliveries, refresh expiring
//! credentials, prune finished jobs). Replicas are safe: every job it emits carries a dedup key.

use std::sync::Arc;

use anyhow::Result;
use herald_shared::Config;
use herald_shared::heartbeat::{self, Role};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs a scheduler until `shutdown`.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let pool = herald_shared::db::connect_and_migrate(&config).await?;
    let scheduler_id = Uuid::now_v7();
    tracing::info!(%scheduler_id, "scheduler started");
    heartbeat::run(pool, Role::Scheduler, scheduler_id, config.heartbeat(), shutdown).await;
    tracing::info!(%scheduler_id, "scheduler stopped");
    Ok(())
}
