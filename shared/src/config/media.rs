//! Where media objects live and how large they may be (`HERALD_MEDIA__*`).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which object store holds media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    /// Files under `<data_dir>/media`: nothing to set up, one machine only.
    #[default]
    Local,
    /// Any S3-compatible store (AWS, MinIO, R2, ...), so several api and worker machines share it.
    S3,
}

/// The media settings (`HERALD_MEDIA__STORE`, `HERALD_MEDIA__BUCKET`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSettings {
    /// `local` (default) or `s3`.
    pub store: MediaStoreKind,
    /// S3: the bucket (required with `store = s3`).
    pub bucket: Option<String>,
    /// S3: the region; `us-east-1` when unset, which most S3-compatible servers accept.
    pub region: Option<String>,
    /// S3: the endpoint of a non-AWS server, e.g. `http://127.0.0.1:9000`. `http://` is allowed
    /// only here, for a store on the same network.
    pub endpoint: Option<String>,
    /// S3: the access key id; unset takes the usual `AWS_*` environment and instance credentials.
    pub access_key_id: Option<String>,
    /// S3: the secret key. Never serialized or logged.
    #[serde(skip_serializing)]
    pub secret_access_key: Option<SecretString>,
    /// S3: address the bucket as `<endpoint>/<bucket>` rather than `<bucket>.<endpoint>` (MinIO
    /// and most self-hosted servers want this).
    pub path_style: bool,
    /// The largest image accepted, in bytes. 20 MiB: the largest any target platform takes
    /// (Pinterest's 20 MB); smaller platform limits are checked per post.
    pub max_image_bytes: u64,
    /// The largest video accepted, in bytes (1 GiB).
    pub max_video_bytes: u64,
    /// How long a signed media URL (herald's own or an S3 presigned one) stays valid, in seconds.
    /// Long enough for a platform to fetch after a publish is queued; at most 7 days (S3's cap).
    pub url_lifetime_seconds: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            store: MediaStoreKind::Local,
            bucket: None,
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            max_image_bytes: 20 * 1024 * 1024,
            max_video_bytes: 1024 * 1024 * 1024,
            url_lifetime_seconds: 60 * 60,
        }
    }
}

impl MediaSettings {
    /// How long signed URLs live.
    pub fn url_lifetime(&self) -> Duration {
        Duration::from_secs(self.url_lifetime_seconds)
    }

    /// Checks what types alone cannot, naming the variable to fix.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.store == MediaStoreKind::S3 && self.bucket.as_deref().is_none_or(|bucket| bucket.trim().is_empty()) {
            return Err(ConfigError::new("HERALD_MEDIA__BUCKET", "required when HERALD_MEDIA__STORE is s3"));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new("HERALD_MEDIA__ENDPOINT", "expected an http:// or https:// URL"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            let missing = if self.access_key_id.is_none() {
                "HERALD_MEDIA__ACCESS_KEY_ID"
            } else {
                "HERALD_MEDIA__SECRET_ACCESS_KEY"
            };
            return Err(ConfigError::new(missing, "set both the access key id and the secret access key, or neither"));
        }
        if self.max_image_bytes == 0 {
            return Err(ConfigError::new("HERALD_MEDIA__MAX_IMAGE_BYTES", "must be at least 1"));
        }
        if self.max_video_bytes == 0 {
            return Err(ConfigError::new("HERALD_MEDIA__MAX_VIDEO_BYTES", "must be at least 1"));
        }
        if !(60..=7 * 24 * 60 * 60).contains(&self.url_lifetime_seconds) {
            return Err(ConfigError::new(
                "HERALD_MEDIA__URL_LIFETIME_SECONDS",
                "must be between 60 and 604800 (7 days)",
            ));
        }
        Ok(())
    }
}
