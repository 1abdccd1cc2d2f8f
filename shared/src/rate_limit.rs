//! A rate limiter shared by every herald process, in PostgreSQL.
//!
//! The generic cell rate algorithm (GCRA): each key stores one timestamp, the theoretical
//! arrival time (`tat`) of its next request. A request at `now` is allowed when
//! `max(tat, now) + interval - burst * interval <= now`, and then moves `tat` on by one
//! interval. That is a token bucket of `burst` tokens refilled at `limit` per `period`, kept in
//! a single column. One statement decides: the SQL function `rate_limit_acquire_all` (in
//! `migrations/`) locks the keys' rows, so concurrent callers on any number of processes are
//! serialised and never admitted beyond the rate. Several limits are taken all or nothing.
//!
//! `block_until` records a reset time a platform named (`Retry-After`, `x-rate-limit-reset`):
//! until then every acquire is refused with that time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// `limit` requests per `period`, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rate {
    /// `limit` per `period`, all of which may come at once.
    pub fn per(limit: u32, period: Duration) -> Self {
        Self { limit, period, burst: limit }
    }

    /// The time one request uses up.
    pub fn interval(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead. `remaining` more would be allowed right now; the bucket is full again at
    /// `reset_at`.
    Allowed { remaining: u32, reset_at: DateTime<Utc> },
    /// Not before `retry_at`.
    RetryAt(DateTime<Utc>),
}

/// Takes one request from `key`'s allowance, or says when to come back.
pub async fn acquire<'e>(executor: impl PgExecutor<'e>, key: &str, rate: Rate) -> Result<Decision, sqlx::Error> {
    acquire_all(executor, &[(key, rate)]).await
}

/// Takes one request from every limit in `limits` at once, all or nothing, in one round trip
/// (an api key's per-minute and per-day limits): either each admits it, or none is charged and
/// the answer says when all would. `remaining` is the least of them; `reset_at` is the first's.
pub async fn acquire_all<'e>(executor: impl PgExecutor<'e>, limits: &[(&str, Rate)]) -> Result<Decision, sqlx::Error> {
    let keys: Vec<&str> = limits.iter().map(|(key, _)| *key).collect();
    let intervals: Vec<f64> = limits.iter().map(|(_, rate)| rate.interval().as_secs_f64()).collect();
    let bursts: Vec<f64> = limits.iter().map(|(_, rate)| f64::from(rate.burst.max(1))).collect();
    let row = sqlx::query!(
        r#"SELECT allowed AS "allowed!", retry_at, remaining AS "remaining!", reset_at AS "reset_at!"
           FROM rate_limit_acquire_all($1, $2, $3)"#,
        &keys as &[&str],
        &intervals,
        &bursts,
    )
    .fetch_one(executor)
    .await?;
    Ok(match (row.allowed, row.retry_at) {
        (false, Some(retry_at)) => Decision::RetryAt(retry_at),
        _ => Decision::Allowed { remaining: u32::try_from(row.remaining).unwrap_or(0), reset_at: row.reset_at },
    })
}

/// Refuses every acquire on `key` until `until` (a reset time the platform named). An earlier
/// block is never shortened.
pub async fn block_until<'e>(
    executor: impl PgExecutor<'e>,
    key: &str,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO rate_limits AS r (key, tat, blocked_until, updated_at)
           VALUES ($1, now(), $2, now())
           ON CONFLICT (key) DO UPDATE SET blocked_until = GREATEST(r.blocked_until, excluded.blocked_until),
                                           updated_at = now()"#,
        key,
        until,
    )
    .execute(executor)
    .await?;
    Ok(())
}
