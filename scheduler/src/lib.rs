//! herald's scheduler: turns due state into jobs (publish due deliveries, refresh expiring
//! credentials, prune finished jobs, turn events into webhook messages), and ends what a job left half-way when it ended without an
//! outcome. Replicas are safe: every job it emits carries a dedup key,
//! so two replicas emitting the same job leave one in the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use herald_shared::Config;
use herald_shared::credentials;
use herald_shared::health::Health;
use herald_shared::heartbeat::{self, Role};
use herald_shared::jobs::{PruneExpired, RefreshCredentials};
use herald_shared::platforms::Platforms;
use herald_shared::queue::{self, Enqueued, NewJob};
use herald_shared::telemetry::QueueGauges;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod webhooks;

/// How often the queue's depth and the pool's connections are measured for `/metrics`.
const GAUGES_EVERY: Duration = Duration::from_secs(15);
/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);
/// How often expiring credentials are looked for. The margins (each platform's pace) are
/// minutes to days, so a minute is early enough.
const REFRESH_SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often deliveries left pending are looked for. Commands queue their deliveries' jobs
/// themselves (with `run_at` = the due time, so the queue wakes a worker on time); this sweep
/// only catches what nothing queued.
const DELIVERY_SWEEP_EVERY: Duration = Duration::from_secs(15);
/// How long after its job ended, beyond the platform timeout, an abandoned delivery or session
/// is ended: a worker whose lease ran out while it was slow, not dead, has answered by then.
const ABANDONED_GRACE_MARGIN: Duration = Duration::from_secs(5);

/// Runs a scheduler until `shutdown`.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    run_reporting(config, shutdown, Arc::default()).await
}

/// [`run`], keeping `health` current for the process's `/readyz`.
pub async fn run_reporting(config: Arc<Config>, shutdown: CancellationToken, health: Arc<Health>) -> Result<()> {
    let platforms = Platforms::from_config(&config)?;
    let Some(pool) = herald_shared::db::wait_and_migrate(&config, &shutdown).await? else { return Ok(()) };
    health.running(&pool);
    let scheduler_id = Uuid::now_v7();
    tracing::info!(%scheduler_id, "scheduler started");
    let heartbeat =
        tokio::spawn(heartbeat::run(pool.clone(), Role::Scheduler, scheduler_id, config.heartbeat(), shutdown.clone()));
    let dispatcher = tokio::spawn(webhooks::run(pool.clone(), config.clone(), shutdown.clone()));
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(REFRESH_SWEEP_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deliveries = tokio::time::interval(DELIVERY_SWEEP_EVERY);
    deliveries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges_tick = tokio::time::interval(GAUGES_EVERY);
    gauges_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = QueueGauges::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = gauges_tick.tick() => {
                gauges.report(&pool).await;
                herald_shared::telemetry::record_pool("main", &pool);
            }
            _ = prune.tick() => emit_prune(&pool).await,
            _ = deliveries.tick() => {
                match herald_shared::commands::deliveries::queue_due(&pool, chrono::Duration::minutes(1), 1000).await {
                    Ok(0) => {}
                    Ok(queued) => tracing::info!(queued, "queued deliveries nothing had queued"),
                    Err(error) => tracing::warn!(error = %format!("{error:#}"), "cannot queue due deliveries"),
                }
                end_abandoned(&pool, &config).await;
            }
            _ = refresh.tick() => {
                if let Err(error) = emit_refreshes(&pool, &platforms).await {
                    tracing::warn!(error = %format!("{error:#}"), "cannot queue credential refreshes");
                }
            }
        }
    }
    health.stopping();
    let _ = heartbeat.await;
    match dispatcher.await {
        Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), "the webhook dispatcher stopped"),
        Err(error) => tracing::warn!(%error, "the webhook dispatcher panicked"),
        Ok(Ok(())) => {}
    }
    tracing::info!(%scheduler_id, "scheduler stopped");
    Ok(())
}

/// Ends deliveries and connect sessions whose job ended without recording their outcome
/// (`herald_shared::commands::abandoned`), once a worker that was only slow would have finished.
async fn end_abandoned(pool: &PgPool, config: &Config) {
    let grace = config.platform_timeout() + ABANDONED_GRACE_MARGIN;
    match herald_shared::commands::abandoned::end_abandoned(pool, grace, 1000).await {
        Ok(ended) if ended.total() == 0 => {}
        Ok(ended) => tracing::warn!(
            unknown = ended.unknown,
            failed = ended.failed,
            sessions = ended.sessions,
            imports = ended.imports,
            "ended deliveries, connect sessions and media imports whose job ended without an outcome"
        ),
        Err(error) => tracing::warn!(error = %format!("{error:#}"), "cannot end abandoned deliveries"),
    }
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

/// Queues a refresh for every pair about to expire within its platform's margin (the
/// configured one, `platforms`' pace): each grant with a connected account that uses it (one
/// job per grant, named after one of its accounts), and each account's own pair (accounts
/// connected before grants existed). The dedup key (one per grant or account) makes replicas
/// and repeated sweeps harmless; each job carries the version it saw, so it refreshes that one
/// only.
pub async fn emit_refreshes(pool: &PgPool, platforms: &Platforms) -> Result<usize> {
    let margins: Vec<(&str, chrono::Duration)> =
        platforms.paces().map(|(name, pace)| (name, pace.refresh_margin)).collect();
    let due = credentials::expiring_pairs(pool, &margins).await?;
    let jobs = due
        .iter()
        .map(|row| {
            NewJob::of(&RefreshCredentials {
                account_id: row.account_id,
                grant_id: row.grant_id,
                seen_version: Some(row.version),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let queued = queue::enqueue_many(pool, &jobs).await?;
    let fresh = queued.iter().filter(|outcome| matches!(outcome, Enqueued::Queued(_))).count();
    if fresh > 0 {
        tracing::info!(count = fresh, "queued credential refreshes");
    }
    Ok(fresh)
}
