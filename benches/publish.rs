//! `make bench-publish`: 100,000 posts with one target each on sandbox accounts, all due at one
//! instant a few seconds ahead, published by one `herald worker` process through an HTTP fake
//! platform on loopback that answers every publish in 50 ms.
//!
//! Setup goes through the domain (the api's own code path, without HTTP): 1,000 connected
//! sandbox accounts with sealed tokens, then the posts, 1,000 per transaction, each queuing its
//! publish job as `POST /v1/posts` does. They are created due an hour ahead; once all exist, the
//! bench moves every publish job's due time to one instant three seconds ahead (so the wait does
//! not depend on how long setup took). Then it starts the worker and measures from the due
//! instant: seconds to the last `delivery.published`, deliveries/s, dispatch lag (due →
//! `delivery.publishing` recorded) p50/p99, and the worker's peak RSS.
//!
//! With every post due at once, a delivery's lag is mostly its place in line: the last starts
//! about `posts / deliveries_per_s` after the due instant. So a second phase measures the
//! dispatch path itself: 3,000 more posts, due one after another at 500 a second (a tenth of the
//! worker's capacity), reported as `steady_lag_p50_ms` and `steady_lag_p99_ms`.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use herald_shared::commands::execute;
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, Grant};
use herald_shared::domain::post::{self, Post, Target};
use herald_shared::events::EventMetadata;
use herald_shared::platforms::TokenSet;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

const POSTS: usize = 100_000;
const ACCOUNTS: usize = 1_000;
const PER_TRANSACTION: usize = 1_000;
const PLATFORM_LATENCY: Duration = Duration::from_millis(50);
const LEAD: Duration = Duration::from_secs(3);
/// The second phase: posts due one after another, under the worker's capacity.
const STEADY_POSTS: usize = 3_000;
const STEADY_PER_SECOND: f64 = 500.0;

#[tokio::main]
async fn main() {
    let posts = std::env::var("BENCH_PUBLISH_POSTS").ok().and_then(|n| n.parse().ok()).unwrap_or(POSTS);
    let concurrency = std::env::var("BENCH_PUBLISH_CONCURRENCY").unwrap_or_else(|_| "1500".into());
    let (pool, url) = common::fresh_database("herald_bench_publish").await;
    let key = herald_shared::crypto::Keyring::generate_base64();
    let mut keyring = herald_shared::crypto::Keyring::default();
    keyring.push_base64(key.expose_secret()).unwrap();

    // The fake platform: every publish answers 201 after 50 ms, and is counted (a delivery
    // published twice would show as more calls than posts).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = calls.clone();
    let fake = Router::new().route(
        "/api/posts",
        post(move || {
            let counted = counted.clone();
            async move {
                tokio::time::sleep(PLATFORM_LATENCY).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let id = Uuid::now_v7();
                (
                    axum::http::StatusCode::CREATED,
                    Json(json!({ "id": id, "url": format!("https://fake.example/{id}") })),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, fake).await });

    let setup = std::time::Instant::now();
    let (project_id, _, _) =
        herald_shared::commands::keys::create_project(&pool, "bench", &EventMetadata::default()).await.unwrap();
    let metadata = EventMetadata { project_id: Some(project_id), ..EventMetadata::default() };
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    let mut tx = pool.begin().await.unwrap();
    for index in 0..ACCOUNTS {
        let id = Uuid::now_v7();
        let grant = Grant {
            project_id,
            platform: "sandbox".into(),
            platform_user_id: format!("person-bench{index}"),
            kind: "person".into(),
            username: None,
            display_name: None,
            external_id: None,
            app_id: None,
            scopes: vec![],
            expires_at: None,
            session_id: Uuid::now_v7(),
        };
        execute::<Account>(&mut tx, id, account::Command::Connect(Box::new(grant)), &metadata).await.unwrap();
        let tokens = TokenSet {
            access_token: SecretString::from(format!("bench-token-{index}")),
            refresh_token: None,
            expires_at: Some(Utc::now() + chrono::Duration::days(30)),
            scopes: vec![],
        };
        // One grant per person, as a connect makes it.
        let grant = credentials::GrantRef { id: Uuid::now_v7(), project_id, platform: "sandbox" };
        credentials::store_grant_tokens(&mut tx, &keyring, grant, &tokens).await.unwrap();
        credentials::link_account(&mut tx, &keyring, id, grant.id, None).await.unwrap();
        accounts.push(id);
    }
    tx.commit().await.unwrap();

    let bench = Bench { pool: pool.clone(), project_id, metadata, accounts };
    bench.create_posts(0..posts).await;
    let setup_secs = setup.elapsed().as_secs_f64();
    let due = Utc::now() + chrono::Duration::from_std(LEAD).unwrap();
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'delivery.publish'").bind(due).execute(&pool).await.unwrap();
    sqlx::query("UPDATE posts SET scheduled_at = $1").bind(due).execute(&pool).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    // One worker process, as an operator runs it.
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("worker")
        .env("DATABASE_URL", &url)
        .env("HERALD_ENCRYPTION_KEY", key.expose_secret())
        .env("HERALD_PLATFORMS__SANDBOX__API_URL", format!("{platform}/api"))
        .env("HERALD_QUEUE__CONCURRENCY__PUBLISH", &concurrency)
        .env("HERALD_DATABASE_MAX_CONNECTIONS", "40")
        .env("HERALD_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the herald worker");
    let worker_pid = worker.id().expect("the worker's pid");
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(0));

    // Wait for the last delivery, watching the worker's memory. Until the fake platform has
    // received every publish, its counter says how far the worker is; only then is the database
    // asked (a count over every delivery, five times a second, would take CPU from the worker
    // and PostgreSQL it measures).
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        peak_rss.fetch_max(peak_rss_kb(worker_pid), std::sync::atomic::Ordering::Relaxed);
        let called = calls.load(std::sync::atomic::Ordering::Relaxed) as usize;
        if std::time::Instant::now() > deadline {
            break;
        }
        if called >= posts {
            let published: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'published'")
                .fetch_one(&pool)
                .await
                .unwrap();
            if published as usize >= posts {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let last: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT max(published_at) FROM deliveries").fetch_one(&pool).await.unwrap();
    let published: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'published'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let starts: Vec<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT recorded_at FROM events WHERE event_type = 'delivery.publishing'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut lags: Vec<Duration> = starts.iter().map(|at| (*at - due).to_std().unwrap_or_default()).collect();
    let burst_calls = calls.load(std::sync::atomic::Ordering::Relaxed);
    let seconds_to_last = (last - due).num_milliseconds() as f64 / 1000.0;
    let per_second = published as f64 / seconds_to_last.max(0.001);
    let lag_p50 = common::percentile_ms(&mut lags, 50.0);
    let lag_p99 = common::percentile_ms(&mut lags, 99.0);

    // The same worker, now under its capacity: posts due one after another, 500 a second. Their
    // lag is the dispatch path's own (claim, read, limiter, commit), without a queue before it.
    bench.create_posts(posts..posts + STEADY_POSTS).await;
    let first_due = Utc::now() + chrono::Duration::from_std(LEAD).unwrap();
    sqlx::query(
        "WITH spread AS (
             SELECT id, (payload->>'post_id')::uuid AS post_id,
                    $1::timestamptz + (row_number() OVER (ORDER BY id) - 1) * $2::float8 * interval '1 ms' AS due
             FROM jobs WHERE kind = 'delivery.publish' AND state = 'available'
         ), moved AS (
             UPDATE jobs SET run_at = spread.due FROM spread WHERE jobs.id = spread.id RETURNING spread.post_id, spread.due
         )
         UPDATE posts SET scheduled_at = moved.due FROM moved WHERE posts.id = moved.post_id",
    )
    .bind(first_due)
    .bind(1000.0 / STEADY_PER_SECOND)
    .execute(&pool)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (calls.load(std::sync::atomic::Ordering::Relaxed) as usize) < posts + STEADY_POSTS
        && std::time::Instant::now() < deadline
    {
        peak_rss.fetch_max(peak_rss_kb(worker_pid), std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady: Vec<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(epoch FROM e.recorded_at - p.scheduled_at) * 1000)::float8
         FROM events e JOIN deliveries d ON d.id = (e.payload->>'delivery_id')::uuid JOIN posts p ON p.id = d.post_id
         WHERE e.event_type = 'delivery.publishing' AND p.scheduled_at > $1",
    )
    .bind(due)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut steady_lags: Vec<Duration> =
        steady.iter().map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)).collect();
    let steady_lag_p50 = common::percentile_ms(&mut steady_lags, 50.0);
    let steady_lag_p99 = common::percentile_ms(&mut steady_lags, 99.0);
    let rss_mb = peak_rss.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    worker.kill().await.ok();

    println!("publish bench: {posts} posts, one sandbox target each, {ACCOUNTS} accounts, one worker process");
    println!("(publish concurrency {concurrency}), a fake platform answering in {} ms\n", PLATFORM_LATENCY.as_millis());
    println!("| measure | value |");
    println!("|---|---|");
    println!("| setup (accounts, posts, jobs) | {setup_secs:.1} s |");
    println!("| published | {published} of {posts} |");
    println!("| publish calls the platform received | {burst_calls} |");
    println!("| seconds from due to last published | {seconds_to_last:.2} |");
    println!("| deliveries/s | {per_second:.0} |");
    println!("| dispatch lag p50 (due -> publishing) | {lag_p50:.0} ms |");
    println!("| dispatch lag p99 | {lag_p99:.0} ms |");
    println!(
        "| then, under capacity: {STEADY_POSTS} posts due {STEADY_PER_SECOND:.0}/s, started | {} (platform calls: {}) |",
        steady.len(),
        calls.load(std::sync::atomic::Ordering::Relaxed) - burst_calls
    );
    println!("| under capacity: dispatch lag p50 | {steady_lag_p50:.0} ms |");
    println!("| under capacity: dispatch lag p99 | {steady_lag_p99:.0} ms |");
    println!("| worker peak RSS | {rss_mb:.0} MB |");
    println!(
        "{}",
        common::result_line(&[
            ("seconds_to_last", seconds_to_last),
            ("deliveries_per_s", per_second),
            ("lag_p50_ms", lag_p50),
            ("lag_p99_ms", lag_p99),
            ("worker_rss_mb", rss_mb),
            ("steady_lag_p50_ms", steady_lag_p50),
            ("steady_lag_p99_ms", steady_lag_p99),
        ])
    );
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 once it is gone.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Creates posts through the domain, as `POST /v1/posts` does.
struct Bench {
    pool: sqlx::PgPool,
    project_id: Uuid,
    metadata: EventMetadata,
    accounts: Vec<Uuid>,
}

impl Bench {
    /// Posts `indexes`, one target each (the accounts in turn), due in an hour, each with its
    /// publish job queued, 1,000 per transaction.
    async fn create_posts(&self, indexes: std::ops::Range<usize>) {
        let later = Utc::now() + chrono::Duration::hours(1);
        let indexes: Vec<usize> = indexes.collect();
        for chunk in indexes.chunks(PER_TRANSACTION) {
            let mut tx = self.pool.begin().await.unwrap();
            for index in chunk {
                let id = Uuid::now_v7();
                let target = Target {
                    delivery_id: Uuid::now_v7(),
                    account_id: self.accounts[index % self.accounts.len()],
                    content: None,
                    options: Value::Null,
                    media: None,
                    thread: None,
                    first_comment: None,
                };
                let command = post::Command::Create {
                    project_id: self.project_id,
                    content: format!("bench post {index}"),
                    media: Vec::new(),
                    thread: Vec::new(),
                    first_comment: None,
                    targets: vec![target],
                    scheduled_at: Some(later),
                    draft: false,
                    requires_approval: false,
                    external_id: None,
                    now: Utc::now(),
                };
                let created = execute::<Post>(&mut tx, id, command, &self.metadata).await.unwrap();
                herald_shared::commands::deliveries::queue_pending(&mut tx, id, &created.state, &self.metadata)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
}
