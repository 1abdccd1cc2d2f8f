//! `connect_sessions` from the connect stream.

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::connect_session::{Event, SessionStatus};
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    let (status, account_ids, error) =
        match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
            Event::Started(spec) => {
                let state_hash =
                    hex::decode(&spec.state_hash).map_err(|_| ProjectionError::Invalid("state_hash is not hex"))?;
                sqlx::query!(
                    "INSERT INTO connect_sessions (id, project_id, platform, app_id, redirect_uri, external_id, scopes,
                                               state_hash, status, expires_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'started', $9, $10, $10)",
                    id,
                    spec.project_id,
                    spec.platform,
                    spec.app_id,
                    spec.redirect_uri,
                    spec.external_id,
                    &spec.scopes,
                    state_hash,
                    spec.expires_at,
                    at,
                )
                .execute(tx)
                .await?;
                return Ok(());
            }
            Event::Authorized {} => (SessionStatus::Pending, None, None),
            Event::Denied { reason } => (SessionStatus::Denied, None, Some(reason)),
            Event::Completed { account_ids } => (SessionStatus::Connected, Some(account_ids), None),
            Event::Failed { reason } => (SessionStatus::Failed, None, Some(reason)),
        };
    sqlx::query!(
        "UPDATE connect_sessions
         SET status = $2, account_ids = coalesce($3, account_ids), error = coalesce($4, error), updated_at = $5
         WHERE id = $1",
        id,
        status.as_str(),
        account_ids.as_deref(),
        error,
        at,
    )
    .execute(tx)
    .await?;
    Ok(())
}
