//! Finishing a connect: exchange the code, list every account the grant reaches, and upsert
//! each by (project, platform, platform user id) with its tokens sealed, then complete the
//! session, all in one transaction.
//!
//! A code is single use, so after a successful exchange nothing may send it again: the account
//! list is retried in place (three tries) rather than by re-running the job, and an exchange
//! whose answer was lost ends the session as failed (the platform will refuse the code).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use herald_shared::commands::execute;
use herald_shared::credentials;
use herald_shared::domain::account::{self, Account, Grant};
use herald_shared::domain::connect_session::{self, ConnectSession, SessionStatus};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::ExchangeCode;
use herald_shared::platforms::{ClientCredentials, GrantedAccount, Platform, PlatformError, TokenSet};
use secrecy::SecretString;
use uuid::Uuid;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

struct PendingSession {
    project_id: Uuid,
    platform: String,
    app_id: Option<Uuid>,
    external_id: Option<String>,
    status: SessionStatus,
}

impl Perform<Context> for ExchangeCode {
    async fn perform(self, context: &Context, run: JobRun) -> JobResult {
        exchange(&self, context, run).await
    }
}

async fn exchange(job: &ExchangeCode, context: &Context, run: JobRun) -> anyhow::Result<Outcome> {
    let session_id = job.session_id;
    let metadata = EventMetadata { actor: Some(format!("job:{}", run.id)), ..EventMetadata::default() };
    let ready = match prepare(context, session_id, &metadata).await? {
        Ok(ready) => ready,
        Err(outcome) => return Ok(outcome),
    };
    let metadata = EventMetadata { project_id: Some(ready.session.project_id), ..metadata };
    // Nothing is held in the database while the platform answers.
    let redirect_uri = context.config.callback_url(&ready.session.platform);
    let exchanged =
        ready.adapter.exchange_code(&ready.client, &ready.code, ready.pkce_verifier.as_ref(), &redirect_uri).await;
    let tokens = match exchanged {
        Ok(tokens) => tokens,
        Err(PlatformError::Transient(reason)) if run.attempt < run.max_attempts => {
            return Ok(Outcome::Retry(reason));
        }
        Err(error) => return give_up(context, session_id, &metadata, error.to_string()).await,
    };
    let list = || async { ready.adapter.accounts(&tokens).await };
    let reached = list
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(3))
        .when(PlatformError::is_transient)
        .await;
    match reached {
        Ok(reached) if !reached.is_empty() => {
            record(context, session_id, &ready.session, &tokens, reached, &metadata).await
        }
        Ok(_) => give_up(context, session_id, &metadata, "the grant reaches no account".into()).await,
        Err(error) => give_up(context, session_id, &metadata, format!("listing accounts: {error}")).await,
    }
}

/// What the exchange needs, read (and the session's secrets opened) before the platform is
/// called.
struct Ready {
    session: PendingSession,
    adapter: Arc<dyn Platform>,
    client: ClientCredentials,
    code: SecretString,
    pkce_verifier: Option<SecretString>,
}

/// Reads the pending session, its adapter, OAuth client and code. `Err` is the outcome to end the
/// job with: a session that is gone or no longer pending, or one that cannot be finished (then
/// ended as failed here).
async fn prepare(
    context: &Context,
    session_id: Uuid,
    metadata: &EventMetadata,
) -> anyhow::Result<Result<Ready, Outcome>> {
    let mut tx = context.pool.begin().await?;
    let session = sqlx::query_as!(
        PendingSession,
        r#"SELECT project_id, platform, app_id, external_id, status AS "status: SessionStatus"
           FROM connect_sessions WHERE id = $1"#,
        session_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(session) = session else { return Ok(Err(Outcome::Fail("the session does not exist".into()))) };
    if session.status != SessionStatus::Pending {
        return Ok(Err(Outcome::Done));
    }
    let metadata = EventMetadata { project_id: Some(session.project_id), ..metadata.clone() };
    let fail = |reason: String| connect_session::Command::Fail { reason };
    let Some(adapter) = context.platforms.get(&session.platform) else {
        execute::<ConnectSession>(&mut tx, session_id, fail("no adapter for this platform".into()), &metadata).await?;
        tx.commit().await?;
        return Ok(Err(Outcome::Fail("no adapter".into())));
    };
    let secrets = credentials::load_session_secrets(&mut tx, &context.keyring, session_id).await?;
    let managed = context.platforms.managed_app(&session.platform);
    let client = credentials::client_for(
        &mut tx,
        &context.keyring,
        managed,
        session.project_id,
        &session.platform,
        session.app_id,
    )
    .await;
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            let reason = format!("no OAuth client: {error}");
            execute::<ConnectSession>(&mut tx, session_id, fail(reason.clone()), &metadata).await?;
            tx.commit().await?;
            return Ok(Err(Outcome::Fail(reason)));
        }
    };
    let Some(code) = secrets.code else {
        execute::<ConnectSession>(&mut tx, session_id, fail("the code is gone".into()), &metadata).await?;
        tx.commit().await?;
        return Ok(Err(Outcome::Fail("no code".into())));
    };
    Ok(Ok(Ready { session, adapter, client, code, pkce_verifier: secrets.pkce_verifier }))
}

/// Records every account the grant reached, with the grant's tokens sealed, and completes the
/// session, in one transaction.
async fn record(
    context: &Context,
    session_id: Uuid,
    session: &PendingSession,
    tokens: &TokenSet,
    reached: Vec<GrantedAccount>,
    metadata: &EventMetadata,
) -> anyhow::Result<Outcome> {
    let mut tx = context.pool.begin().await?;
    if let Some(app_id) = session.app_id {
        // Held until commit, so the app cannot be deleted while its accounts are recorded.
        let live =
            sqlx::query_scalar!("SELECT id FROM oauth_apps WHERE id = $1 AND deleted_at IS NULL FOR SHARE", app_id)
                .fetch_optional(&mut *tx)
                .await?;
        if live.is_none() {
            drop(tx);
            return give_up(context, session_id, metadata, "the app was deleted during the connect".into()).await;
        }
    }
    let mut existing = Vec::with_capacity(reached.len());
    for granted in &reached {
        let id = sqlx::query_scalar!(
            "SELECT id FROM accounts WHERE project_id = $1 AND platform = $2 AND platform_user_id = $3",
            session.project_id,
            session.platform,
            granted.platform_user_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        existing.push(id);
    }
    let grant_id = store_grant(context, &mut tx, session, &existing, tokens).await?;
    let mut account_ids = Vec::with_capacity(reached.len());
    let mut superseded = Vec::new();
    for (granted, existing) in reached.into_iter().zip(existing) {
        let account_id = existing.unwrap_or_else(Uuid::now_v7);
        let account_tokens: &TokenSet = granted.token.as_ref().unwrap_or(tokens);
        let grant = Grant {
            project_id: session.project_id,
            platform: session.platform.clone(),
            platform_user_id: granted.platform_user_id,
            kind: granted.kind,
            username: granted.username,
            display_name: granted.display_name,
            external_id: session.external_id.clone(),
            app_id: session.app_id,
            scopes: account_tokens.scopes.clone(),
            expires_at: account_tokens.expires_at,
            session_id,
        };
        execute::<Account>(&mut tx, account_id, account::Command::Connect(Box::new(grant)), metadata).await?;
        let own = granted.token.as_ref();
        superseded.extend(credentials::link_account(&mut tx, &context.keyring, account_id, grant_id, own).await?);
        account_ids.push(account_id);
    }
    for old in superseded {
        credentials::forget_unused_grant(&mut tx, old).await?;
    }
    let complete = connect_session::Command::Complete { account_ids };
    execute::<ConnectSession>(&mut tx, session_id, complete, metadata).await?;
    credentials::forget_session_secrets(&mut tx, session_id).await?;
    tx.commit().await?;
    Ok(Outcome::Done)
}

/// Ends the session as failed with `reason` (the platform's, never a token).
async fn give_up(
    context: &Context,
    session_id: Uuid,
    metadata: &EventMetadata,
    reason: String,
) -> anyhow::Result<Outcome> {
    let mut tx = context.pool.begin().await?;
    let fail = connect_session::Command::Fail { reason: reason.clone() };
    execute::<ConnectSession>(&mut tx, session_id, fail, metadata).await?;
    credentials::forget_session_secrets(&mut tx, session_id).await?;
    tx.commit().await?;
    Ok(Outcome::Fail(reason))
}

/// Stores the exchange's pair for the grant it belongs to, and says which. A reconnect of
/// accounts that already share a grant renews that grant (so the siblings it did not reach this
/// time keep working); otherwise a new grant is made. A pair without a refresh token (Google
/// sends one only on first consent) keeps the one the accounts had.
async fn store_grant(
    context: &Context,
    tx: &mut sqlx::PgConnection,
    session: &PendingSession,
    existing: &[Option<Uuid>],
    tokens: &TokenSet,
) -> anyhow::Result<Uuid> {
    let known: Vec<Uuid> = existing.iter().flatten().copied().collect();
    let grant_id = credentials::grants_of(&mut *tx, &known).await?.first().copied();
    let carried = match (grant_id, &tokens.refresh_token) {
        (None, None) => carried_refresh_token(context, tx, &known).await?,
        _ => None,
    };
    let grant_id = grant_id.unwrap_or_else(Uuid::now_v7);
    let stored = TokenSet { refresh_token: carried.or_else(|| tokens.refresh_token.clone()), ..tokens.clone() };
    let grant = credentials::GrantRef { id: grant_id, project_id: session.project_id, platform: &session.platform };
    credentials::store_grant_tokens(&mut *tx, &context.keyring, grant, &stored).await?;
    Ok(grant_id)
}

/// The refresh token an account connected before grants existed holds as its own pair.
async fn carried_refresh_token(
    context: &Context,
    tx: &mut sqlx::PgConnection,
    accounts: &[Uuid],
) -> anyhow::Result<Option<SecretString>> {
    for account_id in accounts {
        let stored = credentials::load_account_tokens(&mut *tx, &context.keyring, *account_id).await?;
        if let Some(token) = stored.and_then(|stored| stored.refresh_token) {
            return Ok(Some(token));
        }
    }
    Ok(None)
}
