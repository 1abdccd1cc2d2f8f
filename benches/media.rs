//! Media through the api (issue: media): one 200 MB video uploaded to `POST /v1/media` as a
//! streamed multipart body, then read back whole through its signed content URL, against the
//! real `herald api` process on the local store. Prints MB/s each way and how much the api's
//! resident memory grew (its peak, `VmHWM`, over its resident size before the upload): streaming
//! means the growth stays far below the file's size.
//!
//! `BENCH_MEDIA_MB` sets the size (default 200).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use herald_shared::commands::keys;
use herald_shared::events::EventMetadata;
use herald_shared::media::samples::mp4_around;
use secrecy::ExposeSecret;

/// The chunk the generated body is sent in.
const CHUNK: usize = 1 << 20;

/// A process's resident memory (`VmRSS`) or its peak (`VmHWM`), in bytes, from /proc.
fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::main]
async fn main() {
    let megabytes: u32 = std::env::var("BENCH_MEDIA_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let (pool, url) = common::fresh_database("bench_media").await;
    let (_, _, secret) = keys::create_project(&pool, "bench", &EventMetadata::default()).await.unwrap();
    let api_key = keys::reveal(&secret).to_owned();
    let encryption_key = herald_shared::crypto::Keyring::generate_base64();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let data_dir = std::env::temp_dir().join(format!("herald-bench-media-{}", std::process::id()));
    let mut api = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("api")
        .env("DATABASE_URL", &url)
        .env("HERALD_ENCRYPTION_KEY", encryption_key.expose_secret())
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_PUBLIC_URL", &base)
        .env("HERALD_DATA_DIR", &data_dir)
        .env("HERALD_MEDIA__MAX_VIDEO_BYTES", ((u64::from(megabytes) * 2) << 20).to_string())
        .env("HERALD_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start herald api");
    let pid = api.id().expect("the api's pid");
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = memory_of(pid, "VmRSS:");

    // A valid mp4 of `megabytes` MB: its header, then zeros as the media data, then its moov at
    // the end (as a camera writes it), generated as it is sent.
    let mdat = megabytes * 1_000_000;
    let (head, moov) = mp4_around(1920, 1080, 60, mdat);
    let total = head.len() as u64 + u64::from(mdat) + moov.len() as u64;
    let zeros = bytes::Bytes::from(vec![0u8; CHUNK]);
    let full_chunks = mdat as usize / CHUNK;
    let rest = mdat as usize % CHUNK;
    let body = stream::iter([bytes::Bytes::from(head)])
        .chain(stream::iter(std::iter::repeat_n(zeros.clone(), full_chunks)))
        .chain(stream::iter([zeros.slice(..rest), bytes::Bytes::from(moov)]))
        .map(Ok::<_, std::io::Error>);
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), total)
        .file_name("bench.mp4")
        .mime_str("video/mp4")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let started = Instant::now();
    let uploaded = http.post(format!("{base}/v1/media")).bearer_auth(&api_key).multipart(form).send().await.unwrap();
    let upload_secs = started.elapsed().as_secs_f64();
    let status = uploaded.status();
    let media: serde_json::Value = uploaded.json().await.unwrap();
    assert_eq!(status, 201, "upload: {media}");
    let content_url = media["url"].as_str().expect("a signed url").to_owned();

    let started = Instant::now();
    let mut read = 0u64;
    let mut download = http.get(&content_url).send().await.unwrap().bytes_stream();
    while let Some(chunk) = download.next().await {
        read += chunk.unwrap().len() as u64;
    }
    let download_secs = started.elapsed().as_secs_f64();
    assert_eq!(read, total, "read back whole");
    let peak = memory_of(pid, "VmHWM:");
    let _ = api.kill().await;
    let _ = std::fs::remove_dir_all(&data_dir);

    let mb = total as f64 / 1_000_000.0;
    let upload = mb / upload_secs;
    let download = mb / download_secs;
    let growth = peak.saturating_sub(rss_before) as f64 / (1024.0 * 1024.0);
    println!("media bench: one {mb:.0} MB mp4, local store, the real `herald api`");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| upload (POST /v1/media, multipart, streamed) | {upload:.0} MB/s ({upload_secs:.2} s) |");
    println!("| download (signed content URL) | {download:.0} MB/s ({download_secs:.2} s) |");
    println!("| api resident memory before | {:.0} MB |", rss_before as f64 / (1024.0 * 1024.0));
    println!("| api peak resident growth | {growth:.1} MB |");
    println!(
        "{}",
        common::result_line(&[("upload_mb_per_s", upload), ("download_mb_per_s", download), ("rss_growth_mb", growth)])
    );
}
