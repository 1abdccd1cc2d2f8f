//! Turning the log into messages. The dispatcher reads the log with the safe reader (no event
//! skipped, none read twice) from its cursor, works out which endpoints hear each event (their
//! project, their types, created before it, and the reach of the key that made them,
//! [`crate::reach::FeedReach`]), writes the messages and moves the cursor in one transaction, and
//! queues a [`SendWebhooks`] job per endpoint that got any. The cursor's row is locked for the
//! whole transaction, so two schedulers never make a message twice: one of them waits its turn.
//!
//! Replays and resends write messages the same way, marked `manual`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::catalog::{self, Planned};
use super::payload::{self, PayloadContext};
use crate::domain::api_key::{Environment, Reach};
use crate::events::RecordedEvent;
use crate::events::reader::{Cursor, Filter, read_after};
use crate::jobs::SendWebhooks;
use crate::queue::{self, NewJob};
use crate::reach::FeedReach;

/// An endpoint as the dispatcher matches events to it.
#[derive(Debug, Clone)]
pub struct Listener {
    pub id: Uuid,
    pub project_id: Uuid,
    pub event_types: Option<Vec<String>>,
    pub environment: Environment,
    pub scopes: Vec<String>,
    pub platforms: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
}

impl Listener {
    fn reach(&self) -> Reach<'_> {
        Reach::stored(self.environment, &self.scopes, self.platforms.as_deref(), self.accounts.as_deref())
    }

    fn wants(&self, event: &RecordedEvent, planned: &Planned) -> bool {
        if planned.only_endpoint.is_some_and(|only| only != self.id) {
            return false;
        }
        event.recorded_at >= self.created_at
            && self.event_types.as_ref().is_none_or(|types| types.iter().any(|wanted| wanted == planned.event_type))
    }
}

/// Why dispatching stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("a job could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Turns up to `limit` events after the cursor into messages. Returns how many events it read
/// (0: nothing new, or another scheduler holds the cursor).
pub async fn dispatch(pool: &PgPool, context: &PayloadContext, limit: i64) -> Result<usize, DispatchError> {
    let mut tx = pool.begin().await?;
    let Some(cursor) = sqlx::query!(
        "SELECT transaction_id, position FROM webhook_dispatch_cursor WHERE singleton FOR UPDATE SKIP LOCKED"
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(0);
    };
    let cursor = Cursor { transaction_id: cursor.transaction_id, position: cursor.position };
    let events = read_after(&mut *tx, cursor, &Filter::default(), limit).await?;
    let Some(last) = events.last() else { return Ok(0) };
    let next = Cursor::after(last);
    let projects: Vec<Uuid> = {
        let mut ids: Vec<Uuid> = events.iter().filter_map(|event| event.project_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let listeners = listeners(&mut tx, &projects, None).await?;
    let made = write_messages(&mut tx, pool, context, &listeners, &events, false).await?;
    sqlx::query!(
        "UPDATE webhook_dispatch_cursor SET transaction_id = $1, position = $2 WHERE singleton",
        next.transaction_id,
        next.position
    )
    .execute(&mut *tx)
    .await?;
    wake(&mut tx, &made).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// The enabled endpoints of `projects` (or the one endpoint `only`).
async fn listeners(tx: &mut PgConnection, projects: &[Uuid], only: Option<Uuid>) -> Result<Vec<Listener>, sqlx::Error> {
    sqlx::query_as!(
        Listener,
        r#"SELECT id, project_id, event_types, environment AS "environment: Environment", scopes, platforms, accounts,
                  created_at
           FROM webhook_endpoints
           WHERE deleted_at IS NULL AND enabled AND ($2::uuid IS NULL AND project_id = ANY($1) OR id = $2)"#,
        projects,
        only,
    )
    .fetch_all(&mut *tx)
    .await
}

/// Writes the messages `events` make for `listeners`; answers the endpoints that got any.
async fn write_messages(
    tx: &mut PgConnection,
    pool: &PgPool,
    context: &PayloadContext,
    listeners: &[Listener],
    events: &[RecordedEvent],
    manual: bool,
) -> Result<Vec<Uuid>, DispatchError> {
    if listeners.is_empty() {
        return Ok(Vec::new());
    }
    let planned: Vec<(&RecordedEvent, Planned)> =
        events.iter().flat_map(|event| catalog::plan(event).into_iter().map(move |planned| (event, planned))).collect();
    // Per project: the messages its endpoints hear, each body made once for all of them.
    let mut by_project: BTreeMap<Uuid, Vec<&Listener>> = BTreeMap::new();
    for listener in listeners {
        by_project.entry(listener.project_id).or_default().push(listener);
    }
    let mut rows = Rows::default();
    for (project_id, listeners) in by_project {
        let theirs: Vec<&(&RecordedEvent, Planned)> =
            planned.iter().filter(|(event, _)| event.project_id == Some(project_id)).collect();
        if theirs.is_empty() {
            continue;
        }
        let project_events: Vec<RecordedEvent> = {
            let mut seen = Vec::new();
            for (event, _) in &theirs {
                if seen.last().is_none_or(|last: &RecordedEvent| last.position != event.position) {
                    seen.push((*event).clone());
                }
            }
            seen
        };
        // Who hears what: one look-up of each endpoint's reach over the page.
        let mut hearers: Vec<Vec<Uuid>> = vec![Vec::new(); theirs.len()];
        for listener in listeners {
            let reach = FeedReach::of(pool, &listener.reach(), &project_events).await?;
            for (index, (event, planned)) in theirs.iter().enumerate() {
                if listener.wants(event, planned) && reach.shows(event) {
                    hearers[index].push(listener.id);
                }
            }
        }
        let heard: Vec<usize> = (0..theirs.len()).filter(|index| !hearers[*index].is_empty()).collect();
        if heard.is_empty() {
            continue;
        }
        let pairs: Vec<(&RecordedEvent, &Planned)> =
            heard.iter().map(|index| (theirs[*index].0, &theirs[*index].1)).collect();
        let bodies = payload::bodies(pool, context, project_id, &pairs).await?;
        for (index, body) in heard.iter().zip(bodies) {
            rows.add(&theirs[*index].1, body, &hearers[*index]);
        }
    }
    rows.insert(tx, manual).await
}

/// Messages to insert, as columns; bodies once each.
#[derive(Default)]
struct Rows {
    message_ids: Vec<Uuid>,
    endpoint_ids: Vec<Uuid>,
    webhook_ids: Vec<String>,
    event_types: Vec<String>,
    payload_of_message: Vec<Uuid>,
    payload_ids: Vec<Uuid>,
    payload_bodies: Vec<Value>,
}

impl Rows {
    /// `planned` with `body`, to each of `endpoints`.
    fn add(&mut self, planned: &Planned, body: Value, endpoints: &[Uuid]) {
        let payload_id = Uuid::now_v7();
        self.payload_ids.push(payload_id);
        self.payload_bodies.push(body);
        for endpoint_id in endpoints {
            self.message_ids.push(Uuid::now_v7());
            self.endpoint_ids.push(*endpoint_id);
            self.webhook_ids.push(planned.webhook_id.clone());
            self.event_types.push(planned.event_type.to_owned());
            self.payload_of_message.push(payload_id);
        }
    }

    /// Inserts them; answers the endpoints that got any.
    async fn insert(self, tx: &mut PgConnection, manual: bool) -> Result<Vec<Uuid>, DispatchError> {
        let Rows {
            message_ids,
            mut endpoint_ids,
            webhook_ids,
            event_types,
            payload_of_message,
            payload_ids,
            payload_bodies,
        } = self;
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query!(
            "INSERT INTO webhook_payloads (id, body) SELECT * FROM unnest($1::uuid[], $2::jsonb[])",
            &payload_ids,
            &payload_bodies as &[Value],
        )
        .execute(&mut *tx)
        .await?;
        // `ORDER BY ordinality` gives `seq` the log's order.
        sqlx::query!(
            "INSERT INTO webhook_messages (id, endpoint_id, webhook_id, event_type, payload_id, state, next_attempt_at, manual)
             SELECT id, endpoint_id, webhook_id, event_type, payload_id, 'pending', now(), $6
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[])
                  WITH ORDINALITY AS m(id, endpoint_id, webhook_id, event_type, payload_id, ordinal)
             ORDER BY ordinal",
            &message_ids,
            &endpoint_ids,
            &webhook_ids,
            &event_types,
            &payload_of_message,
            manual,
        )
        .execute(&mut *tx)
        .await?;
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        Ok(endpoint_ids)
    }
}

/// Queues a sender for each of `endpoints` (a live one makes it a no-op).
async fn wake(tx: &mut PgConnection, endpoints: &[Uuid]) -> Result<(), DispatchError> {
    let jobs = endpoints
        .iter()
        .map(|endpoint_id| NewJob::of(&SendWebhooks { endpoint_id: *endpoint_id }))
        .collect::<Result<Vec<_>, _>>()?;
    queue::enqueue_many(&mut *tx, &jobs).await?;
    Ok(())
}

/// The most events one replay reads.
pub const REPLAY_MOST_EVENTS: i64 = 100_000;

/// Queues again, for endpoint `endpoint_id`, every message the project's events since `since`
/// made for it (as the endpoint hears now: its types and reach). Answers how many messages were
/// queued, and whether the replay stopped at [`REPLAY_MOST_EVENTS`].
pub async fn replay(
    pool: &PgPool,
    context: &PayloadContext,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
) -> Result<(u64, bool), DispatchError> {
    let mut tx = pool.begin().await?;
    let mut listener = listeners(&mut tx, &[], Some(endpoint_id)).await?;
    let Some(project_id) = listener.first().map(|listener| listener.project_id) else { return Ok((0, false)) };
    // Events before the endpoint existed are replayed too: that is what a replay asks for.
    for listener in &mut listener {
        listener.created_at = DateTime::<Utc>::MIN_UTC;
    }
    // Start just before the first event since `since`: found walking the project's events back
    // from the newest (the log's times follow its order, give or take a commit's length).
    let start = sqlx::query!(
        r#"SELECT transaction_id::text::bigint AS "transaction_id!", position FROM events
           WHERE project_id = $1 AND recorded_at < $2
           ORDER BY project_id DESC, transaction_id DESC, position DESC LIMIT 1"#,
        project_id,
        since
    )
    .fetch_optional(&mut *tx)
    .await?;
    let mut cursor =
        start.map_or(Cursor::START, |row| Cursor { transaction_id: row.transaction_id, position: row.position });
    let mut read = 0;
    let mut queued = 0u64;
    let filter = Filter { project_id: Some(project_id), event_types: None };
    loop {
        let page: Vec<RecordedEvent> = read_after(&mut *tx, cursor, &filter, 1000).await?;
        let Some(last) = page.last() else { break };
        cursor = Cursor::after(last);
        read += page.len() as i64;
        let since_events: Vec<RecordedEvent> = page.into_iter().filter(|event| event.recorded_at >= since).collect();
        let before = count_manual(&mut tx, endpoint_id).await?;
        write_messages(&mut tx, pool, context, &listener, &since_events, true).await?;
        queued += count_manual(&mut tx, endpoint_id).await? - before;
        if read >= REPLAY_MOST_EVENTS {
            wake(&mut tx, &[endpoint_id]).await?;
            tx.commit().await?;
            return Ok((queued, true));
        }
    }
    wake(&mut tx, &[endpoint_id]).await?;
    tx.commit().await?;
    Ok((queued, false))
}

async fn count_manual(tx: &mut PgConnection, endpoint_id: Uuid) -> Result<u64, sqlx::Error> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM webhook_messages WHERE endpoint_id = $1 AND manual"#,
        endpoint_id
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Queues the message of attempt `attempt_id` of endpoint `endpoint_id` once more (the same
/// `webhook-id` and body). `false`: no such attempt.
pub async fn resend(pool: &PgPool, endpoint_id: Uuid, attempt_id: Uuid) -> Result<bool, DispatchError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query!(
        "INSERT INTO webhook_messages (id, endpoint_id, webhook_id, event_type, payload_id, state, next_attempt_at, manual)
         SELECT $3, m.endpoint_id, m.webhook_id, m.event_type, m.payload_id, 'pending', now(), true
         FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id
         WHERE a.id = $2 AND a.endpoint_id = $1",
        endpoint_id,
        attempt_id,
        Uuid::now_v7(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    wake(&mut tx, &[endpoint_id]).await?;
    tx.commit().await?;
    Ok(true)
}

/// Queues a sender for every enabled endpoint with a message due and nobody sending: retries
/// whose time came, and lanes whose sender died or stopped just as new messages arrived.
pub async fn wake_due_lanes(pool: &PgPool, limit: i64) -> Result<usize, DispatchError> {
    let due = sqlx::query_scalar!(
        "SELECT e.id FROM webhook_endpoints e
         WHERE e.enabled AND e.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM webhook_messages m
                       WHERE m.endpoint_id = e.id AND m.state = 'pending' AND m.next_attempt_at <= now())
           AND NOT EXISTS (SELECT 1 FROM webhook_lanes l WHERE l.endpoint_id = e.id AND l.leased_until > now())
         LIMIT $1",
        limit
    )
    .fetch_all(pool)
    .await?;
    let mut tx = pool.begin().await?;
    wake(&mut tx, &due).await?;
    tx.commit().await?;
    Ok(due.len())
}

/// Events per endpoint, for tests and the bench: how many messages each endpoint has, by state.
pub async fn message_counts(pool: &PgPool, endpoint_id: Uuid) -> Result<HashMap<String, i64>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT state, count(*) AS "count!" FROM webhook_messages WHERE endpoint_id = $1 GROUP BY state"#,
        endpoint_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| (row.state, row.count))
    .collect())
}
