//! The event log: an append-only table of events, one stream per aggregate, and the read models
//! that follow it in the same transaction.
//!
//! - [`store`] appends to a stream with optimistic concurrency and loads a stream back.
//! - [`reader`] reads the whole log (or one project's part of it) in an order that never skips
//!   an event that commits late.
//! - [`group_commit`] appends many callers' events in one transaction.
//! - [`Projector`] is how the store keeps read models current without knowing any of them: it is
//!   handed one (`crate::projections::ReadModels`) and calls it inside every append's transaction.
//!
//! Running a command on an aggregate (load, decide, append) is a use case: `crate::commands`.

pub mod group_commit;
pub mod projector;
pub mod reader;
pub mod store;

pub use group_commit::GroupCommitter;
pub use projector::{ProjectionFailed, Projector};
pub use store::{
    AppendError, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId, append, load_stream, load_streams,
};
