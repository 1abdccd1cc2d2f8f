//! Use cases: what a route, a job or the CLI calls to change something. Each runs a command on an
//! aggregate and, in the same transaction, whatever the change causes (read models, jobs).
//!
//! - [`execute`]: load, decide, append, project, all in the caller's transaction, so a read after
//!   a write sees it and no write happens twice.
//! - [`execute_loaded`]: the same for many concurrent writers: each decides on the state it
//!   loaded ([`load_many`] reads many streams in one query) and appends through the
//!   [`GroupCommitter`], so a busy worker's jobs share transactions.
//! - [`deliveries`]: queueing the publish jobs of deliveries that became due.
//! - [`posts`]: checking a new post's targets and content before it is created.
//! - [`keys`]: projects and their API keys.
//! - [`media`]: recording uploaded media, and deleting media no unfinished post needs.
//! - [`abandoned`]: ending the deliveries and connect sessions whose job ended without an outcome.

pub mod abandoned;
pub mod deliveries;
pub mod keys;
pub mod media;
pub mod posts;

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::aggregate::{Aggregate, DomainEvent};
use crate::events::{
    AppendError, EventMetadata, ExpectedVersion, GroupCommitter, NewEvent, ProjectionFailed, RecordedEvent, StreamId,
    append, load_stream, load_streams,
};
use crate::projections::ReadModels;

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
    #[error(transparent)]
    Projection(#[from] ProjectionFailed),
    /// The log holds something that is not this aggregate's (a stream name of another shape),
    /// or lost an event it was given.
    #[error("the event log is inconsistent: {0}")]
    Inconsistent(String),
    /// The group committer stopped (shutting down).
    #[error("the group committer stopped")]
    Stopped,
}

impl<R: std::error::Error> From<AppendError> for ExecuteError<R> {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict { stream, expected, actual } => ExecuteError::Conflict { stream, expected, actual },
            AppendError::Database(error) => ExecuteError::Database(error),
            AppendError::Encode(error) => ExecuteError::Decode(error),
            AppendError::Projection(error) => ExecuteError::Projection(error),
            AppendError::Lost => ExecuteError::Inconsistent("an appended event was lost".into()),
            AppendError::Stopped => ExecuteError::Stopped,
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
    let stream = StreamId::of::<A>(id);
    let (state, version) = load::<A>(tx, id).await?;
    let events = state.decide(command).map_err(ExecuteError::Rejected)?;
    let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    if events.is_empty() {
        return Ok(Executed { state, events, version });
    }
    let recorded = append(tx, &ReadModels, &stream, expected, &events, metadata).await?;
    let state = events.iter().fold(state, A::evolve);
    let version = recorded.last().map_or(version, |event| event.version);
    Ok(Executed { state, events, version })
}

/// The current state and version of aggregate `id`.
pub async fn load<A: Aggregate>(tx: &mut PgConnection, id: Uuid) -> Result<(A, i64), ExecuteError<A::Rejection>> {
    let mut state = A::default();
    let mut version = 0;
    for stored in load_stream(tx, &StreamId::of::<A>(id)).await? {
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
    let streams: Vec<String> = ids.iter().map(|id| StreamId::of::<A>(*id).to_string()).collect();
    let mut loaded: HashMap<Uuid, (A, i64)> = ids.iter().map(|id| (*id, (A::default(), 0))).collect();
    for stored in load_streams(tx, &streams).await? {
        let id = StreamId::parse(&stored.stream_id)
            .filter(|(kind, _)| *kind == A::KIND)
            .map(|(_, id)| id)
            .ok_or_else(|| ExecuteError::Inconsistent(format!("stream {} is not a {}", stored.stream_id, A::KIND)))?;
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
    let encoded = events.iter().map(NewEvent::encode).collect::<Result<Vec<_>, _>>()?;
    let expected = if current.1 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(current.1) };
    let recorded = committer.append(StreamId::of::<A>(id), expected, encoded, metadata).await?;
    current.0 = events.iter().fold(std::mem::take(&mut current.0), A::evolve);
    current.1 = recorded.last().map_or(current.1, |event| event.version);
    Ok(recorded)
}
