//! Subjects whose job ended without writing their outcome.
//!
//! A job normally records what happened to its subject (a delivery, a connect session, a media
//! import) before it reports its own outcome. One that never gets that far (its worker died on
//! every attempt, so its lease ran out on the last one; or it kept failing before it could
//! record anything until its attempts ran out) ends in `finished_jobs` while its subject stays
//! half-way for ever: a delivery `queued` or `publishing`, a session `pending`, a media item
//! `importing`. The scheduler's sweep
//! ([`end_abandoned`]) finds such subjects (on their way, with no live job under their job's
//! dedup key) and ends them through their aggregate, with the job's last error as the reason:
//!
//! - a delivery that had started (`publishing`) becomes `unknown`: the platform may have the
//!   post, so only a person's retry with `force` sends it again;
//! - a delivery that had not (`queued`) becomes `failed`: nothing was sent, a retry is safe;
//! - a connect session becomes `failed`, and its sealed code and verifier are forgotten;
//! - a media import becomes `failed` with a reason that starts `import_abandoned:` (then the
//!   job's ending); an attempt that died never completed an object at the item's key, and a
//!   worker that was only slow and finishes later is refused by the item (no longer
//!   `importing`) and deletes what it stored, so a `failed` item never has an object.
//!
//! Races: `jobs` holds every live job and a job leaves it in the statement that archives it, and a
//! subject is put on its way in the transaction that enqueues its job, so one statement sees either
//! a subject with its job or a subject whose job is over. The commands are guarded by what the
//! sweep saw (the delivery's status and generation, the session's `pending`, the item's
//! `importing`), so a subject that moved meanwhile (retried, finished by a late worker) is left
//! alone, and two scheduler replicas record it once (the append's optimistic concurrency). A job
//! whose lease ran out may still be running on a worker that is slow rather than dead: the sweep
//! waits `grace` after the job ended (the platform timeout and a margin), and a late `published`
//! still lands on an `unknown` delivery.
//!
//! Other kinds need nothing here: a lost refresh leaves the account connected and the refresh
//! sweep queues another; a lost revoke leaves nothing half-way (the account was disconnected and
//! its tokens wiped when it was queued); pruning has no subject.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{ExecuteError, execute};
use crate::credentials;
use crate::domain::connect_session::{self, ConnectSession};
use crate::domain::media_item::{self, Media};
use crate::domain::post::{self, DeliveryError, DeliveryStatus, Post};
use crate::events::EventMetadata;

/// What one sweep ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// Deliveries that had started, now `unknown`.
    pub unknown: usize,
    /// Deliveries that had not, now `failed`.
    pub failed: usize,
    /// Connect sessions, now `failed`.
    pub sessions: usize,
    /// Media imports, now `failed`.
    pub imports: usize,
}

impl Ended {
    pub fn total(&self) -> usize {
        self.unknown + self.failed + self.sessions + self.imports
    }
}

/// The start of the `failure_reason` of a media import whose job ended without an outcome.
pub const IMPORT_ABANDONED: &str = "import_abandoned";

/// Ends up to `limit` deliveries, `limit` connect sessions and `limit` media imports whose job
/// ended more than `grace` ago without recording their outcome. Each is ended in its own
/// transaction; one that moved meanwhile is skipped.
pub async fn end_abandoned(pool: &PgPool, grace: Duration, limit: i64) -> anyhow::Result<Ended> {
    let mut ended = end_deliveries(pool, grace, limit).await?;
    ended.sessions = end_sessions(pool, grace, limit).await?;
    ended.imports = end_imports(pool, grace, limit).await?;
    Ok(ended)
}

/// How a job ended, from its last row in `finished_jobs`.
struct Ending {
    state: String,
    attempt: i32,
    error: Option<String>,
    /// It ended more than the grace period ago.
    settled: bool,
}

/// Why the job ended (`None`: no row of it is left).
fn job_ending(ending: Option<&Ending>) -> String {
    match ending {
        Some(ending) => {
            let error = ending.error.as_deref().unwrap_or("no error recorded");
            format!("its job ended {} after {} attempt(s): {error}", ending.state, ending.attempt)
        }
        None => "its job is gone without a record".to_owned(),
    }
}

/// The last ending of each job among `dedup_keys`, looked for among jobs that finished after
/// `since` (each subject's job ended after the subject last changed, so the BRIN index on
/// `finished_at` keeps this to recent rows). A separate statement from the one that found the
/// subjects: a job leaves `jobs` and enters `finished_jobs` in one statement, so what that one
/// saw gone is here (or pruned).
async fn endings(
    pool: &PgPool,
    dedup_keys: &[String],
    since: Option<DateTime<Utc>>,
    grace: Duration,
) -> Result<HashMap<String, Ending>, sqlx::Error> {
    let Some(since) = since else { return Ok(HashMap::new()) };
    let rows = sqlx::query!(
        r#"SELECT DISTINCT ON (dedup_key) dedup_key AS "dedup_key!", state, attempt, last_error,
                  finished_at < now() - make_interval(secs => $3) AS "settled!"
           FROM finished_jobs
           WHERE dedup_key = ANY($1) AND finished_at >= $2::timestamptz - interval '5 minutes'
           ORDER BY dedup_key, finished_at DESC"#,
        dedup_keys,
        since,
        grace.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let ending = Ending { state: row.state, attempt: row.attempt, error: row.last_error, settled: row.settled };
            (row.dedup_key, ending)
        })
        .collect())
}

async fn end_deliveries(pool: &PgPool, grace: Duration, limit: i64) -> anyhow::Result<Ended> {
    // On their way, with no live job under `PublishDelivery::dedup_key` (the unique index on
    // live jobs answers the `NOT EXISTS`).
    let abandoned = sqlx::query!(
        r#"SELECT d.id, d.post_id, d.project_id, d.status AS "status: DeliveryStatus", d.generation, d.updated_at,
                  'publish:' || d.id || ':' || d.generation AS "dedup_key!"
           FROM deliveries d
           WHERE d.status IN ('queued', 'publishing')
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dedup_key = 'publish:' || d.id || ':' || d.generation)
           LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let keys: Vec<String> = abandoned.iter().map(|delivery| delivery.dedup_key.clone()).collect();
    let since = abandoned.iter().map(|delivery| delivery.updated_at).min();
    let endings = endings(pool, &keys, since, grace).await?;
    let mut ended = Ended::default();
    for delivery in abandoned {
        let ending = endings.get(&delivery.dedup_key);
        if ending.is_some_and(|ending| !ending.settled) {
            continue;
        }
        let why = job_ending(ending);
        let (status, error) = if delivery.status == DeliveryStatus::Publishing {
            let message =
                format!("publishing started but {why}; the platform may have the post: retry with force to post again");
            (
                DeliveryStatus::Publishing,
                DeliveryError { code: "outcome_unknown".into(), message, platform_request_id: None },
            )
        } else {
            let message = format!("{why}; nothing was sent: retry to try again");
            (DeliveryStatus::Queued, DeliveryError { code: "job_failed".into(), message, platform_request_id: None })
        };
        let command =
            post::Command::RecordAbandoned { delivery_id: delivery.id, generation: delivery.generation, status, error };
        if record::<Post>(pool, delivery.post_id, delivery.project_id, command).await? {
            match status {
                DeliveryStatus::Publishing => ended.unknown += 1,
                _ => ended.failed += 1,
            }
        }
    }
    Ok(ended)
}

async fn end_sessions(pool: &PgPool, grace: Duration, limit: i64) -> anyhow::Result<usize> {
    // Pending, with no live job under `ExchangeCode::dedup_key`.
    let abandoned = sqlx::query!(
        r#"SELECT s.id, s.project_id, s.updated_at, 'connect:' || s.id AS "dedup_key!"
           FROM connect_sessions s
           WHERE s.status = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dedup_key = 'connect:' || s.id)
           LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let keys: Vec<String> = abandoned.iter().map(|session| session.dedup_key.clone()).collect();
    let since = abandoned.iter().map(|session| session.updated_at).min();
    let endings = endings(pool, &keys, since, grace).await?;
    let mut ended = 0;
    for session in abandoned {
        let ending = endings.get(&session.dedup_key);
        if ending.is_some_and(|ending| !ending.settled) {
            continue;
        }
        let reason = format!("the exchange did not finish: {}; connect again", job_ending(ending));
        let metadata = metadata(session.project_id);
        let mut tx = pool.begin().await?;
        match execute::<ConnectSession>(&mut tx, session.id, connect_session::Command::Fail { reason }, &metadata).await
        {
            Ok(_) => {
                credentials::forget_session_secrets(&mut tx, session.id).await?;
                tx.commit().await?;
                ended += 1;
            }
            Err(ExecuteError::Conflict { .. } | ExecuteError::Rejected(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(ended)
}

async fn end_imports(pool: &PgPool, grace: Duration, limit: i64) -> anyhow::Result<usize> {
    // Importing, with no live job under `ImportMedia::dedup_key` (`media_importing` finds them).
    let abandoned = sqlx::query!(
        r#"SELECT m.id, m.project_id, m.updated_at, 'media-import:' || m.id AS "dedup_key!"
           FROM media m
           WHERE m.status = 'importing' AND m.deleted_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dedup_key = 'media-import:' || m.id)
           LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let keys: Vec<String> = abandoned.iter().map(|item| item.dedup_key.clone()).collect();
    let since = abandoned.iter().map(|item| item.updated_at).min();
    let endings = endings(pool, &keys, since, grace).await?;
    let mut ended = 0;
    for item in abandoned {
        let ending = endings.get(&item.dedup_key);
        if ending.is_some_and(|ending| !ending.settled) {
            continue;
        }
        let reason =
            format!("{IMPORT_ABANDONED}: the import did not finish: {}; import the URL again", job_ending(ending));
        if record::<Media>(pool, item.id, item.project_id, media_item::Command::FailImport { reason }).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

fn metadata(project_id: Uuid) -> EventMetadata {
    EventMetadata { project_id: Some(project_id), actor: Some("scheduler".into()), ..EventMetadata::default() }
}

/// Records `command` on aggregate `id` in a transaction of its own; false if it lost a race
/// (another writer appended first, or the subject moved).
async fn record<A: crate::domain::aggregate::Aggregate>(
    pool: &PgPool,
    id: Uuid,
    project_id: Uuid,
    command: A::Command,
) -> anyhow::Result<bool>
where
    A::Rejection: Send + Sync + 'static,
{
    let mut tx = pool.begin().await?;
    match execute::<A>(&mut tx, id, command, &metadata(project_id)).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(true)
        }
        Err(ExecuteError::Conflict { .. } | ExecuteError::Rejected(_)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}
