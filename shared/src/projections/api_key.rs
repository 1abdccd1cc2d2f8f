//! `api_keys` from the key stream.

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::api_key::Event;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Created(spec) => {
            let key_hash = hex::decode(&spec.key_hash).map_err(|_| ProjectionError::Invalid("key_hash is not hex"))?;
            sqlx::query!(
                "INSERT INTO api_keys (id, project_id, name, description, prefix, key_hash, environment, scopes, platforms,
                                       accounts, expires_at, requests_per_minute, requests_per_day, allowed_ips,
                                       allowed_origins, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                id,
                spec.project_id,
                spec.name,
                spec.description,
                spec.prefix,
                key_hash,
                spec.environment.as_str(),
                &spec.scopes,
                spec.platforms.as_deref(),
                spec.accounts.as_deref(),
                spec.expires_at,
                spec.requests_per_minute,
                spec.requests_per_day,
                &spec.allowed_ips,
                &spec.allowed_origins,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Revoked {} => {
            sqlx::query!("UPDATE api_keys SET revoked_at = $2 WHERE id = $1", id, at).execute(tx).await?;
        }
    }
    Ok(())
}
