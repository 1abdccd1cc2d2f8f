//! Media on X, Bluesky and Mastodon, published through the real adapters against one in-test
//! fake that answers in each platform's documented shapes and keeps what herald sent, so each
//! test can check the calls' order, paths, auth, bodies and chunks:
//! - X: the v2 chunked upload (`initialize`, `append` of 4 MiB segments in order, `finalize`,
//!   STATUS while a video is processed), alt text through media metadata, `media.media_ids` on
//!   the tweet; 402 (credits spent) and a monthly usage cap end the delivery with a clear reason,
//!   a failed processing with X's, a 5xx on a chunk is retried.
//! - Bluesky: `uploadBlob` of each image (its type as `Content-Type`) into an
//!   `app.bsky.embed.images` with alt text and aspect ratios; a video through the video service
//!   (a service token for the PDS, `uploadVideo`, job status until the blob) into an
//!   `app.bsky.embed.video`; a failed job and a refused blob end the delivery with the reason.
//! - Mastodon: `/api/v2/media` with the description, `GET /api/v1/media/{id}` while it answers
//!   206, the status with `media_ids` and the delivery's `Idempotency-Key`; a refused file ends
//!   the delivery with the instance's reason.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, middleware};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_shared::media::samples::{jpeg, mp4, png};
use herald_shared::platforms::PlatformSettings;
use serde_json::{Value, json};

use crate::connect::{Client, client, get_json};
use crate::fake_oauth::{FakeOAuth, mastodon_status_entity};
use crate::harness::{TestApp, TestDb, test_config};
use crate::post_media::upload;

/// X's segment size in herald (`herald_shared::platforms::x::CHUNK`).
const CHUNK: usize = 4 * 1024 * 1024;

/// One call the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// With the query.
    path: String,
    authorization: String,
}

/// An X upload, as INIT declared it and APPENDs filled it.
#[derive(Debug, Clone, Default)]
struct XUpload {
    init: Value,
    /// `(segment_index, bytes)` in the order they came.
    segments: Vec<(usize, usize)>,
    bytes: Vec<u8>,
    finalized: bool,
}

/// A Mastodon attachment.
#[derive(Debug, Clone)]
struct Attachment {
    file_name: String,
    content_type: String,
    bytes: Vec<u8>,
    description: Option<String>,
    /// How many more `GET /api/v1/media/{id}` answer 206.
    processing: usize,
}

/// `(query, Content-Type, bytes)` of a video sent to Bluesky's video service.
type SentVideo = (HashMap<String, String>, String, Vec<u8>);

/// The three platforms' fake.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    /// Answers to give instead of the normal one, by endpoint name, in order.
    scripted: Mutex<HashMap<&'static str, VecDeque<(StatusCode, Value)>>>,
    x_uploads: Mutex<HashMap<String, XUpload>>,
    /// The `processing_info` of the next STATUS answers; `succeeded` once empty.
    x_processing: Mutex<VecDeque<Value>>,
    x_metadata: Mutex<Vec<Value>>,
    tweets: Mutex<Vec<Value>>,
    /// `(Content-Type, bytes)` of each blob uploaded to the PDS.
    blobs: Mutex<Vec<(String, Vec<u8>)>>,
    /// `(query, Content-Type, bytes)` of each video sent to the video service.
    videos: Mutex<Vec<SentVideo>>,
    service_auth: Mutex<Vec<HashMap<String, String>>>,
    /// The next job states `getJobStatus` answers; completed (with the blob) once empty.
    job_states: Mutex<VecDeque<Value>>,
    records: Mutex<Vec<Value>>,
    attachments: Mutex<Vec<Attachment>>,
    /// `(Idempotency-Key, body)` of each status post.
    statuses: Mutex<Vec<(String, Value)>>,
    ids: AtomicUsize,
}

impl Fake {
    fn script(&self, endpoint: &'static str, status: StatusCode, body: Value) {
        self.scripted.lock().unwrap().entry(endpoint).or_default().push_back((status, body));
    }

    fn scripted(&self, endpoint: &'static str) -> Option<Response> {
        let (status, body) = self.scripted.lock().unwrap().get_mut(endpoint)?.pop_front()?;
        Some((status, Json(body)).into_response())
    }

    fn next_id(&self) -> usize {
        self.ids.fetch_add(1, Ordering::SeqCst)
    }

    /// The calls received since the last [`Fake::forget_calls`], as `METHOD path`.
    fn calls(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|seen| format!("{} {}", seen.method, seen.path)).collect()
    }

    fn forget_calls(&self) {
        self.seen.lock().unwrap().clear();
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default()
}

fn has_fake_token(headers: &HeaderMap) -> bool {
    bearer(headers).starts_with("Bearer fake-access-token-")
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

async fn record(State(fake): State<Arc<Fake>>, request: axum::extract::Request, next: middleware::Next) -> Response {
    let path = request.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let seen = Seen { method: request.method().clone(), path, authorization: bearer(request.headers()).to_owned() };
    fake.seen.lock().unwrap().push(seen);
    next.run(request).await
}

/// X's answer to a call without a user token.
fn x_unauthorized() -> Response {
    let body = json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

async fn x_me(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    Json(json!({"data": {"id": "2244994945", "name": "Ada Lovelace", "username": "ada"}})).into_response()
}

/// `POST /2/media/upload/initialize`.
async fn x_initialize(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    if let Some(answer) = fake.scripted("x.initialize") {
        return answer;
    }
    let id = format!("18800281060205158{:02}", fake.next_id());
    fake.x_uploads.lock().unwrap().insert(id.clone(), XUpload { init: body, ..XUpload::default() });
    Json(json!({"data": {"id": id, "media_key": format!("13_{id}"), "expires_after_secs": 1_295_999}})).into_response()
}

/// `POST /2/media/upload/{id}/append`: multipart `segment_index` and `media`.
async fn x_append(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    let (mut index, mut media) = (None, None);
    while let Some(field) = form.next_field().await.unwrap() {
        match field.name() {
            Some("segment_index") => index = field.text().await.unwrap().parse::<usize>().ok(),
            Some("media") => media = Some(field.bytes().await.unwrap()),
            other => panic!("an APPEND carries no {other:?}"),
        }
    }
    if let Some(answer) = fake.scripted("x.append") {
        return answer;
    }
    let mut uploads = fake.x_uploads.lock().unwrap();
    let (Some(upload), Some(index), Some(media)) = (uploads.get_mut(&id), index, media) else {
        let body = json!({"errors": [{"message": "bad APPEND"}], "title": "Invalid Request"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    upload.segments.push((index, media.len()));
    upload.bytes.extend_from_slice(&media);
    Json(json!({"data": {"expires_at": 1_800_000_000}})).into_response()
}

/// `POST /2/media/upload/{id}/finalize`: a video is processed after it.
async fn x_finalize(State(fake): State<Arc<Fake>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    let mut uploads = fake.x_uploads.lock().unwrap();
    let Some(upload) = uploads.get_mut(&id) else { return StatusCode::NOT_FOUND.into_response() };
    if upload.init["total_bytes"] != json!(upload.bytes.len()) {
        let body = json!({"errors": [{"message": "File size mismatch"}], "title": "Invalid Request"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    upload.finalized = true;
    let mut data =
        json!({"id": id, "media_key": format!("13_{id}"), "size": upload.bytes.len(), "expires_after_secs": 86_400});
    if upload.init["media_category"] == "tweet_video" {
        data["processing_info"] = json!({"state": "pending", "check_after_secs": 1});
    }
    Json(json!({"data": data})).into_response()
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    command: String,
    media_id: String,
}

/// `GET /2/media/upload?command=STATUS&media_id=`.
async fn x_status(State(fake): State<Arc<Fake>>, headers: HeaderMap, Query(query): Query<StatusQuery>) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    let known = fake.x_uploads.lock().unwrap().get(&query.media_id).is_some_and(|upload| upload.finalized);
    if query.command != "STATUS" || !known {
        return (StatusCode::BAD_REQUEST, Json(json!({"title": "Invalid Request"}))).into_response();
    }
    let processing =
        fake.x_processing.lock().unwrap().pop_front().unwrap_or(json!({"state": "succeeded", "progress_percent": 100}));
    Json(json!({"data": {"id": query.media_id, "media_key": format!("13_{}", query.media_id), "processing_info": processing}}))
        .into_response()
}

/// `POST /2/media/metadata`.
async fn x_metadata(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    fake.x_metadata.lock().unwrap().push(body.clone());
    Json(json!({"data": {"id": body["id"], "associated_metadata": true}})).into_response()
}

/// `POST /2/tweets`: every media id must be a finished upload.
async fn x_tweet(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !has_fake_token(&headers) {
        return x_unauthorized();
    }
    if let Some(answer) = fake.scripted("x.tweets") {
        return answer;
    }
    let uploads = fake.x_uploads.lock().unwrap();
    let ids = body["media"]["media_ids"].as_array().cloned().unwrap_or_default();
    if !ids.iter().all(|id| id.as_str().and_then(|id| uploads.get(id)).is_some_and(|upload| upload.finalized)) {
        let body = json!({"errors": [{"message": "Your media IDs are invalid."}], "title": "Invalid Request"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    drop(uploads);
    let id = format!("14458805484723281{:02}", fake.next_id());
    fake.tweets.lock().unwrap().push(body.clone());
    (StatusCode::CREATED, Json(json!({"data": {"id": id, "text": body["text"]}}))).into_response()
}

/// A Bluesky access JWT (its payload carries `exp`).
fn bluesky_session() -> Value {
    let exp = chrono::Utc::now().timestamp() + 7200;
    let payload = URL_SAFE_NO_PAD.encode(json!({"exp": exp, "scope": "com.atproto.access"}).to_string());
    json!({
        "accessJwt": format!("eyJhbGciOiJIUzI1NiJ9.{payload}.access"),
        "refreshJwt": format!("eyJhbGciOiJIUzI1NiJ9.{payload}.refresh"),
        "handle": "ada.bsky.social",
        "did": "did:plc:ada",
    })
}

fn bluesky_authorized(headers: &HeaderMap) -> bool {
    bearer(headers).ends_with(".access")
}

fn bluesky_invalid_token() -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": "InvalidToken", "message": "Bad token"}))).into_response()
}

async fn bluesky_create_session() -> Response {
    Json(bluesky_session()).into_response()
}

/// `getSession`, with the DID document that names the account's PDS.
async fn bluesky_get_session(headers: HeaderMap) -> Response {
    if !bluesky_authorized(&headers) {
        return bluesky_invalid_token();
    }
    let service = json!({"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://morel.us-east.host.bsky.network"});
    let document = json!({"id": "did:plc:ada", "alsoKnownAs": ["at://ada.bsky.social"], "service": [service]});
    Json(json!({"handle": "ada.bsky.social", "did": "did:plc:ada", "active": true, "didDoc": document})).into_response()
}

/// `com.atproto.repo.uploadBlob`: the body is the file.
async fn bluesky_upload_blob(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bluesky_authorized(&headers) {
        return bluesky_invalid_token();
    }
    if let Some(answer) = fake.scripted("bluesky.uploadBlob") {
        return answer;
    }
    let mime = content_type(&headers);
    let n = fake.next_id();
    fake.blobs.lock().unwrap().push((mime.clone(), body.to_vec()));
    let blob =
        json!({"$type": "blob", "ref": {"$link": format!("bafkreiblob{n}")}, "mimeType": mime, "size": body.len()});
    Json(json!({"blob": blob})).into_response()
}

async fn bluesky_service_auth(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !bluesky_authorized(&headers) {
        return bluesky_invalid_token();
    }
    fake.service_auth.lock().unwrap().push(query);
    Json(json!({"token": "service-token-for-the-pds"})).into_response()
}

/// The video service's `uploadVideo`: answers the job (its fields at the top, as the service
/// answers this call).
async fn bluesky_upload_video(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if bearer(&headers) != "Bearer service-token-for-the-pds" {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "AuthMissing"}))).into_response();
    }
    fake.videos.lock().unwrap().push((query, content_type(&headers), body.to_vec()));
    Json(json!({"jobId": "job-1", "did": "did:plc:ada", "state": "JOB_STATE_CREATED"})).into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobQuery {
    job_id: String,
}

/// The video service's `getJobStatus`.
async fn bluesky_job_status(State(fake): State<Arc<Fake>>, Query(query): Query<JobQuery>) -> Response {
    assert_eq!(query.job_id, "job-1");
    let state = fake.job_states.lock().unwrap().pop_front();
    let status = state.unwrap_or_else(|| {
        let blob = json!({"$type": "blob", "ref": {"$link": "bafkreivideo"}, "mimeType": "video/mp4", "size": 1234});
        json!({"jobId": "job-1", "did": "did:plc:ada", "state": "JOB_STATE_COMPLETED", "progress": 100, "blob": blob})
    });
    Json(json!({"jobStatus": status})).into_response()
}

async fn bluesky_create_record(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !bluesky_authorized(&headers) {
        return bluesky_invalid_token();
    }
    let n = fake.next_id();
    fake.records.lock().unwrap().push(body);
    Json(json!({"uri": format!("at://did:plc:ada/app.bsky.feed.post/3l2s5xxv2z{n}"), "cid": "bafyreib2"}))
        .into_response()
}

async fn mastodon_me(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    Json(json!({"id": "109348", "username": "ada", "acct": "ada", "display_name": "Ada"})).into_response()
}

/// A Mastodon `MediaAttachment` entity; `url` is `null` while it is processed.
fn attachment_entity(id: usize, attachment: &Attachment) -> Value {
    let kind = if attachment.content_type.starts_with("video/") { "video" } else { "image" };
    let url = (attachment.processing == 0).then(|| format!("https://files.mastodon.example/media/{id}"));
    json!({
        "id": id.to_string(),
        "type": kind,
        "url": url,
        "preview_url": format!("https://files.mastodon.example/media/{id}/small"),
        "remote_url": null,
        "meta": {},
        "description": attachment.description,
        "blurhash": "UFBWY:8_0Jxv",
    })
}

/// `POST /api/v2/media`: 200 for an image (processed at once), 202 for a video.
async fn mastodon_upload(State(fake): State<Arc<Fake>>, headers: HeaderMap, mut form: Multipart) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    let (mut file, mut description) = (None, None);
    while let Some(field) = form.next_field().await.unwrap() {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let mime = field.content_type().unwrap_or_default().to_owned();
                file = Some((name, mime, field.bytes().await.unwrap().to_vec()));
            }
            Some("description") => description = Some(field.text().await.unwrap()),
            other => panic!("herald sends no {other:?}"),
        }
    }
    if let Some(answer) = fake.scripted("mastodon.media") {
        return answer;
    }
    let Some((file_name, content_type, bytes)) = file else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "Validation failed: File can't be blank"})))
            .into_response();
    };
    let processing = if content_type.starts_with("video/") { 2 } else { 0 };
    let attachment = Attachment { file_name, content_type, bytes, description, processing };
    let mut attachments = fake.attachments.lock().unwrap();
    attachments.push(attachment);
    let id = 1090 + attachments.len() - 1;
    let status = if processing > 0 { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, Json(attachment_entity(id, attachments.last().unwrap()))).into_response()
}

/// `GET /api/v1/media/{id}`: 206 while processing, 200 after.
async fn mastodon_media(State(fake): State<Arc<Fake>>, Path(id): Path<usize>, headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    let mut attachments = fake.attachments.lock().unwrap();
    let Some(attachment) = id.checked_sub(1090).and_then(|index| attachments.get_mut(index)) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "Record not found"}))).into_response();
    };
    let status = if attachment.processing > 0 { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let entity = attachment_entity(id, attachment);
    attachment.processing = attachment.processing.saturating_sub(1);
    (status, Json(entity)).into_response()
}

/// `POST /api/v1/statuses`: every attachment must be processed.
async fn mastodon_status(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let ready = {
        let attachments = fake.attachments.lock().unwrap();
        body["media_ids"].as_array().cloned().unwrap_or_default().iter().all(|id| {
            let index = id.as_str().and_then(|id| id.parse::<usize>().ok()).and_then(|id| id.checked_sub(1090));
            index.and_then(|index| attachments.get(index)).is_some_and(|attachment| attachment.processing == 0)
        })
    };
    if !ready {
        let error = "Cannot attach files that have not finished processing. Try again in a moment!";
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error}))).into_response();
    }
    let mut statuses = fake.statuses.lock().unwrap();
    statuses.push((key, body.clone()));
    let id = format!("1133{}", statuses.len());
    Json(mastodon_status_entity(&id, body["status"].as_str().unwrap_or_default(), &body["visibility"])).into_response()
}

/// Starts the fake; returns it and its base URL.
async fn start_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/x/2/users/me", get(x_me))
        .route("/x/2/media/upload/initialize", post(x_initialize))
        .route("/x/2/media/upload/{id}/append", post(x_append))
        .route("/x/2/media/upload/{id}/finalize", post(x_finalize))
        .route("/x/2/media/upload", get(x_status))
        .route("/x/2/media/metadata", post(x_metadata))
        .route("/x/2/tweets", post(x_tweet))
        .route("/bsky/xrpc/com.atproto.server.createSession", post(bluesky_create_session))
        .route("/bsky/xrpc/com.atproto.server.getSession", get(bluesky_get_session))
        .route("/bsky/xrpc/com.atproto.repo.uploadBlob", post(bluesky_upload_blob))
        .route("/bsky/xrpc/com.atproto.server.getServiceAuth", get(bluesky_service_auth))
        .route("/bsky/xrpc/com.atproto.repo.createRecord", post(bluesky_create_record))
        .route("/video/xrpc/app.bsky.video.uploadVideo", post(bluesky_upload_video))
        .route("/video/xrpc/app.bsky.video.getJobStatus", get(bluesky_job_status))
        .route("/mastodon/api/v1/accounts/verify_credentials", get(mastodon_me))
        .route("/mastodon/api/v2/media", post(mastodon_upload))
        .route("/mastodon/api/v1/media/{id}", get(mastodon_media))
        .route("/mastodon/api/v1/statuses", post(mastodon_status))
        .fallback(|method: Method, uri: Uri| async move {
            (StatusCode::NOT_FOUND, Json(json!({"error": format!("the fake has no {method} {uri}")})))
        })
        .layer(middleware::from_fn_with_state(fake.clone(), record))
        .layer(DefaultBodyLimit::disable())
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, base)
}

/// The app with X, Bluesky and Mastodon on the fake (their OAuth on [`FakeOAuth`]) and the
/// account of `platform` connected; returns the app, the fake, the client and the account id.
async fn app_on(platform: &str) -> (TestApp, Arc<Fake>, Client, String) {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    let (_oauth, oauth) = FakeOAuth::start().await;
    let (fake, base) = start_fake().await;
    let on = |api: String, upload: Option<String>| PlatformSettings {
        api_url: Some(api),
        upload_url: upload,
        ..oauth.clone()
    };
    config.platforms.insert("x".into(), on(format!("{base}/x"), Some(format!("{base}/x"))));
    config.platforms.insert("mastodon".into(), on(format!("{base}/mastodon"), None));
    let bluesky = PlatformSettings {
        api_url: Some(format!("{base}/bsky/xrpc")),
        upload_url: Some(format!("{base}/video/xrpc")),
        ..PlatformSettings::default()
    };
    config.platforms.insert("bluesky".into(), bluesky);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    if platform == "bluesky" {
        let body = json!({"identifier": "ada.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"});
        let started = client.http.post(app.url("/v1/connect/bluesky")).bearer_auth(&client.key).json(&body).send();
        let started: Value = started.await.unwrap().json().await.unwrap();
        assert_eq!(started["status"], "connected", "{started}");
    } else {
        let (_, callback) = crate::connect::authorize_on(&app, &client, platform, json!({}), "").await;
        let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("1 account(s) connected"), "{page}");
    }
    let listed = get_json(&app, &client, &format!("/v1/accounts?platform={platform}")).await;
    let account = listed["data"][0]["id"].as_str().unwrap().to_owned();
    fake.forget_calls();
    (app, fake, client, account)
}

/// Creates a post of `content` with `media` to `account` and waits (up to a minute) for its
/// delivery to end; returns the delivery.
async fn publish(app: &TestApp, client: &Client, account: &str, content: &str, media: Value) -> Value {
    let body = json!({"content": content, "media": media, "targets": [{"account_id": account}]});
    let created = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let post_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let post = get_json(app, client, &format!("/v1/posts/{post_id}")).await;
        let delivery = post["deliveries"][0].clone();
        if !matches!(delivery["status"].as_str(), Some("queued" | "publishing")) {
            return delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "the delivery never ended: {post}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn x_uploads_each_image_then_sets_its_alt_text_and_tweets_their_media_ids_in_order() {
    let (app, fake, client, account) = app_on("x").await;
    let started = client.http.post(app.url("/v1/connect/x")).bearer_auth(&client.key).json(&json!({})).send().await;
    let url = started.unwrap().json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let scopes = crate::connect::query_of(&url)["scope"].clone();
    assert!(scopes.split(' ').any(|scope| scope == "media.write"), "uploads need media.write: {scopes}");
    let (first, second) = (png(640, 480), jpeg(300, 200));
    let media = json!([
        {"id": upload(&app, &client.key, first.clone()).await, "alt_text": "a red square"},
        {"id": upload(&app, &client.key, second.clone()).await},
    ]);

    let delivery = publish(&app, &client, &account, "two pictures", media).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let tweets = fake.tweets.lock().unwrap().clone();
    assert_eq!(tweets.len(), 1);
    let ids: Vec<String> =
        tweets[0]["media"]["media_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    assert_eq!(tweets[0]["text"], "two pictures");
    assert_eq!(
        delivery["platform_post_id"].as_str().map(|id| format!("https://x.com/i/web/status/{id}")),
        delivery["platform_url"].as_str().map(str::to_owned)
    );
    let uploads = fake.x_uploads.lock().unwrap().clone();
    for (id, (bytes, mime)) in ids.iter().zip([(&first, "image/png"), (&second, "image/jpeg")]) {
        let upload = &uploads[id];
        assert_eq!(
            upload.init,
            json!({"media_type": mime, "total_bytes": bytes.len(), "media_category": "tweet_image"})
        );
        assert_eq!(upload.segments, [(0, bytes.len())], "one segment");
        assert_eq!(&upload.bytes, bytes, "the file's bytes, whole");
    }
    assert_eq!(
        *fake.x_metadata.lock().unwrap(),
        [json!({"id": ids[0], "metadata": {"alt_text": {"text": "a red square"}}})],
        "alt text for the image that has one"
    );
    let (a, b) = (&ids[0], &ids[1]);
    assert_eq!(
        fake.calls(),
        [
            "POST /x/2/media/upload/initialize".to_owned(),
            format!("POST /x/2/media/upload/{a}/append"),
            format!("POST /x/2/media/upload/{a}/finalize"),
            "POST /x/2/media/metadata".to_owned(),
            "POST /x/2/media/upload/initialize".to_owned(),
            format!("POST /x/2/media/upload/{b}/append"),
            format!("POST /x/2/media/upload/{b}/finalize"),
            "POST /x/2/tweets".to_owned(),
        ]
    );
    assert!(fake.seen.lock().unwrap().iter().all(|seen| seen.authorization.starts_with("Bearer fake-access-token-")));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn x_appends_a_video_in_4_mib_segments_in_order_and_waits_for_its_processing() {
    let (app, fake, client, account) = app_on("x").await;
    let video = mp4(1280, 720, 10, 9_000_000);
    let media = json!([{"id": upload(&app, &client.key, video.clone()).await, "alt_text": "a sunrise"}]);
    fake.x_processing
        .lock()
        .unwrap()
        .push_back(json!({"state": "in_progress", "check_after_secs": 1, "progress_percent": 40}));

    let delivery = publish(&app, &client, &account, "a video", media).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let uploads = fake.x_uploads.lock().unwrap().clone();
    let (id, upload) = uploads.iter().next().unwrap();
    assert_eq!(
        upload.init,
        json!({"media_type": "video/mp4", "total_bytes": video.len(), "media_category": "tweet_video"})
    );
    assert_eq!(upload.segments, [(0, CHUNK), (1, CHUNK), (2, video.len() - 2 * CHUNK)], "4 MiB segments, in order");
    assert!(upload.bytes == video, "the segments join into the file");
    assert_eq!(
        fake.calls(),
        [
            "POST /x/2/media/upload/initialize".to_owned(),
            format!("POST /x/2/media/upload/{id}/append"),
            format!("POST /x/2/media/upload/{id}/append"),
            format!("POST /x/2/media/upload/{id}/append"),
            format!("POST /x/2/media/upload/{id}/finalize"),
            format!("GET /x/2/media/upload?command=STATUS&media_id={id}"),
            format!("GET /x/2/media/upload?command=STATUS&media_id={id}"),
            "POST /x/2/media/metadata".to_owned(),
            "POST /x/2/tweets".to_owned(),
        ],
        "STATUS until succeeded, then the tweet"
    );
    assert_eq!(fake.tweets.lock().unwrap()[0]["media"], json!({"media_ids": [id]}));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn x_refusals_end_the_delivery_with_a_reason_and_a_failed_chunk_is_tried_again() {
    let (app, fake, client, account) = app_on("x").await;
    let image = upload(&app, &client.key, png(64, 64)).await;
    let video = upload(&app, &client.key, mp4(320, 240, 2, 2_000)).await;

    // Pay-per-use credits spent: permanent, and it says so.
    let credits = json!({
        "title": "CreditsDepleted",
        "detail": "Your enrolled account does not have any credits to fulfill this request.",
        "type": "https://api.twitter.com/2/problems/credits",
    });
    fake.script("x.tweets", StatusCode::PAYMENT_REQUIRED, credits);
    let delivery = publish(&app, &client, &account, "no credits", json!([{"id": image}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected");
    let message = delivery["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("pay-per-use credits are used up") && message.contains("402"), "{message}");
    assert_eq!(delivery["attempts"], 1, "never retried");

    // The monthly cap: permanent, not a wait for the 15-minute window.
    let capped = json!({"title": "UsageCapExceeded", "period": "Monthly", "scope": "Product", "detail": "Usage cap exceeded: Monthly product cap", "type": "https://api.twitter.com/2/problems/usage-capped"});
    fake.script("x.initialize", StatusCode::TOO_MANY_REQUESTS, capped);
    let delivery = publish(&app, &client, &account, "capped", json!([{"id": image}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("monthly usage cap"), "{delivery}");

    // A video X could not process: permanent, with X's reason; no tweet.
    let failed =
        json!({"state": "failed", "error": {"code": 1, "name": "InvalidMedia", "message": "Unsupported video codec"}});
    fake.x_processing.lock().unwrap().push_back(failed);
    let delivery = publish(&app, &client, &account, "bad video", json!([{"id": video}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(
        delivery["last_error"]["message"].as_str().unwrap().contains("InvalidMedia: Unsupported video codec"),
        "{delivery}"
    );

    // X failing a chunk (503) is transient: the upload is made again and the tweet goes out once.
    fake.script("x.append", StatusCode::SERVICE_UNAVAILABLE, json!({"title": "Service Unavailable"}));
    let before = fake.x_uploads.lock().unwrap().len();
    let delivery = publish(&app, &client, &account, "second try", json!([{"id": image}])).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    assert_eq!(fake.x_uploads.lock().unwrap().len() - before, 2, "uploaded again from the start");
    let tweets = fake.tweets.lock().unwrap().clone();
    assert_eq!(tweets.iter().filter(|tweet| tweet["text"] == "second try").count(), 1);
    assert!(tweets.iter().all(|tweet| tweet["text"] == "second try"), "nothing else was tweeted: {tweets:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bluesky_uploads_images_as_blobs_and_embeds_them_with_alt_text_and_aspect_ratios() {
    let (app, fake, client, account) = app_on("bluesky").await;
    let files = [png(800, 600), jpeg(300, 400), png(10, 10), jpeg(1000, 500)];
    let mut media = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let id = upload(&app, &client.key, file.clone()).await;
        media.push(if index == 0 { json!({"id": id, "alt_text": "a chart"}) } else { json!({"id": id}) });
    }

    let delivery = publish(&app, &client, &account, "four images", json!(media)).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let blobs = fake.blobs.lock().unwrap().clone();
    let types: Vec<&str> = blobs.iter().map(|(mime, _)| mime.as_str()).collect();
    assert_eq!(types, ["image/png", "image/jpeg", "image/png", "image/jpeg"], "each with its type");
    assert!(blobs.iter().zip(&files).all(|((_, sent), file)| sent == file), "the files' bytes, in order");
    let records = fake.records.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    let embed = &records[0]["record"]["embed"];
    assert_eq!(embed["$type"], "app.bsky.embed.images");
    let images = embed["images"].as_array().unwrap();
    assert_eq!(images.len(), 4);
    assert_eq!(images[0]["alt"], "a chart");
    assert_eq!(images[1]["alt"], "", "alt is required: empty without alt text");
    assert_eq!(images[0]["image"]["ref"]["$link"], "bafkreiblob0");
    assert_eq!(images[0]["image"]["mimeType"], "image/png");
    let ratios: Vec<Value> = images.iter().map(|image| image["aspectRatio"].clone()).collect();
    assert_eq!(
        ratios,
        [
            json!({"width": 800, "height": 600}),
            json!({"width": 300, "height": 400}),
            json!({"width": 10, "height": 10}),
            json!({"width": 1000, "height": 500})
        ]
    );
    assert_eq!(records[0]["record"]["text"], "four images");
    assert_eq!(records[0]["repo"], "did:plc:ada");
    let calls = fake.calls();
    assert_eq!(calls.iter().filter(|call| call.ends_with("uploadBlob")).count(), 4);
    assert_eq!(calls.last().unwrap(), "POST /bsky/xrpc/com.atproto.repo.createRecord", "the record last");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_bluesky_video_goes_through_the_video_service_and_is_embedded_once_processed() {
    let (app, fake, client, account) = app_on("bluesky").await;
    let video = mp4(1920, 1080, 5, 300_000);
    let id = upload(&app, &client.key, video.clone()).await;
    fake.job_states
        .lock()
        .unwrap()
        .push_back(json!({"jobId": "job-1", "did": "did:plc:ada", "state": "JOB_STATE_ENCODING", "progress": 50}));

    let delivery =
        publish(&app, &client, &account, "a video", json!([{"id": id, "alt_text": "waves on a beach"}])).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let auth = fake.service_auth.lock().unwrap().clone();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0]["aud"], "did:web:morel.us-east.host.bsky.network", "the account's PDS, from its DID document");
    assert_eq!(auth[0]["lxm"], "com.atproto.repo.uploadBlob");
    let exp: i64 = auth[0]["exp"].parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(exp > now + 25 * 60 && exp <= now + 30 * 60, "a token of about 30 minutes: {exp} at {now}");
    let videos = fake.videos.lock().unwrap().clone();
    assert_eq!(videos.len(), 1);
    let (query, mime, bytes) = &videos[0];
    assert_eq!(query["did"], "did:plc:ada");
    assert_eq!(query["name"], format!("{id}.mp4"));
    assert_eq!(mime, "video/mp4");
    assert!(*bytes == video, "the file's bytes");
    assert!(fake.blobs.lock().unwrap().is_empty(), "not through uploadBlob");
    let records = fake.records.lock().unwrap().clone();
    let embed = &records[0]["record"]["embed"];
    assert_eq!(
        *embed,
        json!({
            "$type": "app.bsky.embed.video",
            "video": {"$type": "blob", "ref": {"$link": "bafkreivideo"}, "mimeType": "video/mp4", "size": 1234},
            "alt": "waves on a beach",
            "aspectRatio": {"width": 1920, "height": 1080},
        })
    );
    assert_eq!(
        fake.calls(),
        [
            "GET /bsky/xrpc/com.atproto.server.getSession".to_owned(),
            format!(
                "GET /bsky/xrpc/com.atproto.server.getServiceAuth?aud=did%3Aweb%3Amorel.us-east.host.bsky.network&lxm=com.atproto.repo.uploadBlob&exp={exp}"
            ),
            format!("POST /video/xrpc/app.bsky.video.uploadVideo?did=did%3Aplc%3Aada&name={id}.mp4"),
            "GET /video/xrpc/app.bsky.video.getJobStatus?jobId=job-1".to_owned(),
            "GET /video/xrpc/app.bsky.video.getJobStatus?jobId=job-1".to_owned(),
            "POST /bsky/xrpc/com.atproto.repo.createRecord".to_owned(),
        ],
        "polled until the job had a blob"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bluesky_refusals_of_a_video_or_an_image_end_the_delivery_with_the_reason_and_post_nothing() {
    let (app, fake, client, account) = app_on("bluesky").await;
    let video = upload(&app, &client.key, mp4(320, 240, 2, 2_000)).await;
    let image = upload(&app, &client.key, png(20, 20)).await;
    let failed = json!({"jobId": "job-1", "did": "did:plc:ada", "state": "JOB_STATE_FAILED", "error": "validation_failure", "message": "Video is too long"});
    fake.job_states.lock().unwrap().push_back(failed);
    let delivery = publish(&app, &client, &account, "long video", json!([{"id": video}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("Video is too long"), "{delivery}");

    let too_large =
        json!({"error": "BlobTooLarge", "message": "This file is too large. It is 2.5MB but the maximum size is 2MB."});
    fake.script("bluesky.uploadBlob", StatusCode::BAD_REQUEST, too_large);
    let delivery = publish(&app, &client, &account, "large image", json!([{"id": image}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("BlobTooLarge"), "{delivery}");
    assert!(fake.records.lock().unwrap().is_empty(), "no post was made");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn mastodon_uploads_each_file_with_its_description_waits_for_processing_and_posts_their_ids() {
    let (app, fake, client, account) = app_on("mastodon").await;
    let image = png(400, 300);
    let image_id = upload(&app, &client.key, image.clone()).await;
    let delivery = publish(
        &app,
        &client,
        &account,
        "a picture",
        json!([{"id": image_id, "alt_text": "a red square"}, {"id": upload(&app, &client.key, jpeg(20, 20)).await}]),
    )
    .await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    {
        let attachments = fake.attachments.lock().unwrap();
        assert_eq!(attachments[0].file_name, format!("{image_id}.png"));
        assert_eq!(attachments[0].content_type, "image/png");
        assert!(attachments[0].bytes == image);
        assert_eq!(attachments[0].description.as_deref(), Some("a red square"));
        assert_eq!(attachments[1].content_type, "image/jpeg");
        assert_eq!(attachments[1].description, None, "no description without alt text");
    }
    let reference = format!("{}:1", delivery["id"].as_str().unwrap());
    let statuses = fake.statuses.lock().unwrap().clone();
    assert_eq!(statuses[0].0, reference, "the Idempotency-Key is the delivery's reference");
    assert_eq!(statuses[0].1["media_ids"], json!(["1090", "1091"]), "in order");
    assert_eq!(
        fake.calls(),
        ["POST /mastodon/api/v2/media", "POST /mastodon/api/v2/media", "POST /mastodon/api/v1/statuses"]
    );

    fake.forget_calls();
    let video = mp4(640, 360, 4, 3_000_000);
    let video_id = upload(&app, &client.key, video.clone()).await;
    let delivery = publish(&app, &client, &account, "a video", json!([{"id": video_id}])).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    assert!(fake.attachments.lock().unwrap()[2].bytes == video, "streamed whole");
    assert_eq!(
        fake.calls(),
        [
            "POST /mastodon/api/v2/media",
            "GET /mastodon/api/v1/media/1092",
            "GET /mastodon/api/v1/media/1092",
            "GET /mastodon/api/v1/media/1092",
            "POST /mastodon/api/v1/statuses",
        ],
        "202, then 206 twice, then 200"
    );
    assert_eq!(fake.statuses.lock().unwrap()[1].1["media_ids"], json!(["1092"]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_the_mastodon_instance_refuses_ends_the_delivery_with_its_reason() {
    let (app, fake, client, account) = app_on("mastodon").await;
    let image = upload(&app, &client.key, png(30, 30)).await;
    let refused = json!({"error": "Validation failed: File content type is invalid"});
    fake.script("mastodon.media", StatusCode::UNPROCESSABLE_ENTITY, refused);
    let delivery = publish(&app, &client, &account, "refused", json!([{"id": image}])).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("File content type is invalid"), "{delivery}");
    assert!(fake.statuses.lock().unwrap().is_empty(), "no status was posted");
    app.stop().await.unwrap();
}
