//! Revoking a grant on the platform, where it allows that, once its last connected account was
//! disconnected. The accounts are already disconnected and the tokens gone; this only tells the
//! platform. A transient
//! failure retries; a refusal ends the job (the grant may already be dead).

use herald_shared::credentials::{self, PairOwner};
use herald_shared::jobs::RevokeGrant;
use herald_shared::platforms::PlatformError;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

impl Perform<Context> for RevokeGrant {
    async fn perform(self, context: &Context, _run: JobRun) -> JobResult {
        revoke(&self, context).await
    }
}

async fn revoke(job: &RevokeGrant, context: &Context) -> anyhow::Result<Outcome> {
    let mut tx = context.pool.begin().await?;
    let account = credentials::job_account(&mut tx, job.account_id).await?;
    let Some(account) = account else { return Ok(Outcome::Fail("the account does not exist".into())) };
    let (adapter, client) =
        match super::platform_client(context, &mut tx, account.project_id, &account.platform, account.app_id).await {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
    drop(tx);
    let owner = job.grant_id.map_or(PairOwner::Account(job.account_id), PairOwner::Grant);
    let token = owner.open(&context.keyring, &job.token_column, &job.sealed_token)?;
    match adapter.revoke(&client, &token).await {
        Ok(()) => Ok(Outcome::Done),
        Err(error) if error.is_transient() => Ok(Outcome::Retry(error.to_string())),
        Err(PlatformError::RateLimited { until, reason }) => Ok(Outcome::RetryAt(until, reason)),
        Err(error) => Ok(Outcome::Fail(error.to_string())),
    }
}
