//! One registry of the job kinds a worker runs: how to decode each payload, run it, retry it
//! and how long it may take.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_shared::queue::{Job, RetryPolicy};
use uuid::Uuid;

/// What a job says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the job ends.
    Done,
    /// A transient failure: run again after a backoff, until attempts run out.
    Retry(String),
    /// Rate limited: run again at this time, without spending an attempt.
    RetryAt(DateTime<Utc>, String),
    /// A permanent failure: the job ends failed.
    Fail(String),
    /// The effect may or may not have happened; the job ends without a retry (the caller has
    /// recorded what to reconcile).
    Unknown(String),
}

/// What one attempt of a job returns: the outcome it chose, or an error. The runtime maps an
/// error, in one place ([`Registry::register`]), to a transient failure ([`Outcome::Retry`])
/// whose reason is the error's whole chain, so a job only says what it decided and `?`s the rest.
pub type JobResult = anyhow::Result<Outcome>;

/// The attempt a job is running in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRun {
    pub id: Uuid,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
}

/// How a worker runs a [`Job`] with the context `C` (database pool, HTTP client, settings...).
pub trait Perform<C>: Job {
    /// The backoff between failed attempts.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// How long one attempt may take before it counts as a transient failure.
    fn timeout() -> Duration {
        Duration::from_secs(60)
    }

    /// Does the work; an `Err` is retried after a backoff, like [`Outcome::Retry`].
    fn perform(self, context: &C, run: JobRun) -> impl Future<Output = JobResult> + Send;
}

pub(crate) type BoxedRun<C> =
    Arc<dyn Fn(Arc<C>, String, JobRun) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Everything the runtime knows about one kind.
pub(crate) struct Kind<C> {
    pub(crate) queue: &'static str,
    pub(crate) policy: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) run: BoxedRun<C>,
}

/// The kinds a worker runs. Build it once, in one place, with [`Registry::register`].
pub struct Registry<C> {
    pub(crate) kinds: HashMap<&'static str, Kind<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self { kinds: HashMap::new() }
    }
}

impl<C: Send + Sync + 'static> Registry<C> {
    /// Adds `J`. Registering a kind twice keeps the last.
    pub fn register<J: Perform<C>>(mut self) -> Self {
        let run: BoxedRun<C> = Arc::new(|context: Arc<C>, payload: String, run: JobRun| {
            Box::pin(async move {
                match serde_json::from_str::<J>(&payload) {
                    Ok(job) => job.perform(&context, run).await.unwrap_or_else(retry),
                    Err(error) => Outcome::Fail(format!("the payload is not a {}: {error}", J::KIND)),
                }
            })
        });
        self.kinds.insert(J::KIND, Kind { queue: J::QUEUE, policy: J::retry_policy(), timeout: J::timeout(), run });
        self
    }

    /// The queues these kinds run on, each with its kinds.
    pub fn queues(&self) -> BTreeMap<&'static str, Vec<String>> {
        let mut queues: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for (kind, entry) in &self.kinds {
            queues.entry(entry.queue).or_default().push((*kind).to_owned());
        }
        for kinds in queues.values_mut() {
            kinds.sort();
        }
        queues
    }
}

/// The one place a job's error becomes an outcome: a transient failure, its reason the whole
/// chain of contexts (`{:#}`) so the job's history says what failed where.
fn retry(error: anyhow::Error) -> Outcome {
    Outcome::Retry(format!("{error:#}"))
}
