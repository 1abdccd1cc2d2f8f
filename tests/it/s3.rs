//! The media store's S3 path against a real S3-compatible server: moto's server mode, installed
//! once into `target/moto-venv` (python3 and PyPI are all it needs) and started on a free port of
//! 127.0.0.1 for the test. Streaming ingest (in parts), metadata read back by range, reads,
//! presigned URLs, clean-up after failures, and resumable parts.

use std::convert::Infallible;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use herald_shared::Config;
use herald_shared::config::{MediaSettings, MediaStoreKind};
use herald_shared::domain::media::MediaKind;
use herald_shared::media::samples::{mp4, png};
use herald_shared::media::{IngestError, MediaLimits, MediaStore, StoredObject};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The moto release the test installs (pinned, so a new release cannot break the suite).
const MOTO: &str = "moto[server]==5.2.5";

/// A moto server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        let venv =
            tokio::task::spawn_blocking(|| crate::harness::python_venv("moto-venv", MOTO)).await.expect("install moto");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(&endpoint).send().await.is_ok() {
                return Self { child, endpoint };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on {endpoint} within 15 s");
    }

    /// A fresh bucket (moto takes unsigned requests) and a store over it.
    async fn store(&self) -> MediaStore {
        let bucket = format!("herald-{}", Uuid::new_v4().simple());
        let created = reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint)).send().await.unwrap();
        assert!(created.status().is_success(), "create bucket: {}", created.status());
        let config = Config {
            media: MediaSettings {
                store: MediaStoreKind::S3,
                bucket: Some(bucket),
                endpoint: Some(self.endpoint.clone()),
                access_key_id: Some("testing".to_owned()),
                secret_access_key: Some(SecretString::from("testing")),
                path_style: true,
                ..MediaSettings::default()
            },
            ..Config::default()
        };
        config.validate().unwrap();
        MediaStore::from_config(&config).unwrap()
    }

    async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}

fn body(bytes: &[u8], chunk: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin + Send + use<> {
    let chunks: Vec<Result<Bytes, Infallible>> =
        bytes.chunks(chunk).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
    futures::stream::iter(chunks)
}

async fn keys(media: &MediaStore) -> Vec<String> {
    let objects: Vec<StoredObject> = media.list_keys("").try_collect().await.unwrap();
    objects.into_iter().map(|object| object.key).collect()
}

async fn read_all(media: &MediaStore, key: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let (stream, _) = media.read(key, range).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn the_s3_store_streams_describes_serves_and_cleans_up() {
    let moto = Moto::start().await;
    let media = moto.store().await;
    let limits = MediaLimits { max_image_bytes: 1024 * 1024, max_video_bytes: 32 * 1024 * 1024 };

    // An image: one put, its facts, a presigned URL that serves it with its type.
    let image = png(1200, 628);
    let facts = media.ingest("media/p/image", body(&image, 5), &limits).await.unwrap();
    assert_eq!((facts.kind, facts.width, facts.height), (MediaKind::Image, Some(1200), Some(628)));
    assert_eq!(facts.sha256, hex::encode(Sha256::digest(&image)));
    let url = media.presigned_get("media/p/image", Duration::from_secs(300)).await.expect("S3 presigns").unwrap();
    assert!(url.as_str().starts_with(&moto.endpoint), "{url}");
    assert!(url.query().unwrap_or_default().contains("X-Amz-Signature="), "{url}");
    let fetched = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.bytes().await.unwrap(), image);

    // A video past one part (a multipart upload), its moov at the end read back by range.
    let video = mp4(1080, 1920, 20, 11 * 1024 * 1024);
    let facts = media.ingest("media/p/video", body(&video, 256 * 1024), &limits).await.unwrap();
    assert_eq!((facts.width, facts.height, facts.duration_ms), (Some(1080), Some(1920), Some(20_000)));
    assert_eq!((facts.video_codec.as_deref(), facts.frame_rate), (Some("h264"), Some(30.0)));
    assert_eq!(facts.size_bytes, video.len() as i64);
    assert_eq!(read_all(&media, "media/p/video", Some(4..8)).await, b"ftyp");
    let (_, size) = media.read("media/p/video", Some(0..1)).await.unwrap();
    assert_eq!(size, video.len() as u64);
    assert_eq!(Sha256::digest(read_all(&media, "media/p/video", None).await), Sha256::digest(&video));

    // Refused and broken uploads leave no object (a broken one after parts were sent, too).
    let tight = MediaLimits { max_image_bytes: 1024, max_video_bytes: 6 * 1024 * 1024 };
    let error = media.ingest("media/p/long", body(&video, 1 << 20), &tight).await.unwrap_err();
    assert!(matches!(error, IngestError::TooLarge { limit } if limit == 6 * 1024 * 1024), "{error:?}");
    let error = media.ingest("media/p/text", body(b"plain text pretending to be a png", 8), &limits).await.unwrap_err();
    assert!(matches!(error, IngestError::Unsupported(_)), "{error:?}");
    let broken = body(&video[..7 * 1024 * 1024], 1 << 20)
        .map(|chunk| chunk.map_err(|never| match never {}))
        .chain(futures::stream::iter([Err::<Bytes, _>("connection reset")]));
    let error = media.ingest("media/p/broken", broken, &limits).await.unwrap_err();
    assert!(matches!(error, IngestError::Source(_)), "{error:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(keys(&media).await, ["media/p/image", "media/p/video"]);

    // A resumable upload: a part sent twice, joined, the parts gone.
    let upload = Uuid::now_v7();
    let (first, second) = video.split_at(6 * 1024 * 1024);
    media.put_part(upload, 1, body(b"a first try", 4), &limits).await.unwrap();
    media.put_part(upload, 1, body(first, 1 << 20), &limits).await.unwrap();
    media.put_part(upload, 2, body(second, 1 << 20), &limits).await.unwrap();
    let facts = media.complete(upload, &[1, 2], "media/p/joined", &limits).await.unwrap();
    assert_eq!(facts.sha256, hex::encode(Sha256::digest(&video)));
    assert_eq!(keys(&media).await, ["media/p/image", "media/p/joined", "media/p/video"]);

    // Deleted objects are gone, and their presigned URLs no longer serve anything.
    for key in ["media/p/image", "media/p/joined", "media/p/video"] {
        media.delete(key).await.unwrap();
    }
    assert!(keys(&media).await.is_empty());
    assert_eq!(reqwest::get(url).await.unwrap().status(), 404);
    moto.stop().await;
}
