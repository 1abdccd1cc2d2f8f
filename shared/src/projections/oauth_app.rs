//! `oauth_apps` from the app stream.

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::oauth_app::Event;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Registered { project_id, platform, name, image_url, client_id } => {
            sqlx::query!(
                "INSERT INTO oauth_apps (id, project_id, platform, name, image_url, client_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                id,
                project_id,
                platform,
                name,
                image_url,
                client_id,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Updated { name, image_url, .. } => {
            sqlx::query!(
                "UPDATE oauth_apps SET name = $2, image_url = $3, updated_at = $4 WHERE id = $1",
                id,
                name,
                image_url,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Deleted {} => {
            sqlx::query!("UPDATE oauth_apps SET deleted_at = $2, updated_at = $2 WHERE id = $1", id, at)
                .execute(tx)
                .await?;
        }
    }
    Ok(())
}
