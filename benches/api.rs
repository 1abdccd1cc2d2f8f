//! `make bench-api`: what the api's edge costs under load.
//!
//! The api runs in this process against the bench database; 64 client connections (one
//! keep-alive connection per task, like 64 clients) drive, for a few seconds each:
//! - `GET /healthz`: no key, no database; the floor of the HTTP stack on this machine;
//! - `GET /v1/keys`: authentication (a key lookup), the per-minute and per-day limits (two
//!   upserts in the shared limiter), the list query;
//! - `POST /v1/keys` with a body that fails validation: authentication, limits and the
//!   idempotency check, then a 422 before anything is written (a write that does nothing).
//!
//! Then `/healthz` and `GET /v1/keys` again on one connection: the edge's own cost, without
//! queueing. The client, the server and PostgreSQL share the machine's cores.
//!
//! Last, overload: `GET /v1/keys` offered open-loop at ten times the rate measured above (each
//! request sent on schedule whatever the earlier ones got, up to 8,192 in flight in the
//! client) for 5 s. The api must keep answering (a 503 `overloaded` problem past
//! `HERALD_MAX_IN_FLIGHT`, or a 429) rather than time out, and its memory must stay bounded:
//! reported are the answers by kind, the p99 of each, and the process's peak RSS before and
//! after the phase (the api runs in this process, so the client's share is in it too).
// A benchmark that cannot set up should stop loudly; it is never shipped code.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_shared::Config;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::events::EventMetadata;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 64;
const SECONDS: u64 = 5;

#[derive(Clone, Copy)]
enum Call {
    Health,
    ListKeys,
    InvalidPost,
}

struct Measured {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

async fn drive(base: &str, key: &str, call: Call, connections: usize) -> Measured {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
        let (base, key) = (base.to_owned(), key.to_owned());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                let request = match call {
                    Call::Health => client.get(format!("{base}/healthz")),
                    Call::ListKeys => client.get(format!("{base}/v1/keys?limit=10")).bearer_auth(&key),
                    Call::InvalidPost => client
                        .post(format!("{base}/v1/keys"))
                        .bearer_auth(&key)
                        .json(&serde_json::json!({"name": "", "scopes": ["nope"]})),
                };
                let expected = match call {
                    Call::Health | Call::ListKeys => 200,
                    Call::InvalidPost => 422,
                };
                match request.send().await {
                    Ok(response) if response.status().as_u16() == expected => {
                        let _ = response.bytes().await;
                        latencies.push(started.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let began = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, failed) = done.unwrap();
        all.extend(latencies);
        errors += failed;
    }
    let elapsed = began.elapsed().as_secs_f64().max(SECONDS as f64);
    Measured {
        requests_per_s: all.len() as f64 / elapsed,
        p50_ms: common::percentile_ms(&mut all, 50.0),
        p99_ms: common::percentile_ms(&mut all, 99.0),
        errors,
    }
}

const OVERLOAD_SECONDS: u64 = 5;
const CLIENT_IN_FLIGHT: usize = 8192;

#[derive(Default)]
struct Overload {
    offered_per_s: f64,
    ok: usize,
    shed: usize,
    limited: usize,
    other: usize,
    failed: usize,
    unsent: usize,
    ok_p99_ms: f64,
    shed_p99_ms: f64,
}

/// `GET /v1/keys` sent at `rate` per second for [`OVERLOAD_SECONDS`], each on schedule.
async fn overload(base: &str, key: &str, rate: f64) -> Overload {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(1024).build().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(CLIENT_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let total = (rate * OVERLOAD_SECONDS as f64) as usize;
    let started = Instant::now();
    let mut result = Overload { offered_per_s: rate, ..Overload::default() };
    for index in 0..total {
        let due = started + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            result.unsent += 1;
            continue;
        };
        let request = client.get(format!("{base}/v1/keys?limit=10")).bearer_auth(key);
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = request.send().await;
            let status = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    Some(status)
                }
                Err(_) => None,
            };
            drop(permit);
            (status, sent.elapsed())
        });
    }
    let (mut ok, mut shed) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (Some(200), took) => ok.push(took),
            (Some(503), took) => shed.push(took),
            (Some(429), _) => result.limited += 1,
            (Some(_), _) => result.other += 1,
            (None, _) => result.failed += 1,
        }
    }
    result.ok = ok.len();
    result.shed = shed.len();
    result.ok_p99_ms = common::percentile_ms(&mut ok, 99.0);
    result.shed_p99_ms = common::percentile_ms(&mut shed, 99.0);
    result
}

/// This process's peak resident set (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let (pool, url) = common::fresh_database("herald_bench_api").await;
    let config = Arc::new(Config {
        database_url: Some(SecretString::from(url)),
        listen: "127.0.0.1:0".parse().unwrap(),
        encryption_key: Some(herald_shared::crypto::Keyring::generate_base64()),
        log: "error".into(),
        ..Config::default()
    });
    let (project_id, _, _) = keys::create_project(&pool, "bench", &EventMetadata::default()).await.unwrap();
    // Limits far above what the bench can reach: it measures the limiter's cost, not refusals.
    let unlimited =
        KeyRequest { requests_per_minute: i32::MAX, requests_per_day: i32::MAX, ..KeyRequest::admin("bench") };
    let (_, secret) = keys::create_key(&pool, project_id, unlimited, 10, &EventMetadata::default()).await.unwrap();
    let key = keys::reveal(&secret).to_owned();

    let shutdown = CancellationToken::new();
    let server = herald_api::start(config, shutdown.clone()).await.unwrap().expect("serving");
    let base = format!("http://{}", server.local_addr);

    println!(
        "api bench: {CONNECTIONS} connections, {SECONDS} s per route, client + server + PostgreSQL on this machine\n"
    );
    let health = drive(&base, &key, Call::Health, CONNECTIONS).await;
    let get = drive(&base, &key, Call::ListKeys, CONNECTIONS).await;
    let post = drive(&base, &key, Call::InvalidPost, CONNECTIONS).await;
    // One connection: what a request costs without queueing behind 63 others.
    let health_alone = drive(&base, &key, Call::Health, 1).await;
    let get_alone = drive(&base, &key, Call::ListKeys, 1).await;
    let post_alone = drive(&base, &key, Call::InvalidPost, 1).await;

    println!("| route | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
    for (name, measured) in
        [("GET /healthz (no key)", &health), ("GET /v1/keys", &get), ("POST /v1/keys (422, writes nothing)", &post)]
    {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            measured.requests_per_s, measured.p50_ms, measured.p99_ms, measured.errors
        );
    }
    for (name, measured) in [
        ("GET /healthz, 1 connection", &health_alone),
        ("GET /v1/keys, 1 connection", &get_alone),
        ("POST /v1/keys (422), 1 connection", &post_alone),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            measured.requests_per_s, measured.p50_ms, measured.p99_ms, measured.errors
        );
    }
    // The 422 POST does nothing after authentication but validate its body, so over /healthz
    // it is the edge's own cost: key lookup, IP/origin rules and the shared limiter.
    println!(
        "\nauthentication + limiter over /healthz (the 422 POST), p99: {:.2} ms at 1 connection, {:.2} ms at {CONNECTIONS}",
        post_alone.p99_ms - health_alone.p99_ms,
        post.p99_ms - health.p99_ms
    );
    let rss_before = peak_rss_mb();
    let overload = overload(&base, &key, get.requests_per_s * 10.0).await;
    let rss_after = peak_rss_mb();
    println!(
        "\noverload: GET /v1/keys offered at {:.0}/s (10 x {:.0}/s) for {OVERLOAD_SECONDS} s, open loop",
        overload.offered_per_s, get.requests_per_s
    );
    println!("| answer | count | p99 ms |");
    println!("|---|---|---|");
    for (name, count, p99) in [
        ("200", overload.ok, overload.ok_p99_ms),
        ("503 overloaded (problem)", overload.shed, overload.shed_p99_ms),
        ("429", overload.limited, f64::NAN),
        ("other status", overload.other, f64::NAN),
        ("timed out (5 s) or connection error", overload.failed, f64::NAN),
        ("not sent: client at 8,192 in flight", overload.unsent, f64::NAN),
    ] {
        println!("| {name} | {count} | {p99:.2} |");
    }
    println!("| process peak RSS before / after | {rss_before:.0} MB / {rss_after:.0} MB | |");
    shutdown.cancel();
    server.task.await.unwrap().unwrap();
    println!(
        "{}",
        common::result_line(&[
            ("get_rps", get.requests_per_s),
            ("get_p99_ms", get.p99_ms),
            ("post_rps", post.requests_per_s),
            ("post_p99_ms", post.p99_ms),
            ("overload_offered_per_s", overload.offered_per_s),
            ("overload_ok", overload.ok as f64),
            ("overload_shed", overload.shed as f64),
            ("overload_failed", overload.failed as f64),
            ("overload_shed_p99_ms", overload.shed_p99_ms),
            ("overload_rss_growth_mb", rss_after - rss_before),
        ])
    );
}
