//! Workers and schedulers say they are alive, so `/readyz` can tell an operator when a deployment
//! has no live worker, and so a crashed process is visible.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The role a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Claims and runs jobs.
    Worker,
    /// Turns due state into jobs.
    Scheduler,
}

impl Role {
    /// The name stored in `process_heartbeats.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
        }
    }
}

/// Records a heartbeat for `process_id` every `interval` until `shutdown`, then removes the row.
pub async fn run(pool: PgPool, role: Role, process_id: Uuid, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let beat = sqlx::query!(
            "INSERT INTO process_heartbeats (process_id, role, host, started_at, last_seen_at)
             VALUES ($1, $2, $3, now(), now())
             ON CONFLICT (process_id) DO UPDATE SET last_seen_at = now()",
            process_id,
            role.as_str(),
            hostname(),
        )
        .execute(&pool)
        .await;
        if let Err(error) = beat {
            tracing::warn!(%error, role = role.as_str(), "heartbeat failed");
        }
    }
    let _ = sqlx::query!("DELETE FROM process_heartbeats WHERE process_id = $1", process_id).execute(&pool).await;
}

/// How many processes of `role` reported within `fresh_within`.
pub async fn live_count(pool: &PgPool, role: Role, fresh_within: Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM process_heartbeats
           WHERE role = $1 AND last_seen_at > now() - make_interval(secs => $2)"#,
        role.as_str(),
        fresh_within.as_secs_f64(),
    )
    .fetch_one(pool)
    .await
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_owned()).unwrap_or_default()
}
