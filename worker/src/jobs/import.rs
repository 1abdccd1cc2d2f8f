//! Importing a media item from a URL: fetched through the outbound guard
//! (`herald_shared::outbound`: no private, loopback or metadata address, checked on every
//! connection and redirect), streamed into the store by `MediaStore::ingest` (which sniffs the
//! type and stops at the kind's limit), then recorded as `media.imported` with the facts read
//! from the bytes, or `media.import_failed` with the reason. A failure is final (the item shows
//! `failed`); only transient network trouble and server errors retry, and the last attempt
//! records whatever stopped it, so an item never stays `importing` because its job ran out. An
//! attempt whose worker dies records nothing; when the last one does, the scheduler's sweep
//! (`herald_shared::commands::abandoned`) fails the item with an `import_abandoned` reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use herald_shared::commands::{ExecuteError, execute};
use herald_shared::domain::media::MediaFacts;
use herald_shared::domain::media_item::{Command, Media, MediaStatus, Rejection};
use herald_shared::events::EventMetadata;
use herald_shared::jobs::ImportMedia;
use herald_shared::media::{IngestError, MediaLimits};
use herald_shared::outbound::{self, OutboundError};
use herald_shared::queue::RetryPolicy;
use uuid::Uuid;

use super::Context;
use crate::runtime::{JobResult, JobRun, Outcome, Perform};

impl Perform<Context> for ImportMedia {
    /// A server error or a dropped connection is often over in seconds; the client is waiting.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10 * 60),
            floor: Duration::from_millis(500),
        }
    }

    /// Longer than the fetch's own total timeout, so that one ends an attempt with its reason.
    fn timeout() -> Duration {
        outbound::TOTAL_TIMEOUT + Duration::from_secs(60)
    }

    async fn perform(self, context: &Context, run: JobRun) -> JobResult {
        let Some(item) = load(context, self.media_id).await? else {
            // Deleted, or already finished by an earlier attempt.
            return Ok(Outcome::Done);
        };
        let metadata = EventMetadata {
            project_id: Some(item.project_id),
            actor: Some(format!("job:{}", run.id)),
            ..EventMetadata::default()
        };
        let last_attempt = run.attempt >= run.max_attempts;
        match fetch(context, &item).await {
            Ok(facts) => record(context, &item, Command::CompleteImport { facts }, &metadata).await,
            Err(failure) if failure.transient && !last_attempt => Ok(Outcome::Retry(failure.reason)),
            Err(failure) => record(context, &item, Command::FailImport { reason: failure.reason }, &metadata).await,
        }
    }
}

/// The item to import, while it is still importing.
struct Item {
    id: Uuid,
    project_id: Uuid,
    source_url: String,
    object_key: String,
}

async fn load(context: &Context, media_id: Uuid) -> anyhow::Result<Option<Item>> {
    let row = sqlx::query!(
        r#"SELECT project_id, status AS "status: MediaStatus", source_url, object_key
           FROM media WHERE id = $1 AND deleted_at IS NULL"#,
        media_id
    )
    .fetch_optional(&context.pool)
    .await?;
    Ok(row.and_then(|row| {
        (row.status == MediaStatus::Importing).then_some(Item {
            id: media_id,
            project_id: row.project_id,
            source_url: row.source_url.unwrap_or_default(),
            object_key: row.object_key,
        })
    }))
}

/// Why an import stopped: the reason the item shows, and whether another attempt may succeed.
#[derive(Debug)]
struct Failure {
    reason: String,
    transient: bool,
}

impl Failure {
    fn permanent(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), transient: false }
    }

    fn from_outbound(error: &OutboundError) -> Self {
        Self { reason: error.to_string(), transient: error.is_transient() }
    }
}

/// Fetches the item's URL into its object and reads what it is. On failure nothing is stored
/// (`ingest` removes a partial object).
async fn fetch(context: &Context, item: &Item) -> Result<MediaFacts, Failure> {
    let url = outbound::parse_url(&item.source_url, context.outbound.allows_private())
        .map_err(|error| Failure::from_outbound(&error))?;
    let response = context.outbound.get(&url).await.map_err(|error| Failure::from_outbound(&error))?;
    let status = response.status();
    if !status.is_success() {
        // A server's trouble (5xx, 408, 429) may pass; any other answer is the URL's.
        let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        return Err(Failure { reason: format!("the server answered {status}"), transient });
    }
    let limits = MediaLimits::from_settings(&context.config.media);
    // The fetch's own error (a timeout, a broken connection) is kept here: `ingest` sees only
    // that its body failed.
    let fetch_error: Arc<Mutex<Option<OutboundError>>> = Arc::default();
    let seen = fetch_error.clone();
    let body = outbound::body_stream(response, limits.largest()).inspect(move |chunk| {
        if let (Err(error), Ok(mut seen)) = (chunk, seen.lock()) {
            seen.get_or_insert_with(|| error.clone());
        }
    });
    let stored = context.media.ingest(&item.object_key, body, &limits).await;
    let fetch_error = fetch_error.lock().ok().and_then(|mut seen| seen.take());
    stored.map_err(|error| match (error, fetch_error) {
        (IngestError::Source(_), Some(fetch_error)) => Failure::from_outbound(&fetch_error),
        (IngestError::TooLarge { limit }, _) => Failure::permanent(format!("larger than the limit of {limit} bytes")),
        (IngestError::Store(error), _) => {
            Failure { reason: format!("the media store failed: {error}"), transient: true }
        }
        (error, _) => Failure::permanent(error.to_string()),
    })
}

/// Records the import's outcome. An item deleted meanwhile refuses it; then its object, if one
/// was stored, goes now rather than waiting for the sweep.
async fn record(context: &Context, item: &Item, command: Command, metadata: &EventMetadata) -> JobResult {
    let stored = matches!(command, Command::CompleteImport { .. });
    let mut tx = context.pool.begin().await?;
    match execute::<Media>(&mut tx, item.id, command, metadata).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(Outcome::Done)
        }
        Err(ExecuteError::Rejected(Rejection::Deleted | Rejection::NotImporting(_) | Rejection::NotFound)) => {
            drop(tx);
            if stored && let Err(error) = context.media.delete(&item.object_key).await {
                tracing::warn!(media_id = %item.id, %error, "could not delete the object of a deleted import");
            }
            Ok(Outcome::Done)
        }
        Err(error) => Err(error.into()),
    }
}
