//! The worker runtime: claims jobs from the Postgres queue, runs them, reports how they ended.
//!
//! A plain tokio runtime, not apalis: apalis' worker model acknowledges one job at a time
//! through its storage, while this queue's speed comes from claiming and completing hundreds of
//! jobs per statement, and its safety from attempt-guarded completions. Per process:
//!
//! - a [`dispatcher`] per queue keeps a buffer of claimed jobs filled (claiming again at once
//!   after a full claim, otherwise waiting for a `NOTIFY`, the next due job within the poll
//!   interval, or the [`poll`]) and runs up to that queue's concurrency of them;
//! - one [`poll`] per process asks, once per poll interval and in one statement for every
//!   queue, which queues have jobs due soon, and wakes those: an idle worker rests;
//! - one [`completer`] flushes outcomes in batches: whatever has finished while the previous
//!   flush ran goes in the next, so a busy worker writes few statements and an idle one adds no
//!   delay;
//! - the [`leases`] keeper extends the leases of held jobs, rescues jobs whose worker vanished,
//!   and publishes queue depth.
//!
//! On shutdown a worker stops claiming, gives back the jobs it has not started, lets running
//! ones finish within the grace period, flushes, and exits. A job still running after that is
//! left to its lease: another worker rescues it once the lease runs out.

mod completer;
mod dispatcher;
mod leases;
mod poll;
pub mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_shared::config::QueueConfig;
use herald_shared::health::Health;
use herald_shared::queue::listener::{self, Wake};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use registry::{JobResult, JobRun, Outcome, Perform, Registry};

/// How a runtime claims, holds and drains jobs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Stored in `jobs.worker_id` while this process holds a job.
    pub worker_id: Uuid,
    pub queue: QueueConfig,
    /// How long running jobs may finish at shutdown.
    pub grace: Duration,
}

/// Counters since the runtime started (for tests, benchmarks and logs).
#[derive(Debug, Default)]
pub struct Stats {
    /// Claim statements made.
    pub claims: AtomicU64,
    /// Jobs those claims took.
    pub claimed: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub discarded: AtomicU64,
    /// Given back unstarted at shutdown.
    pub released: AtomicU64,
    /// Outcomes that changed nothing: the lease had expired and the job was rescued.
    pub stale: AtomicU64,
}

impl Stats {
    /// Jobs whose outcome has been written (ended or rescheduled).
    pub fn completed(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
            + self.retried.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.discarded.load(Ordering::Relaxed)
    }
}

/// What the parts of a runtime share.
struct Shared<C> {
    pool: PgPool,
    /// Connections for claims only, with `synchronous_commit` off: a claim lost in a database
    /// crash leaves its jobs available (or rescued after the lease), the same as a worker that
    /// died, so claims need not wait for the WAL flush. Enqueues and outcomes stay synchronous.
    claim_pool: PgPool,
    /// Connections of their own for extending leases and rescuing: when jobs keep every
    /// connection of `pool` busy, leases must still be extended on time, or running jobs lose
    /// them and are rescued while they run.
    lease_pool: PgPool,
    context: Arc<C>,
    registry: Registry<C>,
    settings: Settings,
    stats: Arc<Stats>,
    /// Jobs this process holds (claimed, not yet completed), with their attempt.
    held: Mutex<HashMap<Uuid, i32>>,
    /// Wakes each queue's dispatcher.
    wakes: HashMap<&'static str, Arc<Notify>>,
    /// What `/readyz` reports: a failing claim makes the worker unready.
    health: Arc<Health>,
}

impl<C> Shared<C> {
    fn wake(&self, which: Wake<'_>) {
        match which {
            Wake::Queue(queue) => {
                if let Some(wake) = self.wakes.get(queue) {
                    wake.notify_one();
                }
            }
            Wake::All => self.wakes.values().for_each(|wake| wake.notify_one()),
        }
    }

    fn hold(&self, jobs: impl IntoIterator<Item = (Uuid, i32)>) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.extend(jobs);
    }

    fn release_hold(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in ids {
            held.remove(&id);
        }
    }

    fn held(&self) -> Vec<(Uuid, i32)> {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.iter().map(|(id, attempt)| (*id, *attempt)).collect()
    }
}

/// A worker runtime over `registry`, running jobs with `context`.
pub struct Runtime<C> {
    shared: Arc<Shared<C>>,
}

impl<C: Send + Sync + 'static> Runtime<C> {
    pub fn new(pool: PgPool, context: C, registry: Registry<C>, settings: Settings) -> Self {
        let queues = registry.queues();
        let wakes = queues.keys().map(|queue| (*queue, Arc::new(Notify::new()))).collect();
        let claim_pool = herald_shared::db::relaxed_commit_pool(&pool, u32::try_from(queues.len()).unwrap_or(u32::MAX));
        let lease_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let shared = Shared {
            pool,
            claim_pool,
            lease_pool,
            context: Arc::new(context),
            registry,
            settings,
            stats: Arc::default(),
            held: Mutex::default(),
            wakes,
            health: Arc::default(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Reports claims to `health` (the process's, which its ops server reads).
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.health = health;
        }
        self
    }

    /// The counters, live.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Runs until `shutdown`, then drains (see the module documentation).
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let background = CancellationToken::new();
        let (completions, completed) = mpsc::unbounded_channel();

        let listening = {
            let shared = shared.clone();
            tokio::spawn(listener::run(shared.pool.clone(), move |which| shared.wake(which), background.clone()))
        };
        let keeping_leases = tokio::spawn(leases::run(shared.clone(), background.clone()));
        let polling = tokio::spawn(poll::run(shared.clone(), background.clone()));
        let drained = CancellationToken::new();
        let completing = tokio::spawn(completer::run(shared.clone(), completed, drained.clone()));

        let mut dispatchers = tokio::task::JoinSet::new();
        for (queue, kinds) in shared.registry.queues() {
            let dispatcher = dispatcher::Dispatcher::new(shared.clone(), queue, kinds, completions.clone());
            dispatchers.spawn(dispatcher.run(shutdown.clone()));
        }
        drop(completions);
        while let Some(ended) = dispatchers.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a dispatcher stopped unexpectedly");
            }
        }
        // The dispatchers have waited for their jobs (or the grace period ran out): the
        // completer flushes what has arrived and ends.
        drained.cancel();
        if let Err(error) = completing.await {
            tracing::error!(%error, "the completer stopped unexpectedly");
        }
        background.cancel();
        let _ = tokio::join!(listening, keeping_leases, polling);
    }
}
