//! The idle worker's one poll: a single statement per poll interval, however many queues the
//! worker serves, asks which queues have a job due soon, and wakes their dispatchers on time.
//!
//! `NOTIFY` is the wake-up; this is only the fallback, for jobs whose notification was lost or
//! that were enqueued with a due time further off than a dispatcher's own look-ahead. A
//! dispatcher that found nothing to claim therefore waits for a wake, not for a timer of its
//! own: an idle `herald dev` costs one claim statement per queue only when something is due,
//! plus this poll.

use std::sync::Arc;

use herald_shared::queue;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Shared;
use herald_shared::queue::listener::Wake;

pub(crate) async fn run<C: Send + Sync + 'static>(shared: Arc<Shared<C>>, stop: CancellationToken) {
    let poll = shared.settings.queue.poll_interval();
    let kinds: Vec<String> = shared.registry.queues().into_values().flatten().collect();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = match queue::next_due_by_queue(&shared.pool, &kinds).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot poll for due jobs");
                continue;
            }
        };
        for (name, due_in) in due {
            // Jobs further off than one interval are seen again by a later poll.
            if due_in >= poll {
                continue;
            }
            let shared = shared.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(due_in) => shared.wake(Wake::Queue(&name)),
                }
            });
        }
    }
}
