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
//!
//! Then media: 1,000 posts (`BENCH_PUBLISH_MEDIA_POSTS`) on 100 X accounts, each carrying the
//! same 5 MB JPEG from the library on the local store, published by a fresh worker through the
//! real X adapter (v2 upload `initialize`, `append` of 4 MiB segments streamed from the store,
//! `finalize`, then `POST /2/tweets` answering in 50 ms) against a fake X on loopback that reads
//! and counts every appended byte without keeping it. X's real caps are lifted by its settings
//! (they would measure the limiter); publish concurrency 64 (`BENCH_PUBLISH_MEDIA_CONCURRENCY`).
//! Reported as `media_deliveries_per_s` and `media_worker_peak_rss_mb` (the worker's `VmHWM`):
//! the image is streamed in 128 KiB reads, never held whole, so memory stays far below
//! concurrency × 5 MB.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use herald_shared::commands::execute;
use herald_shared::domain::post::{self, MediaRef, Post, Target};
use herald_shared::events::EventMetadata;
use secrecy::ExposeSecret;
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
/// The media phase: posts on X, each carrying one image of [`MEDIA_BYTES`], over [`MEDIA_ACCOUNTS`].
const MEDIA_POSTS: usize = 1_000;
const MEDIA_BYTES: usize = 5_000_000;
const MEDIA_ACCOUNTS: usize = 100;
const MEDIA_CONCURRENCY: &str = "64";

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
    let accounts = common::connect_accounts(&pool, &keyring, project_id, &metadata, "sandbox", ACCOUNTS).await;

    let bench = Bench { pool: pool.clone(), project_id, metadata };
    bench.create_posts(0..posts, &accounts, &[]).await;
    let setup_secs = setup.elapsed().as_secs_f64();
    let due = Utc::now() + chrono::Duration::from_std(LEAD).unwrap();
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'delivery.publish'").bind(due).execute(&pool).await.unwrap();
    sqlx::query("UPDATE posts SET scheduled_at = $1").bind(due).execute(&pool).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    // One worker process, as an operator runs it.
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("worker")
        .env("HERALD_OPS_LISTEN", "127.0.0.1:0")
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
    bench.create_posts(posts..posts + STEADY_POSTS, &accounts, &[]).await;
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
    let _ = worker.wait().await;

    let media_posts =
        std::env::var("BENCH_PUBLISH_MEDIA_POSTS").ok().and_then(|n| n.parse().ok()).unwrap_or(MEDIA_POSTS);
    let media_concurrency =
        std::env::var("BENCH_PUBLISH_MEDIA_CONCURRENCY").unwrap_or_else(|_| MEDIA_CONCURRENCY.to_owned());
    let media = media_phase(&bench, &keyring, &url, key.expose_secret(), media_posts, &media_concurrency).await;

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
        "| media: {media_posts} posts with a {} MB image on X (v2 upload + tweet), publish concurrency {media_concurrency} | |",
        MEDIA_BYTES / 1_000_000
    );
    println!("| media: published | {} of {media_posts} |", media.published);
    println!("| media: tweets the fake received | {} |", media.tweets);
    println!("| media: bytes appended per post | {:.0} |", media.appended as f64 / media_posts.max(1) as f64);
    println!("| media: seconds from due to last published | {:.2} |", media.seconds_to_last);
    println!("| media: deliveries/s | {:.1} |", media.per_second);
    println!("| media: worker peak RSS | {:.0} MB |", media.rss_mb);
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
            ("media_seconds_to_last", media.seconds_to_last),
            ("media_deliveries_per_s", media.per_second),
            ("media_worker_peak_rss_mb", media.rss_mb),
        ])
    );
}

/// What the media phase measured.
struct MediaFigures {
    published: i64,
    tweets: u64,
    appended: u64,
    seconds_to_last: f64,
    per_second: f64,
    rss_mb: f64,
}

/// The fake X: the v2 media upload (`initialize` → an id, `append` read to its end and counted
/// as it streams in, `finalize`) and `POST /2/tweets` after [`PLATFORM_LATENCY`]. Each call
/// must carry the bearer token herald holds for one of the bench's accounts.
fn fake_x(tweets: Arc<std::sync::atomic::AtomicU64>, appended: Arc<std::sync::atomic::AtomicU64>) -> Router {
    use std::sync::atomic::Ordering::Relaxed;
    fn authorized(headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("Bearer bench-token-"))
    }
    let unauthorized = || (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"title": "Unauthorized", "status": 401})));
    Router::new()
        .route(
            "/2/media/upload/initialize",
            post(move |headers: axum::http::HeaderMap, Json(init): Json<Value>| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                assert_eq!(init["total_bytes"], MEDIA_BYTES, "INIT declares the file's size");
                assert_eq!(init["media_category"], "tweet_image");
                (axum::http::StatusCode::OK, Json(json!({"data": {"id": Uuid::now_v7().simple().to_string()}})))
            }),
        )
        .route(
            "/2/media/upload/{id}/append",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Body| {
                let appended = appended.clone();
                async move {
                    if !authorized(&headers) {
                        return unauthorized().into_response();
                    }
                    // The multipart body, read as it comes and never kept.
                    let mut stream = body.into_data_stream();
                    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                        appended.fetch_add(chunk.unwrap().len() as u64, Relaxed);
                    }
                    axum::http::StatusCode::NO_CONTENT.into_response()
                }
            }),
        )
        .route(
            "/2/media/upload/{id}/finalize",
            post(
                move |headers: axum::http::HeaderMap, axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if !authorized(&headers) {
                        return unauthorized();
                    }
                    (axum::http::StatusCode::OK, Json(json!({"data": {"id": id, "media_key": format!("3_{id}")}})))
                },
            ),
        )
        .route(
            "/2/tweets",
            post(move |headers: axum::http::HeaderMap, Json(tweet): Json<Value>| {
                let tweets = tweets.clone();
                async move {
                    if !authorized(&headers) {
                        return unauthorized();
                    }
                    assert_eq!(tweet["media"]["media_ids"].as_array().map(Vec::len), Some(1), "one image: {tweet}");
                    tokio::time::sleep(PLATFORM_LATENCY).await;
                    tweets.fetch_add(1, Relaxed);
                    let id = Uuid::now_v7().as_u128().to_string();
                    (axum::http::StatusCode::CREATED, Json(json!({"data": {"id": id, "text": tweet["text"]}})))
                }
            }),
        )
}

/// `posts` posts on X accounts, each with the same 5 MB JPEG from the library (stored on the
/// local store the worker reads), all due at one instant; a fresh worker publishes them through
/// the real X adapter against [`fake_x`]. Measures from the due instant to the last
/// `published`, and the worker's peak RSS (the image is streamed from the store in 128 KiB
/// reads, so memory stays far below `concurrency` × 5 MB).
async fn media_phase(
    bench: &Bench,
    keyring: &herald_shared::crypto::Keyring,
    url: &str,
    encryption_key: &str,
    posts: usize,
    concurrency: &str,
) -> MediaFigures {
    use std::sync::atomic::Ordering::Relaxed;
    let pool = &bench.pool;
    let data_dir = std::env::temp_dir().join(format!("herald-bench-publish-{}", std::process::id()));
    // The store the worker opens on the same directory (`HERALD_DATA_DIR`).
    let config = herald_shared::config::Config { data_dir: data_dir.clone(), ..Default::default() };
    let store = herald_shared::media::MediaStore::from_config(&config).unwrap();
    let mut image = herald_shared::media::samples::jpeg(2048, 1536);
    image.resize(MEDIA_BYTES, 0);
    let media_id = Uuid::now_v7();
    let object_key = herald_shared::domain::media_item::object_key(media_id);
    let limits = herald_shared::media::MediaLimits { max_image_bytes: 10_000_000, max_video_bytes: 10_000_000 };
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(image))]);
    let facts = store.ingest(&object_key, body, &limits).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    herald_shared::commands::media::record_upload(
        &mut tx,
        media_id,
        bench.project_id,
        herald_shared::domain::api_key::Environment::Live,
        facts,
        object_key,
        &bench.metadata,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let accounts =
        common::connect_accounts(pool, keyring, bench.project_id, &bench.metadata, "x", MEDIA_ACCOUNTS).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let x = format!("http://{}", listener.local_addr().unwrap());
    let tweets = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fake = fake_x(tweets.clone(), appended.clone());
    tokio::spawn(async move { axum::serve(listener, fake).await });

    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(pool).await.unwrap();
    let start = usize::try_from(existing).unwrap();
    bench.create_posts(start..start + posts, &accounts, &[MediaRef { id: media_id, alt_text: None }]).await;
    let due = Utc::now() + chrono::Duration::from_std(LEAD).unwrap();
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'delivery.publish' AND state = 'available'")
        .bind(due)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE posts SET scheduled_at = $1 WHERE scheduled_at > $1").bind(due).execute(pool).await.unwrap();

    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("worker")
        .env("HERALD_OPS_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", url)
        .env("HERALD_ENCRYPTION_KEY", encryption_key)
        .env("HERALD_DATA_DIR", &data_dir)
        .env("HERALD_PLATFORMS__X__API_URL", &x)
        .env("HERALD_PLATFORMS__X__UPLOAD_URL", &x)
        // Publishing needs the OAuth client the accounts were connected through (the managed one).
        .env("HERALD_PLATFORMS__X__CLIENT_ID", "bench-client")
        .env("HERALD_PLATFORMS__X__CLIENT_SECRET", "bench-secret")
        // X's real caps (300 per app in 3 hours) would make this a bench of the limiter.
        .env("HERALD_PLATFORMS__X__PUBLISHES_PER_HOUR", "1000000")
        .env("HERALD_PLATFORMS__X__APP_PUBLISHES_PER_HOUR", "1000000")
        .env("HERALD_QUEUE__CONCURRENCY__PUBLISH", concurrency)
        .env("HERALD_DATABASE_MAX_CONNECTIONS", "40")
        .env("HERALD_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the herald worker");
    let pid = worker.id().expect("the worker's pid");
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let mut published = 0;
    while std::time::Instant::now() < deadline {
        peak = peak.max(peak_rss_kb(pid));
        // Every delivery ended, published or not (a failed one would otherwise be waited for).
        let (ended, done): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE d.status IN ('published', 'failed', 'unknown')),
                    count(*) FILTER (WHERE d.status = 'published')
             FROM deliveries d JOIN accounts a ON a.id = d.account_id WHERE a.platform = 'x'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        published = done;
        if ended as usize >= posts {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak = peak.max(peak_rss_kb(pid));
    worker.kill().await.ok();
    let last: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(d.published_at) FROM deliveries d JOIN accounts a ON a.id = d.account_id WHERE a.platform = 'x'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    let seconds_to_last = last.map_or(f64::NAN, |last| (last - due).num_milliseconds() as f64 / 1000.0);
    MediaFigures {
        published,
        tweets: tweets.load(Relaxed),
        appended: appended.load(Relaxed),
        seconds_to_last,
        per_second: published as f64 / seconds_to_last.max(0.001),
        rss_mb: peak as f64 / 1024.0,
    }
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
}

impl Bench {
    /// Posts `indexes`, one target each (`accounts` in turn), carrying `media`, due in an hour,
    /// each with its publish job queued, 1,000 per transaction.
    async fn create_posts(&self, indexes: std::ops::Range<usize>, accounts: &[Uuid], media: &[MediaRef]) {
        let later = Utc::now() + chrono::Duration::hours(1);
        let indexes: Vec<usize> = indexes.collect();
        for chunk in indexes.chunks(PER_TRANSACTION) {
            let mut tx = self.pool.begin().await.unwrap();
            for index in chunk {
                let id = Uuid::now_v7();
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
                    project_id: self.project_id,
                    content: format!("bench post {index}"),
                    media: media.to_vec(),
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
