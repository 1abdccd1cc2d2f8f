//! The media store: objects streamed into the local filesystem or an S3-compatible store
//! (`object_store`), with what herald needs to know about each read from the bytes as they pass.
//!
//! Nothing here holds a whole object in memory: [`MediaStore::ingest`] hashes, counts and copies
//! each chunk into a part as it arrives (parts of [`PART_SIZE`], two in flight and one filling,
//! reused through the upload), keeping only the first [`HEAD_BYTES`] for sniffing and header
//! metadata; an mp4's `moov`, which may sit at the end, is read back afterwards with ranged reads;
//! [`MediaStore::read`] streams a local object in [`READ_CHUNK`]s. Whatever fails, the partial object is removed, so an
//! upload that dies half-way leaves nothing behind (also when the caller's future is dropped).

mod ingest;
pub mod metadata;
pub mod samples;
pub mod signing;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use crate::config::{Config, ConfigError, MediaSettings, MediaStoreKind};
use crate::domain::media::{MediaFacts, MediaKind};

/// The size of each part written to the store (S3's minimum part size, so the store's memory per
/// upload stays a few parts).
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// How much of an object's start is kept in memory for sniffing and for the header metadata of
/// images and webm (whose `Info` and `Tracks` come before the first cluster).
pub const HEAD_BYTES: usize = 1024 * 1024;
/// The chunk a local object is read in: few thread hops per download, and little held by each
/// (at most medium-sized for the allocator, so the chunks reuse its pages).
pub const READ_CHUNK: usize = 128 * 1024;

/// Why an object was not stored. Each variant is the caller's answer to give: the api maps
/// [`IngestError::TooLarge`] to 413 and [`IngestError::Unsupported`] to 422.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Over the limit for its kind (or, for a part, over the largest any kind takes).
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Not a type herald takes; holds the sniffed content type, or `unknown`.
    #[error("unsupported media type: {0}")]
    Unsupported(String),
    /// A supported type whose container could not be read (an mp4 with no `moov`, ...).
    #[error("unreadable {content_type}: {problem}")]
    Malformed { content_type: String, problem: String },
    /// No bytes at all.
    #[error("the body is empty")]
    Empty,
    /// A part [`MediaStore::complete`] was asked to join was never sent.
    #[error("part {0} was not uploaded")]
    MissingPart(u32),
    /// The body stream failed (the client went away, an import's fetch broke off).
    #[error("reading the body failed: {0}")]
    Source(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// The largest object of each kind [`MediaStore::ingest`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    pub max_image_bytes: u64,
    pub max_video_bytes: u64,
}

impl MediaLimits {
    /// The limits `HERALD_MEDIA__MAX_*_BYTES` set.
    pub fn from_settings(settings: &MediaSettings) -> Self {
        Self { max_image_bytes: settings.max_image_bytes, max_video_bytes: settings.max_video_bytes }
    }

    /// The limit for `kind`.
    pub fn of(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.max_image_bytes,
            MediaKind::Video => self.max_video_bytes,
        }
    }

    /// The largest anything may be: the cap on one part of a resumable upload.
    pub fn largest(&self) -> u64 {
        self.max_image_bytes.max(self.max_video_bytes)
    }
}

/// One object as listed, for the orphan sweep (which leaves young objects alone: they may be
/// uploads whose row is not written yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// The media objects. Cheap to clone: every clone shares one store.
#[derive(Debug, Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    /// Set when the store is S3, which can presign URLs and keeps a content type per object.
    s3: Option<Arc<AmazonS3>>,
}

/// A bytes stream read from the store.
pub type ObjectStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

impl MediaStore {
    /// The store `HERALD_MEDIA__*` names: `<data_dir>/media` (created if missing) or S3.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let settings = &config.media;
        match settings.store {
            MediaStoreKind::Local => {
                let dir = config.media_dir();
                let problem = |error: &dyn std::fmt::Display| ConfigError {
                    setting: "HERALD_DATA_DIR".to_owned(),
                    problem: format!("cannot use {} for media: {error}", dir.display()),
                };
                std::fs::create_dir_all(&dir).map_err(|error| problem(&error))?;
                let local = LocalFileSystem::new_with_prefix(&dir).map_err(|error| problem(&error))?;
                Ok(Self::local(local))
            }
            MediaStoreKind::S3 => Ok(Self::s3(s3_builder(settings).build().map_err(|error| ConfigError {
                setting: "HERALD_MEDIA__STORE".to_owned(),
                problem: format!("the S3 store cannot be set up: {error}"),
            })?)),
        }
    }

    /// A store over a local directory (tests build one on a temporary directory).
    pub fn local(local: LocalFileSystem) -> Self {
        Self { store: Arc::new(local.with_automatic_cleanup(true)), s3: None }
    }

    /// A store over an S3 bucket.
    pub fn s3(s3: AmazonS3) -> Self {
        let s3 = Arc::new(s3);
        Self { store: Arc::clone(&s3) as Arc<dyn ObjectStore>, s3: Some(s3) }
    }

    /// Reads `key`, or the bytes `range` of it; also answers the whole object's size (for
    /// `Content-Range` and `Content-Length`). A range past the end is the store's error.
    pub async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<(ObjectStream, u64), object_store::Error> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&Path::from(key), options).await?;
        let size = result.meta.size;
        let stream = match result.payload {
            GetResultPayload::File(file, path) => read_file(file, path, result.range),
            GetResultPayload::Stream(stream) => stream,
        };
        Ok((stream, size))
    }

    /// The size of `key`, without reading it.
    pub async fn size(&self, key: &str) -> Result<u64, object_store::Error> {
        Ok(self.store.head(&Path::from(key)).await?.size)
    }

    /// Removes `key`; removing what is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), object_store::Error> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Every object under `prefix` (all of them for `""`), for the orphan sweep.
    pub fn list_keys(&self, prefix: &str) -> BoxStream<'static, Result<StoredObject, object_store::Error>> {
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        self.store
            .list(prefix.as_ref())
            .map_ok(|meta| StoredObject {
                key: meta.location.to_string(),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .boxed()
    }

    /// A presigned `GET` URL for `key`, valid for `lifetime`, when the store is S3 (platforms then
    /// fetch from the bucket directly); `None` for the local store, whose objects herald serves
    /// itself at a [`signing::content_url`].
    pub async fn presigned_get(&self, key: &str, lifetime: Duration) -> Option<Result<url::Url, object_store::Error>> {
        let s3 = self.s3.as_ref()?;
        Some(s3.signed_url(Method::GET, &Path::from(key), lifetime).await)
    }

    /// Where part `part` of resumable upload `upload` is kept until [`MediaStore::complete`].
    pub fn part_key(upload: Uuid, part: u32) -> String {
        format!("uploads/{upload}/{part}")
    }

    /// Stores one part of a resumable upload (its own object; sending a part again replaces it).
    /// Answers its size. Parts are not sniffed: the joined object is, at completion.
    pub async fn put_part<S, E>(
        &self,
        upload: Uuid,
        part: u32,
        body: S,
        limits: &MediaLimits,
    ) -> Result<u64, IngestError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        ingest::write_raw(self, &Self::part_key(upload, part), body, limits.largest()).await
    }

    /// Joins the parts `parts`, in that order, into `key` through [`MediaStore::ingest`] (so the
    /// whole is sniffed, limited and described), then deletes the parts. On failure the parts are
    /// kept, for another try or an [`MediaStore::abort`].
    pub async fn complete(
        &self,
        upload: Uuid,
        parts: &[u32],
        key: &str,
        limits: &MediaLimits,
    ) -> Result<MediaFacts, IngestError> {
        for &part in parts {
            match self.store.head(&Path::from(Self::part_key(upload, part))).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Err(IngestError::MissingPart(part)),
                Err(error) => return Err(error.into()),
            }
        }
        let store = Arc::clone(&self.store);
        let keys: Vec<Path> = parts.iter().map(|&part| Path::from(Self::part_key(upload, part))).collect();
        let joined = futures::stream::iter(keys)
            .then(move |path| {
                let store = Arc::clone(&store);
                async move { store.get(&path).await.map(|result| result.into_stream()) }
            })
            .try_flatten()
            .boxed();
        let facts = self.ingest(key, joined, limits).await?;
        self.abort(upload).await;
        Ok(facts)
    }

    /// Deletes every part of `upload`. Best effort: what it misses, the orphan sweep finds.
    pub async fn abort(&self, upload: Uuid) {
        let prefix = Path::from(format!("uploads/{upload}"));
        let found: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .filter_map(|meta| async move { meta.ok() })
            .map(|meta| meta.location)
            .collect()
            .await;
        for path in found {
            if let Err(error) = self.store.delete(&path).await {
                tracing::warn!(%upload, %error, "could not delete an upload part");
            }
        }
    }

    /// Streams `body` into the object at `key`, sniffing its type from the first bytes, refusing
    /// an unsupported type or a body over its kind's limit, and reading its metadata. On any
    /// failure nothing is left at `key`.
    pub async fn ingest<S, E>(&self, key: &str, body: S, limits: &MediaLimits) -> Result<MediaFacts, IngestError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        ingest::ingest(self, key, body, limits).await
    }
}

/// Streams the bytes `range` of a local object in [`READ_CHUNK`]s, each read on the blocking
/// pool (`object_store`'s own local stream reads 8 KiB per hop, too slow for a video).
fn read_file(file: std::fs::File, path: std::path::PathBuf, range: Range<u64>) -> ObjectStream {
    let failed = move |path: &std::path::Path, error: std::io::Error| object_store::Error::Generic {
        store: "media",
        source: format!("cannot read {}: {error}", path.display()).into(),
    };
    futures::stream::try_unfold((file, path, range.start, true), move |(mut file, path, at, first)| async move {
        if at >= range.end {
            return Ok(None);
        }
        let want = (range.end - at).min(READ_CHUNK as u64);
        // The buffer is allocated here, on a runtime thread, not in the blocking closure: an
        // allocator with per-thread heaps (mimalloc) otherwise keeps pages in each of the
        // dozens of blocking threads that many concurrent reads spread over, and a worker
        // streaming 64 uploads held tens of MB that way.
        let mut chunk = vec![0; usize::try_from(want).unwrap_or(READ_CHUNK)];
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            if first && let Err(error) = file.seek(SeekFrom::Start(at)) {
                return Err(failed(&path, error));
            }
            match file.read_exact(&mut chunk) {
                Ok(()) => Ok(Some((Bytes::from(chunk), (file, path, at + want, false)))),
                Err(error) => Err(failed(&path, error)),
            }
        })
        .await
        .map_err(|error| object_store::Error::Generic { store: "media", source: Box::new(error) })?
    })
    .boxed()
}

/// The S3 client `settings` describe (without the `AWS_*` environment: herald's settings are the
/// one place to look).
fn s3_builder(settings: &MediaSettings) -> AmazonS3Builder {
    use secrecy::ExposeSecret;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(settings.bucket.clone().unwrap_or_default())
        .with_region(settings.region.clone().unwrap_or_else(|| "us-east-1".to_owned()))
        .with_virtual_hosted_style_request(!settings.path_style);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        builder = builder.with_access_key_id(id).with_secret_access_key(secret.expose_secret());
    }
    builder
}

#[cfg(test)]
mod tests;
