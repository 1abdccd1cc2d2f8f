//! Writing outcomes in batches.
//!
//! Jobs send their outcome here and move on. The completer takes everything that has arrived,
//! writes it with at most two statements (ended jobs, rescheduled jobs), and repeats: under
//! load a batch holds whatever finished during the previous write; when idle a lone outcome is
//! written at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_shared::queue::{self, FinalState, Finished, Rescheduled};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;

/// The most outcomes one statement carries.
const MAX_BATCH: usize = 5_000;

/// How one attempt is to be written.
#[derive(Debug)]
pub(crate) enum Completion {
    Finish(Finished),
    Reschedule(Rescheduled, Reason),
}

/// Why a job is rescheduled, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Retry,
    Released,
}

pub(crate) async fn run<C>(
    shared: Arc<Shared<C>>,
    mut completed: mpsc::UnboundedReceiver<Completion>,
    drained: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            first = completed.recv() => first,
            _ = drained.cancelled() => completed.try_recv().ok(),
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match completed.try_recv() {
                Ok(completion) => batch.push(completion),
                Err(_) => break,
            }
        }
        flush(&shared, &mut batch, &drained).await;
    }
}

/// Writes `batch`, retrying while the database is unreachable (the jobs stay held, so their
/// leases keep being extended meanwhile). After shutdown it tries a few times, then leaves the
/// jobs to their leases.
async fn flush<C>(shared: &Shared<C>, batch: &mut Vec<Completion>, drained: &CancellationToken) {
    let mut finished = Vec::new();
    let mut rescheduled = Vec::new();
    let mut released = 0u64;
    for completion in batch.drain(..) {
        match completion {
            Completion::Finish(job) => finished.push(job),
            Completion::Reschedule(job, reason) => {
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
            let ended = queue::finish(&shared.pool, &finished).await?;
            let moved = queue::reschedule(&shared.pool, &rescheduled).await?;
            Ok::<_, sqlx::Error>(ended + moved)
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
