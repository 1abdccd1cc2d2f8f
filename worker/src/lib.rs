//! herald workers: stateless processes that claim jobs from the Postgres queue, run them (token
//! exchange, credential refresh, publishing) and append the outcome as events. Scale by starting
//! more of them.
//!
//! - [`runtime`]: claiming, running, completing, leases; generic over the jobs it runs.
//! - [`jobs`]: herald's jobs and the registry that lists them.

pub mod jobs;
pub mod runtime;

use std::sync::Arc;

use anyhow::{Result, bail};
use herald_shared::Config;
use herald_shared::health::Health;
use herald_shared::heartbeat::{self, Role};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use runtime::{JobResult, JobRun, Outcome, Perform, Registry, Runtime, Settings};

/// Runs a worker until `shutdown`, then drains what it holds.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    run_reporting(config, shutdown, Arc::default()).await
}

/// [`run`], keeping `health` current (waiting for the database, running, stopping; claims
/// failing) for the process's `/readyz`.
pub async fn run_reporting(config: Arc<Config>, shutdown: CancellationToken, health: Arc<Health>) -> Result<()> {
    let registry = jobs::registry();
    let queues = registry.queues();
    if let Some(unknown) = config.queue.concurrency.keys().find(|queue| !queues.contains_key(queue.as_str())) {
        let known: Vec<&str> = queues.keys().copied().collect();
        bail!("HERALD_QUEUE__CONCURRENCY__{}: no such queue (herald has {})", unknown.to_uppercase(), known.join(", "));
    }
    let Some(pool) = herald_shared::db::wait_and_migrate(&config, &shutdown).await? else { return Ok(()) };
    health.running(&pool);
    let worker_id = Uuid::now_v7();
    tracing::info!(%worker_id, queues = ?queues.keys().collect::<Vec<_>>(), "worker started");
    let settings = Settings { worker_id, queue: config.queue.clone(), grace: config.shutdown_grace() };
    let context = jobs::Context::new(pool.clone(), config.clone())?;
    let runtime = Runtime::new(pool.clone(), context, registry, settings).with_health(health.clone());
    let heartbeat = tokio::spawn(heartbeat::run(pool, Role::Worker, worker_id, config.heartbeat(), shutdown.clone()));
    let stopping = {
        let (health, shutdown) = (health.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            health.stopping();
        })
    };
    runtime.run(shutdown).await;
    stopping.abort();
    let _ = heartbeat.await;
    tracing::info!(%worker_id, "worker stopped");
    Ok(())
}
