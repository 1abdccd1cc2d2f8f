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
    /// The trace of what queued it (see `telemetry::continue_trace`).
    pub trace_context: Option<String>,
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
           RETURNING id, kind, payload::text AS "payload!", attempt, max_attempts, priority, run_at, created_at,
                     trace_context"#,
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
    let due = next_due_by_queue(executor, kinds).await?;
    Ok(due.into_iter().find(|(name, _)| name == queue).map(|(_, due_in)| due_in))
}

/// For every queue with a job of `kinds` waiting, how long until its next one is due (zero if
/// one is due already), in one statement however many queues there are: what an idle worker
/// polls with, and what a dispatcher asks after a claim that was not full.
///
/// Its cost does not grow with the number of waiting jobs. `min(run_at)` over a queue would
/// read every available job (the claim index is ordered by priority first: 250 ms behind a
/// million jobs scheduled ahead, once a second), so this walks the index instead: a loose scan
/// finds each (queue, priority) lane, and the first job of each lane by `run_at` is one index
/// probe (under a millisecond at that size). Not `GREATEST(0, ...)` in SQL: GREATEST ignores
/// NULLs, and an empty queue would read as a job due now.
pub async fn next_due_by_queue<'e>(
    executor: impl PgExecutor<'e>,
    kinds: &[String],
) -> Result<Vec<(String, Duration)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH RECURSIVE lanes (queue, priority) AS (
               (SELECT queue, priority FROM jobs WHERE state = 'available' ORDER BY queue, priority DESC LIMIT 1)
               UNION ALL
               SELECT next.queue, next.priority
               FROM lanes, LATERAL (
                   (SELECT j.queue, j.priority FROM jobs j
                    WHERE j.state = 'available' AND j.queue = lanes.queue AND j.priority < lanes.priority
                    ORDER BY j.priority DESC LIMIT 1)
                   UNION ALL
                   (SELECT j.queue, j.priority FROM jobs j
                    WHERE j.state = 'available' AND j.queue > lanes.queue
                    ORDER BY j.queue, j.priority DESC LIMIT 1)
                   LIMIT 1) AS next
           )
           SELECT lanes.queue AS "queue!", (EXTRACT(epoch FROM min(first.run_at) - now()) * 1000)::float8 AS "millis!"
           FROM lanes, LATERAL (
               SELECT j.run_at FROM jobs j
               WHERE j.state = 'available' AND j.queue = lanes.queue AND j.priority = lanes.priority
                 AND j.kind = ANY($1)
               ORDER BY j.run_at LIMIT 1) AS first
           GROUP BY lanes.queue"#,
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
