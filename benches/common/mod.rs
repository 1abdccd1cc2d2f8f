//! What every herald benchmark shares: a fresh database on the server `DATABASE_URL` names,
//! latency percentiles, pgbench as the yardstick, and the report format (a table, then a last
//! line `RESULT name=value ...`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use herald_shared::commands::execute;
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, Grant};
use herald_shared::events::EventMetadata;
use herald_shared::platforms::TokenSet;
use secrecy::SecretString;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// A migrated database of its own, recreated on every run.
pub async fn fresh_database(name: &str) -> (PgPool, String) {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL names the PostgreSQL to measure against");
    let url = herald_shared::db::with_database(&server, name);
    let mut admin = PgConnection::connect(&server).await.expect("connect to DATABASE_URL");
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.expect("drop");
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create");
    admin.close().await.ok();
    let pool = PgPool::connect(&url).await.expect("connect to the bench database");
    herald_shared::db::migrate(&pool).await.expect("migrate");
    (pool, url)
}

/// The `p`-th percentile (0..=100) of `samples`, in milliseconds.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

/// pgbench's TPS for `script` at `clients`, for `seconds`, against `url`.
pub fn pgbench_tps(url: &str, script: &str, clients: usize, seconds: u64) -> f64 {
    let file: PathBuf = std::env::temp_dir().join(format!("herald-pgbench-{}.sql", std::process::id()));
    std::fs::write(&file, script).expect("write the pgbench script");
    let output = Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", &clients.min(2).to_string(), "-T", &seconds.to_string(), "-f"])
        .arg(&file)
        .arg(url)
        .output()
        .expect("run pgbench (apt-get install postgresql-contrib or postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = ").and_then(|rest| rest.split_whitespace().next()?.parse().ok()))
        .unwrap_or_else(|| panic!("pgbench printed no tps: {stdout} {}", String::from_utf8_lossy(&output.stderr)))
}

/// The last line every bench prints.
pub fn result_line(pairs: &[(&str, f64)]) -> String {
    let fields: Vec<String> = pairs.iter().map(|(name, value)| format!("{name}={}", format_number(*value))).collect();
    format!("RESULT {}", fields.join(" "))
}

fn format_number(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

/// `count` connected accounts of `platform`, each with its own grant and sealed tokens (valid for
/// a month, so no refresh comes first), as a connect makes them.
pub async fn connect_accounts(
    pool: &PgPool,
    keyring: &herald_shared::crypto::Keyring,
    project_id: Uuid,
    metadata: &EventMetadata,
    platform: &'static str,
    count: usize,
) -> Vec<Uuid> {
    let mut accounts = Vec::with_capacity(count);
    let mut tx = pool.begin().await.unwrap();
    for index in 0..count {
        let id = Uuid::now_v7();
        let grant = Grant {
            project_id,
            platform: platform.into(),
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
        execute::<Account>(&mut tx, id, account::Command::Connect(Box::new(grant)), metadata).await.unwrap();
        let tokens = TokenSet {
            access_token: SecretString::from(format!("bench-token-{index}")),
            refresh_token: None,
            expires_at: Some(Utc::now() + chrono::Duration::days(30)),
            scopes: vec![],
        };
        // One grant per person, as a connect makes it.
        let grant = credentials::GrantRef { id: Uuid::now_v7(), project_id, platform };
        credentials::store_grant_tokens(&mut tx, keyring, grant, &tokens).await.unwrap();
        credentials::link_account(&mut tx, keyring, id, grant.id, None).await.unwrap();
        accounts.push(id);
    }
    tx.commit().await.unwrap();
    accounts
}
