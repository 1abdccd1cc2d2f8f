//! The jobs herald runs, as payloads. The api and the scheduler enqueue them; a worker
//! (`herald_worker::jobs`) performs them. A payload is the job's whole input: a worker loads
//! anything else it needs, so a job that waited an hour acts on the state of now.

use serde::{Deserialize, Serialize};

use crate::queue::Job;

/// Deletes what has outlived its use: finished jobs older than the retention window
/// (`HERALD_QUEUE__RETENTION_HOURS`), `Idempotency-Key` records older than 24 hours
/// (`crate::idempotency`), the sandbox's spent codes, tokens, grants and posts, and the sealed
/// secrets of connect sessions that ended or expired long ago (`crate::retention`). The
/// scheduler enqueues one every few minutes; its dedup key keeps replicas from piling up copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneExpired {}

impl Job for PruneExpired {
    const KIND: &'static str = "maintenance.prune";
    const QUEUE: &'static str = "maintenance";
    const MAX_ATTEMPTS: i32 = 3;

    fn dedup_key(&self) -> Option<String> {
        Some(Self::KIND.to_owned())
    }
}

/// Completes a connect session whose callback brought a code: exchanges the code, lists every
/// account the grant reaches and upserts each (see `herald_worker::jobs::connect`). Enqueued by
/// the callback in the transaction that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeCode {
    pub session_id: uuid::Uuid,
}

impl Job for ExchangeCode {
    const KIND: &'static str = "connect.exchange";
    const QUEUE: &'static str = "connect";
    /// The user is waiting on the callback page.
    const PRIORITY: i16 = 10;
    const MAX_ATTEMPTS: i32 = 5;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("connect:{}", self.session_id))
    }
}

/// Uses an account's refresh token before its access token expires (or when a client asks).
/// Deduplicated per account, and serialised per account by a row lock in the worker, so any
/// number of triggers make one token request per rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshCredentials {
    pub account_id: uuid::Uuid,
    /// The grant whose pair the account uses, when it does: one refresh per grant, however many
    /// of its accounts ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<uuid::Uuid>,
    /// The pair's version that looked due; a job that finds a newer one has nothing to do.
    pub seen_version: Option<i64>,
}

impl Job for RefreshCredentials {
    const KIND: &'static str = "account.refresh";
    const QUEUE: &'static str = "credentials";
    const PRIORITY: i16 = 5;
    const MAX_ATTEMPTS: i32 = 8;

    fn dedup_key(&self) -> Option<String> {
        Some(match self.grant_id {
            Some(grant_id) => format!("refresh:grant:{grant_id}"),
            None => format!("refresh:{}", self.account_id),
        })
    }
}

/// Tells the platform to revoke a grant whose last connected account was disconnected. Carries
/// the token still sealed (`credentials::wipe_account_tokens` removed it in the same
/// transaction that queued this job). The value stays sealed in the job row until finished jobs
/// are pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeGrant {
    /// The account whose disconnect ended the grant (its project, platform and app say which
    /// OAuth client revokes).
    pub account_id: uuid::Uuid,
    /// The grant the token was sealed for; absent: the account's own pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<uuid::Uuid>,
    /// `refresh_token` or `access_token`: the associated data it was sealed for.
    pub token_column: String,
    pub sealed_token: String,
}

impl Job for RevokeGrant {
    const KIND: &'static str = "account.revoke";
    const QUEUE: &'static str = "credentials";
    const MAX_ATTEMPTS: i32 = 6;
}

/// Publishes one delivery of a post: one target account, one generation. Queued when the
/// delivery is (at the post's due time); a job whose delivery was canceled, edited (a new
/// generation) or already started ends without publishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishDelivery {
    pub post_id: uuid::Uuid,
    pub delivery_id: uuid::Uuid,
    pub generation: i32,
}

impl Job for PublishDelivery {
    const KIND: &'static str = "delivery.publish";
    const QUEUE: &'static str = "publish";
    const PRIORITY: i16 = 5;
    const MAX_ATTEMPTS: i32 = 5;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("publish:{}:{}", self.delivery_id, self.generation))
    }
}

/// Fetches an imported media item's URL through the outbound guard (`crate::outbound`) into the
/// media store, then records `media.imported` with what the bytes are, or `media.import_failed`
/// with why (see `herald_worker::jobs::import`). Queued by `POST /v1/media/import` in the
/// transaction that records `media.import_requested`; one per item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMedia {
    pub media_id: uuid::Uuid,
}

impl Job for ImportMedia {
    const KIND: &'static str = "media.import";
    const QUEUE: &'static str = "media";
    /// A client is waiting for the item to be ready.
    const PRIORITY: i16 = 5;
    /// Transient network failures retry a few times; the last attempt records the failure.
    const MAX_ATTEMPTS: i32 = 4;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("media-import:{}", self.media_id))
    }
}

/// Sends the due messages of one webhook endpoint (`crate::webhooks`), in order, as its lane's
/// only sender (see `herald_worker::jobs::webhooks`). Queued by the dispatcher when it writes
/// messages, by replays and resends, and by the scheduler's sweep for retries that came due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWebhooks {
    pub endpoint_id: uuid::Uuid,
}

impl Job for SendWebhooks {
    const KIND: &'static str = "webhooks.send";
    const QUEUE: &'static str = "webhooks";
    /// The sweep queues it again whenever messages are due: a failed run is only a delay.
    const MAX_ATTEMPTS: i32 = 3;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("webhooks:{}", self.endpoint_id))
    }
}
