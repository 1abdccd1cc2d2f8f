//! The store on a local directory: sniffing, limits, metadata, parts, ranges, and that nothing is
//! left behind by a failed or abandoned upload.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::samples::{jpeg, mp4, png, webm};
use super::*;

const LIMITS: MediaLimits = MediaLimits { max_image_bytes: 1024 * 1024, max_video_bytes: 16 * 1024 * 1024 };

/// A store on a fresh directory of its own.
fn store() -> (MediaStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("herald-media-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    (MediaStore::local(LocalFileSystem::new_with_prefix(&dir).unwrap()), dir)
}

/// `bytes` as a body arriving in chunks of `chunk` bytes.
fn body(bytes: &[u8], chunk: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin + Send + use<> {
    let chunks: Vec<Result<Bytes, Infallible>> =
        bytes.chunks(chunk).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
    futures::stream::iter(chunks)
}

/// Every file under `dir` (the store's objects and any staging files it left).
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() { todo.push(entry.path()) } else { found.push(entry.path()) }
        }
    }
    found
}

/// Waits (up to a second) for background clean-up to leave `dir` without files.
async fn assert_empty_soon(dir: &std::path::Path) {
    for _ in 0..100 {
        if files_under(dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("files left behind: {:?}", files_under(dir));
}

async fn read_all(media: &MediaStore, key: &str, range: Option<Range<u64>>) -> (Vec<u8>, u64) {
    let (stream, size) = media.read(key, range).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    (chunks.concat(), size)
}

#[test]
fn the_type_comes_from_the_bytes() {
    assert_eq!(ingest::sniff(&png(1, 1)).unwrap(), "image/png");
    assert_eq!(ingest::sniff(&jpeg(1, 1)).unwrap(), "image/jpeg");
    assert_eq!(ingest::sniff(&mp4(16, 16, 1, 16)).unwrap(), "video/mp4");
    assert_eq!(ingest::sniff(&webm(16, 16, 30, 1000.0)).unwrap(), "video/webm");
    assert!(
        matches!(ingest::sniff(b"\x00\x01 no signature"), Err(IngestError::Unsupported(found)) if found == "unknown")
    );
    assert!(
        matches!(ingest::sniff(b"<html>hello</html>"), Err(IngestError::Unsupported(found)) if found == "text/html")
    );
    assert!(
        matches!(ingest::sniff(b"%PDF-1.7\n..."), Err(IngestError::Unsupported(found)) if found == "application/pdf")
    );
}

#[tokio::test]
async fn an_image_is_stored_with_its_facts() {
    let (media, dir) = store();
    let file = png(1080, 1350);
    let facts = media.ingest("media/a.png", body(&file, 7), &LIMITS).await.unwrap();
    assert_eq!(facts.kind, MediaKind::Image);
    assert_eq!(facts.content_type, "image/png");
    assert_eq!((facts.width, facts.height), (Some(1080), Some(1350)));
    assert_eq!(facts.size_bytes, file.len() as i64);
    assert_eq!(facts.sha256, hex::encode(Sha256::digest(&file)));
    assert_eq!(read_all(&media, "media/a.png", None).await, (file.clone(), file.len() as u64));
    assert_eq!(read_all(&media, "media/a.png", Some(1..4)).await, (b"PNG".to_vec(), file.len() as u64));
    media.delete("media/a.png").await.unwrap();
    media.delete("media/a.png").await.unwrap();
    assert_empty_soon(&dir).await;
}

#[tokio::test]
async fn a_video_with_its_moov_at_the_end_is_described() {
    let (media, _dir) = store();
    // Past one part, so the store writes it in parts and the moov is read back by range.
    let file = mp4(1920, 1080, 12, 7 * 1024 * 1024);
    let facts = media.ingest("media/v.mp4", body(&file, 64 * 1024), &LIMITS).await.unwrap();
    assert_eq!((facts.kind, facts.content_type.as_str()), (MediaKind::Video, "video/mp4"));
    assert_eq!((facts.width, facts.height, facts.duration_ms), (Some(1920), Some(1080), Some(12_000)));
    assert_eq!(facts.frame_rate, Some(30.0));
    assert_eq!((facts.video_codec.as_deref(), facts.audio_codec.as_deref()), (Some("h264"), Some("aac")));
    assert_eq!(media.size("media/v.mp4").await.unwrap(), file.len() as u64);
    let webm = webm(720, 1280, 30, 5_000.0);
    let facts = media.ingest("media/v.webm", body(&webm, 100), &LIMITS).await.unwrap();
    assert_eq!((facts.width, facts.height, facts.duration_ms), (Some(720), Some(1280), Some(5_000)));
    assert_eq!(facts.video_codec.as_deref(), Some("vp9"));
}

#[tokio::test]
async fn refused_bodies_leave_nothing() {
    let (media, dir) = store();
    let small = MediaLimits { max_image_bytes: 100, max_video_bytes: 100 };
    let mut big_png = png(10, 10);
    big_png.resize(101, 0);
    let error = media.ingest("media/big.png", body(&big_png, 10), &small).await.unwrap_err();
    assert!(matches!(error, IngestError::TooLarge { limit: 100 }), "{error:?}");
    let error = media.ingest("media/x.txt", body(b"just some text, called x.png", 4), &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::Unsupported(_)), "{error:?}");
    let error = media.ingest("media/empty", body(b"", 1), &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::Empty), "{error:?}");
    // A video over its limit, found only after several parts were written.
    let error =
        media.ingest("media/long.mp4", body(&mp4(16, 16, 1, 20 * 1024 * 1024), 1 << 20), &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::TooLarge { limit } if limit == LIMITS.max_video_bytes), "{error:?}");
    let error = media.ingest("media/cut.mp4", body(&mp4(16, 16, 1, 1000)[..1100], 64), &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::Malformed { .. }), "{error:?}");
    assert_empty_soon(&dir).await;
}

#[tokio::test]
async fn an_upload_that_dies_half_way_leaves_no_object() {
    let (media, dir) = store();
    let start = mp4(16, 16, 1, 12 * 1024 * 1024);
    let broken = body(&start[..9 * 1024 * 1024], 1 << 20)
        .map(|chunk| chunk.map_err(|never| match never {}))
        .chain(futures::stream::iter([Err::<Bytes, _>("connection reset")]));
    let error = media.ingest("media/broken.mp4", broken, &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::Source(ref why) if why == "connection reset"), "{error:?}");
    assert_empty_soon(&dir).await;
    // A caller that gives up (its request dropped) mid-upload leaves nothing either.
    let stalled = body(&start[..8 * 1024 * 1024], 1 << 20).chain(futures::stream::pending());
    let gave_up = tokio::time::timeout(Duration::from_millis(300), media.ingest("media/stalled.mp4", stalled, &LIMITS));
    assert!(gave_up.await.is_err(), "the stalled upload cannot finish");
    assert_empty_soon(&dir).await;
}

#[tokio::test]
async fn parts_sent_again_replace_and_complete_joins_them_in_order() {
    let (media, dir) = store();
    let file = mp4(640, 360, 3, 3 * 1024 * 1024);
    let (first, second) = file.split_at(2 * 1024 * 1024);
    let upload = Uuid::now_v7();
    assert_eq!(media.put_part(upload, 1, body(b"garbage sent first", 5), &LIMITS).await.unwrap(), 18);
    assert_eq!(media.put_part(upload, 1, body(first, 1 << 16), &LIMITS).await.unwrap(), first.len() as u64);
    let broken_resend = body(&first[..1000], 100)
        .map(|chunk| chunk.map_err(|never| match never {}))
        .chain(futures::stream::iter([Err::<Bytes, _>("connection reset")]));
    let error = media.put_part(upload, 1, broken_resend, &LIMITS).await.unwrap_err();
    assert!(matches!(error, IngestError::Source(_)), "{error:?}");
    media.put_part(upload, 2, body(second, 1 << 16), &LIMITS).await.unwrap();
    let missing = media.complete(upload, &[1, 2, 3], "media/joined.mp4", &LIMITS).await.unwrap_err();
    assert!(matches!(missing, IngestError::MissingPart(3)), "{missing:?}");
    let facts = media.complete(upload, &[1, 2], "media/joined.mp4", &LIMITS).await.unwrap();
    assert_eq!(facts.sha256, hex::encode(Sha256::digest(&file)));
    assert_eq!(facts.duration_ms, Some(3000));
    let left: Vec<StoredObject> = media.list_keys("").try_collect().await.unwrap();
    assert_eq!(left.iter().map(|object| object.key.as_str()).collect::<Vec<_>>(), ["media/joined.mp4"]);
    media.put_part(upload, 9, body(b"abandoned", 3), &LIMITS).await.unwrap();
    media.abort(upload).await;
    media.delete("media/joined.mp4").await.unwrap();
    assert_empty_soon(&dir).await;
    assert!(
        media.presigned_get("media/joined.mp4", Duration::from_secs(60)).await.is_none(),
        "local: herald serves it"
    );
}
