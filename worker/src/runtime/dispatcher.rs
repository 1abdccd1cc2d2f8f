//! One queue's loop: keep a buffer of claimed jobs, run up to the queue's concurrency of them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use herald_shared::queue::{self, ClaimedJob, FinalState, Finished, Rescheduled, RetryPolicy};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::Shared;
use super::completer::{self, Completion, Reason};
use super::registry::{JobRun, Outcome};

/// The shortest wait before claiming again when jobs are due but were all taken by others.
const CONTENDED_PAUSE: Duration = Duration::from_millis(10);
/// The wait after a failed claim.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

type ClaimFuture = Pin<Box<dyn Future<Output = (usize, Result<Vec<ClaimedJob>, sqlx::Error>)> + Send>>;

pub(crate) struct Dispatcher<C> {
    shared: Arc<Shared<C>>,
    queue: &'static str,
    kinds: Arc<Vec<String>>,
    concurrency: usize,
    permits: Arc<Semaphore>,
    wake: Arc<Notify>,
    completions: mpsc::UnboundedSender<Completion>,
    /// The jobs running now, with their attempt: what is given back if the grace period at
    /// shutdown runs out before they end.
    running: Arc<Mutex<HashMap<Uuid, i32>>>,
}

impl<C: Send + Sync + 'static> Dispatcher<C> {
    pub(crate) fn new(
        shared: Arc<Shared<C>>,
        queue: &'static str,
        kinds: Vec<String>,
        completions: mpsc::UnboundedSender<Completion>,
    ) -> Self {
        let concurrency = shared.settings.queue.concurrency_of(queue);
        let wake = shared.wakes.get(queue).cloned().unwrap_or_default();
        Self {
            shared,
            queue,
            kinds: Arc::new(kinds),
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
            wake,
            completions,
            running: Arc::default(),
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        tracing::debug!(queue = self.queue, concurrency = self.concurrency, kinds = ?self.kinds, "dispatching");
        let mut buffer: VecDeque<ClaimedJob> = VecDeque::new();
        let mut claiming: Option<ClaimFuture> = None;
        // Claim as soon as there is room, or wait until `next_look`, or (none) until woken: by a
        // `NOTIFY`, or by the worker's one poll for every queue ([`super::poll`]).
        let mut due_now = true;
        let mut next_look: Option<Instant> = None;
        loop {
            while !buffer.is_empty() {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else { break };
                if let Some(job) = buffer.pop_front() {
                    self.start(job, permit);
                }
            }
            // Jobs running or with their outcome not yet written.
            let running = self.concurrency - self.permits.available_permits();
            // Keep up to one concurrency's worth waiting beside them: enough that a finished job
            // is replaced at once, little enough that slow jobs do not sit leased in one
            // worker's buffer while another worker is idle.
            let room = (2 * self.concurrency)
                .saturating_sub(buffer.len() + running)
                .min(self.shared.settings.queue.claim_batch);
            if claiming.is_none() && due_now && room > 0 && buffer.len() < self.concurrency {
                claiming = Some(self.claim(room));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                (asked, claimed) = async {
                    match claiming.as_mut() {
                        Some(claiming) => claiming.await,
                        None => std::future::pending().await,
                    }
                }, if claiming.is_some() => {
                    claiming = None;
                    self.shared.health.claims_failing(claimed.is_err());
                    match claimed {
                        Ok(jobs) => {
                            let full = jobs.len() == asked;
                            buffer.extend(jobs);
                            if !full {
                                due_now = false;
                                next_look = self.until_next_due().await.map(|wait| Instant::now() + wait);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, queue = self.queue, "cannot claim jobs");
                            due_now = false;
                            next_look = Some(Instant::now() + ERROR_PAUSE);
                        }
                    }
                }
                permit = self.permits.clone().acquire_owned(), if !buffer.is_empty() => {
                    if let (Ok(permit), Some(job)) = (permit, buffer.pop_front()) {
                        self.start(job, permit);
                    }
                }
                _ = self.wake.notified() => due_now = true,
                _ = sleep_until(next_look), if !due_now => due_now = true,
            }
        }
        self.drain(buffer, claiming).await;
    }

    fn claim(&self, limit: usize) -> ClaimFuture {
        let shared = self.shared.clone();
        let queue = self.queue;
        let kinds = self.kinds.clone();
        Box::pin(async move {
            let claimed = queue::claim(
                &shared.claim_pool,
                shared.settings.worker_id,
                queue,
                &kinds,
                i64::try_from(limit).unwrap_or(i64::MAX),
                shared.settings.queue.lease(),
            )
            .await;
            shared.stats.claims.fetch_add(1, Ordering::Relaxed);
            if let Ok(jobs) = &claimed {
                shared.hold(jobs.iter().map(|job| (job.id, job.attempt)));
                shared.stats.claimed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                metrics::counter!("herald_jobs_claimed_total", "queue" => queue).increment(jobs.len() as u64);
            }
            (limit, claimed)
        })
    }

    /// How long to wait before looking again after a claim that was not full: until the next
    /// job is due if that is within the poll interval (not at once when the due jobs were all
    /// taken by other workers); `None` when nothing is due that soon, and then the worker's
    /// poll wakes this queue once something is.
    async fn until_next_due(&self) -> Option<Duration> {
        let poll = self.shared.settings.queue.poll_interval();
        match queue::next_due_in(&self.shared.pool, self.queue, &self.kinds).await {
            Ok(Some(due_in)) if due_in < poll => Some(due_in.max(CONTENDED_PAUSE)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, queue = self.queue, "cannot read the next due job");
                Some(poll)
            }
        }
    }

    fn start(&self, job: ClaimedJob, permit: OwnedSemaphorePermit) {
        let Some(kind) = self.shared.registry.kinds.get(job.kind.as_str()) else {
            // Claims only take registered kinds; nothing else can get here.
            return;
        };
        let run = JobRun { id: job.id, attempt: job.attempt, max_attempts: job.max_attempts };
        let execute = (kind.run)(self.shared.context.clone(), job.payload, run);
        let (policy, timeout) = (kind.policy, kind.timeout);
        let completions = self.completions.clone();
        let running = self.running.clone();
        lock(&running).insert(job.id, job.attempt);
        let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, attempt = job.attempt);
        herald_shared::telemetry::continue_trace(&span, job.trace_context.as_deref());
        let kind_name = job.kind;
        tokio::spawn(
            async move {
                let outcome = match tokio::time::timeout(timeout, AssertUnwindSafe(execute).catch_unwind()).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(panic)) => Outcome::Retry(format!("the job panicked: {}", panic_message(&*panic))),
                    Err(_) => {
                        Outcome::Retry(format!("the job took longer than its {}s timeout", timeout.as_secs_f64()))
                    }
                };
                let resolved = resolve(run, outcome, &policy);
                let label = match &resolved {
                    completer::Outcome::Finish(finished) => finished.state.as_str(),
                    completer::Outcome::Reschedule(..) => "rescheduled",
                };
                if !matches!(resolved, completer::Outcome::Finish(Finished { state: FinalState::Succeeded, .. })) {
                    tracing::info!(outcome = label, "job did not succeed");
                }
                metrics::counter!("herald_jobs_completed_total", "kind" => kind_name, "outcome" => label).increment(1);
                // Given back at the end of the grace period: then this outcome changes nothing.
                if lock(&running).remove(&run.id).is_none() {
                    return;
                }
                let _ = completions.send(Completion { outcome: resolved, permit: Some(permit) });
            }
            .instrument(span),
        );
    }

    /// Stops claiming, gives back the jobs not started, and waits for running ones within the
    /// grace period; those still running then are given back too (their attempt spent), so
    /// another worker takes them at once instead of after their lease. A publish given back
    /// mid-call is safe: its delivery is `publishing`, and the next attempt looks it up on the
    /// platform before anything else.
    async fn drain(self, mut buffer: VecDeque<ClaimedJob>, claiming: Option<ClaimFuture>) {
        if let Some(claiming) = claiming
            && let (_, Ok(jobs)) = claiming.await
        {
            buffer.extend(jobs);
        }
        for job in buffer.drain(..) {
            let release =
                Rescheduled { id: job.id, attempt: job.attempt, run_at: job.run_at, refund_attempt: true, error: None };
            let outcome = completer::Outcome::Reschedule(release, Reason::Released);
            let _ = self.completions.send(Completion { outcome, permit: None });
        }
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let grace = self.shared.settings.grace;
        if tokio::time::timeout(grace, self.permits.acquire_many(all)).await.is_err() {
            let still_running: Vec<(Uuid, i32)> = lock(&self.running).drain().collect();
            tracing::warn!(
                queue = self.queue,
                grace_secs = grace.as_secs(),
                given_back = still_running.len(),
                "jobs still running after the grace period: given back"
            );
            for (id, attempt) in still_running {
                let release = Rescheduled { id, attempt, run_at: Utc::now(), refund_attempt: false, error: None };
                let outcome = completer::Outcome::Reschedule(release, Reason::Released);
                let _ = self.completions.send(Completion { outcome, permit: None });
            }
        }
    }
}

/// Turns what a job said into what the queue records.
pub(crate) fn resolve(run: JobRun, outcome: Outcome, policy: &RetryPolicy) -> completer::Outcome {
    let finish = |state, error| completer::Outcome::Finish(Finished { id: run.id, attempt: run.attempt, state, error });
    match outcome {
        Outcome::Done => finish(FinalState::Succeeded, None),
        Outcome::Fail(reason) => finish(FinalState::Failed, Some(reason)),
        Outcome::Unknown(reason) => finish(FinalState::Discarded, Some(reason)),
        Outcome::Retry(reason) if run.attempt >= run.max_attempts => {
            finish(FinalState::Failed, Some(format!("gave up after {} attempts: {reason}", run.attempt)))
        }
        Outcome::Retry(reason) => {
            let delay = policy.delay(run.attempt, &mut rand::rng());
            let run_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            let retry =
                Rescheduled { id: run.id, attempt: run.attempt, run_at, refund_attempt: false, error: Some(reason) };
            completer::Outcome::Reschedule(retry, Reason::Retry)
        }
        Outcome::RetryAt(run_at, reason) => {
            let wait =
                Rescheduled { id: run.id, attempt: run.attempt, run_at, refund_attempt: true, error: Some(reason) };
            completer::Outcome::Reschedule(wait, Reason::Retry)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sleeps until `at`, or for ever when there is no time to wake at.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}
