//! What herald knows about a stored media object: its kind and the facts read from its bytes.
//! Pure values: the store (`crate::media`) fills them in at ingest, the media rows keep them, and
//! each platform's rules check a post's media against them.

use serde::{Deserialize, Serialize};

/// Image or video, stored as text (`media.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
        }
    }

    /// The kind a sniffed content type belongs to, if herald takes that type at all. The list is
    /// what the platforms herald publishes to accept (JPEG, PNG, GIF, WebP; MP4, QuickTime, WebM).
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        match content_type {
            "image/jpeg" | "image/png" | "image/gif" | "image/webp" => Some(MediaKind::Image),
            "video/mp4" | "video/quicktime" | "video/x-m4v" | "video/webm" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// The facts of one stored object, all read from its bytes (never from a file name or a header
/// the client sent). A video's fields are `None` where its container does not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    pub kind: MediaKind,
    /// The sniffed type, e.g. `image/png`.
    pub content_type: String,
    pub size_bytes: i64,
    /// Lowercase hex SHA-256 of the whole object.
    pub sha256: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    pub frame_rate: Option<f64>,
    /// The container's codec name, e.g. `avc1`, `hvc1`, `V_VP9`.
    pub video_codec: Option<String>,
    /// e.g. `mp4a`, `A_OPUS`.
    pub audio_codec: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_sniffed_type() {
        assert_eq!(MediaKind::of_content_type("image/webp"), Some(MediaKind::Image));
        assert_eq!(MediaKind::of_content_type("video/quicktime"), Some(MediaKind::Video));
        assert_eq!(MediaKind::of_content_type("application/pdf"), None);
        assert_eq!(serde_json::to_string(&MediaKind::Video).unwrap(), "\"video\"");
        assert_eq!(MediaKind::Image.as_str(), "image");
    }
}
