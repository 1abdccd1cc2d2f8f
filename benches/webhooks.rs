//! `make bench-webhooks`: 20,000 events to 10 endpoints, sent by one `herald worker` process
//! (and dispatched by one `herald scheduler`) to a receiver on loopback that answers every
//! message in 20 ms.
//!
//! Ten projects, each with one endpoint hearing every type (made by a key of every scope, so
//! reach is no filter) and 2,000 connected accounts: 20,000 `account.connected` events, each a
//! message carrying the account as the api shows it, signed. The events are appended before the
//! scheduler and the worker start, so the first phase measures the drain of that backlog:
//! messages/s from the first message's arrival to the last's. The second phase measures latency
//! under capacity: 2,000 more events appended one per transaction at 500 a second, each timed
//! from its commit (its `recorded_at`) to its arrival at the receiver (p50, p99). Every message's
//! signature is checked by the receiver; the worker's peak RSS is its `VmHWM`.
//! `BENCH_WEBHOOKS_IN_FLIGHT` (default 32) is each endpoint's `max_in_flight`.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_shared::commands::execute;
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, Grant};
use herald_shared::domain::api_key::{Environment, SCOPES};
use herald_shared::domain::webhook::{self, KeyReach, Settings, WebhookEndpoint};
use herald_shared::events::EventMetadata;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use uuid::Uuid;

const ENDPOINTS: usize = 10;
const EVENTS_PER_ENDPOINT: usize = 2_000;
const RECEIVER_LATENCY: Duration = Duration::from_millis(20);
const STEADY_EVENTS: usize = 2_000;
const STEADY_PER_SECOND: f64 = 500.0;

/// What the receiver saw: each message's id and arrival, and how many signatures failed.
#[derive(Default)]
struct Heard {
    arrivals: Vec<(String, DateTime<Utc>)>,
    bad_signatures: usize,
}

#[tokio::main]
async fn main() {
    let in_flight: i32 = std::env::var("BENCH_WEBHOOKS_IN_FLIGHT").ok().and_then(|n| n.parse().ok()).unwrap_or(32);
    let (pool, url) = common::fresh_database("herald_bench_webhooks").await;
    let key = herald_shared::crypto::Keyring::generate_base64();
    let mut keyring = herald_shared::crypto::Keyring::default();
    keyring.push_base64(key.expose_secret()).unwrap();

    let heard = Arc::new(Mutex::new(Heard::default()));
    let secrets: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    let (kept, known) = (heard.clone(), secrets.clone());
    let app = Router::new().route(
        "/hook/{endpoint}",
        axum::routing::post(
            move |axum::extract::Path(endpoint): axum::extract::Path<String>, headers: HeaderMap, body: Bytes| {
                let (kept, known) = (kept.clone(), known.clone());
                async move {
                    tokio::time::sleep(RECEIVER_LATENCY).await;
                    let arrived = Utc::now();
                    let header =
                        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    let id = header("webhook-id");
                    let secret = known.lock().unwrap().get(&endpoint).cloned().unwrap_or_default();
                    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
                    mac.update(format!("{id}.{}.", header("webhook-timestamp")).as_bytes());
                    mac.update(&body);
                    let expected =
                        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
                    let mut heard = kept.lock().unwrap();
                    if !header("webhook-signature").split(' ').any(|signature| signature == expected) {
                        heard.bad_signatures += 1;
                    }
                    heard.arrivals.push((id, arrived));
                    StatusCode::NO_CONTENT
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Ten projects, an endpoint each, and their accounts' connects: the backlog.
    let setup = std::time::Instant::now();
    let mut projects = Vec::new();
    for index in 0..ENDPOINTS {
        let (project_id, _, _) =
            herald_shared::commands::keys::create_project(&pool, &format!("bench {index}"), &EventMetadata::default())
                .await
                .unwrap();
        let metadata = EventMetadata { project_id: Some(project_id), ..EventMetadata::default() };
        let endpoint_id = Uuid::now_v7();
        let settings = Settings {
            url: format!("{receiver}/hook/{endpoint_id}"),
            description: None,
            event_types: None,
            max_in_flight: in_flight,
        };
        let reach = KeyReach {
            environment: Environment::Live,
            scopes: SCOPES.iter().map(|scope| (*scope).to_owned()).collect(),
            platforms: None,
            accounts: None,
        };
        let secret = credentials::generate_webhook_secret();
        let bytes = base64::engine::general_purpose::STANDARD.decode(&secret.expose_secret()[6..]).unwrap();
        secrets.lock().unwrap().insert(endpoint_id.to_string(), bytes);
        let mut tx = pool.begin().await.unwrap();
        execute::<WebhookEndpoint>(
            &mut tx,
            endpoint_id,
            webhook::Command::Create { project_id, settings, reach },
            &metadata,
        )
        .await
        .unwrap();
        credentials::store_webhook_secret(&mut tx, &keyring, endpoint_id, &secret, &Default::default()).await.unwrap();
        tx.commit().await.unwrap();
        projects.push((project_id, metadata));
    }
    for chunk in 0..EVENTS_PER_ENDPOINT / 100 {
        let mut tx = pool.begin().await.unwrap();
        for (project_id, metadata) in &projects {
            for n in 0..100 {
                connect(&mut tx, *project_id, metadata, &format!("backlog-{chunk}-{n}")).await;
            }
        }
        tx.commit().await.unwrap();
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    let backlog = ENDPOINTS * EVENTS_PER_ENDPOINT;

    let spawn = |role: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg(role)
            .env("DATABASE_URL", &url)
            .env("HERALD_ENCRYPTION_KEY", key.expose_secret())
            .env("HERALD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("HERALD_DATABASE_MAX_CONNECTIONS", "30")
            .env("HERALD_QUEUE__CONCURRENCY__WEBHOOKS", "16")
            .env("HERALD_LOG", "warn")
            .env("HERALD_OPS_LISTEN", "127.0.0.1:0")
            .kill_on_drop(true)
            .spawn()
            .expect("start herald")
    };
    let mut worker = spawn("worker");
    let worker_pid = worker.id().unwrap();
    let mut scheduler = spawn("scheduler");
    let started = Utc::now();
    let mut peak_kb = 0;
    let wait_for = |count: usize, within: Duration| {
        let heard = heard.clone();
        async move {
            let deadline = std::time::Instant::now() + within;
            let mut peak = 0;
            while heard.lock().unwrap().arrivals.len() < count && std::time::Instant::now() < deadline {
                peak = peak.max(peak_rss_kb(worker_pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        }
    };
    peak_kb = peak_kb.max(wait_for(backlog, Duration::from_secs(600)).await);
    let (drained, first, last) = {
        let heard = heard.lock().unwrap();
        let first = heard.arrivals.iter().map(|(_, at)| *at).min().unwrap_or(started);
        let last = heard.arrivals.iter().map(|(_, at)| *at).max().unwrap_or(started);
        (heard.arrivals.len(), first, last)
    };
    let drain_secs = (last - first).num_milliseconds() as f64 / 1000.0;
    let messages_per_s = drained.saturating_sub(1) as f64 / drain_secs.max(0.001);
    let from_start_secs = (last - started).num_milliseconds() as f64 / 1000.0;

    // Under capacity: one event per transaction, 500 a second over the ten projects.
    let steady_from = Utc::now();
    let interval = Duration::from_secs_f64(1.0 / STEADY_PER_SECOND);
    let mut ticker = tokio::time::interval(interval);
    for n in 0..STEADY_EVENTS {
        ticker.tick().await;
        let (project_id, metadata) = &projects[n % ENDPOINTS];
        let mut tx = pool.begin().await.unwrap();
        connect(&mut tx, *project_id, metadata, &format!("steady-{n}")).await;
        tx.commit().await.unwrap();
    }
    peak_kb = peak_kb.max(wait_for(backlog + STEADY_EVENTS, Duration::from_secs(120)).await);
    let committed: HashMap<i64, DateTime<Utc>> =
        sqlx::query_as::<_, (i64, DateTime<Utc>)>("SELECT position, recorded_at FROM events WHERE recorded_at >= $1")
            .bind(steady_from)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let (mut latencies, steady_heard, bad_signatures, duplicates) = {
        let heard = heard.lock().unwrap();
        let mut latencies = Vec::new();
        for (id, arrived) in &heard.arrivals {
            let position = id.trim_start_matches("evt_").parse::<i64>().unwrap_or(-1);
            if let Some(at) = committed.get(&position) {
                latencies.push((*arrived - *at).to_std().unwrap_or_default());
            }
        }
        let mut ids: Vec<&String> = heard.arrivals.iter().map(|(id, _)| id).collect();
        ids.sort();
        ids.dedup();
        (
            latencies,
            heard.arrivals.len() - backlog.min(heard.arrivals.len()),
            heard.bad_signatures,
            heard.arrivals.len() - ids.len(),
        )
    };
    let latency_p50 = common::percentile_ms(&mut latencies, 50.0);
    let latency_p99 = common::percentile_ms(&mut latencies, 99.0);
    let rss_mb = peak_kb as f64 / 1024.0;
    worker.kill().await.ok();
    scheduler.kill().await.ok();
    let _ = worker.wait().await;
    let _ = scheduler.wait().await;

    println!(
        "webhooks bench: {backlog} events to {ENDPOINTS} endpoints (one project each), one worker and one scheduler"
    );
    println!("process, a receiver answering in {} ms, max_in_flight {in_flight}\n", RECEIVER_LATENCY.as_millis());
    println!("| measure | value |");
    println!("|---|---|");
    println!("| setup (projects, endpoints, {backlog} account.connected events) | {setup_secs:.1} s |");
    println!("| backlog messages received | {drained} of {backlog} |");
    println!("| seconds from the first message to the last | {drain_secs:.2} |");
    println!("| seconds from the roles' start to the last message | {from_start_secs:.2} |");
    println!("| messages/s | {messages_per_s:.0} |");
    println!("| under capacity: {STEADY_EVENTS} events at {STEADY_PER_SECOND:.0}/s, received | {steady_heard} |");
    println!("| under capacity: commit -> receiver p50 | {latency_p50:.0} ms |");
    println!("| under capacity: commit -> receiver p99 | {latency_p99:.0} ms |");
    println!("| signatures that did not verify | {bad_signatures} |");
    println!("| messages received more than once | {duplicates} |");
    println!("| worker peak RSS | {rss_mb:.0} MB |");
    println!(
        "{}",
        common::result_line(&[
            ("messages_per_s", messages_per_s),
            ("latency_p50_ms", latency_p50),
            ("latency_p99_ms", latency_p99),
            ("worker_rss_mb", rss_mb),
        ])
    );
}

/// Records one account's connect in `tx`, as the exchange job does.
async fn connect(tx: &mut sqlx::PgConnection, project_id: Uuid, metadata: &EventMetadata, user: &str) {
    let grant = Grant {
        project_id,
        platform: "sandbox".into(),
        platform_user_id: user.into(),
        kind: "person".into(),
        username: Some(user.into()),
        display_name: Some(format!("Bench {user}")),
        external_id: None,
        app_id: None,
        scopes: vec!["post".into()],
        expires_at: None,
        session_id: Uuid::now_v7(),
    };
    execute::<Account>(tx, Uuid::now_v7(), account::Command::Connect(Box::new(grant)), metadata).await.unwrap();
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 once it is gone.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:")?.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
