//! Waking claimers when jobs arrive, through `LISTEN herald_jobs`.
//!
//! Inserts notify once per statement and queue (a trigger), and PostgreSQL folds identical
//! notifications within a transaction, so a bulk enqueue wakes each worker once. Notifications
//! are a hint, never the only path: claimers also poll, and after a lost connection every
//! queue is woken because anything may have been missed meanwhile.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::NOTIFY_CHANNEL;

/// Which claimers to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake<'a> {
    /// Jobs arrived on this queue.
    Queue(&'a str),
    /// Notifications may have been missed: wake them all.
    All,
}

/// Listens until `shutdown`, calling `wake` for every notification. Reconnects by itself.
pub async fn run(pool: PgPool, wake: impl Fn(Wake<'_>) + Send, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for new jobs; polling meanwhile");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Jobs may have arrived while nobody listened.
        wake(Wake::All);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => wake(Wake::Queue(notification.payload())),
                // The connection dropped; the next call reconnects, and anything sent meanwhile
                // is lost, so wake everyone.
                Ok(None) => wake(Wake::All),
                Err(error) => {
                    tracing::warn!(%error, "lost the job listener; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}
