//! The media library through the api: uploads (one request and resumable) whose type comes from
//! the bytes, the limits, lists, the walls and scopes, the signed content URLs with their ranges,
//! deleting (refused while a post needs the item), and the maintenance job's sweep of the store.
//! The files are tiny ones the tests build: a PNG's header and a WebM's few elements.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::TryStreamExt;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::commands::media::{media_in_use, record_upload};
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::media::{MediaFacts, MediaKind};
use herald_shared::events::EventMetadata;
use herald_shared::media::{MediaLimits, MediaStore, signing};
use herald_shared::retention::{ORPHAN_GRACE, sweep_media};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::fixtures::{connected_account, draft_post};
use crate::harness::{TestApp, TestDb, test_config};

/// The image limit the tests run with, so "too large" is a few kilobytes.
const MAX_IMAGE: u64 = 8 * 1024;

/// A PNG of `width` x `height` whose header is real and whose pixel data is `padding` bytes of
/// filler: enough for sniffing and for the header's dimensions.
fn png(width: u32, height: u32, padding: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut bytes, b"IHDR", &ihdr);
    chunk(&mut bytes, b"IDAT", &vec![0x5a; padding]);
    chunk(&mut bytes, b"IEND", &[]);
    bytes
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
    out.extend(kind);
    out.extend(data);
    out.extend(crc32(kind, data).to_be_bytes());
}

fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in kind.iter().chain(data) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// One EBML element: its id, its size as a vint, its payload.
fn ebml(id: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    let size = payload.len() as u64;
    if size < 0x7F {
        out.push(0x80 | u8::try_from(size).unwrap());
    } else {
        out.push(0x01);
        out.extend(&size.to_be_bytes()[1..]);
    }
    out.extend(payload);
    out
}

/// A WebM of one VP9 track, `width` x `height`, lasting `duration_ms`, with one cluster.
fn webm(width: u16, height: u16, duration_ms: f64) -> Vec<u8> {
    let header = [
        ebml(&[0x42, 0x86], &[1]),
        ebml(&[0x42, 0xF7], &[1]),
        ebml(&[0x42, 0xF2], &[4]),
        ebml(&[0x42, 0xF3], &[8]),
        ebml(&[0x42, 0x82], b"webm"),
        ebml(&[0x42, 0x87], &[4]),
        ebml(&[0x42, 0x85], &[2]),
    ]
    .concat();
    let info =
        [ebml(&[0x2A, 0xD7, 0xB1], &1_000_000u32.to_be_bytes()), ebml(&[0x44, 0x89], &duration_ms.to_be_bytes())]
            .concat();
    let video = [ebml(&[0xB0], &width.to_be_bytes()), ebml(&[0xBA], &height.to_be_bytes())].concat();
    let track = [ebml(&[0xD7], &[1]), ebml(&[0x83], &[1]), ebml(&[0x86], b"V_VP9"), ebml(&[0xE0], &video)].concat();
    let segment = [
        ebml(&[0x15, 0x49, 0xA9, 0x66], &info),
        ebml(&[0x16, 0x54, 0xAE, 0x6B], &ebml(&[0xAE], &track)),
        // A cluster with one block of filler: a real file's frames (and the sniffer looks for
        // more than 256 bytes).
        ebml(
            &[0x1F, 0x43, 0xB6, 0x75],
            &[ebml(&[0xE7], &[0]), ebml(&[0xA3], &[0x81, 0, 0, 0x80].repeat(150))].concat(),
        ),
    ]
    .concat();
    [ebml(&[0x1A, 0x45, 0xDF, 0xA3], &header), ebml(&[0x18, 0x53, 0x80, 0x67], &segment)].concat()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn metadata(project_id: Uuid) -> EventMetadata {
    EventMetadata { project_id: Some(project_id), ..EventMetadata::default() }
}

/// A ready image of `project_id`, recorded as an upload records it (its object is not stored:
/// for tests of the routes that only read the row).
pub async fn recorded_media(app: &TestApp, project_id: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    let facts = MediaFacts {
        kind: MediaKind::Image,
        content_type: "image/png".into(),
        size_bytes: 100,
        sha256: sha256(b"not stored"),
        width: Some(1),
        height: Some(1),
        duration_ms: None,
        frame_rate: None,
        video_codec: None,
        audio_codec: None,
    };
    let mut tx = app.pool.begin().await.unwrap();
    let key = herald_shared::domain::media_item::object_key(id);
    record_upload(&mut tx, id, project_id, Environment::Live, facts, key, &metadata(project_id)).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// The app with the small image limit.
async fn spawn() -> TestApp {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.media.max_image_bytes = MAX_IMAGE;
    TestApp::spawn_on(db, Arc::new(config), Router::new()).await
}

/// The same without a worker, whose maintenance job would sweep while the test sets things up.
async fn spawn_without_worker() -> TestApp {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.media.max_image_bytes = MAX_IMAGE;
    TestApp::spawn_without_worker(db, Arc::new(config)).await
}

/// A project and its admin key.
async fn project(app: &TestApp, name: &str) -> (Uuid, String) {
    let (project_id, _, secret) = keys::create_project(&app.pool, name, &EventMetadata::default()).await.unwrap();
    (project_id, keys::reveal(&secret).to_owned())
}

async fn key(app: &TestApp, project_id: Uuid, request: KeyRequest) -> String {
    let (_, secret) = keys::create_key(&app.pool, project_id, request, 100, &metadata(project_id)).await.unwrap();
    keys::reveal(&secret).to_owned()
}

async fn upload(app: &TestApp, key: &str, bytes: Vec<u8>, name: &str, content_type: &str) -> reqwest::Response {
    let part = Part::bytes(bytes).file_name(name.to_owned()).mime_str(content_type).unwrap();
    app.http.post(app.url("/v1/media")).bearer_auth(key).multipart(Form::new().part("file", part)).send().await.unwrap()
}

/// Uploads `bytes` and answers the item, expecting a 201.
async fn uploaded(app: &TestApp, key: &str, bytes: Vec<u8>, name: &str) -> Value {
    let response = upload(app, key, bytes, name, "application/octet-stream").await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

fn get(app: &TestApp, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.http.get(app.url(path)).bearer_auth(key)
}

/// Every key the store holds under `prefix`.
async fn stored_keys(app: &TestApp, prefix: &str) -> Vec<String> {
    let store = MediaStore::from_config(&app.config).unwrap();
    store.list_keys(prefix).map_ok(|object| object.key).try_collect().await.unwrap()
}

#[tokio::test]
async fn an_image_and_a_video_are_described_from_their_bytes_whatever_their_name_says() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;

    let image = png(640, 480, 300);
    let item = uploaded(&app, &admin, image.clone(), "photo.png").await;
    assert_eq!(item["kind"], "image");
    assert_eq!(item["content_type"], "image/png");
    assert_eq!(item["status"], "ready");
    assert_eq!((item["width"].as_i64(), item["height"].as_i64()), (Some(640), Some(480)));
    assert_eq!(item["size_bytes"], image.len());
    assert_eq!(item["sha256"], sha256(&image));

    let video = webm(320, 240, 1500.0);
    let clip = uploaded(&app, &admin, video.clone(), "clip.bin").await;
    assert_eq!(clip["kind"], "video", "{clip}");
    assert_eq!(clip["content_type"], "video/webm");
    assert_eq!((clip["width"].as_i64(), clip["height"].as_i64()), (Some(320), Some(240)), "{clip}");
    assert_eq!(clip["duration_ms"], 1500, "{clip}");
    assert_eq!(clip["video_codec"], "vp9", "{clip}");
    assert_eq!(clip["sha256"], sha256(&video));

    // An mp4 (the store's own sample: ftyp, moov with one avc1 track, mdat).
    let mp4 = herald_shared::media::samples::mp4(640, 360, 3, 2048);
    let movie = uploaded(&app, &admin, mp4.clone(), "movie.mov").await;
    assert_eq!((movie["kind"].as_str(), movie["content_type"].as_str()), (Some("video"), Some("video/mp4")), "{movie}");
    assert_eq!((movie["width"].as_i64(), movie["height"].as_i64()), (Some(640), Some(360)), "{movie}");
    assert_eq!(movie["duration_ms"], 3000, "{movie}");
    assert!(movie["video_codec"].is_string(), "{movie}");
    assert_eq!(movie["size_bytes"], mp4.len());

    // A PNG named .mp4 and sent as video/mp4 is an image.
    let lying = upload(&app, &admin, png(10, 20, 10), "clip.mp4", "video/mp4").await;
    assert_eq!(lying.status(), StatusCode::CREATED);
    let lying: Value = lying.json().await.unwrap();
    assert_eq!((lying["kind"].as_str(), lying["content_type"].as_str()), (Some("image"), Some("image/png")));

    // The item reads back, and its URL serves exactly its bytes with their type.
    let id = item["id"].as_str().unwrap();
    let shown: Value = get(&app, &format!("/v1/media/{id}"), &admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["sha256"], item["sha256"]);
    let served = app.http.get(shown["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["content-length"], image.len().to_string().as_str());
    assert_eq!(served.headers()["accept-ranges"], "bytes");
    assert_eq!(served.bytes().await.unwrap().as_ref(), image.as_slice());
    let served = app.http.get(clip["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "video/webm");
    assert_eq!(served.bytes().await.unwrap().as_ref(), video.as_slice());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn limits_and_unsupported_types_are_problems_that_leave_nothing_behind() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;

    let body = problem(
        upload(&app, &admin, png(10, 10, 2 * MAX_IMAGE as usize), "big.png", "image/png").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains(&MAX_IMAGE.to_string()), "{body}");

    let text = b"just some words, not an image at all".repeat(10);
    let body = problem(
        upload(&app, &admin, text, "cat.png", "image/png").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_media_type",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("herald takes"), "{body}");
    let pdf = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n".repeat(4);
    let body = problem(
        upload(&app, &admin, pdf, "doc.jpg", "image/jpeg").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_media_type",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("application/pdf"), "{body}");

    problem(
        upload(&app, &admin, Vec::new(), "empty.png", "image/png").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let other_field = Form::new().text("caption", "hello");
    let response = app.http.post(app.url("/v1/media")).bearer_auth(&admin).multipart(other_field).send().await.unwrap();
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let not_multipart =
        app.http.post(app.url("/v1/media")).bearer_auth(&admin).json(&json!({"file": "x"})).send().await.unwrap();
    problem(not_multipart, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 0);
    assert_eq!(stored_keys(&app, "media/").await, Vec::<String>::new());
    app.stop().await.unwrap();
}

async fn put_part(app: &TestApp, key: &str, upload: &str, part: u32, bytes: Vec<u8>) -> reqwest::Response {
    let url = app.url(&format!("/v1/media/uploads/{upload}/parts/{part}"));
    app.http.put(url).bearer_auth(key).body(bytes).send().await.unwrap()
}

async fn complete(app: &TestApp, key: &str, upload: &str, parts: &[u32]) -> reqwest::Response {
    let url = app.url(&format!("/v1/media/uploads/{upload}/complete"));
    app.http.post(url).bearer_auth(key).json(&json!({ "parts": parts })).send().await.unwrap()
}

async fn new_upload(app: &TestApp, key: &str) -> String {
    let created = app.http.post(app.url("/v1/media/uploads")).bearer_auth(key).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_resumable_upload_takes_a_part_twice_and_completes_once() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;
    let video = webm(1280, 720, 2000.0);
    let (first, second) = video.split_at(video.len() / 2);

    let id = new_upload(&app, &admin).await;
    assert_eq!(put_part(&app, &admin, &id, 1, b"the wrong bytes".to_vec()).await.status(), StatusCode::OK);
    let resent = put_part(&app, &admin, &id, 1, first.to_vec()).await;
    assert_eq!(resent.status(), StatusCode::OK);
    assert_eq!(resent.json::<Value>().await.unwrap()["size_bytes"], first.len());
    assert_eq!(put_part(&app, &admin, &id, 2, second.to_vec()).await.status(), StatusCode::OK);
    problem(put_part(&app, &admin, &id, 0, vec![1]).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let body =
        problem(complete(&app, &admin, &id, &[1, 3]).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert!(body.to_string().contains("part 3 was not uploaded"), "{body}");
    problem(complete(&app, &admin, &id, &[1, 1]).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let done = complete(&app, &admin, &id, &[1, 2]).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let item: Value = done.json().await.unwrap();
    assert_eq!(item["sha256"], sha256(&video), "the second sending of part 1 replaced the first");
    assert_eq!(item["kind"], "video");
    assert_eq!(item["width"], 1280);
    let again = complete(&app, &admin, &id, &[1, 2]).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], item["id"]);
    problem(put_part(&app, &admin, &id, 3, vec![1]).await, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(stored_keys(&app, &format!("uploads/{id}")).await, Vec::<String>::new(), "the parts are gone");

    // Parts that join into something unsupported: refused, and the parts stay for another try.
    let other = new_upload(&app, &admin).await;
    put_part(&app, &admin, &other, 1, b"plain text ".repeat(20)).await;
    problem(complete(&app, &admin, &other, &[1]).await, StatusCode::UNPROCESSABLE_ENTITY, "unsupported_media_type")
        .await;
    put_part(&app, &admin, &other, 1, png(4, 4, 10)).await;
    assert_eq!(complete(&app, &admin, &other, &[1]).await.status(), StatusCode::CREATED);

    // Aborted: its parts are deleted and it is gone.
    let aborted = new_upload(&app, &admin).await;
    put_part(&app, &admin, &aborted, 1, first.to_vec()).await;
    let response = app.http.delete(app.url(&format!("/v1/media/uploads/{aborted}"))).bearer_auth(&admin).send().await;
    assert_eq!(response.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_keys(&app, &format!("uploads/{aborted}")).await, Vec::<String>::new());
    problem(put_part(&app, &admin, &aborted, 2, vec![1]).await, StatusCode::NOT_FOUND, "not_found").await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn lists_filter_by_kind_and_status_and_page_newest_first() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;
    let mut ids = Vec::new();
    for width in 1..=3 {
        ids.push(uploaded(&app, &admin, png(width, 1, 5), "a.png").await["id"].as_str().unwrap().to_owned());
    }
    let video = uploaded(&app, &admin, webm(16, 16, 10.0), "v.webm").await["id"].as_str().unwrap().to_owned();

    let page: Value = get(&app, "/v1/media?kind=video", &admin).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> = page["data"].as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [video.as_str()]);
    let page: Value = get(&app, "/v1/media?status=failed", &admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["data"], json!([]));

    let first: Value = get(&app, "/v1/media?kind=image&limit=2", &admin).send().await.unwrap().json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = get(&app, &format!("/v1/media?kind=image&limit=2&cursor={cursor}"), &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(second["next_cursor"].is_null());
    let paged: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page["data"].as_array().unwrap())
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(paged, newest_first);

    problem(
        get(&app, "/v1/media?kind=audio", &admin).send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem(
        get(&app, "/v1/media?status=done", &admin).send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn keys_reach_only_their_project_their_environment_and_their_scopes() {
    let app = spawn().await;
    let (acme, admin) = project(&app, "Acme").await;
    let (_, globex) = project(&app, "Globex").await;
    let test_key = key(&app, acme, KeyRequest { environment: Environment::Test, ..KeyRequest::admin("test") }).await;
    let reader = key(&app, acme, KeyRequest { scopes: vec!["media:read".into()], ..KeyRequest::admin("reader") }).await;
    let uploader =
        key(&app, acme, KeyRequest { scopes: vec!["media:upload".into()], ..KeyRequest::admin("uploader") }).await;

    let live = uploaded(&app, &admin, png(2, 2, 5), "live.png").await["id"].as_str().unwrap().to_owned();
    let test = uploaded(&app, &test_key, png(3, 3, 5), "test.png").await["id"].as_str().unwrap().to_owned();

    // Another project: nothing, on every route that names an item.
    problem(get(&app, &format!("/v1/media/{live}"), &globex).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
        .await;
    let deleted = app.http.delete(app.url(&format!("/v1/media/{live}"))).bearer_auth(&globex).send().await.unwrap();
    problem(deleted, StatusCode::NOT_FOUND, "not_found").await;
    let listed = get(&app, "/v1/media", &globex).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&live) && !listed.contains(&test), "{listed}");

    // A test key sees only test media; a live key sees both.
    problem(
        get(&app, &format!("/v1/media/{live}"), &test_key).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = get(&app, "/v1/media", &test_key).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains(&test) && !listed.contains(&live), "{listed}");
    let listed = get(&app, "/v1/media", &admin).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains(&test) && listed.contains(&live), "{listed}");
    let deleted = app.http.delete(app.url(&format!("/v1/media/{live}"))).bearer_auth(&test_key).send().await.unwrap();
    problem(deleted, StatusCode::NOT_FOUND, "not_found").await;
    // Its uploads too: a live key's upload is not a test key's to finish.
    let live_upload = new_upload(&app, &admin).await;
    problem(put_part(&app, &test_key, &live_upload, 1, vec![1]).await, StatusCode::NOT_FOUND, "not_found").await;
    problem(put_part(&app, &globex, &live_upload, 1, vec![1]).await, StatusCode::NOT_FOUND, "not_found").await;
    problem(complete(&app, &globex, &live_upload, &[1]).await, StatusCode::NOT_FOUND, "not_found").await;

    // Scopes: reading needs media:read, uploading and deleting media:upload.
    assert_eq!(get(&app, "/v1/media", &reader).send().await.unwrap().status(), StatusCode::OK);
    let body =
        problem(upload(&app, &reader, png(1, 1, 1), "a.png", "image/png").await, StatusCode::FORBIDDEN, "forbidden")
            .await;
    assert!(body["detail"].as_str().unwrap().contains("media:upload"), "{body}");
    problem(get(&app, "/v1/media", &uploader).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(upload(&app, &uploader, png(1, 1, 1), "a.png", "image/png").await.status(), StatusCode::CREATED);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn signed_urls_expire_resist_tampering_and_serve_ranges() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;
    let image = png(8, 8, 500);
    let item = uploaded(&app, &admin, image.clone(), "a.png").await;
    let id: Uuid = item["id"].as_str().unwrap().parse().unwrap();
    let url = item["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/media/{id}?", app.config.public_url())), "{url}");

    // A range: 206 with exactly those bytes; the suffix form; one past the end is a 416.
    let ranged = app.http.get(&url).header("range", "bytes=8-23").send().await.unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.headers()["content-range"], format!("bytes 8-23/{}", image.len()).as_str());
    assert_eq!(ranged.headers()["content-length"], "16");
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &image[8..24]);
    let tail = app.http.get(&url).header("range", "bytes=-4").send().await.unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &image[image.len() - 4..]);
    let beyond = app.http.get(&url).header("range", format!("bytes={}-", image.len())).send().await.unwrap();
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{}", image.len()).as_str());
    problem(beyond, StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable").await;

    // Tampered: another signature, another expiry, another item's id.
    let signature = url.split("signature=").nth(1).unwrap().to_owned();
    let flipped =
        if signature.starts_with('0') { signature.replacen('0', "1", 1) } else { format!("0{}", &signature[1..]) };
    problem(app.http.get(url.replace(&signature, &flipped)).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden")
        .await;
    let expires = url.split("expires=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let later = (expires.parse::<i64>().unwrap() + 3600).to_string();
    problem(app.http.get(url.replace(&expires, &later)).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden")
        .await;
    let other = url.replace(&id.to_string(), &Uuid::now_v7().to_string());
    problem(app.http.get(other).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    let bare = app.url(&format!("/media/{id}"));
    problem(app.http.get(bare).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;

    // Expired: signed with the real key, but for a time already past.
    let keyring = herald_shared::crypto::Keyring::from_config(&app.config).unwrap();
    let signing_key = keyring.derive(signing::PURPOSE).unwrap();
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    let expired = signing::content_url(
        &app.config.public_url(),
        &signing_key,
        id,
        Duration::from_secs(3600),
        two_hours_ago.timestamp(),
    );
    problem(app.http.get(&expired).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    let fresh = signing::content_url(
        &app.config.public_url(),
        &signing_key,
        id,
        Duration::from_secs(60),
        chrono::Utc::now().timestamp(),
    );
    assert_eq!(app.http.get(&fresh).send().await.unwrap().status(), StatusCode::OK);

    // Deleted: the same good URL is a 404.
    let deleted = app.http.delete(app.url(&format!("/v1/media/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(app.http.get(&url).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    problem(get(&app, &format!("/v1/media/{id}"), &admin).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
        .await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_item_a_post_still_needs_is_not_deleted_and_the_sweep_removes_what_nothing_needs() {
    let app = spawn_without_worker().await;
    let (acme, admin) = project(&app, "Acme").await;
    let item = uploaded(&app, &admin, png(5, 5, 50), "a.png").await;
    let id: Uuid = item["id"].as_str().unwrap().parse().unwrap();
    let account = connected_account(&app, acme, "sandbox", "person-1", None).await;
    let post = draft_post(&app, acme, "with media", &[account]).await;
    // What the post projection records once posts carry media.
    let row = "INSERT INTO post_media (id, post_id, delivery_id, media_id, position, alt_text) VALUES ($1, $2, NULL, $3, 0, 'a')";
    sqlx::query(row).bind(Uuid::new_v4()).bind(post).bind(id).execute(&app.pool).await.unwrap();
    let mut connection = app.pool.acquire().await.unwrap();
    assert!(media_in_use(&mut connection, id).await.unwrap());
    assert!(!media_in_use(&mut connection, Uuid::now_v7()).await.unwrap());
    drop(connection);
    let refused = app.http.delete(app.url(&format!("/v1/media/{id}"))).bearer_auth(&admin).send().await.unwrap();
    problem(refused, StatusCode::CONFLICT, "in_use").await;

    // The post has finished publishing, but one target of it carries the item and has not.
    sqlx::query("UPDATE posts SET status = 'published' WHERE id = $1").bind(post).execute(&app.pool).await.unwrap();
    let delivery: Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE post_id = $1")
        .bind(post)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut connection = app.pool.acquire().await.unwrap();
    assert!(!media_in_use(&mut connection, id).await.unwrap());
    let on_target = "INSERT INTO post_media (id, post_id, delivery_id, media_id, position) VALUES ($1, $2, $3, $4, 0)";
    sqlx::query(on_target).bind(Uuid::new_v4()).bind(post).bind(delivery).bind(id).execute(&app.pool).await.unwrap();
    sqlx::query("UPDATE deliveries SET status = 'queued' WHERE id = $1")
        .bind(delivery)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(media_in_use(&mut connection, id).await.unwrap());
    drop(connection);
    let refused = app.http.delete(app.url(&format!("/v1/media/{id}"))).bearer_auth(&admin).send().await.unwrap();
    problem(refused, StatusCode::CONFLICT, "in_use").await;

    // Once that target is published too, the item may go.
    sqlx::query("UPDATE deliveries SET status = 'published' WHERE id = $1")
        .bind(delivery)
        .execute(&app.pool)
        .await
        .unwrap();
    let deleted = app.http.delete(app.url(&format!("/v1/media/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let store = MediaStore::from_config(&app.config).unwrap();
    let kept = uploaded(&app, &admin, png(6, 6, 50), "kept.png").await;
    let kept_key = format!("media/{}", kept["id"].as_str().unwrap());
    // An orphan (stored, never recorded) and an expired upload with a part.
    let limits = MediaLimits::from_settings(&app.config.media);
    let orphan = format!("media/{}", Uuid::now_v7());
    store
        .ingest(
            &orphan,
            futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(png(1, 1, 1)))]),
            &limits,
        )
        .await
        .unwrap();
    let expired = new_upload(&app, &admin).await;
    put_part(&app, &admin, &expired, 1, vec![7; 100]).await;
    sqlx::query("UPDATE media_uploads SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(&expired)
        .execute(&app.pool)
        .await
        .unwrap();

    // With the job's delays nothing is due yet but the expired upload; with none, everything.
    let swept = sweep_media(&app.pool, &store, Duration::from_secs(600), ORPHAN_GRACE, 100).await.unwrap();
    assert_eq!((swept.purged, swept.expired_uploads, swept.orphans), (0, 1, 0));
    assert_eq!(stored_keys(&app, &format!("uploads/{expired}")).await, Vec::<String>::new());
    let mut left = stored_keys(&app, "media/").await;
    left.sort();
    let mut expected = vec![format!("media/{id}"), kept_key.clone(), orphan.clone()];
    expected.sort();
    assert_eq!(left, expected);
    let swept = sweep_media(&app.pool, &store, Duration::ZERO, Duration::ZERO, 100).await.unwrap();
    assert_eq!((swept.purged, swept.orphans), (1, 1));
    assert_eq!(stored_keys(&app, "media/").await, vec![kept_key]);
    let swept = sweep_media(&app.pool, &store, Duration::ZERO, Duration::ZERO, 100).await.unwrap();
    assert_eq!(swept, herald_shared::retention::MediaSwept::default(), "a second sweep finds nothing");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media_uploads").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 0);
    app.stop().await.unwrap();
}

/// Whether the document lists `status` for `method path` with a problem body.
fn lists_problem(method: &str, path: &str, status: StatusCode) -> bool {
    let document = serde_json::to_value(&*herald_api::openapi::DOCUMENT).unwrap();
    let mut response = document["paths"][path][method]["responses"][status.as_str()].clone();
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        response = document.pointer(reference.strip_prefix('#').unwrap()).unwrap().clone();
    }
    response["content"].get("application/problem+json").is_some()
}

#[test]
fn the_media_problems_are_in_the_document() {
    for (method, path, status) in [
        ("post", "/v1/media", StatusCode::PAYLOAD_TOO_LARGE),
        ("post", "/v1/media", StatusCode::UNPROCESSABLE_ENTITY),
        ("post", "/v1/media", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("delete", "/v1/media/{id}", StatusCode::CONFLICT),
        ("put", "/v1/media/uploads/{id}/parts/{n}", StatusCode::PAYLOAD_TOO_LARGE),
        ("post", "/v1/media/uploads/{id}/complete", StatusCode::UNPROCESSABLE_ENTITY),
        ("get", "/media/{id}", StatusCode::FORBIDDEN),
        ("get", "/media/{id}", StatusCode::NOT_FOUND),
        ("get", "/media/{id}", StatusCode::RANGE_NOT_SATISFIABLE),
    ] {
        assert!(lists_problem(method, path, status), "{method} {path} does not list its {status}");
    }
    let document = serde_json::to_value(&*herald_api::openapi::DOCUMENT).unwrap();
    assert!(document["paths"]["/media/{id}"]["get"]["security"].is_null(), "the content URL needs no key");
}

#[tokio::test]
async fn the_maintenance_job_aborts_expired_uploads() {
    let app = spawn().await;
    let (_, admin) = project(&app, "Acme").await;
    let expired = new_upload(&app, &admin).await;
    assert_eq!(put_part(&app, &admin, &expired, 1, vec![7; 100]).await.status(), StatusCode::OK);
    let live = new_upload(&app, &admin).await;
    sqlx::query("UPDATE media_uploads SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(&expired)
        .execute(&app.pool)
        .await
        .unwrap();
    let job = herald_shared::queue::NewJob::of(&herald_shared::jobs::PruneExpired {}).unwrap();
    let mut left = 1;
    for _ in 0..100 {
        // Queued again each time: one already running may have passed the uploads.
        herald_shared::queue::enqueue(&app.pool, job.clone()).await.unwrap();
        left = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM media_uploads WHERE id = $1::uuid")
            .bind(&expired)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the job did not sweep the expired upload");
    assert_eq!(stored_keys(&app, &format!("uploads/{expired}")).await, Vec::<String>::new());
    assert_eq!(put_part(&app, &admin, &live, 1, vec![1]).await.status(), StatusCode::OK, "the live one is untouched");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idempotency_key_on_a_streamed_upload_recognises_the_file_whatever_its_size() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.media.max_image_bytes = 4 << 20;
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let (_, admin) = project(&app, "Acme").await;
    // Larger than the bodies the idempotency layer reads whole (1 MiB).
    let big = png(640, 480, 2 << 20);
    assert!(big.len() > app.config.max_body_bytes);
    let send = |bytes: Vec<u8>, key: &'static str| {
        // Each form gets a boundary of its own, so no two bodies are the same byte for byte.
        let part = Part::bytes(bytes).file_name("photo.png").mime_str("image/png").unwrap();
        let form = Form::new().part("file", part);
        app.http.post(app.url("/v1/media")).bearer_auth(&admin).header("idempotency-key", key).multipart(form).send()
    };
    let first = send(big.clone(), "upload-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["sha256"], sha256(&big));

    let again = send(big.clone(), "upload-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "the first item, not another");

    let other = send(png(640, 480, (2 << 20) + 1), "upload-1").await.unwrap();
    problem(other, StatusCode::CONFLICT, "idempotency_conflict").await;

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 1);
    let id = first["id"].as_str().unwrap();
    assert_eq!(stored_keys(&app, "media/").await, [format!("media/{id}")], "the copies were discarded");

    let fresh = send(big, "upload-2").await.unwrap();
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let fresh: Value = fresh.json().await.unwrap();
    assert_ne!(fresh["id"], first["id"]);
    app.stop().await.unwrap();
}
