//! herald workers: stateless processes that claim jobs from the Postgres queue, run them (token
//! exchange, credential refresh, publishing) and append the outcome as events. Scale by starting
//! more of them.

use std::sync::Arc;

use anyhow::Result;
use herald_shared::Config;
use herald_shared::heartbeat::{self, Role};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs a worker until `shutdown`, then drains what it holds.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let pool = herald_shared::db::connect_and_migrate(&config).await?;
    let worker_id = Uuid::now_v7();
    tracing::info!(%worker_id, "worker started");
    heartbeat::run(pool, Role::Worker, worker_id, config.heartbeat(), shutdown).await;
    tracing::info!(%worker_id, "worker stopped");
    Ok(())
}
