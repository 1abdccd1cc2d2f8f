//! Appending to and loading streams.
//!
//! Each stream has a row in `streams` holding its version. An append moves that row by
//! compare-and-set (one row lock serialises writers of one stream, and nobody else) and inserts
//! the events with the versions it reserved. `UNIQUE (stream_id, version)` on `events` stays as
//! the last line of defence: SQLSTATE 23505 is a conflict too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ProjectionFailed, Projector};
use crate::domain::aggregate::{Aggregate, DomainEvent};

/// A stream's name: `<kind>:<uuid>`, e.g. `post:0190...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of aggregate `id` of kind `A`.
    pub fn of<A: Aggregate>(id: Uuid) -> Self {
        Self(format!("{}:{id}", A::KIND))
    }

    /// The kind and id of a stored stream name, if it is one.
    pub fn parse(stream_id: &str) -> Option<(&str, Uuid)> {
        let (kind, id) = stream_id.split_once(':')?;
        Some((kind, Uuid::parse_str(id).ok()?))
    }

    /// The stored name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the writer believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExpectedVersion {
    /// The stream does not exist yet.
    NoStream,
    /// Exactly this version (the number of events in the stream).
    Exact(i64),
}

/// Who and what caused an event: stored beside it, never part of the domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// `key:<id>`, `operator`, `worker:<id>`, `scheduler:<id>` ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
}

impl NewEvent {
    /// `event` as stored: its serde form (which carries `type`), its type name and the schema
    /// version this code writes.
    pub fn encode<E: DomainEvent>(event: &E) -> Result<Self, serde_json::Error> {
        let event_type = event.event_type();
        Ok(Self {
            event_type: event_type.to_owned(),
            schema_version: E::schema_version(event_type),
            payload: serde_json::to_value(event)?,
        })
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub project_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    /// The appending transaction's id (xid8), the first half of the reading order.
    pub transaction_id: i64,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream is not at the expected version (the api answers 409).
    #[error("the {stream} stream is at version {actual:?}, not {expected:?}")]
    Conflict { stream: String, expected: ExpectedVersion, actual: Option<i64> },
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("event could not be encoded")]
    Encode(#[from] serde_json::Error),
    /// A read model could not follow: nothing was appended.
    #[error(transparent)]
    Projection(#[from] ProjectionFailed),
    /// The database answered an insert with fewer rows than it was given.
    #[error("the database lost an appended event")]
    Lost,
    /// The group committer's tasks are gone (the process is shutting down).
    #[error("the group committer stopped")]
    Stopped,
}

impl From<sqlx::Error> for AppendError {
    fn from(error: sqlx::Error) -> Self {
        AppendError::Database(error)
    }
}

/// Appends `events` to `stream` if it is at `expected`, inside the caller's transaction, and
/// has `projector` update the read models in it. Returns the events as recorded (positions,
/// versions).
pub async fn append<E: DomainEvent>(
    tx: &mut PgConnection,
    projector: &dyn Projector,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[E],
    metadata: &EventMetadata,
) -> Result<Vec<RecordedEvent>, AppendError> {
    let encoded = events.iter().map(NewEvent::encode).collect::<Result<Vec<_>, _>>()?;
    let recorded = append_encoded(tx, stream, expected, &encoded, metadata).await?;
    projector.project(tx, &recorded).await?;
    Ok(recorded)
}

/// Inserts events already encoded, without projecting them: the caller projects (the group
/// committer does it once for a whole batch).
pub(super) async fn append_encoded(
    tx: &mut PgConnection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    metadata: &EventMetadata,
) -> Result<Vec<RecordedEvent>, AppendError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let reserved: Option<i64> = match expected {
        ExpectedVersion::NoStream => {
            sqlx::query_scalar!(
                "INSERT INTO streams (stream_id, version) VALUES ($1, $2)
                 ON CONFLICT (stream_id) DO NOTHING RETURNING version",
                stream.as_str(),
                count,
            )
            .fetch_optional(&mut *tx)
            .await?
        }
        ExpectedVersion::Exact(version) => {
            sqlx::query_scalar!(
                "UPDATE streams SET version = version + $3 WHERE stream_id = $1 AND version = $2 RETURNING version",
                stream.as_str(),
                version,
                count,
            )
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let Some(last_version) = reserved else {
        let actual = current_version(tx, stream).await?;
        return Err(AppendError::Conflict { stream: stream.to_string(), expected, actual });
    };
    let first_version = last_version - count + 1;
    let versions: Vec<i64> = (first_version..=last_version).collect();
    let types: Vec<String> = events.iter().map(|event| event.event_type.clone()).collect();
    let schema_versions: Vec<i32> = events.iter().map(|event| event.schema_version).collect();
    let payloads: Vec<Value> = events.iter().map(|event| event.payload.clone()).collect();
    let metadata_json = serde_json::to_value(metadata)?;
    let inserted = sqlx::query!(
        r#"INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata, project_id)
           SELECT $1, version, event_type, schema_version, payload, $5, $6
           FROM unnest($2::bigint[], $3::text[], $4::int[], $7::jsonb[]) AS e(version, event_type, schema_version, payload)
           RETURNING position, version, recorded_at, transaction_id::text::bigint AS "transaction_id!""#,
        stream.as_str(),
        &versions,
        &types,
        &schema_versions,
        metadata_json,
        metadata.project_id,
        &payloads,
    )
    .fetch_all(&mut *tx)
    .await;
    let inserted = match inserted {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
            return Err(AppendError::Conflict { stream: stream.to_string(), expected, actual: None });
        }
        Err(error) => return Err(error.into()),
    };
    let mut recorded: Vec<RecordedEvent> = inserted
        .into_iter()
        .zip(events)
        .map(|(row, event)| RecordedEvent {
            position: row.position,
            stream_id: stream.to_string(),
            version: row.version,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            metadata: metadata_json.clone(),
            project_id: metadata.project_id,
            recorded_at: row.recorded_at,
            transaction_id: row.transaction_id,
        })
        .collect();
    recorded.sort_by_key(|event| event.version);
    Ok(recorded)
}

async fn current_version(tx: &mut PgConnection, stream: &StreamId) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT version FROM streams WHERE stream_id = $1", stream.as_str()).fetch_optional(tx).await
}

/// Every event of `stream`, oldest first.
pub async fn load_stream(tx: &mut PgConnection, stream: &StreamId) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    load_streams(tx, &[stream.to_string()]).await
}

/// Every event of each of `streams`, by stream, oldest first.
pub async fn load_streams(tx: &mut PgConnection, streams: &[String]) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as!(
        RecordedEvent,
        r#"SELECT position, stream_id, version, event_type, schema_version, payload, metadata, project_id,
                  recorded_at, transaction_id::text::bigint AS "transaction_id!"
           FROM events WHERE stream_id = ANY($1) ORDER BY stream_id, version"#,
        streams,
    )
    .fetch_all(tx)
    .await
}
