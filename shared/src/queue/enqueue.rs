//! Putting jobs on the queue, inside the caller's transaction.

use std::collections::HashSet;

use sqlx::PgExecutor;
use uuid::Uuid;

use super::NewJob;

/// What became of one job handed to [`enqueue_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Inserted with this id.
    Queued(Uuid),
    /// A live job already holds this dedup key; nothing was inserted.
    Duplicate { dedup_key: String },
}

/// Enqueues one job. Pass the transaction that records the command causing it, so both commit
/// or neither does.
pub async fn enqueue<'e>(executor: impl PgExecutor<'e>, job: NewJob) -> Result<Enqueued, sqlx::Error> {
    let mut outcome = enqueue_many(executor, std::slice::from_ref(&job)).await?;
    Ok(outcome.pop().unwrap_or(Enqueued::Duplicate { dedup_key: job.dedup_key.unwrap_or_default() }))
}

/// Enqueues many jobs in one statement; the answer is in the order of `jobs`. Within one call,
/// the first of several jobs with the same dedup key wins.
pub async fn enqueue_many<'e>(executor: impl PgExecutor<'e>, jobs: &[NewJob]) -> Result<Vec<Enqueued>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut queues = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut priorities = Vec::with_capacity(jobs.len());
    let mut run_ats = Vec::with_capacity(jobs.len());
    let mut max_attempts = Vec::with_capacity(jobs.len());
    let mut dedup_keys = Vec::with_capacity(jobs.len());
    for job in jobs {
        ids.push(job.id);
        kinds.push(job.kind);
        queues.push(job.queue);
        payloads.push(job.payload.as_str());
        priorities.push(job.priority);
        run_ats.push(job.run_at);
        max_attempts.push(job.max_attempts);
        dedup_keys.push(job.dedup_key.as_deref());
    }
    // Every job of one call is caused by the caller's span: its run continues that trace.
    let trace_context = crate::telemetry::current_trace_context();
    // `ORDER BY ordinality` makes "the first one wins" hold for duplicates within the call.
    let inserted: HashSet<Uuid> = sqlx::query_scalar!(
        r#"INSERT INTO jobs (id, kind, queue, payload, priority, run_at, max_attempts, dedup_key, trace_context)
           SELECT id, kind, queue, payload::jsonb, priority, COALESCE(run_at, now()), max_attempts, dedup_key, $9
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::timestamptz[], $7::int4[],
                       $8::text[])
                WITH ORDINALITY AS new_job(id, kind, queue, payload, priority, run_at, max_attempts, dedup_key, ordinal)
           ORDER BY ordinal
           ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
           RETURNING id"#,
        &ids,
        &kinds as &[&str],
        &queues as &[&str],
        &payloads as &[&str],
        &priorities,
        &run_ats as &[Option<chrono::DateTime<chrono::Utc>>],
        &max_attempts,
        &dedup_keys as &[Option<&str>],
        trace_context,
    )
    .fetch_all(executor)
    .await?
    .into_iter()
    .collect();
    Ok(jobs
        .iter()
        .map(|job| {
            if inserted.contains(&job.id) {
                Enqueued::Queued(job.id)
            } else {
                Enqueued::Duplicate { dedup_key: job.dedup_key.clone().unwrap_or_default() }
            }
        })
        .collect())
}
