//! What the maintenance job deletes besides finished jobs and `Idempotency-Key` records: the
//! sandbox platform's spent state, and the sealed secrets of connect sessions that ended or
//! expired long ago. Each statement deletes at most a batch, so none holds locks for long.
//!
//! - Sandbox codes live 60 s: gone an hour after they expired, used or not.
//! - Sandbox access tokens: a day after they expired. Rotated (used) refresh tokens are kept for
//!   [`SANDBOX_RETENTION`], so a reused one still revokes its grant as a strict platform's
//!   would; after that a reuse is only an unknown token (`invalid_grant` all the same).
//! - Sandbox grants: with their tokens, [`SANDBOX_RETENTION`] after they were revoked; or once
//!   no token of theirs is left and they are older than that.
//! - Sandbox posts and publish attempts: after [`SANDBOX_RETENTION`] (a post's page is gone then).
//! - Connect-session secrets (the sealed PKCE verifier and code): [`SESSION_SECRET_RETENTION`]
//!   after a session that never came back expired, or after one that ended. A `pending`
//!   session's are kept: its exchange job needs them (an abandoned one is failed by the
//!   scheduler, which forgets them).
//!
//! And the media store ([`sweep_media`]): the objects of media deleted more than
//! [`MEDIA_PURGE_AFTER`] ago, the parts of uploads that expired, and objects no row names that
//! are older than [`ORPHAN_GRACE`] (left by a process that died between storing an object and
//! committing its row).

use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::delete_in_batches;
use crate::domain::media_item::OBJECT_PREFIX;
use crate::media::MediaStore;

/// How long the sandbox keeps posts, publish attempts, rotated refresh tokens and revoked grants.
pub const SANDBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long after a connect session expired or ended its sealed secrets are kept.
pub const SESSION_SECRET_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long after they expired sandbox codes are kept.
const CODE_RETENTION: Duration = Duration::from_secs(60 * 60);
/// How long after they expired sandbox access tokens are kept.
const ACCESS_TOKEN_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Rows one pass deleted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sandbox_codes: u64,
    pub sandbox_tokens: u64,
    pub sandbox_grants: u64,
    pub sandbox_posts: u64,
    pub sandbox_attempts: u64,
    pub session_secrets: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.sandbox_codes
            + self.sandbox_tokens
            + self.sandbox_grants
            + self.sandbox_posts
            + self.sandbox_attempts
            + self.session_secrets
    }
}

/// Deletes everything described in the module documentation, `batch` rows a statement.
pub async fn prune(pool: &PgPool, batch: i64) -> Result<Pruned, sqlx::Error> {
    Ok(Pruned {
        sandbox_codes: delete_in_batches(batch, || sandbox_codes(pool, batch)).await?,
        sandbox_tokens: delete_in_batches(batch, || sandbox_tokens(pool, batch)).await?,
        sandbox_grants: delete_in_batches(batch, || sandbox_grants(pool, batch)).await?,
        sandbox_posts: delete_in_batches(batch, || sandbox_posts(pool, batch)).await?,
        sandbox_attempts: delete_in_batches(batch, || sandbox_attempts(pool, batch)).await?,
        session_secrets: delete_in_batches(batch, || session_secrets(pool, batch)).await?,
    })
}

async fn sandbox_codes(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM sandbox_codes WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM sandbox_codes WHERE expires_at < now() - make_interval(secs => $1) LIMIT $2))",
        CODE_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

async fn sandbox_tokens(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM sandbox_tokens WHERE ctid = ANY(ARRAY(
             SELECT t.ctid FROM sandbox_tokens t JOIN sandbox_grants g ON g.id = t.grant_id
             WHERE (t.kind = 'access' AND t.expires_at < now() - make_interval(secs => $1))
                OR (t.kind = 'refresh' AND t.used_at < now() - make_interval(secs => $2))
                OR g.revoked_at < now() - make_interval(secs => $2)
             LIMIT $3))",
        ACCESS_TOKEN_RETENTION.as_secs_f64(),
        SANDBOX_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

async fn sandbox_grants(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM sandbox_grants WHERE ctid = ANY(ARRAY(
             SELECT g.ctid FROM sandbox_grants g
             WHERE (g.revoked_at < now() - make_interval(secs => $1) OR g.created_at < now() - make_interval(secs => $1))
               AND NOT EXISTS (SELECT 1 FROM sandbox_tokens t WHERE t.grant_id = g.id)
             LIMIT $2))",
        SANDBOX_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

async fn sandbox_posts(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM sandbox_posts WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM sandbox_posts WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))",
        SANDBOX_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

async fn sandbox_attempts(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM sandbox_publish_attempts WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM sandbox_publish_attempts WHERE updated_at < now() - make_interval(secs => $1) LIMIT $2))",
        SANDBOX_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

async fn session_secrets(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    // Only secrets whose session row is there: a projection rebuild empties `connect_sessions`
    // for a moment, and that must not look like "no such session".
    let result = sqlx::query!(
        "DELETE FROM connect_session_secrets WHERE ctid = ANY(ARRAY(
             SELECT s.ctid FROM connect_session_secrets s JOIN connect_sessions c ON c.id = s.session_id
             WHERE (c.status = 'started' AND c.expires_at < now() - make_interval(secs => $1))
                OR (c.status IN ('connected', 'denied', 'failed') AND c.updated_at < now() - make_interval(secs => $1))
             LIMIT $2))",
        SESSION_SECRET_RETENTION.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// How long a deleted media item's object is kept: a platform may be fetching it right now.
pub const MEDIA_PURGE_AFTER: Duration = Duration::from_secs(10 * 60);
/// How old an object no row names must be to be swept: a younger one may be an upload whose row
/// is not committed yet (the longest upload herald expects takes well under this).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// Where the store keeps resumable uploads' parts (`uploads/<upload>/<part>`).
const PARTS_PREFIX: &str = "uploads/";

/// What one media sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaSwept {
    /// Objects of deleted items.
    pub purged: u64,
    /// Expired uploads (their parts and rows).
    pub expired_uploads: u64,
    /// Objects and parts no row names.
    pub orphans: u64,
}

/// Why a media sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("media store error: {0}")]
    Store(#[from] object_store::Error),
}

/// Removes what the module documentation says from `store`, `batch` items a statement; the
/// delays are parameters so a test can sweep at once.
pub async fn sweep_media(
    pool: &PgPool,
    store: &MediaStore,
    purge_after: Duration,
    orphan_grace: Duration,
    batch: i64,
) -> Result<MediaSwept, SweepError> {
    let mut swept = MediaSwept::default();
    loop {
        let purged = purge_deleted(pool, store, purge_after, batch).await?;
        swept.purged += purged;
        if purged < u64::try_from(batch).unwrap_or(0) {
            break;
        }
    }
    loop {
        let expired = expire_uploads(pool, store, batch).await?;
        swept.expired_uploads += expired;
        if expired < u64::try_from(batch).unwrap_or(0) {
            break;
        }
    }
    swept.orphans = sweep_orphans(pool, store, orphan_grace, batch).await?;
    Ok(swept)
}

/// Deletes the objects of up to `batch` items deleted more than `after` ago, and notes it.
async fn purge_deleted(pool: &PgPool, store: &MediaStore, after: Duration, batch: i64) -> Result<u64, SweepError> {
    let due = sqlx::query!(
        "SELECT id, object_key FROM media
         WHERE deleted_at IS NOT NULL AND purged_at IS NULL AND deleted_at < now() - make_interval(secs => $1)
         ORDER BY deleted_at LIMIT $2",
        after.as_secs_f64(),
        batch,
    )
    .fetch_all(pool)
    .await?;
    let mut purged = Vec::with_capacity(due.len());
    for item in due {
        store.delete(&item.object_key).await?;
        purged.push(item.id);
    }
    sqlx::query!("UPDATE media SET purged_at = now() WHERE id = ANY($1)", &purged).execute(pool).await?;
    Ok(purged.len() as u64)
}

/// Aborts up to `batch` uploads past their expiry that never completed (and forgets completed
/// ones past it: their parts are gone already). One being completed right now is left alone
/// until its claim is a day old.
async fn expire_uploads(pool: &PgPool, store: &MediaStore, batch: i64) -> Result<u64, SweepError> {
    let due = sqlx::query!(
        r#"SELECT id, completed_at IS NOT NULL AS "completed!" FROM media_uploads
           WHERE expires_at < now() AND (completing_at IS NULL OR completing_at < now() - interval '1 day'
                                         OR completed_at IS NOT NULL)
           ORDER BY expires_at LIMIT $1"#,
        batch,
    )
    .fetch_all(pool)
    .await?;
    let mut expired = Vec::with_capacity(due.len());
    for upload in due {
        if !upload.completed {
            store.abort(upload.id).await;
        }
        expired.push(upload.id);
    }
    sqlx::query!("DELETE FROM media_uploads WHERE id = ANY($1)", &expired).execute(pool).await?;
    Ok(expired.len() as u64)
}

/// Deletes media objects and upload parts older than `grace` that no row names.
async fn sweep_orphans(pool: &PgPool, store: &MediaStore, grace: Duration, batch: i64) -> Result<u64, SweepError> {
    let now = chrono::Utc::now();
    let cutoff = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let limit = usize::try_from(batch).unwrap_or(1).max(1);
    let mut swept = 0;
    for prefix in [OBJECT_PREFIX, PARTS_PREFIX] {
        let mut listed = store.list_keys(prefix);
        let mut old = Vec::new();
        while let Some(object) = listed.next().await {
            let object = object?;
            if object.last_modified < cutoff {
                old.push(object.key);
            }
            if old.len() >= limit {
                swept += delete_unnamed(pool, store, prefix, std::mem::take(&mut old)).await?;
            }
        }
        swept += delete_unnamed(pool, store, prefix, old).await?;
    }
    Ok(swept)
}

/// Deletes those of `keys` (all under `prefix`) that no row names: a media item's `object_key`,
/// or an upload's id for a part.
async fn delete_unnamed(pool: &PgPool, store: &MediaStore, prefix: &str, keys: Vec<String>) -> Result<u64, SweepError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let named: Vec<String> = if prefix == PARTS_PREFIX {
        let uploads: Vec<Uuid> = keys.iter().filter_map(|key| part_upload(key)).collect();
        let known =
            sqlx::query_scalar!("SELECT id FROM media_uploads WHERE id = ANY($1)", &uploads).fetch_all(pool).await?;
        keys.iter().filter(|key| part_upload(key).is_some_and(|upload| known.contains(&upload))).cloned().collect()
    } else {
        sqlx::query_scalar!("SELECT object_key FROM media WHERE object_key = ANY($1)", &keys).fetch_all(pool).await?
    };
    let mut deleted = 0;
    for key in keys.iter().filter(|key| !named.contains(key)) {
        tracing::info!(key, "deleting a media object no row names");
        store.delete(key).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// The upload a part's key (`uploads/<upload>/<part>`) belongs to.
fn part_upload(key: &str) -> Option<Uuid> {
    key.strip_prefix(PARTS_PREFIX)?.split('/').next()?.parse().ok()
}
