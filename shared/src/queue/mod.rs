//! The job queue, in PostgreSQL.
//!
//! Jobs are rows: enqueued in the caller's transaction (so a command and the work it causes
//! commit together), claimed in batches with `FOR UPDATE SKIP LOCKED` under a lease, and ended
//! in batches. The worker runtime that drives them lives in `worker/`; this module is only the
//! storage, so the api and the scheduler can enqueue without knowing how jobs run.
//!
//! - [`enqueue`]: one job or many in one statement; a live job with the same dedup key makes
//!   it a no-op that says so.
//! - [`claim`]: take due jobs under a lease; how long until the next one is due.
//! - [`complete`]: end or reschedule many jobs in one statement each, and extend leases. Every
//!   row is guarded by its attempt, so a late finisher cannot overwrite a job that was rescued
//!   or is running again.
//! - [`maintenance`]: rescue jobs whose lease expired, prune finished ones, measure depth.
//! - [`listener`]: wake claimers on `NOTIFY`.
//! - [`retry`]: the backoff policy, as data.
//!
//! Why not apalis' Postgres storage: it re-fetches a failed job at once, ignores retry delays
//! and `max_attempts`, acks one row per statement and limits rates per process. The queue's
//! guarantees live in its SQL, so the SQL is ours.

pub mod claim;
pub mod complete;
pub mod enqueue;
pub mod listener;
pub mod maintenance;
pub mod retry;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use claim::{ClaimedJob, claim, next_due_by_queue, next_due_in};
pub use complete::{FinalState, Finished, Rescheduled, extend_leases, finish, reschedule};
pub use enqueue::{Enqueued, enqueue, enqueue_many};
pub use retry::RetryPolicy;

/// The channel workers `LISTEN` on; the payload is the queue name.
pub const NOTIFY_CHANNEL: &str = "herald_jobs";

/// A kind of job, as the code that enqueues it sees it: a serde payload with a stable name.
///
/// How a job *runs* is the worker's business (`herald_worker::Perform`).
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name stored in `jobs.kind`.
    const KIND: &'static str;
    /// The queue it runs on; each queue has its own concurrency in a worker.
    const QUEUE: &'static str = "default";
    /// Higher runs first among jobs that are due.
    const PRIORITY: i16 = 0;
    /// Attempts before a job that keeps failing is given up.
    const MAX_ATTEMPTS: i32 = 10;

    /// While a job with this key is queued or running, enqueueing another is a no-op.
    fn dedup_key(&self) -> Option<String> {
        None
    }
}

/// A row to insert into `jobs`. Build one with [`NewJob::of`].
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: &'static str,
    pub queue: &'static str,
    /// The payload, as JSON text.
    pub payload: String,
    pub priority: i16,
    /// When it becomes due; `None` is now (the database's clock).
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub dedup_key: Option<String>,
}

impl NewJob {
    /// The row for `job`, due now.
    pub fn of<J: Job>(job: &J) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::now_v7(),
            kind: J::KIND,
            queue: J::QUEUE,
            payload: serde_json::to_string(job)?,
            priority: J::PRIORITY,
            run_at: None,
            max_attempts: J::MAX_ATTEMPTS,
            dedup_key: job.dedup_key(),
        })
    }

    /// The same job, due at `run_at`.
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }
}
