//! Refreshing an account's credentials.
//!
//! Refresh tokens rotate on X and TikTok (and the sandbox): a second request with the same one
//! kills the grant. A grant's accounts share one pair (`credentials`), so a refresh is
//! serialised per grant by the pair's row lock, held across the platform call, and a job only
//! refreshes the version it was asked to: one that finds a newer version (another job, maybe
//! for a sibling account, got there first) ends without a request. The new pair is written by
//! compare-and-set on that version, and every connected account of the grant records it.
//!
//! Outcomes: success → `account.token_refreshed`; a transient failure (network, 5xx) →
//! `account.refresh_failed` and a retry with backoff, the account stays connected; a rate limit →
//! run again at the platform's reset; a dead grant (`invalid_grant`) →
//! `account.needs_reconnect` with the platform's reason; another refusal →
//! `account.refresh_failed`, the account stays connected.

use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, AccountStatus};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::RefreshCredentials;
use herald_shared::platforms::PlatformError;
use uuid::Uuid;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

/// The least time between two refreshes of an account, unless its token is about to expire.
const MIN_REFRESH_INTERVAL: chrono::Duration = chrono::Duration::seconds(30);

impl Perform<Context> for RefreshCredentials {
    async fn perform(self, context: &Context, run: JobRun) -> JobResult {
        refresh(&self, context, run).await
    }
}

pub(super) async fn refresh(job: &RefreshCredentials, context: &Context, run: JobRun) -> anyhow::Result<Outcome> {
    let account_id = job.account_id;
    let mut tx = context.pool.begin().await?;
    let account = credentials::job_account(&mut tx, account_id).await?;
    let Some(account) = account else { return Ok(Outcome::Fail("the account does not exist".into())) };
    if account.status != AccountStatus::Connected {
        return Ok(Outcome::Done);
    }
    let metadata = EventMetadata {
        project_id: Some(account.project_id),
        actor: Some(format!("job:{}", run.id)),
        ..EventMetadata::default()
    };
    // The pair's row lock (the grant's, for an account that shares one): every other refresh
    // of this pair, for whichever of its accounts, waits here until we commit.
    let Some(stored) = credentials::load_account_tokens(&mut tx, &context.keyring, account_id).await? else {
        return Ok(Outcome::Done);
    };
    if job.seen_version.is_some_and(|seen| seen != stored.version) {
        return Ok(Outcome::Done);
    }
    // A pair refreshed moments ago that is not about to expire needs no new one: triggers that
    // raced the last refresh (and read its new version) end here instead of rotating again.
    let now = chrono::Utc::now();
    let margin = context.platforms.pace(&account.platform).map(|pace| pace.refresh_margin);
    let expiring = stored.expires_at.is_none_or(|at| margin.is_none_or(|margin| at - now < margin));
    let last_refresh = stored.refreshed_at.or(account.last_refresh_at);
    if last_refresh.is_some_and(|at| now - at < MIN_REFRESH_INTERVAL) && !expiring {
        return Ok(Outcome::Done);
    }
    let Some(refresh_token) = stored.refresh_token else {
        // Nothing to refresh with (LinkedIn without partner status): once the access token is
        // dead, only a reconnect helps.
        if stored.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            let reason = "the access token expired and the platform gave no refresh token".to_owned();
            let sharing = credentials::accounts_using(&mut tx, stored.owner, false).await?;
            record(&mut tx, &sharing, &metadata, || account::Command::MarkNeedsReconnect { reason: reason.clone() })
                .await?;
            tx.commit().await?;
        }
        return Ok(Outcome::Done);
    };
    let (adapter, client) =
        match super::platform_client(context, &mut tx, account.project_id, &account.platform, account.app_id).await {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };

    let refreshed = observed(&account.platform, adapter.refresh(&client, &refresh_token)).await;
    // Every connected account of the grant hears how its refresh went; a dead grant takes its
    // accounts with their own tokens (Facebook Pages) along too.
    let sharing =
        credentials::accounts_using(&mut tx, stored.owner, matches!(refreshed, Err(PlatformError::AuthDead(_))))
            .await?;
    match refreshed {
        Ok(tokens) => {
            if !credentials::replace_tokens(&mut tx, &context.keyring, stored.owner, stored.version, &tokens).await? {
                // Impossible while we hold the lock; if it happens, do not record a refresh.
                return Ok(Outcome::Retry("the credentials changed during the refresh".into()));
            }
            let expires_at = tokens.expires_at;
            record(&mut tx, &sharing, &metadata, || account::Command::RecordRefresh { expires_at }).await?;
            tx.commit().await?;
            Ok(Outcome::Done)
        }
        Err(error) if error.is_transient() => {
            let reason = error.to_string();
            record(&mut tx, &sharing, &metadata, || account::Command::RecordRefreshFailed { reason: reason.clone() })
                .await?;
            tx.commit().await?;
            Ok(Outcome::Retry(reason))
        }
        Err(PlatformError::RateLimited { until, reason }) => Ok(Outcome::RetryAt(until, reason)),
        Err(error @ PlatformError::AuthDead(_)) => {
            let reason = error.to_string();
            record(&mut tx, &sharing, &metadata, || account::Command::MarkNeedsReconnect { reason: reason.clone() })
                .await?;
            tx.commit().await?;
            Ok(Outcome::Fail(reason))
        }
        // Refused for another reason (Threads refuses tokens younger than a day): the grant may
        // well be alive, so the accounts stay connected and the failure is on record.
        Err(error) => {
            let reason = error.to_string();
            record(&mut tx, &sharing, &metadata, || account::Command::RecordRefreshFailed { reason: reason.clone() })
                .await?;
            tx.commit().await?;
            Ok(Outcome::Fail(reason))
        }
    }
}

/// Runs `command` on each of `accounts`. One that is no longer connected (disconnected a moment
/// ago) refuses it, which changes nothing for the others.
async fn record(
    tx: &mut sqlx::PgConnection,
    accounts: &[Uuid],
    metadata: &EventMetadata,
    command: impl Fn() -> account::Command,
) -> anyhow::Result<()> {
    for account_id in accounts {
        match execute::<Account>(&mut *tx, *account_id, command(), metadata).await {
            Ok(_) | Err(ExecuteError::Rejected(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Awaits `refresh`, counting it by outcome in `herald_refreshes_total{platform, outcome}` and
/// timing it in `herald_platform_call_seconds{platform, call="refresh"}`.
async fn observed<T>(
    platform: &str,
    refresh: impl Future<Output = Result<T, PlatformError>>,
) -> Result<T, PlatformError> {
    let started = std::time::Instant::now();
    let refreshed = refresh.await;
    let outcome = refreshed.as_ref().map_or_else(PlatformError::kind, |_| "refreshed");
    let platform = platform.to_owned();
    metrics::counter!("herald_refreshes_total", "platform" => platform.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("herald_platform_call_seconds", "platform" => platform, "call" => "refresh")
        .record(started.elapsed().as_secs_f64());
    refreshed
}
