//! The media library's use cases: recording an uploaded item, and deleting one unless a post
//! still needs it. The item itself is `crate::domain::media_item`; its bytes are `crate::media`.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{ExecuteError, execute};
use crate::domain::api_key::Environment;
use crate::domain::media::MediaFacts;
use crate::domain::media_item::{Command, Media, Rejection};
use crate::events::EventMetadata;

/// Why [`delete`] did not delete.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// A post that has not finished publishing uses the item.
    #[error("a post that has not finished publishing uses this media item")]
    InUse,
    #[error(transparent)]
    Failed(#[from] ExecuteError<Rejection>),
}

impl From<sqlx::Error> for DeleteError {
    fn from(error: sqlx::Error) -> Self {
        DeleteError::Failed(ExecuteError::Database(error))
    }
}

/// Records item `id` of `project_id`, whose object an upload stored at `object_key`. In the
/// caller's transaction: if it fails, the caller deletes the object.
pub async fn record_upload(
    tx: &mut PgConnection,
    id: Uuid,
    project_id: Uuid,
    environment: Environment,
    facts: MediaFacts,
    object_key: String,
    metadata: &EventMetadata,
) -> Result<(), ExecuteError<Rejection>> {
    let command = Command::Upload { project_id, environment, facts, object_key };
    execute::<Media>(tx, id, command, metadata).await?;
    Ok(())
}

/// Deletes item `id` (soft: it is no longer listed or served; the maintenance job removes its
/// object), unless [`media_in_use`]. The item's row is locked first, so a post that attaches it
/// (and locks it `FOR SHARE`) either commits before and is seen here, or waits and then finds
/// it deleted.
pub async fn delete(tx: &mut PgConnection, id: Uuid, metadata: &EventMetadata) -> Result<(), DeleteError> {
    sqlx::query!("SELECT id FROM media WHERE id = $1 FOR UPDATE", id).fetch_optional(&mut *tx).await?;
    if media_in_use(tx, id).await? {
        return Err(DeleteError::InUse);
    }
    execute::<Media>(tx, id, Command::Delete, metadata).await?;
    Ok(())
}

/// Whether a post that has not finished publishing uses item `media_id`. Reads `post_media`
/// (kept by the post projection): a row on the post itself (`delivery_id` NULL) counts while
/// the post is a draft, awaiting approval, scheduled or publishing; a row on one target counts
/// while that delivery is pending, queued or publishing.
pub async fn media_in_use(tx: &mut PgConnection, media_id: Uuid) -> Result<bool, sqlx::Error> {
    let in_use = sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM post_media m JOIN posts p ON p.id = m.post_id
               LEFT JOIN deliveries d ON d.id = m.delivery_id
               WHERE m.media_id = $1
                 AND CASE WHEN m.delivery_id IS NULL
                          THEN p.status IN ('draft', 'pending_approval', 'scheduled', 'publishing')
                          ELSE d.status IN ('pending', 'queued', 'publishing') END
           ) AS "in_use!""#,
        media_id
    )
    .fetch_one(tx)
    .await?;
    Ok(in_use)
}
