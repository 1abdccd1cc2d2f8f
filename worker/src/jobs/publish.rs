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
//! 5. A post with a chain (a thread's items, a first comment) publishes its own content first,
//!    then each item as a reply to the one before or a comment on the post: each step is
//!    recorded `step_publishing` (committed) before its call and `step_published` after it, so a
//!    rescued job resumes with the next unpublished step, looks up the one that was in flight, and
//!    never sends a step twice. The delivery is `published` when its last step is; a step refused
//!    for good fails the delivery with what it published so far, and a retry resumes after that.
//!
//! Hundreds of these run at once in a worker, so their database work is shared: the rows a job
//! needs and its limiter decision come from [`Batches`] (one statement for every job asking at
//! that moment), and its events go through the group committer (one transaction for every job
//! recording at that moment, still committed before the platform is called). Each job keeps
//! the post's state it loaded and decides on it; a write that lost a race loads again.

use std::sync::Arc;

use tracing::Instrument as _;

use chrono::{DateTime, Utc};
use herald_shared::batch::Batcher;
use herald_shared::commands::{ExecuteError, execute, execute_loaded, load, load_many};
use herald_shared::credentials::{self, PublishAccount};
use herald_shared::crypto::Keyring;
use herald_shared::domain::account::{self, Account, AccountStatus};
use herald_shared::domain::media::{MediaFacts, MediaKind};
use herald_shared::domain::post::{self, ChainStep, DeliveryError, DeliveryStatus, Post, PublishedItem};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::{PublishDelivery, RefreshCredentials};
use herald_shared::media::signing;
use herald_shared::platforms::{
    self, FollowUp, FollowUpKind, LookUp, Platform, PlatformError, Publication, PublishCheckpoints, Published, TokenSet,
};
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
    checkpoints: &'a StoredCheckpoints,
    run: JobRun,
    metadata: EventMetadata,
    /// The post as this attempt last saw it, and its version: commands are decided on it.
    post: (Post, i64),
    account_id: Uuid,
    content: String,
    options: serde_json::Value,
    /// The target's media, resolved from the library.
    media: Vec<platforms::MediaFile>,
    /// What follows the post's own content: step 1, 2, ... of its chain.
    steps: Vec<Step>,
    reference: String,
    /// The request id of the platform's answer to the publish, quoted in a failure.
    platform_request_id: Option<String>,
    /// When the earlier attempt began, for a look-up: the delivery entered `publishing` then.
    began: Option<DateTime<Utc>>,
}

/// One later step of a delivery's chain, as the target gives it.
struct Step {
    content: String,
    media: Vec<post::MediaRef>,
    kind: FollowUpKind,
}

/// A step's own content and media, resolved for its call.
struct StepCall {
    index: usize,
    content: String,
    media: Vec<platforms::MediaFile>,
    reference: String,
    kind: FollowUpKind,
}

impl<'a> Attempt<'a> {
    /// An attempt at the delivery `job` names, on the post as loaded (`post`); `comments`: the
    /// platform takes first comments as comments on the post.
    fn new(job: &'a PublishDelivery, context: &'a Context, run: JobRun, post: (Post, i64), comments: bool) -> Self {
        let delivery =
            post.0.deliveries.iter().find(|delivery| delivery.id == job.delivery_id).cloned().unwrap_or_default();
        Attempt {
            job,
            store: &context.media,
            checkpoints: &context.checkpoints,
            run,
            metadata: EventMetadata {
                project_id: Some(post.0.project_id),
                actor: Some(format!("job:{}", run.id)),
                ..EventMetadata::default()
            },
            account_id: delivery.account_id,
            content: delivery.content.clone().unwrap_or_else(|| post.0.content.clone()),
            options: delivery.options.clone(),
            media: Vec::new(),
            steps: chain_of(&post.0, &delivery, comments),
            reference: format!("{}:{}", job.delivery_id, job.generation),
            post,
            platform_request_id: None,
            began: None,
        }
    }

    fn delivery(&self) -> Option<&post::Delivery> {
        self.post.0.deliveries.iter().find(|delivery| delivery.id == self.job.delivery_id)
    }

    /// The post's own published item and the chain's last one: what the next step answers.
    fn root_and_parent(&self) -> Option<(Published, Published)> {
        let delivery = self.delivery()?;
        let root = Published {
            platform_post_id: delivery.platform_post_id.clone()?,
            url: delivery.platform_url.clone(),
            thread_ref: delivery.platform_thread_ref.clone(),
        };
        let parent = delivery.items.last().map_or_else(
            || root.clone(),
            |item| Published {
                platform_post_id: item.platform_post_id.clone(),
                url: item.platform_url.clone(),
                thread_ref: item.thread_ref.clone(),
            },
        );
        Some((root, parent))
    }

    fn step_publication<'b>(&'b self, account: &'b PublishAccount, step: &'b StepCall) -> Publication<'b> {
        Publication {
            platform_user_id: &account.platform_user_id,
            content: &step.content,
            media: &step.media,
            store: self.store,
            options: &self.options,
            reference: &step.reference,
            began: self.began,
            checkpoints: self.checkpoints,
        }
    }

    fn publication<'b>(&'b self, account: &'b PublishAccount) -> Publication<'b> {
        Publication {
            platform_user_id: &account.platform_user_id,
            content: &self.content,
            media: &self.media,
            store: self.store,
            options: &self.options,
            reference: &self.reference,
            began: self.began,
            checkpoints: self.checkpoints,
        }
    }

    /// Records `command` on the post through the group committer. A delivery that moved
    /// meanwhile (canceled, retried by a person) is left as it is; true if it was recorded.
    async fn record(&mut self, context: &Context, command: post::Command) -> anyhow::Result<bool> {
        let span = tracing::info_span!("event.append", stream = %format_args!("post:{}", self.job.post_id));
        self.record_racing(context, command).instrument(span).await
    }

    /// [`Attempt::record`], deciding again on the state loaded anew after a lost race.
    async fn record_racing(&mut self, context: &Context, command: post::Command) -> anyhow::Result<bool> {
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
    let in_flight = delivery.step_in_flight;
    let media_refs = delivery.media.clone().unwrap_or_else(|| post.media.clone());
    let comments = account
        .as_ref()
        .and_then(|account| context.platforms.get(&account.platform))
        .is_some_and(|adapter| adapter.content_rules().chains.comments);
    let mut attempt = Attempt::new(job, context, run, (post, version), comments);
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
    if let (true, Some(step)) = (was_publishing, in_flight) {
        return rescue(context, &mut attempt, &account, adapter.as_ref(), step).await;
    }
    // `publishing` with nothing in flight: a chain between two steps, which goes on below.
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

    if !was_publishing {
        // queued → publishing, committed before the call: the at-most-once guard.
        let start = post::Command::StartPublishing { delivery_id: job.delivery_id, generation: job.generation };
        if !attempt.record(context, start).await? {
            return Ok(Outcome::Done);
        }
    }
    // The limits' share taken above, while no call has spent it.
    let mut unspent = Some(account_key);
    if attempt.delivery().is_some_and(|delivery| delivery.next_step() == 0) {
        let publication = attempt.publication(&account);
        let publishing = platforms::http::with_request_id(adapter.publish(&tokens, &publication));
        let (answer, request_id) = observed(&account.platform, "publish", &attempt, publishing).await;
        attempt.platform_request_id = request_id;
        let account_key = unspent.take().unwrap_or_default();
        let outcome = record_answer(context, &mut attempt, &account_key, 0, answer).await?;
        if !matches!(outcome, Outcome::Done) || attempt.steps.is_empty() {
            return Ok(outcome);
        }
    }
    let chain = Chain { adapter: adapter.as_ref(), tokens: &tokens, rates: pace.publish_rates, unspent };
    publish_chain(context, &mut attempt, &account, chain).await
}

/// The steps after the post itself on `delivery`: its thread's items (replies), then its first
/// comment (a comment on the post where the platform takes `comments`, else the last reply).
fn chain_of(post: &Post, delivery: &post::Delivery, comments: bool) -> Vec<Step> {
    let thread = delivery.thread.as_deref().unwrap_or(&post.thread);
    let first_comment = delivery.first_comment.as_deref().or(post.first_comment.as_deref());
    post::chain_steps(thread, first_comment)
        .into_iter()
        .map(|step| match step {
            ChainStep::Item(item) => {
                Step { content: item.content.clone(), media: item.media.clone(), kind: FollowUpKind::Reply }
            }
            ChainStep::FirstComment(comment) => Step {
                content: comment.to_owned(),
                media: Vec::new(),
                kind: if comments { FollowUpKind::Comment } else { FollowUpKind::Reply },
            },
        })
        .collect()
}

/// Publishes the chain's steps after the last one published, each recorded before and after its
/// call; the delivery is `published` after the last. Each step waits for the publish limits like
/// a post (it is one on the platform).
async fn publish_chain(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
    chain: Chain<'_>,
) -> anyhow::Result<Outcome> {
    let Chain { adapter, tokens, rates, mut unspent } = chain;
    loop {
        let Some(delivery) = attempt.delivery() else { return Ok(Outcome::Done) };
        if delivery.status != DeliveryStatus::Publishing || delivery.step_in_flight.is_some() {
            return Ok(Outcome::Done);
        }
        let index = delivery.next_step();
        if index > attempt.steps.len() {
            let Some((root, _)) = attempt.root_and_parent() else { return Ok(Outcome::Done) };
            let command = post::Command::RecordPublished {
                delivery_id: attempt.job.delivery_id,
                platform_post_id: root.platform_post_id,
                platform_url: root.url,
                at: Utc::now(),
            };
            attempt.record(context, command).await?;
            return Ok(Outcome::Done);
        }
        let account_key = match unspent.take() {
            Some(account_key) => account_key,
            None => match within_limits(context, attempt, account, rates).await? {
                Ok(account_key) => account_key,
                Err(outcome) => return Ok(outcome),
            },
        };
        let step = match step_call(context, attempt, index).await? {
            Ok(step) => step,
            Err(missing) => return attempt.fail(context, "media_missing", missing).await,
        };
        let start = post::Command::StartStep {
            delivery_id: attempt.job.delivery_id,
            generation: attempt.job.generation,
            index,
        };
        if !attempt.record(context, start).await? {
            return Ok(Outcome::Done);
        }
        let Some((root, parent)) = attempt.root_and_parent() else { return Ok(Outcome::Done) };
        let follow_up = FollowUp { kind: step.kind, root: &root, parent: &parent, index };
        let publication = attempt.step_publication(account, &step);
        let (answer, request_id) = observed(
            &account.platform,
            "follow_up",
            attempt,
            platforms::http::with_request_id(adapter.publish_follow_up(tokens, &publication, &follow_up)),
        )
        .await;
        attempt.platform_request_id = request_id;
        let outcome = record_answer(context, attempt, &account_key, index, answer).await?;
        if !matches!(outcome, Outcome::Done) {
            return Ok(outcome);
        }
    }
}

/// What a chain's steps are sent with: the adapter, the account's token, the publish limits, and
/// the limits' share this run took and has not spent (the account's limiter key).
struct Chain<'a> {
    adapter: &'a dyn Platform,
    tokens: &'a TokenSet,
    rates: platforms::PublishRates,
    unspent: Option<String>,
}

/// Step `index` of the chain, with its media resolved from the library; `Err` names an item gone.
async fn step_call(context: &Context, attempt: &Attempt<'_>, index: usize) -> anyhow::Result<Result<StepCall, String>> {
    let step = &attempt.steps[index - 1];
    let media = match media_files(context, attempt.post.0.project_id, &step.media).await? {
        Ok(media) => media,
        Err(missing) => return Ok(Err(missing)),
    };
    Ok(Ok(StepCall {
        index,
        content: step.content.clone(),
        media,
        // The same in every generation: a look-up of an item in doubt also finds one an earlier
        // generation made (a forced retry after `unknown`), rather than posting it twice.
        reference: format!("{}:step:{index}", attempt.job.delivery_id),
        kind: step.kind,
    }))
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
        metrics::counter!("herald_rate_limit_waits_total", "limit" => "publish", "platform" => account.platform.clone())
            .increment(1);
        return Ok(Err(Outcome::RetryAt(at, "waiting for the platform's publish limit".into())));
    }
    Ok(Ok(account_key))
}

/// Awaits `answer` (a publish call of `platform`'s adapter and its request id), counting it
/// by outcome in `herald_publish_answers_total{platform, call, outcome}` and timing it in
/// `herald_platform_call_seconds{platform, call}`.
///
/// The call runs in a `platform.call` span (its trace continues the request that queued the
/// job) naming the platform, the call, the delivery, account and post, and once answered the
/// outcome and the platform's request id: never a token or the content.
async fn observed<F>(
    platform: &str,
    call: &'static str,
    attempt: &Attempt<'_>,
    answer: F,
) -> (Result<Published, PlatformError>, Option<String>)
where
    F: Future<Output = (Result<Published, PlatformError>, Option<String>)>,
{
    let span = tracing::info_span!(
        "platform.call",
        platform,
        call,
        delivery_id = %attempt.job.delivery_id,
        account_id = %attempt.account_id,
        post_id = %attempt.job.post_id,
        outcome = tracing::field::Empty,
        platform_request_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let (answer, request_id) = answer.instrument(span.clone()).await;
    let outcome = answer.as_ref().map_or_else(PlatformError::kind, |_| "published");
    span.record("outcome", outcome);
    if let Some(request_id) = &request_id {
        span.record("platform_request_id", request_id.as_str());
    }
    let platform = platform.to_owned();
    metrics::counter!("herald_publish_answers_total", "platform" => platform.clone(), "call" => call, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("herald_platform_call_seconds", "platform" => platform, "call" => call)
        .record(started.elapsed().as_secs_f64());
    (answer, request_id)
}

/// What the platform answered to step `step` (0: the post itself), recorded.
async fn record_answer(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account_key: &str,
    step: usize,
    answer: Result<Published, PlatformError>,
) -> anyhow::Result<Outcome> {
    let delivery_id = attempt.job.delivery_id;
    // A later step's failure says which item it was.
    let answer = answer.map_err(|error| if step == 0 { error } else { in_chain(error, step) });
    // Surely not published: the post goes back in line, a later step is tried again.
    let retrying = |error: DeliveryError, retry_at| match step {
        0 => post::Command::RecordRetrying { delivery_id, error, retry_at },
        index => post::Command::RecordStepRetrying { delivery_id, index, error },
    };
    match answer {
        Ok(published) => record_published(context, attempt, step, published).await,
        Err(PlatformError::RateLimited { until, reason }) => {
            rate_limit::block_until(&context.limiter, account_key, until).await?;
            attempt.record(context, retrying(attempt.error("rate_limited", &reason), until)).await?;
            Ok(Outcome::RetryAt(until, reason))
        }
        Err(PlatformError::Transient(reason)) if attempt.run.attempt < attempt.run.max_attempts => {
            attempt.record(context, retrying(attempt.error("transient", &reason), Utc::now())).await?;
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

/// The reason of a later step's failure, naming the step.
fn in_chain(error: PlatformError, step: usize) -> PlatformError {
    let name = |reason: String| format!("item {step} of the chain: {reason}");
    match error {
        PlatformError::Transient(reason) => PlatformError::Transient(name(reason)),
        PlatformError::RateLimited { until, reason } => PlatformError::RateLimited { until, reason: name(reason) },
        PlatformError::AuthDead(reason) => PlatformError::AuthDead(name(reason)),
        PlatformError::Permanent(reason) => PlatformError::Permanent(name(reason)),
        PlatformError::Ambiguous(reason) => PlatformError::Ambiguous(name(reason)),
    }
}

/// Step `step` was published: the delivery is, when it has no chain; otherwise the step is
/// recorded and the chain goes on.
async fn record_published(
    context: &Context,
    attempt: &mut Attempt<'_>,
    step: usize,
    published: Published,
) -> anyhow::Result<Outcome> {
    let delivery_id = attempt.job.delivery_id;
    let command = if step == 0 && attempt.steps.is_empty() {
        post::Command::RecordPublished {
            delivery_id,
            platform_post_id: published.platform_post_id,
            platform_url: published.url,
            at: Utc::now(),
        }
    } else {
        let item = PublishedItem {
            index: step,
            platform_post_id: published.platform_post_id,
            platform_url: published.url,
            thread_ref: published.thread_ref,
        };
        post::Command::RecordStepPublished { delivery_id, index: step, item }
    };
    attempt.record(context, command).await?;
    Ok(Outcome::Done)
}

/// Step `step` of the delivery was in flight when its attempt ended without an answer: waits
/// until that call is surely over, then finds out what it did.
async fn rescue(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
    adapter: &dyn Platform,
    step: usize,
) -> anyhow::Result<Outcome> {
    // The attempt that started it may still be waiting for the platform (its job's lease
    // ran out under load, not its worker): a look-up now could miss a post about to be
    // made. No call outlives the platform timeout, so look only after that.
    let started: Option<DateTime<Utc>> =
        sqlx::query_scalar!("SELECT updated_at FROM deliveries WHERE id = $1", attempt.job.delivery_id)
            .fetch_optional(&context.pool)
            .await?;
    let settled = started.unwrap_or_else(Utc::now) + context.config.platform_timeout() + IN_FLIGHT_MARGIN;
    if Utc::now() < settled {
        return Ok(Outcome::RetryAt(settled, "an earlier attempt may still be waiting for the platform".into()));
    }
    attempt.began = started;
    reconcile(context, attempt, account, adapter, step).await
}

/// The delivery was left `publishing` by an attempt that got no answer or whose worker died
/// while step `step` (0: the post itself) was in flight: find out what happened before anything
/// is sent again. A found or surely missing step lets the chain go on in the next run.
async fn reconcile(
    context: &Context,
    attempt: &mut Attempt<'_>,
    account: &PublishAccount,
    adapter: &dyn Platform,
    step: usize,
) -> anyhow::Result<Outcome> {
    let delivery_id = attempt.job.delivery_id;
    let tokens = match fresh_tokens(context, attempt, account).await? {
        Ok(tokens) => tokens,
        Err(outcome) => return Ok(outcome),
    };
    let looked_up = if step == 0 {
        let (looked_up, request_id) =
            platforms::http::with_request_id(adapter.look_up(&tokens, &attempt.publication(account))).await;
        attempt.platform_request_id = request_id;
        looked_up
    } else {
        let call = match step_call(context, attempt, step).await? {
            Ok(call) => call,
            Err(missing) => return attempt.fail(context, "media_missing", missing).await,
        };
        let Some((root, parent)) = attempt.root_and_parent() else { return Ok(Outcome::Done) };
        let follow_up = FollowUp { kind: call.kind, root: &root, parent: &parent, index: call.index };
        let publication = attempt.step_publication(account, &call);
        let (looked_up, request_id) =
            platforms::http::with_request_id(adapter.look_up_follow_up(&tokens, &publication, &follow_up)).await;
        attempt.platform_request_id = request_id;
        looked_up
    };
    let now = Utc::now();
    match looked_up {
        Ok(LookUp::Found(published)) => {
            record_published(context, attempt, step, published).await?;
            if step == 0 && attempt.steps.is_empty() {
                return Ok(Outcome::Done);
            }
            Ok(Outcome::RetryAt(now, "the chain goes on with its next item".into()))
        }
        Ok(LookUp::NotFound) => {
            let error = attempt.error("not_published", "the earlier attempt made no post; trying again");
            let command = match step {
                0 => post::Command::RecordRetrying { delivery_id, error, retry_at: now },
                index => post::Command::RecordStepRetrying { delivery_id, index, error },
            };
            attempt.record(context, command).await?;
            Ok(Outcome::RetryAt(now, "the earlier attempt made no post".into()))
        }
        Ok(LookUp::CannotTell) => {
            let message = match step {
                0 => "an attempt got no answer and the platform cannot say whether it posted; retry with force to post again".to_owned(),
                index => format!("an attempt at item {index} of the chain got no answer and the platform cannot say whether it posted; retry with force to post it again (the items before it stay)"),
            };
            let message = message.as_str();
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

/// The durable publish checkpoints adapters keep their state in (`PublishCheckpoints`): sealed
/// rows of `publish_checkpoints` (`herald_shared::credentials`), so a publish a dead worker began
/// is resumed or looked up by the next.
pub struct StoredCheckpoints {
    pub pool: PgPool,
    pub keyring: Arc<Keyring>,
}

impl std::fmt::Debug for StoredCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredCheckpoints")
    }
}

fn unkept(error: impl std::fmt::Display) -> PlatformError {
    PlatformError::Transient(format!("the publish's checkpoint could not be kept: {error}"))
}

#[async_trait::async_trait]
impl PublishCheckpoints for StoredCheckpoints {
    async fn load(&self, reference: &str) -> Result<Option<String>, PlatformError> {
        credentials::load_checkpoint(&self.pool, &self.keyring, reference).await.map_err(unkept)
    }

    async fn save(&self, reference: &str, platform: &str, state: &str) -> Result<(), PlatformError> {
        credentials::save_checkpoint(&self.pool, &self.keyring, reference, platform, state).await.map_err(unkept)
    }

    async fn forget(&self, reference: &str) -> Result<(), PlatformError> {
        credentials::forget_checkpoint(&self.pool, reference).await.map_err(unkept)
    }
}
