//! The shape of every aggregate: a pure `decide(&State, Command) -> Result<Vec<Event>, Rejection>`
//! and `evolve(State, &Event) -> State`, and events that carry a stable type name and schema
//! version so that events written by older code still load. The event store (`crate::events`)
//! stores and loads them; nothing here does I/O.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
