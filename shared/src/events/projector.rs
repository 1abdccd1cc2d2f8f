//! The seam between the log and its read models. The store and the group committer call a
//! [`Projector`] with the events they just appended, inside the append's transaction, so a read
//! model is never behind or ahead of the log. Which read models exist is not the log's business:
//! `crate::projections::ReadModels` is the one projector herald hands it.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::RecordedEvent;

/// Keeps read models in step with appended events.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Applies `events` (in log order) inside `tx`. An error aborts the append's transaction.
    async fn project(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionFailed>;
}

/// A read model could not follow an event: the append it belongs to does not happen.
#[derive(Debug, thiserror::Error)]
#[error("a read model could not follow the log: {0}")]
pub struct ProjectionFailed(#[source] pub Box<dyn std::error::Error + Send + Sync>);
