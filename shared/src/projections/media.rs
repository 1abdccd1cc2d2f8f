//! `media` from the media streams. Every timestamp is the event's, so a rebuild reproduces the
//! rows (all but `purged_at`, which the maintenance job writes: after a rebuild it sweeps the
//! deleted items once more, and deleting an object that is gone is no error).

use sqlx::PgConnection;

use super::{ProjectionError, stream_uuid};
use crate::domain::aggregate::DomainEvent;
use crate::domain::media::MediaFacts;
use crate::domain::media_item::Event;
use crate::events::RecordedEvent;

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    match Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)? {
        Event::Uploaded { project_id, environment, facts, object_key } => {
            sqlx::query!(
                "INSERT INTO media (id, project_id, environment, status, object_key, created_at, updated_at)
                 VALUES ($1, $2, $3, 'ready', $4, $5, $5)",
                id,
                project_id,
                environment.as_str(),
                object_key,
                at,
            )
            .execute(&mut *tx)
            .await?;
            set_facts(tx, id, &facts, at).await?;
        }
        Event::ImportRequested { project_id, environment, source_url, object_key } => {
            sqlx::query!(
                "INSERT INTO media (id, project_id, environment, status, object_key, source_url, created_at, updated_at)
                 VALUES ($1, $2, $3, 'importing', $4, $5, $6, $6)",
                id,
                project_id,
                environment.as_str(),
                object_key,
                source_url,
                at,
            )
            .execute(tx)
            .await?;
        }
        Event::Imported { facts } => set_facts(tx, id, &facts, at).await?,
        Event::ImportFailed { reason } => {
            sqlx::query!(
                "UPDATE media SET status = 'failed', failure_reason = $2, updated_at = $3 WHERE id = $1",
                id,
                reason,
                at
            )
            .execute(tx)
            .await?;
        }
        Event::Deleted {} => {
            sqlx::query!("UPDATE media SET deleted_at = $2, updated_at = $2 WHERE id = $1", id, at).execute(tx).await?;
        }
    }
    Ok(())
}

/// The item is stored and described: `ready`, with what its bytes said.
async fn set_facts(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    facts: &MediaFacts,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET status = 'ready', kind = $2, content_type = $3, size_bytes = $4, sha256 = $5, width = $6,
                          height = $7, duration_ms = $8, frame_rate = $9, video_codec = $10, audio_codec = $11,
                          updated_at = $12
         WHERE id = $1",
        id,
        facts.kind.as_str(),
        facts.content_type,
        facts.size_bytes,
        facts.sha256,
        facts.width,
        facts.height,
        facts.duration_ms,
        facts.frame_rate,
        facts.video_codec,
        facts.audio_codec,
        at,
    )
    .execute(tx)
    .await?;
    Ok(())
}
