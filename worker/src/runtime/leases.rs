//! Keeping held jobs leased, rescuing the jobs of workers that vanished, and reporting depth.

use std::sync::Arc;
use std::time::Duration;

use herald_shared::queue::{self, maintenance};
use herald_shared::telemetry::QueueGauges;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// How often queue depth is measured for the metrics.
const DEPTH_EVERY: Duration = Duration::from_secs(15);
/// The most expired jobs one rescue statement takes.
const RESCUE_BATCH: i64 = 1_000;

pub(crate) async fn run<C>(shared: Arc<Shared<C>>, stop: CancellationToken) {
    let lease = shared.settings.queue.lease();
    // Three chances to extend before a lease runs out; rescue checks twice per lease.
    let mut extend = tokio::time::interval(lease / 3);
    let mut rescue = tokio::time::interval(lease / 2);
    let mut depth = tokio::time::interval(DEPTH_EVERY);
    for ticker in [&mut extend, &mut rescue, &mut depth] {
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let mut gauges = QueueGauges::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = extend.tick() => extend_held(&shared).await,
            _ = rescue.tick() => rescue_expired(&shared).await,
            _ = depth.tick() => report_depth(&shared, &mut gauges).await,
        }
    }
}

async fn extend_held<C>(shared: &Shared<C>) {
    let held = shared.held();
    let settings = &shared.settings;
    match queue::extend_leases(&shared.lease_pool, settings.worker_id, &held, settings.queue.lease()).await {
        Ok(extended) if (extended as usize) < held.len() => {
            // Either the outcome was written meanwhile, or the lease had already expired and the
            // job was rescued; the completion of the latter will change nothing.
            tracing::debug!(held = held.len(), extended, "some held jobs were no longer leased");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, held = held.len(), "cannot extend job leases"),
    }
}

async fn rescue_expired<C>(shared: &Shared<C>) {
    loop {
        match maintenance::rescue_expired(&shared.lease_pool, RESCUE_BATCH).await {
            Ok(rescued) => {
                if rescued.revived + rescued.failed > 0 {
                    tracing::warn!(
                        revived = rescued.revived,
                        failed = rescued.failed,
                        "rescued jobs whose lease expired"
                    );
                    metrics::counter!("herald_jobs_rescued_total").increment(rescued.revived + rescued.failed);
                }
                if rescued.revived + rescued.failed < RESCUE_BATCH as u64 {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot rescue expired jobs");
                return;
            }
        }
    }
}

/// Sets the depth gauges and this worker's connection gauges.
async fn report_depth<C>(shared: &Shared<C>, gauges: &mut QueueGauges) {
    gauges.report(&shared.pool).await;
    herald_shared::telemetry::record_pool("main", &shared.pool);
    herald_shared::telemetry::record_pool("claims", &shared.claim_pool);
    herald_shared::telemetry::record_pool("leases", &shared.lease_pool);
}
