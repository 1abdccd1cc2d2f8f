//! `accounts` from the account stream.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ProjectionError, stream_uuid};
use crate::domain::account::{Event, Grant};
use crate::domain::aggregate::DomainEvent;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Connected(grant) => insert_connected(tx, id, &grant, at).await?,
        Event::Reconnected(grant) => update_reconnected(tx, id, &grant, at).await?,
        Event::TokenRefreshed { expires_at } => {
            sqlx::query!(
                "UPDATE accounts SET status = 'connected', expires_at = $2, last_refresh_at = $3, last_error = NULL,
                        updated_at = $3
                 WHERE id = $1",
                id,
                expires_at,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::RefreshFailed { reason } => {
            sqlx::query!("UPDATE accounts SET last_error = $2, updated_at = $3 WHERE id = $1", id, reason, at)
                .execute(tx)
                .await?;
        }
        Event::NeedsReconnect { reason } => {
            sqlx::query!(
                "UPDATE accounts SET status = 'needs_reconnect', last_error = $2, updated_at = $3 WHERE id = $1",
                id,
                reason,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Disconnected {} => {
            sqlx::query!("UPDATE accounts SET status = 'disconnected', updated_at = $2 WHERE id = $1", id, at)
                .execute(tx)
                .await?;
        }
        Event::Updated { external_id } => {
            sqlx::query!("UPDATE accounts SET external_id = $2, updated_at = $3 WHERE id = $1", id, external_id, at)
                .execute(tx)
                .await?;
        }
    }
    Ok(())
}

/// A new account, connected.
async fn insert_connected(
    tx: &mut PgConnection,
    id: Uuid,
    grant: &Grant,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO accounts (id, project_id, platform, platform_user_id, kind, username, display_name,
                               external_id, app_id, status, scopes, expires_at, connected_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'connected', $10, $11, $12, $12)",
        id,
        grant.project_id,
        grant.platform,
        grant.platform_user_id,
        grant.kind,
        grant.username,
        grant.display_name,
        grant.external_id,
        grant.app_id,
        &grant.scopes,
        grant.expires_at,
        at,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// An account connected again: its grant replaces what was known.
async fn update_reconnected(
    tx: &mut PgConnection,
    id: Uuid,
    grant: &Grant,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE accounts SET status = 'connected', kind = $2, username = $3, display_name = $4,
                external_id = coalesce($5, external_id), app_id = $6, scopes = $7, expires_at = $8,
                last_error = NULL, connected_at = $9, updated_at = $9
         WHERE id = $1",
        id,
        grant.kind,
        grant.username,
        grant.display_name,
        grant.external_id,
        grant.app_id,
        &grant.scopes,
        grant.expires_at,
        at,
    )
    .execute(tx)
    .await?;
    Ok(())
}
