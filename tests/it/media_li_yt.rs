//! LinkedIn and YouTube publish media, against fakes speaking their upload APIs: LinkedIn's
//! Images API (initialize, PUT, polled until AVAILABLE) and Videos API (parts PUT in order,
//! their ETags finalized, polled through PROCESSING), then `/rest/posts` with `content.media`
//! or `content.multiImage`; YouTube's resumable upload (the session from `Location`, chunks with
//! `Content-Range` in multiples of 256 KiB, `308` with `Range`), which resumes from the last
//! acknowledged byte when a chunk breaks off. Each fake checks what herald sent (auth, versioned
//! headers, bodies, byte ranges and the bytes themselves) and the errors each platform answers
//! end the deliveries as they should.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Timelike;
use futures::StreamExt;
use herald_shared::media::samples::{mp4_around, png};
use herald_shared::platforms::PlatformSettings;
use serde_json::{Value, json};

use crate::connect::{Client, client, get_json};
use crate::fake_oauth::FakeOAuth;
use crate::harness::{TestApp, TestDb, test_config};
use crate::post_media::upload;
use crate::posts::{create, wait_for};

/// YouTube's chunk: herald sends 8 MiB (32 × 256 KiB) at a time.
const YT_CHUNK: usize = 8 * 1024 * 1024;
/// LinkedIn's video parts: 4 MiB each, the last one shorter.
const LI_PART: usize = 4 * 1024 * 1024;

/// What LinkedIn should answer next, by what it is asked.
#[derive(Default)]
struct LinkedInModes {
    /// Answer the video's status with PROCESSING_FAILED.
    video_fails: AtomicBool,
    /// Answer `POST /rest/posts` with a 401 (a revoked token).
    post_unauthorized: AtomicBool,
    /// Answer the image's initializeUpload with a 429.
    images_limited: AtomicBool,
}

/// What YouTube should answer next.
#[derive(Default)]
pub(crate) struct YouTubeModes {
    /// Answer the session start with this error body and status.
    start_error: Mutex<Option<(StatusCode, Value)>>,
    /// Break off the chunk with this index (0-based) after taking this many of its bytes: read
    /// them, then never answer.
    drop_chunk: Mutex<Option<(usize, usize)>>,
    /// Take the last chunk's bytes (completing the video) and never answer: the worker dies there.
    pub(crate) hold_last: Mutex<bool>,
}

#[derive(Default)]
pub(crate) struct Fake {
    base: Mutex<String>,
    li: LinkedInModes,
    pub(crate) yt: YouTubeModes,
    /// Every call, in order, as `METHOD path detail`.
    pub(crate) calls: Mutex<Vec<String>>,
    /// Bytes received per upload URL path (LinkedIn's images and parts, YouTube's sessions).
    pub(crate) uploads: Mutex<HashMap<String, Vec<u8>>>,
    /// Bodies of LinkedIn's initializeUpload, finalizeUpload and posts, and YouTube's video
    /// resources, in order.
    bodies: Mutex<Vec<Value>>,
    /// YouTube sessions: path -> (declared size, the video resource).
    sessions: Mutex<HashMap<String, (usize, Value)>>,
    /// Status answers given per LinkedIn media URN.
    polls: Mutex<HashMap<String, usize>>,
    /// PUT chunks received per YouTube session, counting broken ones.
    chunks: Mutex<HashMap<String, usize>>,
    next: AtomicUsize,
}

impl Fake {
    fn call(&self, entry: String) {
        self.calls.lock().unwrap().push(entry);
    }

    fn calls_starting(&self, prefix: &str) -> Vec<String> {
        self.calls.lock().unwrap().iter().filter(|call| call.starts_with(prefix)).cloned().collect()
    }
}

fn bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer fake-access-token-"))
}

fn versioned(headers: &HeaderMap) -> bool {
    headers.get("linkedin-version").is_some_and(|version| version.len() == 6)
        && headers.get("x-restli-protocol-version").is_some_and(|version| version == "2.0.0")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

async fn li_userinfo(headers: HeaderMap) -> Response {
    if !bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"sub": "782bbtaQ", "name": "Ada Lovelace"})).into_response()
}

/// No organisation scope in this grant: LinkedIn refuses the roles.
async fn li_acls() -> Response {
    (StatusCode::FORBIDDEN, Json(json!({"status": 403, "message": "Not enough permissions"}))).into_response()
}

/// `POST /rest/images?action=initializeUpload` and `POST /rest/videos?action=...`.
async fn li_action(
    State(fake): State<Arc<Fake>>,
    Path(kind): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !bearer(&headers) || !versioned(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"status": 401}))).into_response();
    }
    let action = query.get("action").cloned().unwrap_or_default();
    fake.call(format!("POST /rest/{kind} {action}"));
    fake.bodies.lock().unwrap().push(body.clone());
    let base = fake.base.lock().unwrap().clone();
    let n = fake.next.fetch_add(1, Ordering::SeqCst);
    match (kind.as_str(), action.as_str()) {
        ("images", "initializeUpload") if fake.li.images_limited.load(Ordering::SeqCst) => {
            (StatusCode::TOO_MANY_REQUESTS, Json(json!({"status": 429, "message": "Resource level throttle"})))
                .into_response()
        }
        ("images", "initializeUpload") => Json(json!({"value": {
            "uploadUrlExpiresAt": 1_900_000_000_000_u64,
            "uploadUrl": format!("{base}/li-upload/image/{n}"),
            "image": format!("urn:li:image:C4E10AQ{n}"),
        }}))
        .into_response(),
        ("videos", "initializeUpload") => {
            let size = body["initializeUploadRequest"]["fileSizeBytes"].as_u64().unwrap() as usize;
            let instructions: Vec<Value> = (0..size.div_ceil(LI_PART))
                .map(|part| {
                    json!({
                        "uploadUrl": format!("{base}/li-upload/video/{n}/{part}"),
                        "firstByte": part * LI_PART,
                        "lastByte": ((part + 1) * LI_PART).min(size) - 1,
                    })
                })
                .collect();
            Json(json!({"value": {
                "uploadUrlsExpireAt": 1_900_000_000_000_u64,
                "video": format!("urn:li:video:C5505AQ{n}"),
                "uploadInstructions": instructions,
                "uploadToken": "",
            }}))
            .into_response()
        }
        ("videos", "finalizeUpload") => StatusCode::OK.into_response(),
        _ => (StatusCode::BAD_REQUEST, Json(json!({"status": 400, "message": "unknown action"}))).into_response(),
    }
}

/// The upload URLs LinkedIn hands out: the bytes, PUT; a video part answers its ETag.
async fn li_upload(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let authorized = bearer(request.headers());
    let length: usize = header(request.headers(), "content-length").parse().unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    fake.call(format!("PUT {path} {}", bytes.len()));
    if !authorized || length != bytes.len() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    fake.uploads.lock().unwrap().insert(path.clone(), bytes.to_vec());
    let mut response = StatusCode::CREATED.into_response();
    if path.contains("/video/") {
        let etag = format!("\"etag-{}\"", path.rsplit('/').next().unwrap());
        response.headers_mut().insert("etag", etag.parse().unwrap());
    }
    response
}

/// `GET /rest/{images,videos}/{urn}`: a video is PROCESSING at first, then AVAILABLE.
async fn li_status(
    State(fake): State<Arc<Fake>>,
    Path((kind, urn)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !bearer(&headers) || !versioned(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fake.call(format!("GET /rest/{kind}/{urn}"));
    let polls = {
        let mut polls = fake.polls.lock().unwrap();
        let count = polls.entry(urn.clone()).or_default();
        *count += 1;
        *count
    };
    let status = match kind.as_str() {
        "videos" if fake.li.video_fails.load(Ordering::SeqCst) => "PROCESSING_FAILED",
        "videos" if polls == 1 => "PROCESSING",
        _ => "AVAILABLE",
    };
    let mut answer = json!({"id": urn, "status": status});
    if status == "PROCESSING_FAILED" {
        answer["processingFailureReason"] = json!("Video duration is not supported");
    }
    Json(answer).into_response()
}

/// `POST /rest/posts`: 201 with the post's URN in `x-restli-id`.
async fn li_post(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    fake.call("POST /rest/posts".to_owned());
    if fake.li.post_unauthorized.load(Ordering::SeqCst) {
        let answer = json!({"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN"});
        return (StatusCode::UNAUTHORIZED, Json(answer)).into_response();
    }
    if !bearer(&headers) || !versioned(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fake.bodies.lock().unwrap().push(body);
    let n = fake.next.fetch_add(1, Ordering::SeqCst);
    let mut response = StatusCode::CREATED.into_response();
    response.headers_mut().insert("x-restli-id", format!("urn:li:share:7{n}").parse().unwrap());
    response
}

async fn yt_channels(headers: HeaderMap) -> Response {
    if !bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let channel = json!({"kind": "youtube#channel", "id": "UC_ada_main", "snippet": {"title": "Ada Codes"}});
    Json(json!({"kind": "youtube#channelListResponse", "items": [channel]})).into_response()
}

/// `POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`: the session URI
/// in `Location`.
async fn yt_start(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.call(format!("POST /videos {}", query.get("part").cloned().unwrap_or_default()));
    if !bearer(&headers) {
        let error = json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [
            {"message": "Invalid Credentials", "domain": "global", "reason": "authError", "location": "Authorization"}
        ]}});
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    if let Some((status, error)) = fake.yt.start_error.lock().unwrap().clone() {
        return (status, Json(error)).into_response();
    }
    let resumable = query.get("uploadType").map(String::as_str) == Some("resumable");
    let size: usize = header(&headers, "x-upload-content-length").parse().unwrap_or_default();
    if !resumable || size == 0 || header(&headers, "x-upload-content-type") != "video/mp4" {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"code": 400, "errors": []}}))).into_response();
    }
    fake.bodies.lock().unwrap().push(body.clone());
    let n = fake.next.fetch_add(1, Ordering::SeqCst);
    let path = format!("/yt-upload/session/{n}");
    fake.sessions.lock().unwrap().insert(path.clone(), (size, body));
    let base = fake.base.lock().unwrap().clone();
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert("location", format!("{base}{path}?upload_id=xa298sd_{n}").parse().unwrap());
    response
}

/// The session: a chunk (`Content-Range: bytes A-B/TOTAL`, A being what it holds) or a status
/// question (`bytes */TOTAL`); `308` with `Range` until the last byte is in, then the video.
async fn yt_session(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let Some((size, resource)) = fake.sessions.lock().unwrap().get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = header(&headers, "content-range").to_owned();
    fake.call(format!("PUT {range}"));
    let held = fake.uploads.lock().unwrap().get(&path).map_or(0, Vec::len);
    if !bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if range == format!("bytes */{size}") {
        return session_answer(held, size, &resource, &path);
    }
    let Some((first, last)) = range
        .strip_prefix("bytes ")
        .and_then(|range| range.strip_suffix(&format!("/{size}")))
        .and_then(|range| range.split_once('-'))
        .and_then(|(first, last)| Some((first.parse::<usize>().ok()?, last.parse::<usize>().ok()?)))
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let length = last + 1 - first;
    let whole_chunks = length % (256 * 1024) == 0 || last + 1 == size;
    if first != held || header(&headers, "content-length") != length.to_string() || !whole_chunks {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let index = {
        let mut chunks = fake.chunks.lock().unwrap();
        let count = chunks.entry(path.clone()).or_default();
        *count += 1;
        *count - 1
    };
    let drop = fake.yt.drop_chunk.lock().unwrap().filter(|(at, _)| *at == index);
    let mut body = request.into_body().into_data_stream();
    let mut taken = Vec::with_capacity(length);
    while let Some(piece) = body.next().await {
        taken.extend_from_slice(&piece.unwrap());
        if let Some((_, keep)) = drop
            && taken.len() >= keep
        {
            // The connection breaks off: part of the chunk landed, and no answer comes.
            taken.truncate(keep);
            fake.uploads.lock().unwrap().entry(path.clone()).or_default().extend_from_slice(&taken);
            *fake.yt.drop_chunk.lock().unwrap() = None;
            return std::future::pending().await;
        }
    }
    if taken.len() != length {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let held = {
        let mut uploads = fake.uploads.lock().unwrap();
        let bytes = uploads.entry(path.clone()).or_default();
        bytes.extend_from_slice(&taken);
        bytes.len()
    };
    if held == size && *fake.yt.hold_last.lock().unwrap() {
        return std::future::pending().await;
    }
    session_answer(held, size, &resource, &path)
}

fn session_answer(held: usize, size: usize, resource: &Value, path: &str) -> Response {
    if held == size {
        let id = format!("dQw4w9WgXc{}", path.rsplit('/').next().unwrap());
        let video = json!({"kind": "youtube#video", "id": id, "snippet": resource["snippet"],
            "status": {"uploadStatus": "uploaded", "privacyStatus": resource["status"]["privacyStatus"]}});
        return (StatusCode::OK, Json(video)).into_response();
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if held > 0 {
        response.headers_mut().insert("range", format!("bytes=0-{}", held - 1).parse().unwrap());
    }
    response
}

/// A fake YouTube on loopback (channels, resumable uploads); its base URL (`/yt` for the api,
/// `/yt-upload` for uploads).
pub(crate) async fn youtube_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/yt/channels", get(yt_channels))
        .route("/yt-upload/videos", post(yt_start))
        .route("/yt-upload/session/{n}", put(yt_session))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *fake.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, base)
}

/// The app with LinkedIn and YouTube pointing at a new fake (OAuth from [`FakeOAuth`]), a
/// client, and one connected account on `platform`; returns the app, the fake, the client and
/// the account id.
async fn app_on(platform: &str) -> (TestApp, Arc<Fake>, Client, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/li/v2/userinfo", get(li_userinfo))
        .route("/li/v2/organizationalEntityAcls", get(li_acls))
        .route("/li/rest/posts", post(li_post))
        .route("/li/rest/{kind}", post(li_action))
        .route("/li/rest/{kind}/{urn}", get(li_status))
        .route("/li-upload/{kind}/{*rest}", put(li_upload))
        .route("/yt/channels", get(yt_channels))
        .route("/yt-upload/videos", post(yt_start))
        .route("/yt-upload/session/{n}", put(yt_session))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *fake.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::new().await;
    let mut config = test_config(&db);
    // A broken chunk is an answer that never comes: the timeout ends it.
    config.platform_timeout_secs = 3;
    let (_oauth, settings) = FakeOAuth::start().await;
    let linkedin = PlatformSettings { api_url: Some(format!("{base}/li")), ..settings.clone() };
    let youtube = PlatformSettings {
        api_url: Some(format!("{base}/yt")),
        upload_url: Some(format!("{base}/yt-upload")),
        ..settings
    };
    config.platforms.insert("linkedin".into(), linkedin);
    config.platforms.insert("youtube".into(), youtube);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    let (_, callback) = crate::connect::authorize_on(&app, &client, platform, json!({}), "").await;
    let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("1 account(s) connected"), "{page}");
    let listed = get_json(&app, &client, &format!("/v1/accounts?platform={platform}")).await;
    let account = listed["data"][0]["id"].as_str().unwrap().to_owned();
    (app, fake, client, account)
}

/// An mp4 of `width` x `height`, 3 s, with `mdat` bytes of media data that differ at every
/// offset (so a byte out of place shows).
pub(crate) fn video(width: u16, height: u16, mdat: u32) -> Vec<u8> {
    let (mut file, moov) = mp4_around(width, height, 3, mdat);
    file.extend((0..mdat).map(|i| (i % 251) as u8 ^ (i >> 16) as u8));
    file.extend_from_slice(&moov);
    file
}

/// Creates the post and waits until it ends `wanted`; returns its first delivery.
async fn publish(app: &TestApp, client: &Client, body: Value, wanted: &str) -> Value {
    let post = create(app, client, body).await;
    let done = wait_for(app, client, post["id"].as_str().unwrap(), &[wanted], Duration::from_secs(40)).await;
    done["deliveries"][0].clone()
}

/// The `delivery.retrying` event's error code and retry time, once there is one.
async fn retrying(app: &TestApp) -> (String, chrono::DateTime<chrono::Utc>) {
    for _ in 0..800 {
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT payload->'error'->>'code', payload->>'retry_at' FROM events \
             WHERE event_type = 'delivery.retrying' ORDER BY position LIMIT 1",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if let Some((Some(code), Some(at))) = row {
            return (code, at.parse().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the delivery never retried");
}

#[tokio::test]
async fn linkedin_publishes_one_image_with_its_alt_text_through_the_images_api() {
    let (app, fake, client, account) = app_on("linkedin").await;
    let image = png(1200, 627);
    let id = upload(&app, &client.key, image.clone()).await;
    let body = json!({
        "content": "One picture",
        "media": [{"id": id, "alt_text": "a blue banner"}],
        "targets": [{"account_id": account, "options": {"platform": "linkedin", "visibility": "connections"}}],
    });
    let delivery = publish(&app, &client, body, "published").await;
    assert!(delivery["platform_post_id"].as_str().unwrap().starts_with("urn:li:share:7"), "{delivery}");

    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies[0], json!({"initializeUploadRequest": {"owner": "urn:li:person:782bbtaQ"}}));
    let urn = "urn:li:image:C4E10AQ0";
    assert_eq!(bodies[1]["content"], json!({"media": {"id": urn, "altText": "a blue banner"}}));
    assert_eq!(bodies[1]["author"], "urn:li:person:782bbtaQ");
    assert_eq!(bodies[1]["commentary"], "One picture");
    assert_eq!(bodies[1]["visibility"], "CONNECTIONS");
    assert_eq!(fake.uploads.lock().unwrap()["/li-upload/image/0"], image, "the image's bytes, whole");
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "POST /rest/images initializeUpload".to_owned(),
            format!("PUT /li-upload/image/0 {}", image.len()),
            format!("GET /rest/images/{urn}"),
            "POST /rest/posts".to_owned(),
        ]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn linkedin_publishes_several_images_as_a_multi_image_post_in_order() {
    let (app, fake, client, account) = app_on("linkedin").await;
    let mut media = Vec::new();
    for (n, size) in [(0, 300), (1, 400), (2, 500)] {
        let id = upload(&app, &client.key, png(size, size)).await;
        media.push(if n == 1 { json!({"id": id}) } else { json!({"id": id, "alt_text": format!("picture {n}")}) });
    }
    let body = json!({"content": "Three pictures", "media": media, "targets": [{"account_id": account}]});
    publish(&app, &client, body, "published").await;

    let post = fake.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(post["visibility"], "PUBLIC", "the default");
    assert_eq!(
        post["content"],
        json!({"multiImage": {"images": [
            {"id": "urn:li:image:C4E10AQ0", "altText": "picture 0"},
            {"id": "urn:li:image:C4E10AQ1"},
            {"id": "urn:li:image:C4E10AQ2", "altText": "picture 2"},
        ]}})
    );
    let uploads = fake.uploads.lock().unwrap().clone();
    for (n, size) in [(0, 300), (1, 400), (2, 500)] {
        assert_eq!(uploads[&format!("/li-upload/image/{n}")], png(size, size), "image {n} in its place");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn linkedin_uploads_a_video_in_its_parts_finalizes_their_etags_and_waits_while_it_processes() {
    let (app, fake, client, account) = app_on("linkedin").await;
    let bytes = video(640, 360, 9 * 1024 * 1024);
    let id = upload(&app, &client.key, bytes.clone()).await;
    let body = json!({
        "content": "A film",
        "media": [{"id": id}],
        "targets": [{"account_id": account, "options": {"platform": "linkedin", "title": "Our film"}}],
    });
    publish(&app, &client, body, "published").await;

    let bodies = fake.bodies.lock().unwrap().clone();
    let owner = "urn:li:person:782bbtaQ";
    assert_eq!(
        bodies[0],
        json!({"initializeUploadRequest": {
            "owner": owner, "fileSizeBytes": bytes.len(), "uploadCaptions": false, "uploadThumbnail": false,
        }})
    );
    let urn = "urn:li:video:C5505AQ0";
    assert_eq!(
        bodies[1],
        json!({"finalizeUploadRequest": {
            "video": urn, "uploadToken": "", "uploadedPartIds": ["\"etag-0\"", "\"etag-1\"", "\"etag-2\""],
        }})
    );
    assert_eq!(bodies[2]["content"], json!({"media": {"id": urn, "title": "Our film"}}));
    let uploads = fake.uploads.lock().unwrap().clone();
    let joined: Vec<u8> = (0..3).flat_map(|part| uploads[&format!("/li-upload/video/0/{part}")].clone()).collect();
    assert_eq!(joined.len(), bytes.len());
    assert!(joined == bytes, "the parts are the video's bytes, in order");
    let parts = fake.calls_starting("PUT /li-upload/video/0/");
    let last = bytes.len() - 2 * LI_PART;
    assert_eq!(
        parts,
        [
            format!("PUT /li-upload/video/0/0 {LI_PART}"),
            format!("PUT /li-upload/video/0/1 {LI_PART}"),
            format!("PUT /li-upload/video/0/2 {last}"),
        ]
    );
    // Polled through PROCESSING until AVAILABLE, and only then posted.
    let calls = fake.calls.lock().unwrap().clone();
    let tail: Vec<&str> = calls.iter().rev().take(4).rev().map(String::as_str).collect();
    let status = format!("GET /rest/videos/{urn}");
    assert_eq!(tail, ["POST /rest/videos finalizeUpload", status.as_str(), status.as_str(), "POST /rest/posts"]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn linkedin_refuses_a_video_it_cannot_process_and_a_revoked_token_needs_a_reconnect() {
    let (app, fake, client, account) = app_on("linkedin").await;
    let clip = upload(&app, &client.key, video(640, 360, 200_000)).await;
    let picture = upload(&app, &client.key, png(100, 100)).await;

    // A video LinkedIn cannot process: refused, with LinkedIn's reason, and nothing posted.
    fake.li.video_fails.store(true, Ordering::SeqCst);
    let body = json!({"content": "Unplayable", "media": [{"id": clip}], "targets": [{"account_id": account}]});
    let failed = publish(&app, &client, body, "failed").await;
    assert_eq!(failed["last_error"]["code"], "rejected", "{failed}");
    assert!(failed["last_error"]["message"].as_str().unwrap().contains("Video duration is not supported"), "{failed}");
    assert!(fake.calls_starting("POST /rest/posts").is_empty(), "no post without its video");

    // A revoked token at the post: the account needs a reconnect.
    fake.li.post_unauthorized.store(true, Ordering::SeqCst);
    let body = json!({"content": "Revoked", "media": [{"id": picture}], "targets": [{"account_id": account}]});
    let dead = publish(&app, &client, body, "failed").await;
    assert_eq!(dead["last_error"]["code"], "reconnect_required", "{dead}");
    let listed = get_json(&app, &client, &format!("/v1/accounts/{account}")).await;
    assert_eq!(listed["status"], "needs_reconnect", "{listed}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn linkedin_throttling_an_upload_makes_the_delivery_wait() {
    let (app, fake, client, account) = app_on("linkedin").await;
    let picture = upload(&app, &client.key, png(100, 100)).await;
    fake.li.images_limited.store(true, Ordering::SeqCst);
    let started = chrono::Utc::now();
    let body = json!({"content": "Throttled", "media": [{"id": picture}], "targets": [{"account_id": account}]});
    create(&app, &client, body).await;
    let (code, until) = retrying(&app).await;
    assert_eq!(code, "rate_limited");
    assert!(until > started, "{until}");
    assert!(fake.calls_starting("PUT").is_empty() && fake.calls_starting("POST /rest/posts").is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_uploads_a_video_in_chunks_with_its_snippet_and_status() {
    let (app, fake, client, account) = app_on("youtube").await;
    let bytes = video(1080, 1920, 17 * 1024 * 1024);
    let id = upload(&app, &client.key, bytes.clone()).await;
    let body = json!({
        "content": "How herald publishes\n\nA short, vertical: a Short.",
        "media": [{"id": id}],
        "targets": [{"account_id": account, "options": {
            "platform": "youtube",
            "title": "herald, in 60 seconds",
            "privacy": "unlisted",
            "tags": ["herald", "rust"],
            "category_id": "28",
            "made_for_kids": false,
        }}],
    });
    let delivery = publish(&app, &client, body, "published").await;
    let video_id = delivery["platform_post_id"].as_str().unwrap();
    assert_eq!(video_id, "dQw4w9WgXc0");
    assert_eq!(delivery["platform_url"], format!("https://www.youtube.com/watch?v={video_id}"));

    let resource = fake.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        resource,
        json!({
            "snippet": {
                "title": "herald, in 60 seconds",
                "description": "How herald publishes\n\nA short, vertical: a Short.",
                "tags": ["herald", "rust"],
                "categoryId": "28",
            },
            "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": false},
        })
    );
    let total = bytes.len();
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "POST /videos snippet,status".to_owned(),
            format!("PUT bytes 0-{}/{total}", YT_CHUNK - 1),
            format!("PUT bytes {YT_CHUNK}-{}/{total}", 2 * YT_CHUNK - 1),
            format!("PUT bytes {}-{}/{total}", 2 * YT_CHUNK, total - 1),
        ]
    );
    assert!(fake.uploads.lock().unwrap()["/yt-upload/session/0"] == bytes, "the video's bytes, in order");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_resumes_a_broken_chunk_from_the_last_acknowledged_byte() {
    let (app, fake, client, account) = app_on("youtube").await;
    let bytes = video(1920, 1080, 17 * 1024 * 1024);
    let id = upload(&app, &client.key, bytes.clone()).await;
    // The second chunk breaks off after 3 MiB and a bit landed.
    let kept = 3 * 1024 * 1024 + 12_345;
    *fake.yt.drop_chunk.lock().unwrap() = Some((1, kept));
    let body = json!({"content": "Resumed", "media": [{"id": id}], "targets": [{"account_id": account}]});
    let delivery = publish(&app, &client, body, "published").await;
    assert_eq!(delivery["platform_post_id"], "dQw4w9WgXc0");
    assert_eq!(delivery["attempts"], 1, "resumed within the attempt");

    let total = bytes.len();
    let acknowledged = YT_CHUNK + kept;
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "POST /videos snippet,status".to_owned(),
            format!("PUT bytes 0-{}/{total}", YT_CHUNK - 1),
            format!("PUT bytes {YT_CHUNK}-{}/{total}", 2 * YT_CHUNK - 1),
            format!("PUT bytes */{total}"),
            format!("PUT bytes {acknowledged}-{}/{total}", total - 1),
        ],
        "asked the session, then went on from its last byte"
    );
    assert!(fake.uploads.lock().unwrap()["/yt-upload/session/0"] == bytes, "every byte once, in order");
    let resource = fake.bodies.lock().unwrap()[0].clone();
    assert_eq!(resource["snippet"]["title"], "Resumed", "the content's first line");
    assert_eq!(resource["status"], json!({"privacyStatus": "public"}));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_schedules_a_private_video_with_publish_at_and_a_dead_token_needs_a_reconnect() {
    let (app, fake, client, account) = app_on("youtube").await;
    let id = upload(&app, &client.key, video(1080, 1920, 100_000)).await;
    let body = json!({
        "content": "Premieres on Monday",
        "media": [{"id": id}],
        "targets": [{"account_id": account, "options": {
            "platform": "youtube", "publish_at": "2027-03-01T17:00:00Z", "made_for_kids": true,
        }}],
    });
    publish(&app, &client, body, "published").await;
    let resource = fake.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        resource["status"],
        json!({"privacyStatus": "private", "publishAt": "2027-03-01T17:00:00Z", "selfDeclaredMadeForKids": true})
    );

    // A revoked grant: YouTube's 401.
    let dead = json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [
        {"message": "Invalid Credentials", "domain": "global", "reason": "authError"}]}});
    *fake.yt.start_error.lock().unwrap() = Some((StatusCode::UNAUTHORIZED, dead));
    let body = json!({"content": "Revoked", "media": [{"id": id}], "targets": [{"account_id": account}]});
    let failed = publish(&app, &client, body, "failed").await;
    assert_eq!(failed["last_error"]["code"], "reconnect_required", "{failed}");
    let listed = get_json(&app, &client, &format!("/v1/accounts/{account}")).await;
    assert_eq!(listed["status"], "needs_reconnect", "{listed}");
    app.stop().await.unwrap();
}

/// A YouTube error body with `reason`.
fn youtube_error(status: u16, domain: &str, reason: &str) -> Value {
    json!({"error": {"code": status, "message": reason, "errors": [
        {"message": reason, "domain": domain, "reason": reason}
    ]}})
}

#[tokio::test]
async fn youtube_over_quota_waits_until_midnight_pacific() {
    let (app, fake, client, account) = app_on("youtube").await;
    let id = upload(&app, &client.key, video(1080, 1920, 100_000)).await;
    let quota = youtube_error(403, "youtube.quota", "quotaExceeded");
    *fake.yt.start_error.lock().unwrap() = Some((StatusCode::FORBIDDEN, quota));
    let started = chrono::Utc::now();
    let body = json!({"content": "Over quota", "media": [{"id": id}], "targets": [{"account_id": account}]});
    create(&app, &client, body).await;
    let (code, until) = retrying(&app).await;
    assert_eq!(code, "rate_limited");
    assert!(until > started && until <= started + chrono::Duration::hours(24), "{until}");
    assert!(matches!(until.hour(), 7 | 8) && until.minute() == 0 && until.second() == 0, "midnight Pacific: {until}");
    assert!(fake.uploads.lock().unwrap().is_empty(), "no bytes sent without a session");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_upload_cap_waits_a_day() {
    let (app, fake, client, account) = app_on("youtube").await;
    let id = upload(&app, &client.key, video(1080, 1920, 100_000)).await;
    // The channel's upload cap: "try again in 24 hours".
    let cap = youtube_error(400, "youtube.video", "uploadLimitExceeded");
    *fake.yt.start_error.lock().unwrap() = Some((StatusCode::BAD_REQUEST, cap));
    let started = chrono::Utc::now();
    let body = json!({"content": "Capped", "media": [{"id": id}], "targets": [{"account_id": account}]});
    create(&app, &client, body).await;
    let (code, until) = retrying(&app).await;
    assert_eq!(code, "rate_limited");
    let wait = until - started;
    assert!(wait > chrono::Duration::hours(23) && wait < chrono::Duration::hours(25), "{until}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_and_linkedin_options_are_checked_at_creation_field_by_field() {
    let (app, _fake, client, youtube) = app_on("youtube").await;
    let id = upload(&app, &client.key, video(1080, 1920, 100_000)).await;
    let options = json!({
        "platform": "youtube",
        "title": "x".repeat(101),
        "privacy": "everyone",
    });
    let body =
        json!({"content": "Checked", "media": [{"id": id}], "targets": [{"account_id": youtube, "options": options}]});
    let response = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "targets[0].options.privacy", "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("unknown variant `everyone`"), "{problem}");

    let options = json!({"platform": "youtube", "title": "<b>", "category_id": "People"});
    let body =
        json!({"content": "Checked", "media": [{"id": id}], "targets": [{"account_id": youtube, "options": options}]});
    let response = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["targets[0].options.title", "targets[0].options.category_id"], "{problem}");

    let document = get_json(&app, &client, "/v1/openapi.json").await;
    let schemas = &document["components"]["schemas"];
    let youtube = &schemas["YouTubeOptions"]["properties"];
    assert!(youtube["title"].is_object() && youtube["publish_at"].is_object(), "{youtube}");
    let linkedin = &schemas["LinkedInOptions"]["properties"];
    assert!(linkedin["visibility"].is_object() && linkedin["title"].is_object(), "{linkedin}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_asks_the_session_when_the_last_chunk_lands_without_an_answer_and_uploads_once() {
    let (app, fake, client, account) = app_on("youtube").await;
    let bytes = video(1080, 1920, 9 * 1024 * 1024);
    let id = upload(&app, &client.key, bytes.clone()).await;
    // The last chunk lands whole, then its answer never comes: the video exists.
    let last = bytes.len() - YT_CHUNK;
    *fake.yt.drop_chunk.lock().unwrap() = Some((1, last));
    let body = json!({"content": "Answer lost", "media": [{"id": id}], "targets": [{"account_id": account}]});
    let delivery = publish(&app, &client, body, "published").await;
    assert_eq!(delivery["platform_post_id"], "dQw4w9WgXc0", "{delivery}");
    let total = bytes.len();
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "POST /videos snippet,status".to_owned(),
            format!("PUT bytes 0-{}/{total}", YT_CHUNK - 1),
            format!("PUT bytes {YT_CHUNK}-{}/{total}", total - 1),
            format!("PUT bytes */{total}"),
        ],
        "the session's answer is the video: nothing sent again"
    );
    assert!(fake.uploads.lock().unwrap()["/yt-upload/session/0"] == bytes);
    app.stop().await.unwrap();
}
