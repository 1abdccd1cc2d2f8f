//! Streaming a body into the store: sniff, count, hash, write, and clean up on every failure.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{HEAD_BYTES, IngestError, MediaLimits, MediaStore, PART_SIZE, metadata};
use crate::domain::media::{MediaFacts, MediaKind};

/// How many bytes are gathered before the type is sniffed (every signature `infer` knows for the
/// types herald takes sits in the first few hundred).
const SNIFF_BYTES: usize = 8 * 1024;
/// Parts in flight at once per upload.
const CONCURRENCY: usize = 2;

/// What was written, before the metadata is read.
pub(super) struct Written {
    pub size: u64,
    pub sha256: String,
    /// The first [`HEAD_BYTES`] of the object.
    pub head: Vec<u8>,
}

/// An object being written. Dropped before [`Pending::keep`], it aborts the upload (and, once
/// [`Pending::finish`] has begun, deletes the key) in the background, so a caller that gives up
/// (a dropped request) leaves nothing. Until the upload completes nothing is visible at the key,
/// so a part sent again that fails leaves the part sent before.
struct Pending {
    store: Arc<dyn ObjectStore>,
    path: Path,
    writer: Option<BufWriter>,
    finishing: bool,
    kept: bool,
}

impl Pending {
    fn new(store: &Arc<dyn ObjectStore>, path: Path, content_type: Option<&str>) -> Self {
        let mut writer =
            BufWriter::with_capacity(Arc::clone(store), path.clone(), PART_SIZE).with_max_concurrency(CONCURRENCY);
        if let Some(content_type) = content_type {
            let attributes = Attributes::from_iter([(Attribute::ContentType, content_type.to_owned())]);
            writer = writer.with_attributes(attributes);
        }
        Self { store: Arc::clone(store), path, writer: Some(writer), finishing: false, kept: false }
    }

    async fn put(&mut self, bytes: Bytes) -> Result<(), IngestError> {
        match self.writer.as_mut() {
            Some(writer) => Ok(writer.put(bytes).await?),
            None => Err(IngestError::Store(object_store::Error::Generic {
                store: "media",
                source: "the writer is already finished".into(),
            })),
        }
    }

    /// Completes the object; it stays, unless [`Pending`] is dropped before [`Pending::keep`].
    async fn finish(&mut self) -> Result<(), IngestError> {
        // Out of `self` first: a writer dropped mid-shutdown must not be aborted afterwards.
        let Some(mut writer) = self.writer.take() else { return Ok(()) };
        self.finishing = true;
        writer.shutdown().await.map_err(|error| {
            IngestError::Store(object_store::Error::Generic { store: "media", source: Box::new(error) })
        })
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (store, path, writer, finishing) =
            (Arc::clone(&self.store), self.path.clone(), self.writer.take(), self.finishing);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Some(mut writer) = writer {
                let _ = writer.abort().await;
            }
            if !finishing {
                return;
            }
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(%path, %error, "could not remove a partial media object"),
            }
        });
    }
}

/// Sniffs, streams and describes `body` into `key` (see [`MediaStore::ingest`]).
pub(super) async fn ingest<S, E>(
    media: &MediaStore,
    key: &str,
    mut body: S,
    limits: &MediaLimits,
) -> Result<MediaFacts, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let first = gather(&mut body, SNIFF_BYTES).await?;
    if first.is_empty() {
        return Err(IngestError::Empty);
    }
    let content_type = sniff(&first)?;
    let kind = MediaKind::of_content_type(content_type).ok_or_else(|| IngestError::Unsupported(content_type.into()))?;
    let limit = limits.of(kind);
    let s3_type = media.s3.is_some().then_some(content_type);
    let mut pending = Pending::new(&media.store, Path::from(key), s3_type);
    let written = stream(&mut pending, Bytes::from(first), body, limit).await?;
    pending.finish().await?;
    let facts = metadata::describe(media, key, kind, content_type, written).await?;
    pending.keep();
    Ok(facts)
}

/// Streams `body` into `key` as it is, up to `limit` bytes, and answers its size (the parts of a
/// resumable upload).
pub(super) async fn write_raw<S, E>(media: &MediaStore, key: &str, body: S, limit: u64) -> Result<u64, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let mut pending = Pending::new(&media.store, Path::from(key), None);
    let written = stream(&mut pending, Bytes::new(), body, limit).await?;
    if written.size == 0 {
        return Err(IngestError::Empty);
    }
    pending.finish().await?;
    pending.keep();
    Ok(written.size)
}

/// The first chunks of `body`, at least `want` bytes of them unless the body is shorter.
async fn gather<S, E>(body: &mut S, want: usize) -> Result<Vec<u8>, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut gathered = Vec::new();
    while gathered.len() < want {
        match body.next().await {
            Some(Ok(chunk)) => gathered.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(IngestError::Source(error.to_string())),
            None => break,
        }
    }
    Ok(gathered)
}

/// The content type the bytes say they are; never a name or a header.
pub(super) fn sniff(first: &[u8]) -> Result<&'static str, IngestError> {
    let found = infer::get(first).map(|kind| kind.mime_type()).unwrap_or("unknown");
    match MediaKind::of_content_type(found) {
        Some(_) => Ok(found),
        None => Err(IngestError::Unsupported(found.to_owned())),
    }
}

/// Writes `first` then the rest of `body`, counting and hashing, stopping past `limit`.
async fn stream<S, E>(pending: &mut Pending, first: Bytes, mut body: S, limit: u64) -> Result<Written, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::new();
    let mut next = (!first.is_empty()).then_some(first);
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => return Err(IngestError::Source(error.to_string())),
                None => break,
            },
        };
        size += chunk.len() as u64;
        if size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        hasher.update(&chunk);
        if head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if !chunk.is_empty() {
            pending.put(chunk).await?;
        }
    }
    Ok(Written { size, sha256: hex::encode(hasher.finalize()), head })
}
