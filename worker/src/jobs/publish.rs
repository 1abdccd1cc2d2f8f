//! Publishing one delivery, at most once.
//!
//! 1. The job acts only on the delivery and generation it was queued for: a canceled, edited
//!    (new generation) or finished delivery ends it at once.
//! 2. The account must be connected, its token fresh (refreshed first, serialised with every
//!    other refresh, when it expires within the platform's margin), and the per-account and
//!    per-app publish limits must allow it; otherwise the job comes back at the time the limiter
//!    names, without spending an attempt.
//! 3. `queued → publishing` is recorded (compare-and-set on the delivery) and committed before
//!    the platform is called. If the worker dies during the call, the rescued job finds the
//!    delivery `publishing` and looks the post up on the platform instead of posting again:
//!    found → published; the platform says it has none → back in line; it cannot tell →
//!    `unknown`, for a person to decide (`POST /v1/posts/{id}/retry` with `force`).
//! 4. The answer: published; rate limited → the account's limiter is blocked until the
//!    platform's reset and the delivery waits for it (no attempt spent); transient → retried
//!    with backoff; no answer (a timeout) → stays `publishing`, so the retry looks it up;
//!    a dead grant → the account `needs_reconnect`, the delivery fails `reconnect_required`;
//!    refused → failed with the platform's reason.
//!
//! Hundreds of these run at once in a worker, so their database work is shared: the rows a job
//! needs and its limiter decision come from [`Batches`] (one statement for every job asking at
//! that moment), and its events go through the group committer (one transaction for every job
//! recording at that moment, still committed before the platform is called). Each job keeps
//! the post's state it loaded and decides on it; a write that lost a race loads again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_shared::batch::Batcher;
use herald_shared::commands::{ExecuteError, execute, execute_loaded, load, load_many};
use herald_shared::credentials::{self, PublishAccount};
use herald_shared::crypto::Keyring;
use herald_shared::domain::account::{self, Account, AccountStatus};
use herald_shared::domain::media::{MediaFacts, MediaKind};
use herald_shared::domain::post::{self, DeliveryError, DeliveryStatus, Post};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::{PublishDelivery, RefreshCredentials};
use herald_shared::media::signing;
use herald_shared::platforms::{self, LookUp, Platform, PlatformError, Publication, TokenSet};
use herald_shared::queue::RetryPolicy;
use herald_shared::rate_limit::{self, Decision, Rate};
use sqlx::PgPool;
use uuid::Uuid;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

/// How long after the platform timeout an earlier attempt is surely over.
const IN_FLIGHT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a write to a post retries after losing a race with its other deliveries.
const MAX_RACES: usize = 20;

impl Perform<Context> for PublishDelivery {
    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            base: std::time::Duration::from_secs(2),
            max: std::time::Duration::from_secs(10 * 60),
            floor: std::time::Duration::from_millis(500),
        }
    }

    async fn perform(self, context: &Context, run: JobRun) -> JobResult {
        publish(&self, context, run).await
    }
}

/// The most jobs one batched read or limiter call serves.
const MAX_BATCH: usize = 500;

/// The batched reads and limiter decisions of every publish job in this worker.
#[derive(Clone)]
pub struct Batches {
    loads: Batcher<(Uuid, Uuid), Loaded>,
    limits: Batcher<Vec<(String, Rate)>, Decision>,
}

impl Batches {
    /// Reads on `pool`, limiter decisions on `limiter`, each in `lanes` batches at once.
    pub fn spawn(pool: PgPool, limiter: PgPool, keyring: Arc<Keyring>, lanes: usize) -> Self {
        let loads = Batcher::spawn(lanes, MAX_BATCH, move |requests: Vec<(Uuid, Uuid)>| {
            let (pool, keyring) = (pool.clone(), keyring.clone());
            async move { load_batch(&pool, &keyring, requests).await }
        });
        let limits = Batcher::spawn(lanes, MAX_BATCH, move |requests: Vec<Vec<(String, Rate)>>| {
            let limiter = limiter.clone();
            async move {
                let requests: Vec<Vec<(&str, Rate)>> = requests
                    .iter()
                    .map(|limits| limits.iter().map(|(key, rate)| (key.as_str(), *rate)).collect())
                    .collect();
                let requests: Vec<&[(&str, Rate)]> = requests.iter().map(Vec::as_slice).collect();
                Ok(rate_limit::acquire_many(&limiter, &requests).await?)
            }
        });
        Self { loads, limits }
    }
}

/// What one job needs before it can decide anything: the post (state and version) and the
/// target account with its token.
struct Loaded {
    post: Option<(Post, i64)>,
    account: Option<PublishAccount>,
}

/// Loads the posts and target accounts of `requests` (post id, delivery id): two statements.
async fn load_batch(pool: &PgPool, keyring: &Keyring, requests: Vec<(Uuid, Uuid)>) -> anyhow::Result<Vec<Loaded>> {
    let mut connection = pool.acquire().await?;
    let post_ids: Vec<Uuid> = requests.iter().map(|(post_id, _)| *post_id).collect();
    let posts = load_many::<Post>(&mut connection, &post_ids).await?;
    let target = |post_id: &Uuid, delivery_id: &Uuid| {
        let (post, _) = posts.get(post_id)?;
        post.deliveries.iter().find(|delivery| delivery.id == *delivery_id).map(|delivery| delivery.account_id)
    };
    let account_ids: Vec<Uuid> =
        requests.iter().filter_map(|(post_id, delivery_id)| target(post_id, delivery_id)).collect();
    let accounts = credentials::publish_accounts(&mut connection, keyring, &account_ids).await?;
    drop(connection);
    Ok(requests
        .iter()
        .map(|(post_id, delivery_id)| Loaded {
            post: posts.get(post_id).cloned(),
            account: target(post_id, delivery_id).and_then(|account_id| accounts.get(&account_id).cloned()),
        })
        .collect())
}

/// Everything one attempt needs, loaded before the platform is called.
struct Attempt<'a> {
    job: &'a PublishDelivery,
    store: &'a herald_shared::media::MediaStore,
    run: JobRun,
    metadata: EventMetadata,
    /// The post as this attempt last saw it, and its version: commands are decided on it.
    post: (Post, i64),
    account_id: Uuid,
    content: String,
    options: serde_json::Value,
    /// The target's media, resolved from the library.
    media: Vec<platforms::MediaFile>,
    reference: String,
    /// The request id of the platform's answer to the publish, quoted in a failure.
    platform_request_id: Option<String>,
    /// When the earlier attempt began, for a look-up: the delivery entered `publishing` then.
    began: Option<DateTime<Utc>>,
}

impl Attempt<'_> {
    fn publication<'b>(&'b self, account: &'b PublishAccount) -> Publication<'b> {
        Publication {
            platform_user_id: &account.platform_user_id,
            content: &self.content,
            media: &self.media,
            store: self.store,
            options: &self.options,
            reference: &self.reference,
            began: self.began,
        }
    }

    /// Records `command` on the post through the group committer. A delivery that moved
    /// meanwhile (canceled, retried by a person) is left as it is; true if it was recorded.
    async fn record(&mut self, context: &Context, command: post::Command) -> anyhow::Result<bool> {
        // The post's other deliveries are published concurrently and append to the same stream:
        // a lost race is decided again on the state loaded anew.
        for _ in 0..MAX_RACES {
            let recorded = execute_loaded::<Post>(
                &context.committer,
                self.job.post_id,
                &mut self.post,
                command.clone(),
                self.metadata.clone(),
            )
            .await;
            match recorded {
                Ok(_) => return Ok(true),
                Err(ExecuteError::Conflict { .. }) => {
                    let mut connection = context.pool.acquire().await?;
                    self.post = load::<Post>(&mut connection, self.job.post_id).await?;
                }
                Err(ExecuteError::Rejected(rejection)) => {
                    tracing::info!(%rejection, "the delivery moved; not recorded");
                    return Ok(false);
                }
                Err(error) => return Err(error.into()),
            }
        }
        anyhow::bail!("the post kept changing; {MAX_RACES} tries lost the race")
    }

    /// A delivery error, quoting the platform's request id when it answered.
    fn error(&self, code: &str, message: &str) -> DeliveryError {
        DeliveryError {
            code: code.to_owned(),
            message: message.to_owned(),
            platform_request_id: self.platform_request_id.clone(),
        }
    }

    async fn fail(&mut self, context: &Context, code: &str, message: String) -> anyhow::Result<Outcome> {
        let error = self.error(code, &message);
        self.record(context, post::Command::RecordFailed { delivery_id: self.job.delivery_id, error }).await?;
        Ok(Outcome::Fail(message))
    }
}

async fn publish(job: &PublishDelivery, context: &Context, run: JobRun) -> anyhow::Result<Outcome> {
    let Loaded { post, account } = context.publishing.loads.call((job.post_id, job.delivery_id)).await?;
    let Some((post, version)) = post else { return Ok(Outcome::Done) };
    let Some(delivery) = post.deliveries.iter().find(|delivery| delivery.id == job.delivery_id) else {
        return Ok(Outcome::Done);
    };
    if delivery.generation != job.generation
        || !matches!(delivery.status, DeliveryStatus::Queued | DeliveryStatus::Publishing)
    {
        // Canceled, edited, finished or retried under a new generation: nothing to do here.
        return Ok(Outcome::Done);
    }
    let was_publishing = delivery.status == DeliveryStatus::Publishing;
    let media_refs = delivery.media.clone().unwrap_or_else(|| post.media.clone());
    let mut attempt = Attempt {
        job,
        store: &context.media,
        run,
        metadata: EventMetadata {
            project_id: Some(post.project_id),
            actor: Some(format!("job:{}", run.id)),
            ..EventMetadata::default()
        },
        account_id: delivery.account_id,
        content: delivery.content.clone().unwrap_or_else(|| post.content.clone()),
        options: delivery.options.clone(),
        media: Vec::new(),
        reference: format!("{}:{}", job.delivery_id, job.generation),
        post: (post, version),
        platform_request_id: None,
        began: None,
    };
    let Some(account) = account else {
        return attempt.fail(context, "account_missing", "the target account no longer exists".into()).await;
    };
    match media_files(context, attempt.post.0.project_id, &media_refs).await? {
        Ok(files) => attempt.media = files,
        Err(missing) => return attempt.fail(context, "media_missing", missing).await,
    }
    let (Some(adapter), Some(pace)) =
        (context.platforms.get(&account.platform), context.platforms.pace(&account.platform))
    else {
        let reason = context.platforms.unavailable(&account.platform, "publish to");
        return attempt.fail(context, "platform_unsupported", reason).await;
    };
    if was_publishing {
        // The attempt that started it may still be waiting for the platform (its job's lease
        // ran out under load, not its worker): a look-up now could miss a post about to be
        // made. No call outlives the platform timeout, so look only after that.
        let started: Option<DateTime<Utc>> =
            sqlx::query_scalar!("SELECT updated_at FROM deliveries WHERE id = $1", job.delivery_id)
                .fetch_optional(&context.pool)
                .await?;
        let settled = started.unwrap_or_else(Utc::now) + context.config.platform_timeout() + IN_FLIGHT_MARGIN;
        if Utc::now() < settled {
            return Ok(Outcome::RetryAt(settled, "an earlier attempt may still be waiting for the platform".into()));
        }
        attempt.began = started;
        return reconcile(context, &mut attempt, &account, adapter.as_ref()).await;
    }
    if account.status != AccountStatus::Connected {
        return attempt
            .fail(context, "reconnect_required", format!("the account is {}", account.status.as_str()))
            .await;
    }
    let tokens = match fresh_tokens(context, &mut attempt, &account).await? {
        Ok(tokens) => tokens,
        Err(outcome) => return Ok(outcome),
    };

    let account_key = match within_limits(context, &mut attempt, &account, pace.publish_rates).await? {
        Ok(account_key) => account_key,
        Err(outcome) => return Ok(outcome),
    };

    // queued → publishing, committed before the call: the at-most-once guard.
    let start = post::Command::StartPublishing { delivery_id: job.delivery_id, generation: job.generation };
    if !attempt.record(context, start).await? {
        return Ok(Outcome::Done);
    }

    let (answer, request_id) =
        platforms::http::with_request_id(adapter.publish(&tokens, &attempt.publication(&account))).await;
    attempt.platform_request_id = request_id;
    record_answer(context, &mut attempt, &account_key, answer).await
}

/// The library items `refs` name, in order, each with a URL signed for the platform to fetch
/// it from; `Err` names one that is gone (deleted after a failed publish, then retried) or not
/// ready.
async fn media_files(
    context: &Context,
    project_id: Uuid,
    refs: &[post::MediaRef],
) -> anyhow::Result<Result<Vec<platforms::MediaFile>, String>> {
    if refs.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let ids: Vec<Uuid> = refs.iter().map(|item| item.id).collect();
    let rows = sqlx::query!(
        r#"SELECT id, object_key, kind AS "kind!: MediaKind", content_type AS "content_type!", size_bytes AS "size_bytes!",
                  sha256 AS "sha256!", width, height, duration_ms, frame_rate, video_codec, audio_codec
           FROM media
           WHERE id = ANY($1) AND project_id = $2 AND deleted_at IS NULL AND status = 'ready'
             AND kind IS NOT NULL AND content_type IS NOT NULL AND size_bytes IS NOT NULL AND sha256 IS NOT NULL"#,
        &ids,
        project_id
    )
    .fetch_all(&context.pool)
    .await?;
    let now = Utc::now().timestamp();
    let lifetime = context.config.media.url_lifetime();
    let mut files = Vec::with_capacity(refs.len());
    for item in refs {
        let Some(row) = rows.iter().find(|row| row.id == item.id) else {
            return Ok(Err(format!("media item {} is no longer in the library", item.id)));
        };
        files.push(platforms::MediaFile {
            id: row.id,
            alt_text: item.alt_text.clone(),
            facts: MediaFacts {
                kind: row.kind,
                content_type: row.content_type.clone(),
                size_bytes: row.size_bytes,
                sha256: row.sha256.clone(),
                width: row.width,
                height: row.height,
                duration_ms: row.duration_ms,
                frame_rate: row.frame_rate,
                video_codec: row.video_codec.clone(),
                audio_codec: row.audio_codec.clone(),
            },
            url: signing::content_url(&context.config.public_url(), &context.media_url_key, row.id, lifetime, now),
            object_key: row.object_key.clone(),
        });
    }
    Ok(Ok(files))
}

/// Asks the platform's limits, per account and per app (the project's own, or the managed one),
/// shared by every worker, at the configured `rates`; returns the account's limiter key (a
/// rate limit the platform answers blocks it). `Err` is the outcome to end the attempt with:
/// wait for the limiter, or the app is gone.
async fn within_limits(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
    rates: platforms::PublishRates,
) -> anyhow::Result<Result<String, Outcome>> {
    let client_id = match account.app_id {
        Some(_) => account.app_client_id.clone(),
        None => context.platforms.managed_app(&account.platform).map(|app| app.client_id.clone()),
    };
    let Some(client_id) = client_id else {
        return Ok(Err(attempt.fail(context, "app_missing", "the account's OAuth app is gone".into()).await?));
    };
    let account_key = format!("publish:account:{}", attempt.account_id);
    let app_key = format!("publish:app:{}:{client_id}", account.platform);
    let limits = vec![(account_key.clone(), rates.per_account), (app_key, rates.per_app)];
    if let Decision::RetryAt(at) = context.publishing.limits.call(limits).await? {
        return Ok(Err(Outcome::RetryAt(at, "waiting for the platform's publish limit".into())));
    }
    Ok(Ok(account_key))
}

/// What the platform answered, recorded.
async fn record_answer(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account_key: &str,
    answer: Result<platforms::Published, PlatformError>,
) -> anyhow::Result<Outcome> {
    let delivery_id = attempt.job.delivery_id;
    match answer {
        Ok(published) => record_published(context, attempt, published).await,
        Err(PlatformError::RateLimited { until, reason }) => {
            rate_limit::block_until(&context.limiter, account_key, until).await?;
            let retrying = post::Command::RecordRetrying {
                delivery_id,
                error: attempt.error("rate_limited", &reason),
                retry_at: until,
            };
            attempt.record(context, retrying).await?;
            Ok(Outcome::RetryAt(until, reason))
        }
        Err(PlatformError::Transient(reason)) if attempt.run.attempt < attempt.run.max_attempts => {
            let retry_at = Utc::now();
            let retrying =
                post::Command::RecordRetrying { delivery_id, error: attempt.error("transient", &reason), retry_at };
            attempt.record(context, retrying).await?;
            Ok(Outcome::Retry(reason))
        }
        Err(PlatformError::Transient(reason)) => attempt.fail(context, "transient", reason).await,
        Err(PlatformError::Ambiguous(reason)) if attempt.run.attempt < attempt.run.max_attempts => {
            // Still `publishing`: the next attempt looks the post up before anything else.
            Ok(Outcome::Retry(reason))
        }
        Err(PlatformError::Ambiguous(reason)) => {
            let unknown =
                post::Command::RecordUnknown { delivery_id, error: attempt.error("outcome_unknown", &reason) };
            attempt.record(context, unknown).await?;
            Ok(Outcome::Unknown(reason))
        }
        Err(PlatformError::AuthDead(reason)) => {
            let mut tx = context.pool.begin().await?;
            let dead = account::Command::MarkNeedsReconnect { reason: reason.clone() };
            match execute::<Account>(&mut tx, attempt.account_id, dead, &attempt.metadata).await {
                Ok(_) => tx.commit().await?,
                Err(ExecuteError::Rejected(_)) => {}
                Err(other) => return Err(other.into()),
            }
            attempt.fail(context, "reconnect_required", reason).await
        }
        Err(PlatformError::Permanent(reason)) => attempt.fail(context, "rejected", reason).await,
    }
}

async fn record_published(
    context: &Context,
    attempt: &mut Attempt<'_>,
    published: platforms::Published,
) -> anyhow::Result<Outcome> {
    let command = post::Command::RecordPublished {
        delivery_id: attempt.job.delivery_id,
        platform_post_id: published.platform_post_id,
        platform_url: published.url,
        at: Utc::now(),
    };
    attempt.record(context, command).await?;
    Ok(Outcome::Done)
}

/// The delivery was left `publishing` by an attempt that got no answer or whose worker died:
/// find out what happened before anything is sent again.
async fn reconcile(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
    adapter: &dyn Platform,
) -> anyhow::Result<Outcome> {
    let delivery_id = attempt.job.delivery_id;
    let tokens = match fresh_tokens(context, attempt, account).await? {
        Ok(tokens) => tokens,
        Err(outcome) => return Ok(outcome),
    };
    let (looked_up, request_id) =
        platforms::http::with_request_id(adapter.look_up(&tokens, &attempt.publication(account))).await;
    attempt.platform_request_id = request_id;
    match looked_up {
        Ok(LookUp::Found(published)) => record_published(context, attempt, published).await,
        Ok(LookUp::NotFound) => {
            let error = attempt.error("not_published", "the earlier attempt made no post; trying again");
            let retry_at = Utc::now();
            attempt.record(context, post::Command::RecordRetrying { delivery_id, error, retry_at }).await?;
            Ok(Outcome::RetryAt(retry_at, "the earlier attempt made no post".into()))
        }
        Ok(LookUp::CannotTell) => {
            let message = "an attempt got no answer and the platform cannot say whether it posted; retry with force to post again";
            let error = attempt.error("outcome_unknown", message);
            attempt.record(context, post::Command::RecordUnknown { delivery_id, error }).await?;
            Ok(Outcome::Unknown(message.into()))
        }
        Err(error) if error.is_transient() => Ok(Outcome::Retry(format!("looking the post up: {error}"))),
        Err(PlatformError::RateLimited { until, reason }) => Ok(Outcome::RetryAt(until, reason)),
        Err(error) => {
            let message = format!("looking the post up failed: {error}");
            let error = attempt.error("outcome_unknown", &message);
            attempt.record(context, post::Command::RecordUnknown { delivery_id, error }).await?;
            Ok(Outcome::Unknown(message))
        }
    }
}

/// The account's access token (as loaded with it), refreshed first (serialised, as the refresh
/// job does) when it expires within the platform's margin. `Err` is the outcome to end the
/// attempt with.
async fn fresh_tokens(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
) -> anyhow::Result<Result<TokenSet, Outcome>> {
    let mut stored = account.access_token.clone().map(|token| (token, account.expires_at));
    let margin = context.platforms.pace(&account.platform).map(|pace| pace.refresh_margin);
    if stored.as_ref().is_some_and(|(_, expires_at)| {
        expires_at.is_some_and(|at| margin.is_some_and(|margin| at - Utc::now() < margin))
    }) {
        let job = RefreshCredentials { account_id: attempt.account_id, grant_id: None, seen_version: None };
        match super::refresh::refresh(&job, context, attempt.run).await? {
            Outcome::Done => {}
            Outcome::Retry(reason) => return Ok(Err(Outcome::Retry(format!("refreshing the token first: {reason}")))),
            Outcome::RetryAt(at, reason) => return Ok(Err(Outcome::RetryAt(at, reason))),
            Outcome::Fail(reason) | Outcome::Unknown(reason) => {
                return Ok(Err(attempt.fail(context, "reconnect_required", reason).await?));
            }
        }
        let mut connection = context.pool.acquire().await?;
        let refreshed = credentials::load_account_tokens(&mut connection, &context.keyring, attempt.account_id).await?;
        stored = refreshed.and_then(|refreshed| Some((refreshed.access_token?, refreshed.expires_at)));
    }
    let Some((access_token, expires_at)) = stored else {
        return Ok(Err(attempt.fail(context, "reconnect_required", "the account has no credentials".into()).await?));
    };
    Ok(Ok(TokenSet { access_token, refresh_token: None, expires_at, scopes: Vec::new() }))
}
