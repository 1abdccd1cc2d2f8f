//! `make chaos`: herald as separate processes (one api, two schedulers, three workers) on one
//! private PostgreSQL, publishing 10,000 posts due over about a minute to a fake platform on
//! loopback that counts publishes per delivery, while the harness
//!
//! - kills a random worker with SIGKILL every few seconds and starts a new one,
//! - kills one scheduler (SIGKILL, not replaced),
//! - restarts PostgreSQL once mid-run (`pg_ctl restart -m immediate`: every connection cut,
//!   crash recovery),
//!
//! then waits for every delivery to end and checks each: published exactly once on the fake,
//! or `unknown` with at most one call. Recovery is how long after PostgreSQL accepted
//! connections again every live process's `/readyz` answered 200, none of them restarted.
//!
//! Prints a table and `RESULT posts=.. published=.. duplicates=.. lost=.. unknown=.. recovery_s=..`.
//! `CHAOS_POSTS` changes the size. The fake answers each publish after 50 ms.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use herald_shared::commands::execute;
use herald_shared::domain::post::{self, Post, Target};
use herald_shared::events::EventMetadata;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

const POSTS: usize = 10_000;
const ACCOUNTS: usize = 200;
/// Posts fall due evenly over this long, starting [`LEAD`] after they are created.
const SPREAD: Duration = Duration::from_secs(60);
const LEAD: Duration = Duration::from_secs(10);
const PLATFORM_LATENCY: Duration = Duration::from_millis(50);
/// A worker is killed this often (and a new one started).
const KILL_EVERY: Duration = Duration::from_secs(4);
/// When, after the first post is due, a scheduler is killed and PostgreSQL restarted.
const SCHEDULER_KILL_AT: Duration = Duration::from_secs(12);
const POSTGRES_RESTART_AT: Duration = Duration::from_secs(30);

/// What the fake platform received: the ids it made, by client reference (the delivery).
#[derive(Default)]
struct Fake {
    made: Mutex<HashMap<String, Vec<String>>>,
}

async fn publish(State(fake): State<Arc<Fake>>, Json(body): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
    let id = Uuid::now_v7().to_string();
    let reference = body["client_ref"].as_str().unwrap_or_default().to_owned();
    // Recorded on receipt: a worker killed while waiting for the answer left a post behind,
    // which its successor's look-up must find.
    fake.made.lock().unwrap().entry(reference).or_default().push(id.clone());
    tokio::time::sleep(PLATFORM_LATENCY).await;
    (axum::http::StatusCode::CREATED, Json(json!({ "id": id, "url": format!("https://fake.example/{id}") })))
}

async fn find(State(fake): State<Arc<Fake>>, Query(query): Query<HashMap<String, String>>) -> Json<Value> {
    let reference = query.get("client_ref").cloned().unwrap_or_default();
    let made = fake.made.lock().unwrap().get(&reference).cloned().unwrap_or_default();
    let data: Vec<Value> =
        made.iter().map(|id| json!({ "id": id, "url": format!("https://fake.example/{id}") })).collect();
    Json(json!({ "data": data }))
}

/// One herald process and the port its `/readyz` answers on.
struct Process {
    role: &'static str,
    child: Child,
    port: u16,
}

struct Cluster {
    url: String,
    key: SecretString,
    platform: String,
    processes: Vec<Process>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    fn spawn(&mut self, role: &'static str) {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg(role)
            .env("DATABASE_URL", &self.url)
            .env("HERALD_ENCRYPTION_KEY", self.key.expose_secret())
            .env("HERALD_LISTEN", format!("127.0.0.1:{}", if role == "api" { port } else { free_port() }))
            .env("HERALD_OPS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_PLATFORMS__SANDBOX__API_URL", format!("{}/api", self.platform))
            .env("HERALD_QUEUE__LEASE_SECS", "5")
            .env("HERALD_QUEUE__POLL_INTERVAL_MS", "200")
            .env("HERALD_QUEUE__CONCURRENCY__PUBLISH", "200")
            .env("HERALD_PLATFORM_TIMEOUT_SECS", "5")
            .env("HERALD_DATABASE_MAX_CONNECTIONS", "20")
            .env("HERALD_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("start herald");
        self.processes.push(Process { role, child, port });
    }

    /// SIGKILLs the `index`th process of `role` and forgets it.
    async fn kill(&mut self, role: &str, index: usize) {
        let positions: Vec<usize> =
            self.processes.iter().enumerate().filter(|(_, p)| p.role == role).map(|(i, _)| i).collect();
        let Some(&position) = positions.get(index % positions.len().max(1)) else { return };
        let mut process = self.processes.remove(position);
        process.child.start_kill().ok();
        process.child.wait().await.ok();
    }

    /// How long until every process's `/readyz` answers 200 (each one asked every 100 ms).
    async fn all_ready(&mut self, within: Duration) -> Option<Duration> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
        let started = Instant::now();
        while started.elapsed() < within {
            let mut ready = true;
            for process in &mut self.processes {
                assert!(process.child.try_wait().unwrap().is_none(), "herald {} exited", process.role);
                let answer = http.get(format!("http://127.0.0.1:{}/readyz", process.port)).send().await;
                ready &= answer.is_ok_and(|answer| answer.status().is_success());
            }
            if ready {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// `posts` one-target posts due evenly from `first_due` over [`SPREAD`], jobs queued.
async fn create_posts(
    pool: &sqlx::PgPool,
    project_id: Uuid,
    accounts: &[Uuid],
    posts: usize,
    first_due: chrono::DateTime<Utc>,
) {
    let metadata = EventMetadata { project_id: Some(project_id), ..EventMetadata::default() };
    let step = SPREAD.as_secs_f64() / posts.max(1) as f64;
    let indexes: Vec<usize> = (0..posts).collect();
    for chunk in indexes.chunks(500) {
        let mut tx = pool.begin().await.unwrap();
        for &index in chunk {
            let due = first_due + chrono::Duration::milliseconds((index as f64 * step * 1000.0) as i64);
            let target = Target {
                delivery_id: Uuid::now_v7(),
                account_id: accounts[index % accounts.len()],
                content: None,
                options: Value::Null,
                media: None,
                thread: None,
                first_comment: None,
            };
            let command = post::Command::Create {
                project_id,
                content: format!("chaos post {index}"),
                media: Vec::new(),
                thread: Vec::new(),
                first_comment: None,
                targets: vec![target],
                scheduled_at: Some(due),
                draft: false,
                requires_approval: false,
                external_id: None,
                now: Utc::now(),
            };
            let id = Uuid::now_v7();
            let created = execute::<Post>(&mut tx, id, command, &metadata).await.unwrap();
            herald_shared::commands::deliveries::queue_pending(&mut tx, id, &created.state, &metadata).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
}

/// What the run did to the cluster, for the table.
#[derive(Default)]
struct Events {
    workers_killed: usize,
    schedulers_killed: usize,
    recovery: Option<Duration>,
    /// How long `pg_ctl restart -m immediate -w` took: the database's own outage.
    outage: Duration,
}

#[tokio::main]
async fn main() {
    let posts = std::env::var("CHAOS_POSTS").ok().and_then(|n| n.parse().ok()).unwrap_or(POSTS);
    let postgres_dir = std::env::var("CHAOS_POSTGRES_DIR").unwrap_or_else(|_| "target/chaos-postgres".into());
    let (pool, url) = common::fresh_database("herald_chaos").await;
    let key = herald_shared::crypto::Keyring::generate_base64();
    let mut keyring = herald_shared::crypto::Keyring::default();
    keyring.push_base64(key.expose_secret()).unwrap();

    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/api/posts", post(publish).get(find)).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (project_id, _, _) =
        herald_shared::commands::keys::create_project(&pool, "chaos", &EventMetadata::default()).await.unwrap();
    let metadata = EventMetadata { project_id: Some(project_id), ..EventMetadata::default() };
    let accounts = common::connect_accounts(&pool, &keyring, project_id, &metadata, "sandbox", ACCOUNTS).await;
    let first_due = Utc::now() + chrono::Duration::from_std(LEAD).unwrap();
    create_posts(&pool, project_id, &accounts, posts, first_due).await;

    let mut cluster = Cluster { url: url.clone(), key, platform, processes: Vec::new() };
    for role in ["api", "scheduler", "scheduler", "worker", "worker", "worker"] {
        cluster.spawn(role);
    }
    cluster.all_ready(Duration::from_secs(30)).await.expect("the cluster never became ready");
    let events = run_chaos(&mut cluster, &postgres_dir, first_due).await;
    let ended = wait_until_ended(&pool, posts, Duration::from_secs(600)).await;
    let verdict = check(&pool, &fake).await;
    drop(cluster);
    report(posts, &verdict, &events, ended);
}

/// Kills and restarts until the last post is due and a little after; answers what it did.
async fn run_chaos(cluster: &mut Cluster, postgres_dir: &str, first_due: chrono::DateTime<Utc>) -> Events {
    let mut events = Events::default();
    let until_due = (first_due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_due).await;
    let started = Instant::now();
    let mut next_kill = started + KILL_EVERY;
    let (mut scheduler_killed, mut restarted) = (false, false);
    while started.elapsed() < SPREAD + Duration::from_secs(10) {
        if Instant::now() >= next_kill {
            let victim = rand::rng().random_range(0..3);
            cluster.kill("worker", victim).await;
            cluster.spawn("worker");
            events.workers_killed += 1;
            next_kill += KILL_EVERY;
        }
        if !scheduler_killed && started.elapsed() >= SCHEDULER_KILL_AT {
            cluster.kill("scheduler", 0).await;
            events.schedulers_killed += 1;
            scheduler_killed = true;
        }
        if !restarted && started.elapsed() >= POSTGRES_RESTART_AT {
            let restarting = Instant::now();
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["restart-postgres", "--dir", postgres_dir])
                .status()
                .expect("restart PostgreSQL");
            assert!(status.success(), "pg_ctl restart failed");
            events.outage = restarting.elapsed();
            // `pg_ctl restart -w` returns once the server accepts connections.
            events.recovery = cluster.all_ready(Duration::from_secs(60)).await;
            restarted = true;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events
}

/// Waits until every delivery has ended; true if they all did within `within`.
async fn wait_until_ended(pool: &sqlx::PgPool, posts: usize, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let ended: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status IN ('published', 'failed', 'unknown')")
                .fetch_one(pool)
                .await
                .unwrap_or(0);
        if ended as usize >= posts {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[derive(Default)]
struct Verdict {
    published: usize,
    duplicates: usize,
    lost: usize,
    unknown: usize,
    failed: usize,
}

/// Each delivery against what the fake received for it.
async fn check(pool: &sqlx::PgPool, fake: &Fake) -> Verdict {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM deliveries").fetch_all(pool).await.expect("read the deliveries");
    // A reference is `<delivery id>:<generation>`; only a person's retry makes a new generation.
    let mut calls_by_delivery: HashMap<String, usize> = HashMap::new();
    for (reference, made) in fake.made.lock().unwrap().iter() {
        let delivery = reference.split(':').next().unwrap_or_default().to_owned();
        *calls_by_delivery.entry(delivery).or_default() += made.len();
    }
    let mut verdict = Verdict::default();
    for (id, status) in rows {
        let calls = calls_by_delivery.get(&id.to_string()).copied().unwrap_or(0);
        match (status.as_str(), calls) {
            (_, calls) if calls > 1 => verdict.duplicates += 1,
            ("published", 1) => verdict.published += 1,
            ("unknown", _) => verdict.unknown += 1,
            // Failed without reaching the platform: not published, so lost as far as the user goes.
            ("failed", 0) => {
                verdict.failed += 1;
                verdict.lost += 1;
            }
            _ => verdict.lost += 1,
        }
    }
    verdict
}

fn report(posts: usize, verdict: &Verdict, events: &Events, ended: bool) {
    let recovery = events.recovery.map_or(f64::NAN, |recovery| recovery.as_secs_f64());
    println!("| chaos: {posts} posts due over {} s, 1 api, 2 schedulers, 3 workers | |", SPREAD.as_secs());
    println!("|---|---|");
    println!("| workers killed (SIGKILL) and replaced | {} |", events.workers_killed);
    println!("| schedulers killed (SIGKILL), not replaced | {} |", events.schedulers_killed);
    println!(
        "| PostgreSQL restarts (`-m immediate`), time until it accepted again | 1, {:.2} s |",
        events.outage.as_secs_f64()
    );
    println!("| every delivery ended | {ended} |");
    println!("| published exactly once | {} |", verdict.published);
    println!("| published more than once | {} |", verdict.duplicates);
    println!("| lost (not published and not unknown) | {} |", verdict.lost);
    println!("| of which failed before any call | {} |", verdict.failed);
    println!("| unknown (at most one call) | {} |", verdict.unknown);
    println!("| every process ready again after PostgreSQL returned | {recovery:.2} s |");
    println!(
        "{}",
        common::result_line(&[
            ("posts", posts as f64),
            ("published", verdict.published as f64),
            ("duplicates", verdict.duplicates as f64),
            ("lost", verdict.lost as f64),
            ("unknown", verdict.unknown as f64),
            ("recovery_s", recovery),
        ])
    );
}
