//! Ending jobs, many in one statement, each guarded by `(id, attempt, state = 'running')`.
//!
//! The guard is the compare-and-set that makes leases safe: a job whose lease expired was made
//! available again (same attempt, other state) or is running again (higher attempt), so a
//! worker that finishes late changes nothing. The number of rows a call changed tells it how
//! many of its jobs it still held.
//!
//! The plans are pinned on purpose. A queue table's statistics are always wrong (a moment ago
//! nothing was running, now thousands are), and a plain `UPDATE jobs ... FROM unnest($1)
//! WHERE jobs.id = outcome.id` was seen joining every running job against every outcome: 3.5 s
//! for 1,000 outcomes, 11 s for 4,000. So each statement first finds each job's current row
//! version (`ctid`) with a primary-key lookup per outcome (a scalar subquery, which can only be
//! planned that way) and then touches exactly those versions. A version that changed meanwhile
//! (rescued, re-claimed) no longer matches its `ctid`, so the compare-and-set still holds.
//! "Running" is spelled `lease_until IS NOT NULL` (the same, by the table's check constraint) so
//! that the lookup cannot wander into the `jobs_running_lease` index.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalState {
    /// It did its work.
    Succeeded,
    /// It failed permanently, or ran out of attempts.
    Failed,
    /// It ended without a known outcome (the platform may or may not have acted); not retried.
    Discarded,
}

impl FinalState {
    /// The name stored in `finished_jobs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalState::Succeeded => "succeeded",
            FinalState::Failed => "failed",
            FinalState::Discarded => "discarded",
        }
    }
}

/// One attempt that ended the job.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: Uuid,
    pub attempt: i32,
    pub state: FinalState,
    pub error: Option<String>,
}

/// One attempt after which the job runs again at `run_at`.
#[derive(Debug, Clone)]
pub struct Rescheduled {
    pub id: Uuid,
    pub attempt: i32,
    pub run_at: DateTime<Utc>,
    /// Give the attempt back: the job was rate limited, or released unstarted at shutdown.
    pub refund_attempt: bool,
    pub error: Option<String>,
}

/// Moves finished jobs to `finished_jobs`; returns how many this worker still held.
pub async fn finish(pool: &PgPool, jobs: &[Finished]) -> Result<u64, sqlx::Error> {
    let (succeeded, others): (Vec<&Finished>, Vec<&Finished>) =
        jobs.iter().partition(|job| job.state == FinalState::Succeeded && job.error.is_none());
    let mut moved = 0;
    if !succeeded.is_empty() {
        moved += finish_succeeded(pool, &succeeded).await?;
    }
    if !others.is_empty() {
        moved += finish_with_reasons(pool, &others).await?;
    }
    Ok(moved)
}

/// The hot path: no per-row state or reason to carry, so no join at all.
async fn finish_succeeded(executor: &PgPool, jobs: &[&Finished]) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
    let attempts: Vec<i32> = jobs.iter().map(|job| job.attempt).collect();
    let moved = sqlx::query_scalar!(
        r#"WITH ended AS (
               DELETE FROM jobs WHERE ctid = ANY(ARRAY(
                   SELECT (SELECT held.ctid FROM jobs held
                           WHERE held.id = outcome.id AND held.attempt = outcome.attempt
                             AND held.lease_until IS NOT NULL)
                   FROM unnest($1::uuid[], $2::int4[]) AS outcome(id, attempt)))
               RETURNING *
           ), archived AS (
               INSERT INTO finished_jobs (id, kind, queue, payload, priority, attempt, max_attempts, state, worker_id,
                                          dedup_key, last_error, created_at, started_at)
               SELECT id, kind, queue, payload, priority, attempt, max_attempts, 'succeeded', worker_id,
                      dedup_key, last_error, created_at, started_at
               FROM ended
               RETURNING 1
           )
           SELECT count(*) AS "count!" FROM archived"#,
        &ids,
        &attempts,
    )
    .fetch_one(executor)
    .await?;
    Ok(u64::try_from(moved).unwrap_or(0))
}

/// Failures and discards carry a state and reason per row, joined on the row's `ctid`.
async fn finish_with_reasons(executor: &PgPool, jobs: &[&Finished]) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
    let attempts: Vec<i32> = jobs.iter().map(|job| job.attempt).collect();
    let states: Vec<&str> = jobs.iter().map(|job| job.state.as_str()).collect();
    let errors: Vec<Option<&str>> = jobs.iter().map(|job| job.error.as_deref()).collect();
    let moved = sqlx::query_scalar!(
        r#"WITH outcome AS (
               SELECT (SELECT held.ctid FROM jobs held
                       WHERE held.id = o.id AND held.attempt = o.attempt AND held.lease_until IS NOT NULL) AS tid,
                      o.state, o.error
               FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[]) AS o(id, attempt, state, error)
           ), ended AS (
               DELETE FROM jobs USING outcome WHERE jobs.ctid = outcome.tid
               RETURNING jobs.*, outcome.state AS final_state, outcome.error
           ), archived AS (
               INSERT INTO finished_jobs (id, kind, queue, payload, priority, attempt, max_attempts, state, worker_id,
                                          dedup_key, last_error, created_at, started_at)
               SELECT id, kind, queue, payload, priority, attempt, max_attempts, final_state, worker_id,
                      dedup_key, COALESCE(error, last_error), created_at, started_at
               FROM ended
               RETURNING 1
           )
           SELECT count(*) AS "count!" FROM archived"#,
        &ids,
        &attempts,
        &states as &[&str],
        &errors as &[Option<&str>],
    )
    .fetch_one(executor)
    .await?;
    Ok(u64::try_from(moved).unwrap_or(0))
}

/// Makes jobs available again at their `run_at`; returns how many this worker still held.
/// Tells listening workers, so a job released at shutdown is picked up elsewhere at once.
pub async fn reschedule<'e>(executor: impl PgExecutor<'e>, jobs: &[Rescheduled]) -> Result<u64, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
    let attempts: Vec<i32> = jobs.iter().map(|job| job.attempt).collect();
    let run_ats: Vec<DateTime<Utc>> = jobs.iter().map(|job| job.run_at).collect();
    let refunds: Vec<i32> = jobs.iter().map(|job| i32::from(job.refund_attempt)).collect();
    let errors: Vec<Option<&str>> = jobs.iter().map(|job| job.error.as_deref()).collect();
    let moved = sqlx::query!(
        r#"WITH outcome AS (
               SELECT (SELECT held.ctid FROM jobs held
                       WHERE held.id = o.id AND held.attempt = o.attempt AND held.lease_until IS NOT NULL) AS tid,
                      o.run_at, o.refund, o.error
               FROM unnest($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], $5::text[])
                   AS o(id, attempt, run_at, refund, error)
           ), moved AS (
               UPDATE jobs
               SET state = 'available', run_at = outcome.run_at, attempt = jobs.attempt - outcome.refund,
                   lease_until = NULL, worker_id = NULL, last_error = COALESCE(outcome.error, jobs.last_error)
               FROM outcome
               WHERE jobs.ctid = outcome.tid
               RETURNING jobs.queue
           ), notified AS (
               SELECT pg_notify('herald_jobs', queue) FROM (SELECT DISTINCT queue FROM moved) AS queues
           )
           SELECT (SELECT count(*) FROM moved) AS "count!", (SELECT count(*) FROM notified) AS "notified!""#,
        &ids,
        &attempts,
        &run_ats,
        &refunds,
        &errors as &[Option<&str>],
    )
    .fetch_one(executor)
    .await?;
    Ok(u64::try_from(moved.count).unwrap_or(0))
}

/// Extends the leases of jobs this worker holds; returns how many it still held.
pub async fn extend_leases<'e>(
    executor: impl PgExecutor<'e>,
    worker_id: Uuid,
    held: &[(Uuid, i32)],
    lease: Duration,
) -> Result<u64, sqlx::Error> {
    if held.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = held.iter().map(|(id, _)| *id).collect();
    let attempts: Vec<i32> = held.iter().map(|(_, attempt)| *attempt).collect();
    let result = sqlx::query!(
        r#"UPDATE jobs SET lease_until = now() + make_interval(secs => $4)
           WHERE ctid = ANY(ARRAY(
               SELECT (SELECT job.ctid FROM jobs job
                       WHERE job.id = held.id AND job.attempt = held.attempt AND job.lease_until IS NOT NULL
                         AND job.worker_id = $3)
               FROM unnest($1::uuid[], $2::int4[]) AS held(id, attempt)))"#,
        &ids,
        &attempts,
        worker_id,
        lease.as_secs_f64(),
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}
