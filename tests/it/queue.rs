//! The job queue and the worker runtime against a real PostgreSQL: enqueue and dedup, claims
//! that never overlap, attempt-guarded completion, every outcome a job can report, graceful
//! drain, the shared rate limiter, and a worker killed with SIGKILL in the middle of a batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_shared::config::QueueConfig;
use herald_shared::queue::{
    self, Enqueued, FinalState, Finished, Job, NewJob, RetryPolicy, claim, enqueue, enqueue_many, maintenance,
};
use herald_shared::rate_limit::{self, Decision, Rate};
use herald_worker::runtime::{JobResult, JobRun, Outcome, Perform, Registry, Runtime, Settings, Stats};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness::{TestApp, TestDb};

/// What the test jobs may use: the database, to record that they ran.
struct Probe {
    pool: PgPool,
}

/// A job that does what its payload says.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Scripted {
    Done,
    Retry,
    RetryAt(DateTime<Utc>),
    Fail,
    Unknown,
    Panic,
    Hang,
}

impl Job for Scripted {
    const KIND: &'static str = "test.scripted";
    const QUEUE: &'static str = "scripted";
    const MAX_ATTEMPTS: i32 = 2;
}

impl Perform<Probe> for Scripted {
    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(40),
            max: Duration::from_millis(80),
            floor: Duration::from_millis(20),
        }
    }

    fn timeout() -> Duration {
        Duration::from_millis(300)
    }

    async fn perform(self, _probe: &Probe, _run: JobRun) -> JobResult {
        Ok(match self {
            Scripted::Done => Outcome::Done,
            Scripted::Retry => Outcome::Retry("the platform answered 503".into()),
            Scripted::RetryAt(at) => Outcome::RetryAt(at, "rate limited until the reset".into()),
            Scripted::Fail => Outcome::Fail("the platform refused the content".into()),
            Scripted::Unknown => Outcome::Unknown("the connection dropped after sending".into()),
            Scripted::Panic => panic!("a bug in the job"),
            Scripted::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Outcome::Done
            }
        })
    }
}

/// A job that records each run in `probe_runs`, then sleeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    sleep_ms: u64,
}

impl Job for Recorded {
    const KIND: &'static str = "test.recorded";
    const QUEUE: &'static str = "recorded";
}

impl Perform<Probe> for Recorded {
    async fn perform(self, probe: &Probe, run: JobRun) -> JobResult {
        sqlx::query(
            "INSERT INTO probe_runs (job_id, attempt, worker_pid, started_at) VALUES ($1, $2, $3, clock_timestamp())",
        )
        .bind(run.id)
        .bind(run.attempt)
        .bind(std::process::id() as i32)
        .execute(&probe.pool)
        .await?;
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        Ok(Outcome::Done)
    }
}

fn registry() -> Registry<Probe> {
    Registry::default().register::<Scripted>().register::<Recorded>()
}

fn queue_settings(concurrency: usize, lease_secs: u64, poll_interval_ms: u64) -> QueueConfig {
    QueueConfig {
        lease_secs,
        poll_interval_ms,
        claim_batch: 100,
        default_concurrency: concurrency,
        concurrency: BTreeMap::new(),
        retention_hours: 1,
    }
}

struct RunningRuntime {
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRuntime {
    fn start(pool: &PgPool, queue: QueueConfig) -> Self {
        let settings = Settings { worker_id: Uuid::now_v7(), queue, grace: Duration::from_secs(5) };
        let runtime = Runtime::new(pool.clone(), Probe { pool: pool.clone() }, registry(), settings);
        let stats = runtime.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime.run(shutdown.clone()));
        Self { stats, shutdown, task }
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&Stats) -> bool) {
        for _ in 0..2_000 {
            if done(&self.stats) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the runtime did not get there within 20 s: {what}; stats {:?}", self.stats);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

async fn create_probe_table(pool: &PgPool) {
    sqlx::query(
        "CREATE TABLE probe_runs (job_id uuid NOT NULL, attempt int NOT NULL, worker_pid int NOT NULL,
                                  started_at timestamptz NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn finished_state(pool: &PgPool, id: Uuid) -> Option<(String, i32, Option<String>)> {
    sqlx::query_as("SELECT state, attempt, last_error FROM finished_jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

fn id_of(enqueued: Enqueued) -> Uuid {
    match enqueued {
        Enqueued::Queued(id) => id,
        Enqueued::Duplicate { dedup_key } => panic!("unexpected duplicate {dedup_key}"),
    }
}

/// A job with a dedup key, for the enqueue tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Keyed {
    key: Option<String>,
}

impl Job for Keyed {
    const KIND: &'static str = "test.keyed";

    fn dedup_key(&self) -> Option<String> {
        self.key.clone()
    }
}

fn keyed(key: Option<&str>) -> NewJob {
    NewJob::of(&Keyed { key: key.map(str::to_owned) }).unwrap()
}

#[tokio::test]
async fn a_live_dedup_key_makes_enqueue_a_no_op_that_says_so() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;

    let mut tx = pool.begin().await.unwrap();
    let first = id_of(enqueue(&mut *tx, keyed(Some("refresh:acct-1"))).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        enqueue(&pool, keyed(Some("refresh:acct-1"))).await.unwrap(),
        Enqueued::Duplicate { dedup_key: "refresh:acct-1".into() }
    );

    let batch = [keyed(Some("refresh:acct-2")), keyed(Some("refresh:acct-2")), keyed(None), keyed(None)];
    let outcomes = enqueue_many(&pool, &batch).await.unwrap();
    assert_eq!(outcomes[0], Enqueued::Queued(batch[0].id), "the first of a repeated key wins");
    assert_eq!(outcomes[1], Enqueued::Duplicate { dedup_key: "refresh:acct-2".into() });
    assert_eq!(outcomes[2], Enqueued::Queued(batch[2].id));
    assert_eq!(outcomes[3], Enqueued::Queued(batch[3].id));
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(live, 4);

    // Once the job has finished, its key is free again.
    let worker = Uuid::now_v7();
    let kinds = vec![Keyed::KIND.to_owned()];
    let claimed = claim(&pool, worker, "default", &kinds, 10, Duration::from_secs(30)).await.unwrap();
    let held = claimed.iter().find(|job| job.id == first).unwrap();
    let done = Finished { id: first, attempt: held.attempt, state: FinalState::Succeeded, error: None };
    assert_eq!(queue::finish(&pool, &[done]).await.unwrap(), 1);
    assert!(matches!(enqueue(&pool, keyed(Some("refresh:acct-1"))).await.unwrap(), Enqueued::Queued(_)));

    // A rolled-back enqueue leaves nothing behind.
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut *tx, keyed(Some("refresh:acct-9"))).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(matches!(enqueue(&pool, keyed(Some("refresh:acct-9"))).await.unwrap(), Enqueued::Queued(_)));
}

#[tokio::test]
async fn concurrent_claims_never_share_a_job_and_take_the_most_urgent_first() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let kinds = vec![Keyed::KIND.to_owned()];
    let mut jobs: Vec<NewJob> = (0..10).map(|_| keyed(None)).collect();
    jobs[7].priority = 5;
    let later = Utc::now() + chrono::Duration::hours(1);
    jobs.push(keyed(None).run_at(later));
    enqueue_many(&pool, &jobs).await.unwrap();

    // The first claim stays uncommitted, holding its row locks, while the second one runs.
    let mut first_tx = pool.begin().await.unwrap();
    let first = claim(&mut *first_tx, Uuid::now_v7(), "default", &kinds, 4, Duration::from_secs(30)).await.unwrap();
    let second = claim(&pool, Uuid::now_v7(), "default", &kinds, 100, Duration::from_secs(30)).await.unwrap();
    first_tx.commit().await.unwrap();

    assert_eq!(first.len(), 4);
    assert_eq!(first[0].id, jobs[7].id, "the highest priority goes first");
    assert_eq!(second.len(), 6, "the rest of the due jobs, not the one due in an hour");
    let first_ids: HashSet<Uuid> = first.iter().map(|job| job.id).collect();
    assert!(second.iter().all(|job| !first_ids.contains(&job.id)), "no job is claimed twice");
    assert!(first.iter().chain(&second).all(|job| job.attempt == 1));
    let due_in = queue::next_due_in(&pool, "default", &kinds).await.unwrap().unwrap();
    assert!(due_in > Duration::from_secs(3500) && due_in <= Duration::from_secs(3600), "{due_in:?}");
}

#[tokio::test]
async fn a_late_finisher_cannot_overwrite_a_rescued_job() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let kinds = vec![Keyed::KIND.to_owned()];
    let job = id_of(enqueue(&pool, keyed(None)).await.unwrap());
    let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());

    let claimed = claim(&pool, slow, "default", &kinds, 1, Duration::from_millis(1)).await.unwrap();
    assert_eq!(claimed[0].attempt, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rescued = maintenance::rescue_expired(&pool, 100).await.unwrap();
    assert_eq!(rescued, maintenance::Rescued { revived: 1, failed: 0 });

    let late = Finished { id: job, attempt: 1, state: FinalState::Succeeded, error: None };
    assert_eq!(queue::finish(&pool, std::slice::from_ref(&late)).await.unwrap(), 0, "rescued: the finish is ignored");
    assert_eq!(queue::extend_leases(&pool, slow, &[(job, 1)], Duration::from_secs(30)).await.unwrap(), 0);

    let again = claim(&pool, fast, "default", &kinds, 1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    assert_eq!(queue::finish(&pool, std::slice::from_ref(&late)).await.unwrap(), 0, "running again: still ignored");
    let current = Finished { id: job, attempt: 2, state: FinalState::Succeeded, error: None };
    assert_eq!(queue::finish(&pool, &[current]).await.unwrap(), 1);
    assert_eq!(finished_state(&pool, job).await.unwrap().0, "succeeded");
}

#[tokio::test]
async fn a_job_out_of_attempts_whose_lease_expires_fails() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let kinds = vec![Keyed::KIND.to_owned()];
    let mut job = keyed(None);
    job.max_attempts = 1;
    let id = id_of(enqueue(&pool, job).await.unwrap());
    claim(&pool, Uuid::now_v7(), "default", &kinds, 1, Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(maintenance::rescue_expired(&pool, 100).await.unwrap(), maintenance::Rescued { revived: 0, failed: 1 });
    let (state, attempt, error) = finished_state(&pool, id).await.unwrap();
    assert_eq!((state.as_str(), attempt), ("failed", 1));
    assert!(error.unwrap().contains("lease expired"));
}

#[tokio::test]
async fn every_outcome_is_recorded_as_the_job_reported_it() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let reset = Utc::now() + chrono::Duration::hours(1);
    let scripts = [
        Scripted::Done,
        Scripted::Retry,
        Scripted::RetryAt(reset),
        Scripted::Fail,
        Scripted::Unknown,
        Scripted::Panic,
        Scripted::Hang,
    ];
    let jobs: Vec<NewJob> = scripts.iter().map(|script| NewJob::of(script).unwrap()).collect();
    enqueue_many(&pool, &jobs).await.unwrap();

    let runtime = RunningRuntime::start(&pool, queue_settings(8, 30, 50));
    // Done 1 + Retry 2 + RetryAt 1 + Fail 1 + Unknown 1 + Panic 2 + Hang 2 attempts.
    runtime.wait_until("ten outcomes", |stats| stats.completed() == 10).await;
    runtime.stop().await;

    let state = |index: usize| finished_state(&pool, jobs[index].id);
    assert_eq!(state(0).await, Some(("succeeded".into(), 1, None)));
    let (retry_state, retry_attempts, retry_error) = state(1).await.unwrap();
    assert_eq!((retry_state.as_str(), retry_attempts), ("failed", 2), "retried once, then out of attempts");
    assert_eq!(retry_error.unwrap(), "gave up after 2 attempts: the platform answered 503");

    let (attempt, run_at, error): (i32, DateTime<Utc>, Option<String>) =
        sqlx::query_as("SELECT attempt, run_at, last_error FROM jobs WHERE id = $1 AND state = 'available'")
            .bind(jobs[2].id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempt, 0, "a rate-limited attempt is given back");
    assert_eq!(run_at.timestamp_micros(), reset.timestamp_micros());
    assert_eq!(error.as_deref(), Some("rate limited until the reset"));

    assert_eq!(state(3).await, Some(("failed".into(), 1, Some("the platform refused the content".into()))));
    assert_eq!(state(4).await, Some(("discarded".into(), 1, Some("the connection dropped after sending".into()))));
    let (panic_state, panic_attempts, panic_error) = state(5).await.unwrap();
    assert_eq!((panic_state.as_str(), panic_attempts), ("failed", 2));
    assert!(panic_error.unwrap().contains("the job panicked: a bug in the job"));
    let (hang_state, hang_attempts, hang_error) = state(6).await.unwrap();
    assert_eq!((hang_state.as_str(), hang_attempts), ("failed", 2));
    assert!(hang_error.unwrap().contains("timeout"));
}

#[tokio::test]
async fn a_scheduled_job_starts_when_due_without_waiting_for_the_poll() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    create_probe_table(&pool).await;
    // The poll interval is a minute: only the wake-up at the due time can start the job sooner.
    let runtime = RunningRuntime::start(&pool, queue_settings(4, 30, 60_000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let due: DateTime<Utc> =
        sqlx::query_scalar("SELECT now() + interval '1500 milliseconds'").fetch_one(&pool).await.unwrap();
    let id = id_of(enqueue(&pool, NewJob::of(&Recorded { sleep_ms: 0 }).unwrap().run_at(due)).await.unwrap());

    runtime
        .wait_until("the scheduled job ran", |stats| stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 1)
        .await;
    runtime.stop().await;
    let started: DateTime<Utc> = sqlx::query_scalar("SELECT started_at FROM probe_runs WHERE job_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(started >= due, "not before it was due: started {started}, due {due}");
}

#[tokio::test]
async fn shutdown_gives_back_unstarted_jobs_and_lets_running_ones_finish() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    create_probe_table(&pool).await;
    let jobs: Vec<NewJob> = (0..10).map(|_| NewJob::of(&Recorded { sleep_ms: 400 }).unwrap()).collect();
    enqueue_many(&pool, &jobs).await.unwrap();

    let runtime = RunningRuntime::start(&pool, queue_settings(2, 30, 50));
    runtime
        .wait_until("a buffer beside the running jobs", |stats| {
            stats.claimed.load(std::sync::atomic::Ordering::Relaxed) >= 4
        })
        .await;
    let stats = runtime.stats.clone();
    runtime.stop().await;

    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'running'").fetch_one(&pool).await.unwrap();
    assert_eq!(running, 0, "nothing is left leased to a stopped worker");
    let started: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_runs").fetch_one(&pool).await.unwrap();
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM finished_jobs WHERE state = 'succeeded'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(succeeded, started, "every started job finished");
    let returned: Vec<i32> = sqlx::query_scalar("SELECT attempt FROM jobs").fetch_all(&pool).await.unwrap();
    assert_eq!(returned.len() as i64 + succeeded, 10);
    assert!(returned.iter().all(|attempt| *attempt == 0), "unstarted jobs get their attempt back: {returned:?}");
    assert!(stats.released.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn the_rate_limiter_never_admits_more_than_the_rate_across_pools() {
    let db = TestDb::new().await;
    let pools = [db.pool_for_test().await, db.pool_for_test().await];
    let rate = Rate { limit: 5, period: Duration::from_secs(3600), burst: 5 };
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..100 {
        let pool = pools[task % 2].clone();
        tasks.spawn(async move { rate_limit::acquire_all(&pool, &[("account:1:publish", rate)]).await.unwrap() });
    }
    let mut allowed = 0;
    let mut retry_ats = Vec::new();
    while let Some(decision) = tasks.join_next().await {
        match decision.unwrap() {
            Decision::Allowed { .. } => allowed += 1,
            Decision::RetryAt(at) => retry_ats.push(at),
        }
    }
    assert_eq!(allowed, 5, "exactly the burst, never more");
    let now = Utc::now();
    assert!(
        retry_ats
            .iter()
            .all(|at| *at > now + chrono::Duration::minutes(11) && *at < now + chrono::Duration::minutes(13)),
        "the next slot is one interval (12 min) on: {:?}",
        retry_ats.first()
    );
}

#[tokio::test]
async fn the_rate_limiter_counts_down_and_honours_a_platform_block() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let rate = Rate { limit: 3, period: Duration::from_secs(60), burst: 3 };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        match rate_limit::acquire_all(&pool, &[("key:a", rate)]).await.unwrap() {
            Decision::Allowed { remaining: left, .. } => remaining.push(left),
            Decision::RetryAt(at) => panic!("refused at {at}"),
        }
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    assert!(matches!(rate_limit::acquire_all(&pool, &[("key:a", rate)]).await.unwrap(), Decision::RetryAt(_)));

    let reset = Utc::now() + chrono::Duration::minutes(15);
    rate_limit::block_until(&pool, "key:b", reset).await.unwrap();
    rate_limit::block_until(&pool, "key:b", reset - chrono::Duration::minutes(5)).await.unwrap();
    match rate_limit::acquire_all(&pool, &[("key:b", rate)]).await.unwrap() {
        Decision::RetryAt(at) => {
            assert_eq!(at.timestamp_micros(), reset.timestamp_micros(), "a block is never shortened")
        }
        Decision::Allowed { .. } => panic!("allowed while blocked"),
    }
    assert!(matches!(
        rate_limit::acquire_all(&pool, &[("key:c", rate)]).await.unwrap(),
        Decision::Allowed { remaining: 2, .. }
    ));
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_the_retention_window() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    sqlx::query(
        "INSERT INTO finished_jobs (id, kind, queue, payload, priority, attempt, max_attempts, state, created_at, finished_at)
         SELECT gen_random_uuid(), 'test', 'default', '{}', 0, 1, 1, 'succeeded', now(), now() - make_interval(hours => h)
         FROM generate_series(0, 9) AS h",
    )
    .execute(&pool)
    .await
    .unwrap();
    let retention = Duration::from_secs(5 * 3600 + 1800);
    assert_eq!(maintenance::prune_finished(&pool, retention, 3).await.unwrap(), 3);
    assert_eq!(maintenance::prune_finished(&pool, retention, 3).await.unwrap(), 1);
    assert_eq!(maintenance::prune_finished(&pool, retention, 3).await.unwrap(), 0);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM finished_jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(kept, 6, "hours 0 to 5 stay");
}

#[tokio::test]
async fn the_scheduler_queues_pruning_and_a_worker_runs_it() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    sqlx::query(
        "INSERT INTO idempotency_keys (project_id, idempotency_key, fingerprint, status, created_at)
         VALUES (gen_random_uuid(), 'yesterday', '\\x00', 201, now() - interval '25 hours'),
                (gen_random_uuid(), 'today', '\\x00', 201, now() - interval '23 hours')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let config = Arc::new(crate::harness::test_config(&db));
    let app = TestApp::spawn_on(db, config, axum::Router::new()).await;
    let mut ran = None;
    for _ in 0..500 {
        ran = sqlx::query_scalar::<_, String>("SELECT state FROM finished_jobs WHERE kind = 'maintenance.prune'")
            .fetch_optional(&app.pool)
            .await
            .unwrap();
        if ran.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ran.as_deref(), Some("succeeded"));
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM idempotency_keys").fetch_all(&pool).await.unwrap();
    assert_eq!(kept, vec!["today".to_owned()], "records past 24 hours are forgotten");
    app.stop().await.unwrap();
}

/// Kills child processes when the test ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const CHILD_DATABASE: &str = "HERALD_TEST_CRASH_CHILD_DATABASE_URL";

fn spawn_worker_process(db: &TestDb) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["queue::crash_test_worker_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DATABASE, &db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the body of a worker process for the crash test below, which starts
/// this test binary again with only this test selected.
#[tokio::test]
#[ignore = "a worker process body, run only as a child of a_worker_killed_mid_batch_loses_nothing_and_reruns_only_after_the_lease"]
async fn crash_test_worker_process() {
    let url = std::env::var(CHILD_DATABASE).expect("started by the crash test");
    let pool = PgPool::connect(&url).await.unwrap();
    let runtime = RunningRuntime::start(&pool, queue_settings(8, 4, 100));
    std::future::pending::<()>().await;
    drop(runtime);
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_reruns_only_after_the_lease() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    create_probe_table(&pool).await;
    let jobs: Vec<NewJob> = (0..200).map(|_| NewJob::of(&Recorded { sleep_ms: 100 }).unwrap()).collect();
    enqueue_many(&pool, &jobs).await.unwrap();

    let mut children = Children(vec![spawn_worker_process(&db), spawn_worker_process(&db)]);
    let victim_pid = children.0[0].id() as i32;
    // Wait until the victim is mid-batch: it has run jobs and holds running ones.
    let mut victim_worker = None;
    for _ in 0..1_000 {
        victim_worker = sqlx::query_scalar::<_, Uuid>(
            "SELECT j.worker_id FROM jobs j JOIN probe_runs r ON r.job_id = j.id AND r.attempt = j.attempt
             WHERE j.state = 'running' AND r.worker_pid = $1 LIMIT 1",
        )
        .bind(victim_pid)
        .fetch_optional(&pool)
        .await
        .unwrap();
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM finished_jobs").fetch_one(&pool).await.unwrap();
        if victim_worker.is_some() && done >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim_worker = victim_worker.expect("the victim ran jobs");
    children.0[0].kill().unwrap();
    children.0[0].wait().unwrap();

    // What the dead worker held, and until when.
    let held: HashMap<Uuid, DateTime<Utc>> = sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(
        "SELECT id, lease_until FROM jobs WHERE worker_id = $1 AND state = 'running'",
    )
    .bind(victim_worker)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(!held.is_empty(), "killed while holding jobs");

    let mut finished = 0;
    for _ in 0..3_000 {
        finished = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM finished_jobs").fetch_one(&pool).await.unwrap();
        if finished == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(finished, 200, "every job reached a terminal state");
    let states: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT state FROM finished_jobs").fetch_all(&pool).await.unwrap();
    assert_eq!(states, vec!["succeeded".to_owned()]);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(live, 0, "none lost in between");

    let runs: Vec<(Uuid, i32, i32, DateTime<Utc>)> =
        sqlx::query_as("SELECT job_id, attempt, worker_pid, started_at FROM probe_runs ORDER BY started_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut runs_by_job: HashMap<Uuid, Vec<(i32, i32, DateTime<Utc>)>> = HashMap::new();
    for (job, attempt, pid, started) in runs {
        runs_by_job.entry(job).or_default().push((attempt, pid, started));
    }
    assert_eq!(runs_by_job.len(), 200, "every job ran");
    let mut rerun = 0;
    for (job, job_runs) in &runs_by_job {
        if job_runs.len() == 1 {
            continue;
        }
        let lease_until =
            held.get(job).unwrap_or_else(|| panic!("job {job} ran twice but the dead worker did not hold it"));
        assert_eq!(job_runs.len(), 2, "{job}: {job_runs:?}");
        let (_, first_pid, _) = job_runs[0];
        let (_, second_pid, second_started) = job_runs[1];
        assert_eq!(first_pid, victim_pid);
        assert_ne!(second_pid, victim_pid);
        assert!(
            second_started >= *lease_until,
            "{job} re-ran at {second_started}, before its lease ran out at {lease_until}"
        );
        rerun += 1;
    }
    assert!(rerun >= 1, "the dead worker was mid-job, so at least one job ran again");
}

#[tokio::test]
async fn limits_taken_together_are_all_or_nothing() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let minute = Rate::per(3, Duration::from_secs(60));
    let day = Rate::per(1, Duration::from_secs(86_400));
    let both = [("k:minute", minute), ("k:day", day)];
    assert!(matches!(rate_limit::acquire_all(&pool, &both).await.unwrap(), Decision::Allowed { remaining: 0, .. }));
    match rate_limit::acquire_all(&pool, &both).await.unwrap() {
        Decision::RetryAt(at) => assert!(at > Utc::now() + chrono::Duration::hours(23), "the day limit decides: {at}"),
        Decision::Allowed { .. } => panic!("the day limit is spent"),
    }
    // The refused request charged nothing: the minute limit has spent one of three.
    assert!(matches!(
        rate_limit::acquire_all(&pool, &[("k:minute", minute)]).await.unwrap(),
        Decision::Allowed { remaining: 1, .. }
    ));
}

#[tokio::test]
async fn a_batch_of_requests_is_decided_in_order_each_all_or_nothing() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let shared = Rate::per(3, Duration::from_secs(60));
    let own = Rate::per(1, Duration::from_secs(60));
    let keys: Vec<String> = (0..5).map(|index| format!("own:{index}")).collect();
    let requests: Vec<Vec<(&str, Rate)>> =
        keys.iter().map(|key| vec![("shared", shared), (key.as_str(), own)]).collect();
    let requests: Vec<&[(&str, Rate)]> = requests.iter().map(Vec::as_slice).collect();
    let decisions = rate_limit::acquire_many(&pool, &requests).await.unwrap();
    // The shared limit admits the first three, in order; the other two wait for it.
    let remaining: Vec<Option<u32>> = decisions
        .iter()
        .map(|decision| match decision {
            Decision::Allowed { remaining, .. } => Some(*remaining),
            Decision::RetryAt(_) => None,
        })
        .collect();
    assert_eq!(remaining, [Some(0), Some(0), Some(0), None, None]);
    // The refused requests charged nothing: their own keys are untouched, the admitted ones spent.
    assert!(matches!(rate_limit::acquire_all(&pool, &[("own:4", own)]).await.unwrap(), Decision::Allowed { .. }));
    assert!(matches!(rate_limit::acquire_all(&pool, &[("own:0", own)]).await.unwrap(), Decision::RetryAt(_)));
    // A later batch sees what this one took.
    let again = rate_limit::acquire_many(&pool, &[&[("shared", shared)]]).await.unwrap();
    assert!(matches!(again[..], [Decision::RetryAt(_)]));
}

#[tokio::test]
async fn an_empty_queue_has_no_next_due_job() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let kinds = vec![Scripted::KIND.to_owned()];
    assert_eq!(queue::next_due_in(&pool, "scripted", &kinds).await.unwrap(), None, "nothing waits: not `due now`");
    assert!(queue::next_due_by_queue(&pool, &kinds).await.unwrap().is_empty());
    let later = Utc::now() + chrono::Duration::seconds(60);
    enqueue(&pool, NewJob::of(&Scripted::Done).unwrap().run_at(later)).await.unwrap();
    let due = queue::next_due_by_queue(&pool, &kinds).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, "scripted");
    assert!(due[0].1 > Duration::from_secs(55) && due[0].1 <= Duration::from_secs(60), "{due:?}");
}

#[tokio::test]
async fn an_idle_worker_rests_and_still_runs_what_comes_due() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    create_probe_table(&pool).await;
    // Two queues, a 200 ms poll: resting, the worker may claim once per queue at start, once
    // more when its listener connects (anything may have been missed before), and never on a
    // timer of its own. Spinning, as it did when an empty queue read as "due now", it claims
    // every 10 ms.
    let runtime = RunningRuntime::start(&pool, queue_settings(4, 30, 200));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let claims = runtime.stats.claims.load(std::sync::atomic::Ordering::Relaxed);
    assert!(claims <= 6, "an idle worker made {claims} claims in 1.2 s");

    // A job due further off than the dispatcher looks ahead is woken by the poll, on time.
    let due = Utc::now() + chrono::Duration::milliseconds(700);
    enqueue(&pool, NewJob::of(&Scripted::Done).unwrap().run_at(due)).await.unwrap();
    runtime
        .wait_until("the scheduled job ran", |stats| stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 1)
        .await;
    let started_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT started_at FROM finished_jobs WHERE state = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(started_at >= due, "not before it was due");
    runtime.stop().await;
}
