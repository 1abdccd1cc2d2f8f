//! One cancellation token per process, cancelled by SIGTERM or SIGINT.
//!
//! Every role's `run(config, shutdown)` stops taking new work when the token is cancelled and
//! finishes (within the grace period) what it holds.

use tokio_util::sync::CancellationToken;

/// A token that is cancelled on the first SIGTERM or SIGINT (Ctrl-C).
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing what is in flight");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            // Signal handlers could not be installed; Ctrl-C through tokio is the fallback.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
