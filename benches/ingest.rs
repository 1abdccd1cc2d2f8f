//! `make bench-ingest`: how fast the event log takes commands.
//!
//! Writers append `post.created` events with their projection rows (a `posts` row and a
//! `deliveries` row), with synchronous commit on, two ways: each command in its own transaction
//! (`execute`), and through the group committer (`execute_loaded` on a new stream), which gathers concurrent commands
//! into one transaction. Next to them, pgbench's single-row INSERT TPS on the same server with
//! the same client counts: the cost of the simplest durable write. The RESULT line reports the
//! group committer, the path the api takes for creations.
// A benchmark that cannot set up should stop loudly; it is never shipped code.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_shared::commands::{execute, execute_loaded};
use herald_shared::domain::{post, project};
use herald_shared::events::{EventMetadata, GroupCommitter};
use herald_shared::projections::ReadModels;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const WRITER_COUNTS: [usize; 3] = [1, 8, 64];
const SECONDS_PER_LEVEL: u64 = 6;
/// Appender tasks (each with its own connection) and their batch size; `BENCH_APPENDERS`
/// overrides the first, to compare.
const DEFAULT_APPENDERS: usize = 2;
const MAX_BATCH: usize = 128;

fn appenders() -> usize {
    std::env::var("BENCH_APPENDERS").ok().and_then(|value| value.parse().ok()).unwrap_or(DEFAULT_APPENDERS)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    OneTransactionEach,
    GroupCommit,
}

struct Level {
    writers: usize,
    single: Measured,
    grouped: Measured,
    pgbench_tps: f64,
}

struct Measured {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() {
    let (pool, url) = common::fresh_database("herald_bench_ingest").await;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await.unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await.unwrap();
    sqlx::query("CREATE TABLE pgbench_single_insert (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let project_id = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    execute::<project::Project>(
        &mut tx,
        project_id,
        project::Command::Create { name: "bench".into() },
        &EventMetadata::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;

    let mut levels = Vec::new();
    for writers in WRITER_COUNTS {
        let single = append_for(&url, project_id, writers, Mode::OneTransactionEach).await;
        let grouped = append_for(&url, project_id, writers, Mode::GroupCommit).await;
        let pgbench_tps = common::pgbench_tps(
            &url,
            "INSERT INTO pgbench_single_insert (payload) VALUES ('hello world');\n",
            writers,
            SECONDS_PER_LEVEL,
        );
        levels.push(Level { writers, single, grouped, pgbench_tps });
    }

    println!("event log ingest: post.created + projection rows, one transaction each");
    println!(
        "synchronous_commit={synchronous_commit} fsync={fsync}, {SECONDS_PER_LEVEL} s per run, \
         group commit: {} appenders x {MAX_BATCH} per batch",
        appenders()
    );
    println!();
    println!(
        "{:>8} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>12}",
        "writers", "1tx ev/s", "p50 ms", "p99 ms", "group ev/s", "p50 ms", "p99 ms", "pgbench tps"
    );
    for level in &levels {
        let (single, grouped) = (&level.single, &level.grouped);
        println!(
            "{:>8} | {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} | {:>12.0}",
            level.writers,
            single.events_per_s,
            single.p50_ms,
            single.p99_ms,
            grouped.events_per_s,
            grouped.p50_ms,
            grouped.p99_ms,
            level.pgbench_tps
        );
    }
    let find = |writers: usize| levels.iter().find(|level| level.writers == writers).expect("measured");
    println!(
        "{}",
        common::result_line(&[
            ("events_per_s_1", find(1).grouped.events_per_s),
            ("events_per_s_8", find(8).grouped.events_per_s),
            ("events_per_s_64", find(64).grouped.events_per_s),
            ("p99_ms_64", find(64).grouped.p99_ms),
            ("pgbench_insert_tps_64", find(64).pgbench_tps),
        ])
    );
}

/// `writers` tasks append for a fixed time; returns events/s and p50/p99 latency.
async fn append_for(url: &str, project_id: Uuid, writers: usize, mode: Mode) -> Measured {
    let connections = u32::try_from(if mode == Mode::GroupCommit { appenders() } else { writers }).unwrap();
    let pool =
        PgPoolOptions::new().max_connections(connections).min_connections(connections).connect(url).await.unwrap();
    let committer = GroupCommitter::spawn(pool.clone(), Arc::new(ReadModels), appenders(), MAX_BATCH);
    let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_LEVEL);
    let started = Instant::now();
    let metadata =
        Arc::new(EventMetadata { project_id: Some(project_id), actor: Some("bench".into()), ..Default::default() });
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (pool, metadata, committer) = (pool.clone(), metadata.clone(), committer.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let began = Instant::now();
                let command = post::Command::Create {
                    project_id,
                    content: "Our spring collection is here".into(),
                    media: Vec::new(),
                    thread: Vec::new(),
                    first_comment: None,
                    targets: vec![post::Target {
                        delivery_id: Uuid::now_v7(),
                        account_id: Uuid::now_v7(),
                        content: None,
                        options: serde_json::Value::Null,
                        media: None,
                        thread: None,
                        first_comment: None,
                    }],
                    scheduled_at: None,
                    draft: false,
                    requires_approval: false,
                    external_id: None,
                    now: Utc::now(),
                };
                match mode {
                    Mode::OneTransactionEach => {
                        let mut tx = pool.begin().await.unwrap();
                        execute::<post::Post>(&mut tx, Uuid::now_v7(), command, &metadata).await.unwrap();
                        tx.commit().await.unwrap();
                    }
                    Mode::GroupCommit => {
                        execute_loaded(
                            &committer,
                            Uuid::now_v7(),
                            &mut (post::Post::default(), 0),
                            command,
                            (*metadata).clone(),
                        )
                        .await
                        .unwrap();
                    }
                }
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    pool.close().await;
    Measured {
        events_per_s: latencies.len() as f64 / elapsed,
        p50_ms: common::percentile_ms(&mut latencies, 50.0),
        p99_ms: common::percentile_ms(&mut latencies, 99.0),
    }
}
