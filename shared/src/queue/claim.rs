//! Taking due jobs under a lease.
//!
//! One statement locks up to `limit` due jobs with `FOR UPDATE SKIP LOCKED` (so concurrent
//! claimers never wait on each other or take the same job), marks them running under this
//! worker's lease and counts the attempt. The outer update finds the locked rows by `ctid`,
//! which is stable while the lock is held, so no second index lookup is needed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A job this worker now holds until its lease runs out.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub kind: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// This attempt's number, 1 for the first.
    pub attempt: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due jobs of `kinds` on `queue` for `worker_id`, leased for `lease`,
/// most urgent first.
pub async fn claim<'e>(
    executor: impl PgExecutor<'e>,
    worker_id: Uuid,
    queue: &str,
    kinds: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let mut jobs = sqlx::query_as!(
        ClaimedJob,
        r#"UPDATE jobs
           SET state = 'running', attempt = attempt + 1, worker_id = $1, started_at = now(),
               lease_until = now() + make_interval(secs => $5)
           WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM jobs
               WHERE state = 'available' AND queue = $2 AND run_at <= now() AND kind = ANY($3)
               ORDER BY priority DESC, run_at, id
               LIMIT $4
               FOR UPDATE SKIP LOCKED))
           RETURNING id, kind, payload::text AS "payload!", attempt, max_attempts, priority, run_at, created_at"#,
        worker_id,
        queue,
        kinds,
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(executor)
    .await?;
    jobs.sort_unstable_by(|a, b| b.priority.cmp(&a.priority).then(a.run_at.cmp(&b.run_at)));
    Ok(jobs)
}

/// How long until the next job of `kinds` on `queue` is due, by the database's clock: zero if
/// one is due already, `None` if none is waiting.
pub async fn next_due_in<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    kinds: &[String],
) -> Result<Option<Duration>, sqlx::Error> {
    // Not `GREATEST(0, ...)` in SQL: GREATEST ignores NULLs, so an empty queue would read as a
    // job due now and every idle dispatcher would spin.
    let millis = sqlx::query_scalar!(
        r#"SELECT (EXTRACT(epoch FROM min(run_at) - now()) * 1000)::float8 AS millis
           FROM jobs WHERE state = 'available' AND queue = $1 AND kind = ANY($2)"#,
        queue,
        kinds,
    )
    .fetch_one(executor)
    .await?;
    Ok(millis.map(until))
}

/// For every queue with a job of `kinds` waiting, how long until its next one is due (zero if
/// one is due already), in one statement however many queues there are: what an idle worker
/// polls with.
pub async fn next_due_by_queue<'e>(
    executor: impl PgExecutor<'e>,
    kinds: &[String],
) -> Result<Vec<(String, Duration)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT queue, (EXTRACT(epoch FROM min(run_at) - now()) * 1000)::float8 AS "millis!"
           FROM jobs WHERE state = 'available' AND kind = ANY($1)
           GROUP BY queue"#,
        kinds,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|row| (row.queue, until(row.millis))).collect())
}

/// Milliseconds from now, negative for the past, as a wait.
fn until(millis: f64) -> Duration {
    Duration::from_secs_f64(millis.max(0.0) / 1000.0)
}
