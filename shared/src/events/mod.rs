//! The event log: commands become events, read models follow in the same transaction.
//!
//! - [`store`] appends to a stream with optimistic concurrency and loads a stream back.
//! - [`reader`] reads the whole log (or one project's part of it) in an order that never skips
//!   an event that commits late.
//! - [`Aggregate`] is the shape of the pure domain: `decide(&State, Command)` and
//!   `evolve(State, &Event)`, implemented in [`crate::domain`].
//! - [`execute`] ties them together: load, decide, append, project, all in the caller's
//!   transaction, so a read after a write sees it and no write happens twice.
//! - [`execute_loaded`] is the same for many concurrent writers: each decides on the state it
//!   loaded ([`load_many`] reads many streams in one query) and appends through the
//!   [`GroupCommitter`], so a busy worker's jobs share transactions.

pub mod group_commit;
pub mod reader;
pub mod store;

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

pub use group_commit::GroupCommitter;
pub use store::{
    AppendError, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId, append, load_stream, load_streams,
};

/// An event type of one aggregate: a serde enum with a stable type name per variant and a schema
/// version, so events written by older code still load.
pub trait DomainEvent: Serialize + DeserializeOwned + Sized {
    /// The stable name stored in `events.event_type`, e.g. `post.created`.
    fn event_type(&self) -> &'static str;

    /// The schema version this code writes for `event_type`.
    fn schema_version(_event_type: &str) -> i32 {
        1
    }

    /// Brings a payload written at `version` up to the current schema. The default knows no old
    /// versions.
    fn upcast(_event_type: &str, _version: i32, payload: Value) -> Value {
        payload
    }

    /// The payload as stored: the serde form, which carries `type`.
    fn encode(&self) -> Result<NewEvent, serde_json::Error> {
        let event_type = self.event_type();
        Ok(NewEvent {
            event_type: event_type.to_owned(),
            schema_version: Self::schema_version(event_type),
            payload: serde_json::to_value(self)?,
        })
    }

    /// Reads a stored event, upcasting it first when it was written at an older version. Reads
    /// from the stored value in place: only an old payload is copied, to be upcast.
    fn decode(event_type: &str, version: i32, payload: &Value) -> Result<Self, serde_json::Error> {
        if version < Self::schema_version(event_type) {
            serde_json::from_value(Self::upcast(event_type, version, payload.clone()))
        } else {
            Self::deserialize(payload)
        }
    }
}

/// A consistency boundary: its state is a fold of its stream's events.
pub trait Aggregate: Default + Sized {
    /// The stream prefix, e.g. `post` for `post:<uuid>`.
    const KIND: &'static str;
    /// What callers ask of it.
    type Command;
    /// What it records.
    type Event: DomainEvent;
    /// Why it refuses a command.
    type Rejection: std::error::Error;

    /// Decides which events a command causes, or refuses it. Pure: no I/O, no clock.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Applies one event. Pure, and total: every recorded event applies.
    fn evolve(self, event: &Self::Event) -> Self;

    /// The state after `events`.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Why [`execute`] did not record anything.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<R: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(R),
    /// Another writer appended to the stream first.
    #[error("the {stream} stream changed: expected version {expected:?}, found {actual:?}")]
    Conflict { stream: String, expected: ExpectedVersion, actual: Option<i64> },
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored event could not be read.
    #[error("stored event could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    /// A read model could not follow.
    #[error("projection failed")]
    Projection(#[from] crate::projections::ProjectionError),
}

impl<R: std::error::Error> From<AppendError> for ExecuteError<R> {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict { stream, expected, actual } => ExecuteError::Conflict { stream, expected, actual },
            AppendError::Database(error) => ExecuteError::Database(error),
            AppendError::Encode(error) => ExecuteError::Decode(error),
        }
    }
}

/// What [`execute`] recorded.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The new events, as recorded.
    pub events: Vec<A::Event>,
    /// The stream's version after the append.
    pub version: i64,
}

/// Loads aggregate `id`, decides `command`, appends the events (expecting the version it loaded)
/// and updates the read models, all inside `tx`. The caller commits (after enqueueing any jobs
/// the events cause, in the same transaction).
pub async fn execute<A: Aggregate>(
    tx: &mut PgConnection,
    id: Uuid,
    command: A::Command,
    metadata: &EventMetadata,
) -> Result<Executed<A>, ExecuteError<A::Rejection>> {
    let stream = StreamId::new(A::KIND, id);
    let (state, version) = load::<A>(tx, &stream).await?;
    let events = state.decide(command).map_err(ExecuteError::Rejected)?;
    let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    if events.is_empty() {
        return Ok(Executed { state, events, version });
    }
    let recorded = append(tx, &stream, expected, &events, metadata).await?;
    crate::projections::apply_all(tx, &recorded).await?;
    let state = events.iter().fold(state, A::evolve);
    let version = recorded.last().map_or(version, |event| event.version);
    Ok(Executed { state, events, version })
}

/// The current state and version of `stream`.
pub async fn load<A: Aggregate>(
    tx: &mut PgConnection,
    stream: &StreamId,
) -> Result<(A, i64), ExecuteError<A::Rejection>> {
    let mut state = A::default();
    let mut version = 0;
    for stored in load_stream(tx, stream).await? {
        version = stored.version;
        state = fold(state, stored)?;
    }
    Ok((state, version))
}

/// The current state and version of each aggregate in `ids`, in one query. An id without
/// events is the default state at version 0.
pub async fn load_many<A: Aggregate>(
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (A, i64)>, ExecuteError<A::Rejection>> {
    let streams: Vec<String> = ids.iter().map(|id| StreamId::new(A::KIND, *id).to_string()).collect();
    let mut loaded: HashMap<Uuid, (A, i64)> = ids.iter().map(|id| (*id, (A::default(), 0))).collect();
    for stored in load_streams(tx, &streams).await? {
        let id = stored
            .stream_id
            .split_once(':')
            .and_then(|(_, id)| Uuid::parse_str(id).ok())
            .ok_or_else(|| sqlx::Error::Protocol(format!("stream {} is not a {}", stored.stream_id, A::KIND)))?;
        if let Some((state, version)) = loaded.get_mut(&id) {
            *version = stored.version;
            *state = fold(std::mem::take(state), stored)?;
        }
    }
    Ok(loaded)
}

/// `state` after one stored event.
fn fold<A: Aggregate>(state: A, stored: RecordedEvent) -> Result<A, serde_json::Error> {
    let event = A::Event::decode(&stored.event_type, stored.schema_version, &stored.payload)?;
    Ok(state.evolve(&event))
}

/// Decides `command` on `current` (a state and version the caller loaded, [`load_many`] or an
/// earlier call) and appends the events through the group committer, expecting that version:
/// many jobs' writes share one transaction. On success `current` moves to the new state and
/// version. A [`ExecuteError::Conflict`] means the stream moved since it was loaded: load it
/// again and decide again.
pub async fn execute_loaded<A: Aggregate>(
    committer: &GroupCommitter,
    id: Uuid,
    current: &mut (A, i64),
    command: A::Command,
    metadata: EventMetadata,
) -> Result<Vec<RecordedEvent>, ExecuteError<A::Rejection>> {
    let events = current.0.decide(command).map_err(ExecuteError::Rejected)?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let encoded = events.iter().map(DomainEvent::encode).collect::<Result<Vec<_>, _>>()?;
    let expected = if current.1 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(current.1) };
    let recorded = committer.append(StreamId::new(A::KIND, id), expected, encoded, metadata).await?;
    current.0 = events.iter().fold(std::mem::take(&mut current.0), A::evolve);
    current.1 = recorded.last().map_or(current.1, |event| event.version);
    Ok(recorded)
}

/// Decides a command that creates aggregate `id` (a fresh id: nothing to load) and appends its
/// events through the group committer. For the api's creations under load.
pub async fn create<A: Aggregate>(
    committer: &GroupCommitter,
    id: Uuid,
    command: A::Command,
    metadata: EventMetadata,
) -> Result<Vec<RecordedEvent>, ExecuteError<A::Rejection>> {
    execute_loaded(committer, id, &mut (A::default(), 0), command, metadata).await
}
