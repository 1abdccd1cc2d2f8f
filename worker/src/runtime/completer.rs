//! Writing outcomes in batches.
//!
//! Jobs send their outcome here and move on. The completer takes everything that has arrived,
//! writes it with a statement per kind of outcome (succeeded, failed or discarded, rescheduled),
//! and repeats, with up to two batches in flight: under load a batch holds whatever finished
//! during the previous writes; when idle a lone outcome is written at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_shared::queue::{self, FinalState, Finished, Rescheduled};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;

/// The most outcomes one statement carries.
const MAX_BATCH: usize = 5_000;
/// Batches written at once: while one waits for its commit, the next is being written.
const WRITERS: usize = 2;

/// How one attempt is to be written.
#[derive(Debug)]
pub(crate) enum Outcome {
    Finish(Finished),
    Reschedule(Rescheduled, Reason),
}

/// An outcome on its way to the database. It carries the job's concurrency permit, so a
/// dispatcher counts a job as its own until the outcome is written: claims cannot run ahead of
/// completions, and the jobs a worker holds stay bounded.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) outcome: Outcome,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// Why a job is rescheduled, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Retry,
    Released,
}

pub(crate) async fn run<C: Send + Sync + 'static>(
    shared: Arc<Shared<C>>,
    mut completed: mpsc::UnboundedReceiver<Completion>,
    drained: CancellationToken,
) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    loop {
        // Wait for a free writer first: outcomes that arrive meanwhile join the next batch.
        let Ok(writer) = writers.clone().acquire_owned().await else { break };
        let first = tokio::select! {
            biased;
            first = completed.recv() => first,
            _ = drained.cancelled() => completed.try_recv().ok(),
        };
        let Some(first) = first else { break };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match completed.try_recv() {
                Ok(completion) => batch.push(completion),
                Err(_) => break,
            }
        }
        let shared = shared.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            flush(&shared, &mut batch, &drained).await;
            drop(writer);
        });
    }
    // Every write has finished once all writers are back.
    let _ = writers.acquire_many(WRITERS as u32).await;
}

/// Writes `batch`, retrying while the database is unreachable (the jobs stay held, so their
/// leases keep being extended meanwhile). After shutdown it tries a few times, then leaves the
/// jobs to their leases.
async fn flush<C>(shared: &Shared<C>, batch: &mut Vec<Completion>, drained: &CancellationToken) {
    let mut finished = Vec::new();
    let mut rescheduled = Vec::new();
    let mut released = 0u64;
    let mut permits = Vec::with_capacity(batch.len());
    for completion in batch.drain(..) {
        permits.push(completion.permit);
        match completion.outcome {
            Outcome::Finish(job) => finished.push(job),
            Outcome::Reschedule(job, reason) => {
                released += u64::from(reason == Reason::Released);
                rescheduled.push(job);
            }
        }
    }
    let ids: Vec<Uuid> = finished.iter().map(|job| job.id).chain(rescheduled.iter().map(|job| job.id)).collect();
    let mut backoff = Duration::from_millis(50);
    let mut tries_left_after_shutdown = 3;
    let written = loop {
        let written = async {
            let mut written =
                queue::finish(&shared.pool, &finished).await? + queue::reschedule(&shared.pool, &rescheduled).await?;
            if written < ids.len() as u64 {
                // The guarded statements find each job by its row version; a lease extension
                // committed in the same instant moved some rows to a new one, which looks like a
                // lost lease. Once more finds those; rows already written match nothing again.
                written += queue::finish(&shared.pool, &finished).await?
                    + queue::reschedule(&shared.pool, &rescheduled).await?;
            }
            Ok::<_, sqlx::Error>(written)
        }
        .await;
        match written {
            Ok(written) => break Some(written),
            Err(error) => {
                tracing::warn!(%error, jobs = ids.len(), "cannot record job outcomes; retrying");
                if drained.is_cancelled() {
                    tries_left_after_shutdown -= 1;
                    if tries_left_after_shutdown == 0 {
                        break None;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    shared.release_hold(ids.iter().copied());
    drop(permits);
    let Some(written) = written else {
        tracing::error!(jobs = ids.len(), "gave up recording job outcomes; their leases will expire");
        return;
    };
    let stats = &shared.stats;
    for job in &finished {
        let counter = match job.state {
            FinalState::Succeeded => &stats.succeeded,
            FinalState::Failed => &stats.failed,
            FinalState::Discarded => &stats.discarded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    stats.released.fetch_add(released, Ordering::Relaxed);
    stats.retried.fetch_add(rescheduled.len() as u64 - released, Ordering::Relaxed);
    let stale = ids.len() as u64 - written;
    if stale > 0 {
        stats.stale.fetch_add(stale, Ordering::Relaxed);
        tracing::warn!(stale, "outcomes of jobs whose lease had expired were ignored");
    }
    if !rescheduled.is_empty() {
        // A retry may be due sooner than the dispatchers' next poll.
        shared.wake(queue::listener::Wake::All);
    }
}
