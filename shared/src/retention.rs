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

use std::time::Duration;

use sqlx::PgPool;

use crate::db::delete_in_batches;

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
