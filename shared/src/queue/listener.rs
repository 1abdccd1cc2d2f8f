//! Waking claimers when jobs arrive, through `LISTEN herald_jobs`.
//!
//! Inserts notify once per statement and queue (a trigger), and PostgreSQL folds identical
//! notifications within a transaction, so a bulk enqueue wakes each worker once. Notifications
//! are a hint, never the only path: claimers also poll, and after a lost connection every
//! queue is woken because anything may have been missed meanwhile.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::NOTIFY_CHANNEL;
use crate::notify::{self, Notice};

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
    let on_notice = move |notice: Notice<'_>| match notice {
        Notice::Message { payload, .. } => wake(Wake::Queue(payload)),
        // Jobs may have arrived while nobody listened.
        Notice::Listening => wake(Wake::All),
        Notice::Lost => {}
    };
    notify::listen(pool, &[NOTIFY_CHANNEL], on_notice, shutdown).await;
}
