//! `projects` from the project stream.

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::project::Event;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Created { name } => {
            sqlx::query!(
                "INSERT INTO projects (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                id,
                name,
                at
            )
            .execute(tx)
            .await?;
        }
        Event::Renamed { name } => {
            sqlx::query!("UPDATE projects SET name = $2, updated_at = $3 WHERE id = $1", id, name, at)
                .execute(tx)
                .await?;
        }
    }
    Ok(())
}
