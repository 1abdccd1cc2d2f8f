//! What a sender reads and writes: one sender per endpoint at a time (its lane, held under a
//! lease), the endpoint's due messages in `seq` order, and the outcome of each attempt (the
//! attempt log, the message's next try or its end, the endpoint's run of failures).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

/// The endpoint as a sender needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub enabled: bool,
    pub max_in_flight: i32,
}

/// The endpoint `endpoint_id`, unless deleted.
pub async fn target(pool: &PgPool, endpoint_id: Uuid) -> Result<Option<Target>, sqlx::Error> {
    sqlx::query_as!(
        Target,
        "SELECT id, project_id, url, enabled, max_in_flight FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
        endpoint_id
    )
    .fetch_optional(pool)
    .await
}

/// Takes (or renews) the lane of `endpoint_id` for `holder` until `lease` from now. `false`:
/// another sender holds it.
pub async fn hold_lane(pool: &PgPool, endpoint_id: Uuid, holder: Uuid, lease: Duration) -> Result<bool, sqlx::Error> {
    let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    let held = sqlx::query_scalar!(
        r#"INSERT INTO webhook_lanes AS l (endpoint_id, leased_by, leased_until) VALUES ($1, $2, $3)
           ON CONFLICT (endpoint_id) DO UPDATE SET leased_by = $2, leased_until = $3
           WHERE l.leased_by = $2 OR l.leased_until <= now()
           RETURNING endpoint_id"#,
        endpoint_id,
        holder,
        until,
    )
    .fetch_optional(pool)
    .await?;
    Ok(held.is_some())
}

/// Lets the lane go, if `holder` still holds it.
pub async fn release_lane(pool: &PgPool, endpoint_id: Uuid, holder: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_lanes SET leased_by = NULL, leased_until = '-infinity' WHERE endpoint_id = $1 AND leased_by = $2",
        endpoint_id,
        holder
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub webhook_id: String,
    pub event_type: String,
    /// The body as sent (JSON text).
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// Up to `limit` of the endpoint's messages due now, first made first.
pub async fn due(pool: &PgPool, endpoint_id: Uuid, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        r#"SELECT m.id, m.webhook_id, m.event_type, p.body::text AS "body!", m.attempts
           FROM webhook_messages m JOIN webhook_payloads p ON p.id = m.payload_id
           WHERE m.endpoint_id = $1 AND m.state = 'pending' AND m.next_attempt_at <= now()
           ORDER BY m.seq LIMIT $2"#,
        endpoint_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub message_id: Uuid,
    pub webhook_id: String,
    pub event_type: String,
    /// Attempts made before this one.
    pub attempts_before: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub duration: Duration,
    /// The first bytes of the answer.
    pub response_snippet: Option<String>,
    /// Why it failed, when it did without an answer (timeout, refused address, network).
    pub error: Option<String>,
}

impl Attempt {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|status| (200..300).contains(&status))
    }

    /// A 410: the receiver says the endpoint is gone.
    pub fn gone(&self) -> bool {
        self.status_code == Some(410)
    }
}

/// What recording a page of attempts found about the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Since when its attempts have all failed (`None`: the last one succeeded).
    pub failing_since: Option<DateTime<Utc>>,
}

/// The wait before the retry after `attempts` failed attempts, jittered by ±10%; `None` when the
/// schedule is spent (the message has failed for good).
pub fn retry_wait(schedule: &[u64], attempts: i32) -> Option<chrono::Duration> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let seconds = *schedule.get(index)? as f64;
    let jittered = seconds * rand::rng().random_range(0.9..=1.1);
    Some(chrono::Duration::milliseconds((jittered * 1000.0) as i64))
}

/// Records `attempts` of endpoint `endpoint_id`: the attempt log, each message delivered,
/// scheduled again (`schedule`, [`retry_wait`]) or failed for good, and the endpoint's run of
/// failures. One transaction.
pub async fn record(
    pool: &PgPool,
    endpoint_id: Uuid,
    attempts: &[Attempt],
    schedule: &[u64],
) -> Result<Recorded, sqlx::Error> {
    let mut ids = Vec::with_capacity(attempts.len());
    let mut message_ids = Vec::with_capacity(attempts.len());
    let mut webhook_ids = Vec::with_capacity(attempts.len());
    let mut event_types = Vec::with_capacity(attempts.len());
    let mut attempted_at = Vec::with_capacity(attempts.len());
    let mut status_codes = Vec::with_capacity(attempts.len());
    let mut durations = Vec::with_capacity(attempts.len());
    let mut snippets = Vec::with_capacity(attempts.len());
    let mut errors = Vec::with_capacity(attempts.len());
    let mut succeeded = Vec::with_capacity(attempts.len());
    let mut next_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(attempts.len());
    for attempt in attempts {
        ids.push(Uuid::now_v7());
        message_ids.push(attempt.message_id);
        webhook_ids.push(attempt.webhook_id.clone());
        event_types.push(attempt.event_type.clone());
        attempted_at.push(attempt.attempted_at);
        status_codes.push(attempt.status_code.map(i32::from));
        durations.push(i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX));
        snippets.push(attempt.response_snippet.clone());
        errors.push(attempt.error.clone());
        succeeded.push(attempt.succeeded());
        next_at.push(if attempt.succeeded() {
            None
        } else {
            retry_wait(schedule, attempt.attempts_before + 1).map(|wait| Utc::now() + wait)
        });
    }
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO webhook_attempts (id, endpoint_id, message_id, webhook_id, event_type, attempted_at, status_code,
                                       duration_ms, response_snippet, error, succeeded)
         SELECT id, $2, message_id, webhook_id, event_type, attempted_at, status_code, duration_ms, snippet, error, ok
         FROM unnest($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::int4[], $8::int4[],
                     $9::text[], $10::text[], $11::bool[])
              AS a(id, message_id, webhook_id, event_type, attempted_at, status_code, duration_ms, snippet, error, ok)",
        &ids,
        endpoint_id,
        &message_ids,
        &webhook_ids,
        &event_types,
        &attempted_at,
        &status_codes as &[Option<i32>],
        &durations,
        &snippets as &[Option<String>],
        &errors as &[Option<String>],
        &succeeded,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE webhook_messages m
         SET attempts = m.attempts + 1,
             state = CASE WHEN u.ok THEN 'delivered' WHEN u.next_at IS NULL THEN 'failed' ELSE 'pending' END,
             next_attempt_at = COALESCE(u.next_at, m.next_attempt_at),
             ended_at = CASE WHEN u.ok OR u.next_at IS NULL THEN now() END
         FROM unnest($1::uuid[], $2::bool[], $3::timestamptz[]) AS u(id, ok, next_at)
         WHERE m.id = u.id AND m.state = 'pending'",
        &message_ids,
        &succeeded,
        &next_at as &[Option<DateTime<Utc>>],
    )
    .execute(&mut *tx)
    .await?;
    // The run of failures ends with a success; the last attempt of the page decides.
    let last_succeeded = attempts.last().is_some_and(Attempt::succeeded);
    let failing_since = sqlx::query_scalar!(
        "INSERT INTO webhook_lanes AS l (endpoint_id, failing_since) VALUES ($1, CASE WHEN $2 THEN NULL ELSE now() END)
         ON CONFLICT (endpoint_id) DO UPDATE
         SET failing_since = CASE WHEN $2 THEN NULL ELSE COALESCE(l.failing_since, now()) END
         RETURNING failing_since",
        endpoint_id,
        last_succeeded,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Recorded { failing_since })
}

/// Deletes ended messages, their attempts and unused bodies older than `retention`, `batch` rows
/// a statement. Returns how many messages went.
pub async fn prune(pool: &PgPool, retention: chrono::Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let before = Utc::now() - retention;
    let mut pruned = 0;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM webhook_messages WHERE id IN (
                 SELECT id FROM webhook_messages WHERE created_at < $1 AND state <> 'pending' LIMIT $2)",
            before,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += deleted;
        if deleted < batch as u64 {
            break;
        }
    }
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts WHERE attempted_at < $1 LIMIT $2)",
            before,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        if deleted < batch as u64 {
            break;
        }
    }
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM webhook_payloads p WHERE p.id IN (
                 SELECT id FROM webhook_payloads q WHERE q.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM webhook_messages m WHERE m.payload_id = q.id)
                 LIMIT $2)",
            before,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        if deleted < batch as u64 {
            break;
        }
    }
    Ok(pruned)
}
