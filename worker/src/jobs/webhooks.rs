//! Sending an endpoint's webhook messages (`herald_shared::webhooks`).
//!
//! A run holds the endpoint's lane (one sender an endpoint, across every worker, under a lease
//! it renews), then sends the due messages in `seq` order, `max_in_flight` at once, each signed
//! with every secret that signs now, through the guarded client that follows no redirect and
//! refuses forbidden addresses on the connected address. Each page of answers is recorded before
//! the next page is sent; a 2xx is delivered, anything else (an answer, a timeout, a refused
//! address) is a failed attempt whose retry the schedule sets. The shared rate limiter caps each
//! endpoint's messages per second over all workers. A run ends when nothing is due or after
//! [`RUN_FOR`]; the scheduler's sweep queues the next one whenever messages come due.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use chrono::Utc;
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::credentials::{self, WebhookSigning};
use herald_shared::domain::webhook::{self, WebhookEndpoint};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::SendWebhooks;
use herald_shared::outbound::{self, OutboundError};
use herald_shared::rate_limit::{self, Decision, Rate};
use herald_shared::webhooks::outbox::{self, Attempt, Due, Target};
use herald_shared::webhooks::signing::signature_header;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use url::Url;
use uuid::Uuid;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

/// How long one run sends before it gives the lane back (the sweep queues the next).
const RUN_FOR: Duration = Duration::from_secs(60);
/// How long past the receiver timeout a lane stays held without being renewed (each page of
/// sends renews it; a sender that died gives it up after this).
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How much of an answer's body the attempt log keeps.
const SNIPPET_BYTES: usize = 1024;

impl Perform<Context> for SendWebhooks {
    fn timeout() -> Duration {
        // A run sends for up to `RUN_FOR`, then waits at most one receiver timeout (300 s max).
        RUN_FOR + Duration::from_secs(330)
    }

    async fn perform(self, context: &Context, run: JobRun) -> JobResult {
        let lease = context.config.webhooks.timeout() + LEASE_MARGIN;
        if !outbox::hold_lane(&context.pool, self.endpoint_id, run.id, lease).await? {
            // Another worker is sending this endpoint's messages.
            return Ok(Outcome::Done);
        }
        let sent = send_due(context, self.endpoint_id, run.id, lease).await;
        outbox::release_lane(&context.pool, self.endpoint_id, run.id).await?;
        sent
    }
}

async fn send_due(context: &Context, endpoint_id: Uuid, holder: Uuid, lease: Duration) -> JobResult {
    let Some(target) = outbox::target(&context.pool, endpoint_id).await? else { return Ok(Outcome::Done) };
    if !target.enabled {
        return Ok(Outcome::Done);
    }
    let Ok(url) = Url::parse(&target.url) else {
        disable(context, &target, "its URL no longer parses").await?;
        return Ok(Outcome::Done);
    };
    let settings = &context.config.webhooks;
    let rate_key = format!("webhook:{endpoint_id}");
    let rate = Rate::per(settings.per_endpoint_per_second, Duration::from_secs(1));
    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        let mut due = outbox::due(&context.pool, endpoint_id, i64::from(target.max_in_flight)).await?;
        if due.is_empty() {
            break;
        }
        let limits = [(rate_key.as_str(), rate)];
        let requests: Vec<&[(&str, Rate)]> = due.iter().map(|_| &limits[..]).collect();
        let decisions = rate_limit::acquire_many(&context.limiter, &requests).await?;
        let allowed = decisions.iter().take_while(|decision| matches!(decision, Decision::Allowed { .. })).count();
        if allowed == 0 {
            if let Some(Decision::RetryAt(at)) = decisions.first() {
                let wait = (*at - Utc::now()).to_std().unwrap_or_default().min(Duration::from_secs(1));
                metrics::counter!("herald_rate_limit_waits_total", "limit" => "webhook").increment(1);
                tokio::time::sleep(wait).await;
            }
            continue;
        }
        due.truncate(allowed);
        // Secrets are read for every page: a rotation signs with the new secret from the next one.
        let signing = {
            let mut connection = context.pool.acquire().await?;
            credentials::webhook_signing(&mut connection, &context.keyring, endpoint_id, Utc::now())
                .await
                .context("the endpoint's secrets")?
        };
        let Some(signing) = signing else { break };
        let attempts =
            futures::future::join_all(due.iter().map(|message| send(context, &url, &signing, message))).await;
        for attempt in &attempts {
            let outcome = match attempt.status_code {
                Some(status) if (200..300).contains(&status) => "delivered",
                Some(_) => "failed_status",
                None => "failed_network",
            };
            metrics::counter!("herald_webhook_attempts_total", "outcome" => outcome).increment(1);
        }
        let recorded = outbox::record(&context.pool, endpoint_id, &attempts, &settings.retry_schedule_secs).await?;
        if attempts.iter().any(Attempt::gone) {
            disable(context, &target, "the endpoint answered 410 Gone").await?;
            break;
        }
        if let Some(since) = recorded.failing_since
            && Utc::now() - since >= settings.disable_after()
        {
            let reason = format!("every attempt failed since {}", since.to_rfc3339());
            disable(context, &target, &reason).await?;
            break;
        }
        if !outbox::hold_lane(&context.pool, endpoint_id, holder, lease).await? {
            break;
        }
    }
    Ok(Outcome::Done)
}

/// One attempt at `message`: what the receiver answered, or why there was no answer.
async fn send(context: &Context, url: &Url, signing: &WebhookSigning, message: &Due) -> Attempt {
    let attempted_at = Utc::now();
    let started = Instant::now();
    let mut attempt = Attempt {
        message_id: message.id,
        webhook_id: message.webhook_id.clone(),
        event_type: message.event_type.clone(),
        attempts_before: message.attempts,
        attempted_at,
        status_code: None,
        duration: Duration::ZERO,
        response_snippet: None,
        error: None,
    };
    let body = Bytes::from(message.body.clone());
    let headers = match headers(signing, &message.webhook_id, attempted_at.timestamp(), &body) {
        Ok(headers) => headers,
        Err(error) => {
            attempt.error = Some(error);
            return attempt;
        }
    };
    match context.webhook_client.post(url, headers, body).await {
        Ok(response) => {
            attempt.status_code = Some(response.status().as_u16());
            let snippet = outbound::body_start(response, SNIPPET_BYTES).await;
            attempt.response_snippet = (!snippet.is_empty()).then_some(snippet);
        }
        Err(error) => attempt.error = Some(describe(&error)),
    }
    attempt.duration = started.elapsed();
    attempt
}

/// The headers of one attempt: the endpoint's own first, then the Standard Webhooks ones (which
/// the api never lets a custom header shadow).
fn headers(signing: &WebhookSigning, webhook_id: &str, timestamp: i64, body: &[u8]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &signing.headers {
        let name = HeaderName::try_from(name.as_str()).map_err(|_| format!("the custom header {name} is invalid"))?;
        let value = HeaderValue::try_from(value.expose_secret())
            .map_err(|_| format!("the custom header {name}'s value is invalid"))?;
        headers.insert(name, value);
    }
    let signature = signature_header(&signing.secrets, webhook_id, timestamp, body);
    let standard = [
        ("webhook-id", webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    for (name, value) in standard {
        let value = HeaderValue::try_from(value).map_err(|_| format!("the {name} header cannot be sent"))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(headers)
}

fn describe(error: &OutboundError) -> String {
    match error {
        OutboundError::Timeout => "timed out waiting for the answer".to_owned(),
        other => other.to_string(),
    }
}

/// Disables the endpoint, with `reason`, as a `webhook.disabled` event.
async fn disable(context: &Context, target: &Target, reason: &str) -> anyhow::Result<()> {
    let metadata = EventMetadata {
        project_id: Some(target.project_id),
        actor: Some("worker".to_owned()),
        ..EventMetadata::default()
    };
    let mut tx = context.pool.begin().await?;
    let command = webhook::Command::Disable { reason: reason.to_owned() };
    match execute::<WebhookEndpoint>(&mut tx, target.id, command, &metadata).await {
        Ok(_) | Err(ExecuteError::Rejected(_)) => {}
        Err(error) => return Err(anyhow::Error::new(error).context("disabling the endpoint")),
    }
    tx.commit().await?;
    tracing::warn!(endpoint.id = %target.id, reason, "disabled a webhook endpoint");
    Ok(())
}
