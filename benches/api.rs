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
    shutdown.cancel();
    server.task.await.unwrap().unwrap();
    println!(
        "{}",
        common::result_line(&[
            ("get_rps", get.requests_per_s),
            ("get_p99_ms", get.p99_ms),
            ("post_rps", post.requests_per_s),
            ("post_p99_ms", post.p99_ms),
        ])
    );
}
