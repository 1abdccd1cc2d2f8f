//! Streaming a body into the store: sniff, count, hash, write, and clean up on every failure.
//!
//! Memory: each chunk of the body is copied into a part buffer of exactly [`PART_SIZE`] and
//! dropped at once, so the buffers of hyper and multer are reused rather than pinned by parts
//! waiting to be written; a part sent to the store goes back to the upload's pool when the store
//! lets go of it. An upload holds at most one part being filled plus [`CONCURRENCY`] in flight,
//! allocated once at their full size (so no discarded growth steps stay resident; an object
//! smaller than one part touches only its own size of its buffer).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::{HEAD_BYTES, IngestError, MediaLimits, MediaStore, PART_SIZE, metadata};
use crate::domain::media::{MediaFacts, MediaKind};

/// How many bytes are gathered before the type is sniffed (every signature `infer` knows for the
/// types herald takes sits in the first few hundred).
const SNIFF_BYTES: usize = 8 * 1024;
/// Parts in flight at once per upload (one more is being filled meanwhile).
const CONCURRENCY: usize = 2;

/// What was written, before the metadata is read.
pub(super) struct Written {
    pub size: u64,
    pub sha256: String,
    /// The first [`HEAD_BYTES`] of the object.
    pub head: Vec<u8>,
}

/// The part buffers of one upload that the store has let go of, for the next part to reuse.
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// A full part handed to the store; its buffer goes back to the pool when the store drops the
/// last `Bytes` of it (on whichever thread).
struct Lent {
    buffer: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(buffer);
    }
}

/// An object being written: parts of [`PART_SIZE`] through a multipart upload (begun when the
/// first part is full; an object smaller than that is one put at [`Pending::finish`]). Dropped
/// before [`Pending::keep`], it aborts the upload (and, once [`Pending::finish`] has begun,
/// deletes the key) in the background, so a caller that gives up (a dropped request) leaves
/// nothing. Until the upload completes nothing is visible at the key, so a part sent again that
/// fails leaves the part sent before.
struct Pending {
    store: Arc<dyn ObjectStore>,
    path: Path,
    attributes: Attributes,
    /// The part being filled.
    filling: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: JoinSet<object_store::Result<()>>,
    pool: Pool,
    finishing: bool,
    kept: bool,
}

impl Pending {
    fn new(store: &Arc<dyn ObjectStore>, path: Path, content_type: Option<&str>) -> Self {
        let attributes = content_type
            .map(|content_type| Attributes::from_iter([(Attribute::ContentType, content_type.to_owned())]))
            .unwrap_or_default();
        Self {
            store: Arc::clone(store),
            path,
            attributes,
            filling: Vec::new(),
            upload: None,
            in_flight: JoinSet::new(),
            pool: Pool::default(),
            finishing: false,
            kept: false,
        }
    }

    /// Copies `bytes` into the part being filled, sending each part that fills up.
    async fn put(&mut self, mut bytes: &[u8]) -> Result<(), IngestError> {
        if self.finishing {
            return Err(store_error("the writer is already finished"));
        }
        while !bytes.is_empty() {
            let take = (PART_SIZE - self.filling.len()).min(bytes.len());
            self.make_room(take);
            self.filling.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.filling.len() == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Room for `more` bytes in the part being filled: a buffer from the pool, or a new one of a
    /// whole part (reserved, not touched: only what is written becomes resident). Never grown by
    /// doubling, whose discarded steps the allocator would keep resident.
    fn make_room(&mut self, more: usize) {
        if self.filling.len() + more <= self.filling.capacity() {
            return;
        }
        if !self.filling.is_empty() {
            // Not reached: every buffer holds a whole part.
            self.filling.reserve_exact(more);
            return;
        }
        let recycled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        self.filling = recycled.unwrap_or_else(|| Vec::with_capacity(PART_SIZE));
    }

    /// Hands the full part to the store, once fewer than [`CONCURRENCY`] are in flight.
    async fn send_part(&mut self) -> Result<(), IngestError> {
        if self.upload.is_none() {
            let options = PutMultipartOptions { attributes: self.attributes.clone(), ..PutMultipartOptions::default() };
            self.upload = Some(self.store.put_multipart_opts(&self.path, options).await?);
        }
        while self.in_flight.len() >= CONCURRENCY {
            self.join_one().await?;
        }
        let buffer = std::mem::take(&mut self.filling);
        let part = PutPayload::from(Bytes::from_owner(Lent { buffer, pool: Arc::clone(&self.pool) }));
        if let Some(upload) = self.upload.as_mut() {
            self.in_flight.spawn(upload.put_part(part));
        }
        Ok(())
    }

    /// Waits for one part in flight; its failure is the upload's.
    async fn join_one(&mut self) -> Result<(), IngestError> {
        match self.in_flight.join_next().await {
            Some(Ok(written)) => Ok(written?),
            Some(Err(error)) => Err(store_error(error)),
            None => Ok(()),
        }
    }

    /// Completes the object; it stays, unless [`Pending`] is dropped before [`Pending::keep`].
    async fn finish(&mut self) -> Result<(), IngestError> {
        if self.finishing {
            return Ok(());
        }
        self.finishing = true;
        let last = std::mem::take(&mut self.filling);
        if self.upload.is_none() {
            let options = PutOptions { attributes: self.attributes.clone(), ..PutOptions::default() };
            self.store.put_opts(&self.path, PutPayload::from(Bytes::from(last)), options).await?;
            return Ok(());
        }
        if !last.is_empty()
            && let Some(upload) = self.upload.as_mut()
        {
            self.in_flight.spawn(upload.put_part(PutPayload::from(Bytes::from(last))));
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            upload.complete().await?;
        }
        // Completed: nothing is left to abort (a failure after this deletes the key instead).
        self.upload = None;
        Ok(())
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

fn store_error(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> IngestError {
    IngestError::Store(object_store::Error::Generic { store: "media", source: source.into() })
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (store, path, upload, finishing) =
            (Arc::clone(&self.store), self.path.clone(), self.upload.take(), self.finishing);
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            in_flight.shutdown().await;
            if let Some(mut upload) = upload {
                let _ = upload.abort().await;
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
    let mut head = Vec::with_capacity(HEAD_BYTES);
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
        // Copied into the part and dropped here, so the chunk's buffer is free for the next read.
        pending.put(&chunk).await?;
    }
    Ok(Written { size, sha256: hex::encode(hasher.finalize()), head })
}
