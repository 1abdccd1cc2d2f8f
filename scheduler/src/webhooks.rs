//! The webhook dispatcher's loop: turns new events into messages (`herald_shared::webhooks::
//! dispatch`) every [`DISPATCH_EVERY`], at once again while pages come back full, and sweeps for
//! lanes with messages due and nobody sending (retries whose time came, senders that died).
//! Any number of schedulers may run it: the cursor's row lock lets one dispatch at a time.

use std::sync::Arc;
use std::time::Duration;

use herald_shared::Config;
use herald_shared::crypto::Keyring;
use herald_shared::webhooks::dispatch;
use herald_shared::webhooks::payload::PayloadContext;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the log is looked at for new events.
const DISPATCH_EVERY: Duration = Duration::from_millis(100);
/// Events one dispatch reads.
const PAGE: i64 = 1000;
/// How often lanes with due messages and no sender are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`.
pub async fn run(pool: PgPool, config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keyring = Keyring::from_config(&config)?;
    let media_url_key = keyring.derive(herald_shared::media::signing::PURPOSE)?;
    let context = PayloadContext { config, media_url_key };
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wait = match dispatch::dispatch(&pool, &context, PAGE).await {
            Ok(read) if read as i64 == PAGE => Duration::ZERO,
            Ok(_) => DISPATCH_EVERY,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot dispatch webhook messages");
                DISPATCH_EVERY * 10
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sweep.tick() => {
                if let Err(error) = dispatch::wake_due_lanes(&pool, 1000).await {
                    tracing::warn!(error = %format!("{error:#}"), "cannot queue webhook senders");
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}
