//! `LISTEN` for `NOTIFY`, with reconnection, for any part of herald that keeps something in
//! memory that another process may change (the worker's wake-ups, the api's key cache).
//!
//! A notification is delivered at most once and only while listening: whatever was sent while
//! the connection was down is lost. So the callback is told when listening starts
//! ([`Notice::Listening`], after every reconnect) and when it stops ([`Notice::Lost`]), and a
//! user must treat both as "anything may have changed".

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// Listening on every channel (again). Notifications sent before this were not seen.
    Listening,
    /// A notification.
    Message { channel: &'a str, payload: &'a str },
    /// The connection is gone; notifications are being missed until the next `Listening`.
    Lost,
}

/// Listens on `channels` until `shutdown`, calling `on` for everything it sees. Reconnects by
/// itself, backing off up to 10 s while the database is unreachable.
pub async fn listen(
    pool: PgPool,
    channels: &'static [&'static str],
    on: impl Fn(Notice<'_>) + Send,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let mut listener = match connect(&pool, channels).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, ?channels, "cannot listen for notifications; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        on(Notice::Listening);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    on(Notice::Message { channel: notification.channel(), payload: notification.payload() })
                }
                // The connection dropped. Reconnect here rather than inside `try_recv`, so the
                // callback hears about the gap before it hears about the reconnection.
                Ok(None) => {
                    on(Notice::Lost);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, ?channels, "lost the notification listener; reconnecting");
                    on(Notice::Lost);
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool, channels: &[&str]) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // On a lost connection, return at once: `listen` reconnects and says so.
    listener.eager_reconnect(false);
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}
