//! A rate limiter shared by every herald process, in PostgreSQL.
//!
//! The generic cell rate algorithm (GCRA): each key stores one timestamp, the theoretical
//! arrival time (`tat`) of its next request. A request at `now` is allowed when
//! `max(tat, now) + interval - burst * interval <= now`, and then moves `tat` on by one
//! interval. That is a token bucket of `burst` tokens refilled at `limit` per `period`, kept in
//! a single column. One statement decides: the SQL function `rate_limit_acquire_batch` (in
//! `migrations/`) locks the keys' rows, so concurrent callers on any number of processes are
//! serialised and never admitted beyond the rate. Several limits are taken all or nothing, and
//! many requests can be decided in one call ([`acquire_many`]).
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
    pub const fn per(limit: u32, period: Duration) -> Self {
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

/// Takes one request from every limit in `limits` at once, all or nothing, in one round trip
/// (an api key's per-minute and per-day limits): either each admits it, or none is charged and
/// the answer says when all would. `remaining` is the least of them; `reset_at` is the first's.
pub async fn acquire_all<'e>(executor: impl PgExecutor<'e>, limits: &[(&str, Rate)]) -> Result<Decision, sqlx::Error> {
    let decisions = acquire_many(executor, &[limits]).await?;
    decisions.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// [`acquire_all`] for many requests in one statement, decided in order: each sees the
/// allowance the earlier ones left. Every key is locked once for the whole batch, so a batch of
/// a busy worker's publish jobs costs one lock of their shared per-app key, not one each.
pub async fn acquire_many<'e>(
    executor: impl PgExecutor<'e>,
    requests: &[&[(&str, Rate)]],
) -> Result<Vec<Decision>, sqlx::Error> {
    // The distinct keys, sorted: the order rows are locked in, so two batches cannot deadlock.
    let mut keys: Vec<&str> = requests.iter().flat_map(|limits| limits.iter().map(|(key, _)| *key)).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut entry_request = Vec::new();
    let mut entry_key = Vec::new();
    let mut intervals = Vec::new();
    let mut bursts = Vec::new();
    for (request, limits) in requests.iter().enumerate() {
        for (key, rate) in limits.iter() {
            let index = keys.binary_search(key).unwrap_or_default();
            entry_request.push(i32::try_from(request + 1).unwrap_or(i32::MAX));
            entry_key.push(i32::try_from(index + 1).unwrap_or(i32::MAX));
            intervals.push(rate.interval().as_secs_f64());
            bursts.push(f64::from(rate.burst.max(1)));
        }
    }
    let rows = sqlx::query!(
        r#"SELECT request AS "request!", allowed AS "allowed!", retry_at, remaining AS "remaining!", reset_at AS "reset_at!"
           FROM rate_limit_acquire_batch($1, $2, $3, $4, $5)"#,
        &keys as &[&str],
        &entry_request,
        &entry_key,
        &intervals,
        &bursts,
    )
    .fetch_all(executor)
    .await?;
    // A request with no limits has no row: nothing limits it.
    let mut decisions = vec![Decision::Allowed { remaining: u32::MAX, reset_at: Utc::now() }; requests.len()];
    for row in rows {
        let Some(decision) = usize::try_from(row.request - 1).ok().and_then(|index| decisions.get_mut(index)) else {
            continue;
        };
        *decision = match (row.allowed, row.retry_at) {
            (false, Some(retry_at)) => Decision::RetryAt(retry_at),
            _ => Decision::Allowed { remaining: u32::try_from(row.remaining).unwrap_or(0), reset_at: row.reset_at },
        };
    }
    Ok(decisions)
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
