//! `make bench-queue`: how fast the queue takes and drains jobs.
//!
//! 1. Enqueue N no-op jobs in bulk (`enqueue_many`, 10,000 a statement).
//! 2. Drain them with the worker runtime: batched claims under leases, batched completions
//!    that move each job to `finished_jobs`, lease extension and rescue running; the same
//!    code path a deployed worker takes.
//! 3. Pickup latency at low load: one job at a time, from the enqueue's commit to the job
//!    starting, woken by NOTIFY.
//! 4. The same drain behind a 1,000,000-job backlog.
//! 5. What an idle `herald dev` (api, scheduler and worker in one process, nothing to do) costs
//!    the database: statements a second, counted by `pg_stat_statements` over a quiet window
//!    (transactions a second from `pg_stat_database` where the server has not loaded it).
// A benchmark that cannot set up should stop loudly; it is never shipped code.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_shared::config::QueueConfig;
use herald_shared::queue::{Job, NewJob, enqueue, enqueue_many};
use herald_worker::runtime::{JobResult, JobRun, Outcome, Perform, Registry, Runtime, Settings, Stats};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const JOBS: usize = 100_000;
const BACKLOG: usize = 1_000_000;

/// `BENCH_QUEUE_JOBS` and `BENCH_QUEUE_BACKLOG` shrink the runs while tuning;
/// `BENCH_QUEUE_CONCURRENCY` and `BENCH_QUEUE_CLAIM_BATCH` try other runtime settings.
fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}
const ENQUEUE_CHUNK: usize = 10_000;
/// How long the idle `herald dev` settles, then how long its statements are counted.
const IDLE_SETTLE: Duration = Duration::from_secs(5);
const IDLE_WINDOW: Duration = Duration::from_secs(20);
const PICKUP_SAMPLES: usize = 200;

/// Does nothing; tells the bench when it started if asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NoOp {
    report: bool,
}

impl Job for NoOp {
    const KIND: &'static str = "bench.noop";
    const QUEUE: &'static str = "bench";
}

struct Context {
    started: mpsc::UnboundedSender<Instant>,
}

impl Perform<Context> for NoOp {
    async fn perform(self, context: &Context, _run: JobRun) -> JobResult {
        if self.report {
            let _ = context.started.send(Instant::now());
        }
        Ok(Outcome::Done)
    }
}

fn settings() -> Settings {
    let queue = QueueConfig {
        lease_secs: 30,
        poll_interval_ms: 1000,
        claim_batch: count("BENCH_QUEUE_CLAIM_BATCH", 1000),
        default_concurrency: count("BENCH_QUEUE_CONCURRENCY", 1000),
        concurrency: BTreeMap::new(),
        retention_hours: 24,
    };
    Settings { worker_id: Uuid::now_v7(), queue, grace: Duration::from_secs(10) }
}

struct Running {
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(pool: &PgPool, started: mpsc::UnboundedSender<Instant>) -> Running {
    let runtime = Runtime::new(pool.clone(), Context { started }, Registry::default().register::<NoOp>(), settings());
    let stats = runtime.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runtime.run(shutdown.clone()));
    Running { stats, shutdown, task }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// Enqueues `count` no-op jobs; returns jobs per second.
async fn enqueue_bulk(pool: &PgPool, count: usize) -> f64 {
    let began = Instant::now();
    let mut left = count;
    while left > 0 {
        let chunk: Vec<NewJob> =
            (0..left.min(ENQUEUE_CHUNK)).map(|_| NewJob::of(&NoOp { report: false }).unwrap()).collect();
        enqueue_many(pool, &chunk).await.unwrap();
        left -= chunk.len();
    }
    count as f64 / began.elapsed().as_secs_f64()
}

/// Drains `count` queued jobs with a fresh runtime; returns jobs per second.
async fn drain(pool: &PgPool, count: usize) -> f64 {
    sqlx::query("VACUUM ANALYZE jobs").execute(pool).await.unwrap();
    let (started, _ignored) = mpsc::unbounded_channel();
    let began = Instant::now();
    let running = start(pool, started);
    while running.stats.completed() < count as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = began.elapsed();
    assert_eq!(running.stats.stale.load(Ordering::Relaxed), 0, "no lease expired");
    running.stop().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(pool).await.unwrap();
    assert_eq!(left, 0, "every job was drained");
    sqlx::query("TRUNCATE finished_jobs").execute(pool).await.unwrap();
    count as f64 / elapsed.as_secs_f64()
}

/// Enqueue-to-start latency, one job at a time.
async fn pickup(pool: &PgPool) -> (f64, f64) {
    // As autovacuum would have by now in a long-running deployment: clear the dead index
    // entries the drain left, which every claim would otherwise step over.
    sqlx::query("VACUUM ANALYZE jobs").execute(pool).await.unwrap();
    let (started, mut starts) = mpsc::unbounded_channel();
    let running = start(pool, started);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = Vec::with_capacity(PICKUP_SAMPLES);
    for sample in 0..PICKUP_SAMPLES {
        enqueue(pool, NewJob::of(&NoOp { report: true }).unwrap()).await.unwrap();
        let committed = Instant::now();
        let began = starts.recv().await.unwrap();
        samples.push(began.saturating_duration_since(committed));
        // Idle gaps of varying length, so the worker is asleep when the next job arrives.
        tokio::time::sleep(Duration::from_millis(5 + (sample % 7) as u64 * 3)).await;
    }
    running.stop().await;
    (common::percentile_ms(&mut samples, 50.0), common::percentile_ms(&mut samples, 99.0))
}

/// What an idle database user costs: how it was counted, and the count a second.
struct IdleCost {
    counted: &'static str,
    per_second: f64,
}

/// Starts the real `herald dev` on a database of its own, lets it settle, and counts what it
/// asks of the database while it has nothing to do.
async fn idle_cost() -> IdleCost {
    let (pool, url) = common::fresh_database("herald_bench_idle").await;
    let data_dir = std::env::temp_dir().join(format!("herald-bench-idle-{}", std::process::id()));
    let mut herald = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("dev")
        .env("DATABASE_URL", &url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_DATA_DIR", &data_dir)
        .env("HERALD_LOG", "warn")
        .env("HERALD_ENCRYPTION_KEY", herald_shared::crypto::Keyring::generate_base64().expose_secret())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald dev");
    tokio::time::sleep(IDLE_SETTLE).await;
    let tracked = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await.is_ok();
    let transactions =
        "SELECT (xact_commit + xact_rollback)::float8 FROM pg_stat_database WHERE datname = current_database()";
    let before: f64 = if tracked { 0.0 } else { sqlx::query_scalar(transactions).fetch_one(&pool).await.unwrap() };
    tokio::time::sleep(IDLE_WINDOW).await;
    let count = if tracked {
        // Every statement of this database but the bench's own look-ups.
        let statements = "SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
                          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                            AND query NOT ILIKE '%pg_stat%'";
        sqlx::query_scalar::<_, f64>(statements).fetch_one(&pool).await.unwrap()
    } else {
        // pg_stat_database is flushed by each backend at most once a second: wait for it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        sqlx::query_scalar::<_, f64>(transactions).fetch_one(&pool).await.unwrap() - before
    };
    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(herald.id().unwrap().to_string()).status().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), herald.wait()).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let counted = if tracked { "statements (pg_stat_statements)" } else { "transactions (pg_stat_database)" };
    IdleCost { counted, per_second: count / IDLE_WINDOW.as_secs_f64() }
}

#[tokio::main]
async fn main() {
    let (pool, _url) = common::fresh_database("herald_bench_queue").await;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await.unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await.unwrap();
    let cores = std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(1);
    let settings = settings();
    println!("queue bench: {cores} cores, fsync={fsync}, synchronous_commit={synchronous_commit}");
    println!(
        "runtime: concurrency {}, claim batch {}, lease {}s (extension and rescue running)\n",
        settings.queue.default_concurrency, settings.queue.claim_batch, settings.queue.lease_secs
    );

    let (jobs, backlog) = (count("BENCH_QUEUE_JOBS", JOBS), count("BENCH_QUEUE_BACKLOG", BACKLOG));
    let enqueue_rate = enqueue_bulk(&pool, jobs).await;
    let drain_rate = drain(&pool, jobs).await;
    let (pickup_p50, pickup_p99) = pickup(&pool).await;
    sqlx::query("TRUNCATE finished_jobs").execute(&pool).await.unwrap();
    let backlog_enqueue_rate = enqueue_bulk(&pool, backlog).await;
    let backlog_drain_rate = drain(&pool, backlog).await;
    let idle = idle_cost().await;

    println!("| measure | jobs | jobs/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    println!("| enqueue (bulk, {ENQUEUE_CHUNK} a statement) | {jobs} | {enqueue_rate:.0} | | |");
    println!("| drain | {jobs} | {drain_rate:.0} | | |");
    println!("| pickup, one at a time | {PICKUP_SAMPLES} | | {pickup_p50:.2} | {pickup_p99:.2} |");
    println!("| enqueue backlog | {backlog} | {backlog_enqueue_rate:.0} | | |");
    println!("| drain backlog | {backlog} | {backlog_drain_rate:.0} | | |");
    println!("\n1M-backlog drain is {:.1}% of the 100k drain", 100.0 * backlog_drain_rate / drain_rate);
    println!(
        "an idle `herald dev` (api, scheduler, worker): {:.2} {} a second over {} s",
        idle.per_second,
        idle.counted,
        IDLE_WINDOW.as_secs()
    );
    println!(
        "{}",
        common::result_line(&[
            ("enqueue_jobs_per_s", enqueue_rate),
            ("drain_jobs_per_s", drain_rate),
            ("drain_1m_jobs_per_s", backlog_drain_rate),
            ("pickup_p50_ms", pickup_p50),
            ("pickup_p99_ms", pickup_p99),
            ("idle_statements_per_s", idle.per_second),
        ])
    );
}
