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
    let millis = sqlx::query_scalar!(
        r#"SELECT GREATEST(0, EXTRACT(epoch FROM min(run_at) - now()) * 1000)::float8 AS millis
           FROM jobs WHERE state = 'available' AND queue = $1 AND kind = ANY($2)"#,
        queue,
        kinds,
    )
    .fetch_one(executor)
    .await?;
    Ok(millis.map(|millis| Duration::from_secs_f64(millis / 1000.0)))
}
