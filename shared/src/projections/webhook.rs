//! `webhook_endpoints` from the webhook stream. Sending state (messages, attempts, lanes) is not
//! a read model: the dispatcher and the senders keep it (`crate::webhooks`).

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::webhook::Event;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Created { project_id, settings, reach } => {
            sqlx::query!(
                "INSERT INTO webhook_endpoints (id, project_id, url, description, event_types, enabled, environment,
                                                scopes, platforms, accounts, max_in_flight, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, true, $6, $7, $8, $9, $10, $11, $11)",
                id,
                project_id,
                settings.url,
                settings.description,
                settings.event_types.as_deref(),
                reach.environment.as_str(),
                &reach.scopes,
                reach.platforms.as_deref(),
                reach.accounts.as_deref(),
                settings.max_in_flight,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Updated { settings, enabled, .. } => {
            sqlx::query!(
                "UPDATE webhook_endpoints
                 SET url = $2, description = $3, event_types = $4, max_in_flight = $5, enabled = $6,
                     disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, updated_at = $7
                 WHERE id = $1",
                id,
                settings.url,
                settings.description,
                settings.event_types.as_deref(),
                settings.max_in_flight,
                enabled,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::SecretRotated {} | Event::Tested {} => {
            sqlx::query!("UPDATE webhook_endpoints SET updated_at = $2 WHERE id = $1", id, at).execute(tx).await?;
        }
        Event::Disabled { reason } => {
            sqlx::query!(
                "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE id = $1",
                id,
                reason,
                at
            )
            .execute(tx)
            .await?;
        }
        Event::Deleted {} => {
            sqlx::query!(
                "UPDATE webhook_endpoints SET enabled = false, deleted_at = $2, updated_at = $2 WHERE id = $1",
                id,
                at
            )
            .execute(tx)
            .await?;
        }
    }
    Ok(())
}
