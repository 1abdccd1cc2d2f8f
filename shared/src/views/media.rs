//! Media items as the api shows them (`GET /v1/media/{id}`, with a fresh signed URL when ready)
//! and webhook messages carry them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Config;
use crate::domain::media::MediaKind;
use crate::domain::media_item::MediaStatus;
use crate::media::signing;

/// A media item: what its bytes are, and where a platform can fetch them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Media)]
pub struct MediaView {
    pub id: Uuid,
    /// `image` or `video`; absent until an import has stored the object.
    #[schema(value_type = Option<String>, example = "image")]
    pub kind: Option<MediaKind>,
    /// Sniffed from the bytes, e.g. `image/png`.
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    /// Lowercase hex SHA-256 of the object.
    pub sha256: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// A video's duration, where its container says.
    pub duration_ms: Option<i64>,
    pub frame_rate: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// `importing`, `ready` or `failed`.
    #[schema(value_type = String, example = "ready")]
    pub status: MediaStatus,
    /// For an import: the URL it was fetched from.
    pub source_url: Option<String>,
    /// For a failed import: why.
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When `ready`: a signed URL of the bytes, valid for the configured lifetime (fetch the
    /// item again for a fresh one).
    pub url: Option<String>,
}

/// A `media` row as the views read it.
pub struct MediaRow {
    pub id: Uuid,
    pub kind: Option<MediaKind>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    pub frame_rate: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub status: MediaStatus,
    pub source_url: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MediaRow {
    /// The view, with a signed URL when the bytes can be served.
    pub fn view(self, config: &Config, url_key: &[u8]) -> MediaView {
        let url = (self.status == MediaStatus::Ready).then(|| {
            let lifetime = config.media.url_lifetime();
            signing::content_url(&config.public_url(), url_key, self.id, lifetime, Utc::now().timestamp())
        });
        MediaView {
            id: self.id,
            kind: self.kind,
            content_type: self.content_type,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            width: self.width,
            height: self.height,
            duration_ms: self.duration_ms,
            frame_rate: self.frame_rate,
            video_codec: self.video_codec,
            audio_codec: self.audio_codec,
            status: self.status,
            source_url: self.source_url,
            failure_reason: self.failure_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            url,
        }
    }
}

/// The media items of `ids` of `project_id` (deleted ones left out), reach aside.
pub async fn load_many(pool: &PgPool, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<MediaRow>, sqlx::Error> {
    sqlx::query_as!(
        MediaRow,
        r#"SELECT id, kind AS "kind: MediaKind", content_type, size_bytes, sha256, width, height, duration_ms, frame_rate,
                  video_codec, audio_codec, status AS "status: MediaStatus", source_url, failure_reason, created_at, updated_at
           FROM media WHERE id = ANY($1) AND project_id = $2 AND deleted_at IS NULL"#,
        ids,
        project_id,
    )
    .fetch_all(pool)
    .await
}
