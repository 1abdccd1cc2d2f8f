//! Keeping the queue healthy: rescue jobs whose worker vanished, prune old finished jobs, and
//! measure what is waiting.

use std::time::Duration;

use sqlx::PgExecutor;

/// What one rescue pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Made available again.
    pub revived: u64,
    /// Out of attempts, so failed.
    pub failed: u64,
}

/// Rescues up to `limit` running jobs whose lease expired: each is made available again if it
/// has attempts left, or failed if not (a job that kills its worker every time must stop).
///
/// The update is a compare-and-set on `(id, state, attempt)` of the rows it locked, so a worker
/// that extends or finishes a job at the same moment either wins or changes nothing.
pub async fn rescue_expired<'e>(executor: impl PgExecutor<'e>, limit: i64) -> Result<Rescued, sqlx::Error> {
    let rescued = sqlx::query!(
        r#"WITH expired AS (
               SELECT id, attempt FROM jobs
               WHERE state = 'running' AND lease_until < now()
               ORDER BY lease_until
               LIMIT $1
               FOR UPDATE SKIP LOCKED
           ), revived AS (
               UPDATE jobs
               SET state = 'available', run_at = now(), lease_until = NULL, worker_id = NULL,
                   last_error = 'lease expired: the worker stopped without reporting attempt ' || jobs.attempt
               FROM expired
               WHERE jobs.id = expired.id AND jobs.attempt = expired.attempt AND jobs.state = 'running'
                 AND jobs.attempt < jobs.max_attempts
               RETURNING jobs.queue
           ), exhausted AS (
               DELETE FROM jobs USING expired
               WHERE jobs.id = expired.id AND jobs.attempt = expired.attempt AND jobs.state = 'running'
                 AND jobs.attempt >= jobs.max_attempts
               RETURNING jobs.*
           ), failed AS (
               INSERT INTO finished_jobs (id, kind, queue, payload, priority, attempt, max_attempts, state, worker_id,
                                          dedup_key, last_error, created_at, started_at)
               SELECT id, kind, queue, payload, priority, attempt, max_attempts, 'failed', worker_id, dedup_key,
                      'lease expired on the last attempt', created_at, started_at
               FROM exhausted
               RETURNING 1
           ), notified AS (
               SELECT pg_notify('herald_jobs', queue) FROM (SELECT DISTINCT queue FROM revived) AS queues
           )
           SELECT (SELECT count(*) FROM revived) AS "revived!", (SELECT count(*) FROM failed) AS "failed!",
                  (SELECT count(*) FROM notified) AS "notified!""#,
        limit,
    )
    .fetch_one(executor)
    .await?;
    Ok(Rescued {
        revived: u64::try_from(rescued.revived).unwrap_or(0),
        failed: u64::try_from(rescued.failed).unwrap_or(0),
    })
}

/// Deletes up to `batch` jobs that finished more than `retention` ago; returns how many. Call
/// it until it returns less than `batch`.
pub async fn prune_finished<'e>(
    executor: impl PgExecutor<'e>,
    retention: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        r#"DELETE FROM finished_jobs WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM finished_jobs
               WHERE finished_at < now() - make_interval(secs => $1)
               LIMIT $2))"#,
        retention.as_secs_f64(),
        batch,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// What waits in the queue for one kind of job.
#[derive(Debug, Clone, PartialEq)]
pub struct Depth {
    pub queue: String,
    pub kind: String,
    /// Due now and not yet claimed.
    pub due: i64,
    /// Waiting for a later `run_at`.
    pub scheduled: i64,
    /// Held by workers.
    pub running: i64,
    /// How long the oldest due job has been due, in seconds.
    pub oldest_due_secs: f64,
}

/// Queue depth and age by queue and kind (for metrics and autoscaling).
pub async fn depth<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<Depth>, sqlx::Error> {
    sqlx::query_as!(
        Depth,
        r#"SELECT queue AS "queue!", kind AS "kind!",
                  count(*) FILTER (WHERE state = 'available' AND run_at <= now()) AS "due!",
                  count(*) FILTER (WHERE state = 'available' AND run_at > now()) AS "scheduled!",
                  count(*) FILTER (WHERE state = 'running') AS "running!",
                  COALESCE(EXTRACT(epoch FROM now() - min(run_at) FILTER (WHERE state = 'available' AND run_at <= now())),
                           0)::float8 AS "oldest_due_secs!"
           FROM jobs GROUP BY queue, kind ORDER BY queue, kind"#
    )
    .fetch_all(executor)
    .await
}
