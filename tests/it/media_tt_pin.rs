//! TikTok and Pinterest publish media, against in-test fakes that speak their Content Posting API
//! and API v5 shapes: TikTok's creator info first, a video uploaded in chunks (`PUT` with
//! `Content-Range`) and its status followed to the post id, photos pulled from herald's signed
//! URLs, the privacy level checked against the creator's and the posting cap refused; Pinterest's
//! boards listed, image and carousel Pins by URL, a video registered, uploaded as a multipart form
//! and awaited before its Pin, and a Pin without a board refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use herald_shared::media::samples::{jpeg, mp4, png};
use herald_shared::platforms::PlatformSettings;
use serde_json::{Value, json};

use crate::connect::{Client, client, get_json};
use crate::fake_oauth::FakeOAuth;
use crate::harness::{TestApp, TestDb, test_config};
use crate::post_media::upload;
use crate::posts::{create, wait_for};

/// One request a fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }
}

/// The media fake for both platforms: records every request, answers in each one's shapes.
#[derive(Default)]
struct Fake {
    base: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    /// TikTok: the statuses `status/fetch/` answers in turn (the last one repeats).
    statuses: Mutex<Vec<Value>>,
    /// TikTok: answer `video/init/` with this error code (HTTP 403) instead.
    init_error: Mutex<Option<&'static str>>,
    /// Pinterest: the media statuses `GET /media/{id}` answers in turn (the last one repeats).
    media_statuses: Mutex<Vec<&'static str>>,
}

impl Fake {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let seen = Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        };
        self.seen.lock().unwrap().push(seen);
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.path == path).cloned().collect()
    }

    fn next<T: Clone>(queue: &Mutex<Vec<T>>) -> T {
        let mut queue = queue.lock().unwrap();
        if queue.len() > 1 { queue.remove(0) } else { queue[0].clone() }
    }
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer fake-access-token-"))
}

fn tiktok_ok(data: Value) -> Response {
    Json(json!({"data": data, "error": {"code": "ok", "message": "", "log_id": "20261202LOG"}})).into_response()
}

async fn tiktok(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    fake.record(&method, &uri, &headers, &body);
    if !bearer_ok(&headers) {
        let error = json!({"error": {"code": "access_token_invalid", "message": "The access token is invalid.", "log_id": "1"}});
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    match uri.path().strip_prefix("/tiktok").unwrap_or_default() {
        "/v2/user/info/" => tiktok_ok(json!({"user": {"open_id": "723f24d7-e717-40f8", "display_name": "Ada"}})),
        "/v2/post/publish/creator_info/query/" => tiktok_ok(json!({
            "creator_avatar_url": "https://p16.tiktokcdn.example/a.jpeg", "creator_username": "ada", "creator_nickname": "Ada",
            "privacy_level_options": ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"],
            "comment_disabled": false, "duet_disabled": true, "stitch_disabled": false, "max_video_post_duration_sec": 600,
        })),
        "/v2/post/publish/video/init/" => {
            if let Some(code) = *fake.init_error.lock().unwrap() {
                let error = json!({"error": {"code": code, "message": "Posting limit reached", "log_id": "2"}});
                return (StatusCode::FORBIDDEN, Json(error)).into_response();
            }
            let base = fake.base.lock().unwrap().clone();
            tiktok_ok(
                json!({"publish_id": "v_pub_file~v2-1.7312", "upload_url": format!("{base}/tiktok/upload/?upload_id=7312&upload_token=t")}),
            )
        }
        "/v2/post/publish/content/init/" => tiktok_ok(json!({"publish_id": "p_pub_url~v2.7313"})),
        "/v2/post/publish/status/fetch/" => tiktok_ok(Fake::next(&fake.statuses)),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// TikTok's upload host: chunks in order, 206 until the last, then 201.
async fn tiktok_upload(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(&method, &uri, &headers, &body);
    let range = headers["content-range"].to_str().unwrap().to_owned();
    let (span, total) = range.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
    let last: u64 = span.split_once('-').unwrap().1.parse().unwrap();
    if last + 1 == total.parse::<u64>().unwrap() { StatusCode::CREATED } else { StatusCode::PARTIAL_CONTENT }
        .into_response()
}

async fn pinterest(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(&method, &uri, &headers, &body);
    if !bearer_ok(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 2, "message": "Authentication failed."})))
            .into_response();
    }
    let base = fake.base.lock().unwrap().clone();
    match (method.as_str(), uri.path().strip_prefix("/pinterest").unwrap_or_default()) {
        ("GET", "/user_account") => {
            Json(json!({"account_type": "BUSINESS", "id": "549755885175", "username": "adabakes"})).into_response()
        }
        ("GET", "/boards") => {
            // Two pages, joined by a bookmark.
            if uri.query().unwrap_or_default().contains("bookmark=next") {
                Json(json!({"items": [{"id": "1022", "name": "Bread", "description": "", "privacy": "SECRET"}], "bookmark": null}))
                    .into_response()
            } else {
                Json(json!({"items": [{"id": "1021", "name": "Cakes", "description": "Layered", "privacy": "PUBLIC"}], "bookmark": "next"}))
                    .into_response()
            }
        }
        ("POST", "/media") => Json(json!({
            "media_id": "12345", "media_type": "video", "upload_url": format!("{base}/pinterest/s3/"),
            "upload_parameters": {"key": "uploads/12/34/5.mp4", "policy": "eyJleHBpcmF0aW9u", "x-amz-signature": "abc"},
        }))
        .into_response(),
        ("GET", "/media/12345") => {
            Json(json!({"media_id": "12345", "media_type": "video", "status": Fake::next(&fake.media_statuses)}))
                .into_response()
        }
        ("POST", "/pins") => {
            Json(json!({"id": "813744226420795884", "board_id": "1021", "created_at": "2026-12-02T08:00:00"}))
                .into_response()
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({"code": 3, "message": "Not found"}))).into_response(),
    }
}

/// S3's presigned POST: the form is recorded; 204.
async fn s3(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    fake.record(&method, &uri, &headers, &body);
    StatusCode::NO_CONTENT
}

/// The app with TikTok and Pinterest's APIs on the media fake (OAuth on FakeOAuth), both
/// accounts connected; returns the app, the fake, the client and the two account ids.
async fn app() -> (TestApp, Arc<Fake>, Client, String, String) {
    let fake = Arc::new(Fake::default());
    let router = Router::new()
        .route("/tiktok/upload/", put(tiktok_upload))
        .route("/tiktok/{*rest}", get(tiktok).post(tiktok))
        .route("/pinterest/s3/", post(s3))
        .route("/pinterest/{*rest}", get(pinterest).post(pinterest))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    let (_oauth, settings) = FakeOAuth::start().await;
    for name in ["tiktok", "pinterest"] {
        let api = PlatformSettings { api_url: Some(format!("{base}/{name}")), ..settings.clone() };
        config.platforms.insert(name.into(), api);
    }
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    *fake.base.lock().unwrap() = base.clone();
    let client = client(&app).await;
    let mut ids = Vec::new();
    for name in ["tiktok", "pinterest"] {
        let (_, callback) = crate::connect::authorize_on(&app, &client, name, json!({}), "").await;
        let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("1 account(s) connected"), "{page}");
        let account = get_json(&app, &client, &format!("/v1/accounts?platform={name}")).await["data"][0]["id"].clone();
        ids.push(account.as_str().unwrap().to_owned());
    }
    let pinterest = ids.pop().unwrap();
    (app, fake, client, ids.pop().unwrap(), pinterest)
}

/// Posts `body` and waits for it to finish; its first delivery.
async fn publish(app: &TestApp, client: &Client, body: Value) -> Value {
    let post = create(app, client, body).await;
    let done =
        wait_for(app, client, post["id"].as_str().unwrap(), &["published", "failed"], Duration::from_secs(60)).await;
    done["deliveries"][0].clone()
}

fn platform_path(seen: &Seen) -> String {
    seen.path.splitn(3, '/').nth(2).map(|rest| format!("/{rest}")).unwrap_or_default()
}

#[tokio::test]
async fn a_tiktok_video_is_uploaded_in_chunks_and_followed_to_its_post_id() {
    let (app, fake, client, tiktok, _) = app().await;
    let bytes = mp4(720, 1280, 5, 13_000_000);
    let video = upload(&app, &client.key, bytes.clone()).await;
    *fake.statuses.lock().unwrap() = vec![
        json!({"status": "PROCESSING_UPLOAD", "uploaded_bytes": 6_291_456}),
        json!({"status": "PROCESSING_DOWNLOAD"}),
        json!({"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": [7_312_345_678_u64], "uploaded_bytes": bytes.len()}),
    ];
    let options = json!({"platform": "tiktok", "privacy_level": "PUBLIC_TO_EVERYONE", "disable_comment": true, "video_cover_timestamp_ms": 1500, "brand_organic_toggle": true});
    let body = json!({"content": "bread #rye", "media": [{"id": video}], "targets": [{"account_id": tiktok, "options": options}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    assert_eq!(delivery["platform_post_id"], "7312345678");
    assert_eq!(delivery["platform_url"], "https://www.tiktok.com/@ada/video/7312345678");

    let order: Vec<String> = fake.seen.lock().unwrap().iter().map(platform_path).collect();
    let first_init = order.iter().position(|path| path == "/v2/post/publish/video/init/").unwrap();
    assert!(order[..first_init].contains(&"/v2/post/publish/creator_info/query/".to_owned()), "{order:?}");
    let init = fake.seen("/tiktok/v2/post/publish/video/init/");
    assert_eq!(init.len(), 1);
    assert!(init[0].header("content-type").starts_with("application/json"));
    let sent = init[0].json();
    let size = bytes.len() as u64;
    assert_eq!(
        sent["source_info"],
        json!({"source": "FILE_UPLOAD", "video_size": size, "chunk_size": 6_291_456, "total_chunk_count": size / 6_291_456})
    );
    assert_eq!(sent["post_info"]["title"], "bread #rye");
    assert_eq!(sent["post_info"]["privacy_level"], "PUBLIC_TO_EVERYONE");
    assert_eq!(sent["post_info"]["disable_comment"], true);
    assert_eq!(sent["post_info"]["disable_duet"], true, "the creator turned duets off");
    assert_eq!(sent["post_info"]["disable_stitch"], false);
    assert_eq!(sent["post_info"]["video_cover_timestamp_ms"], 1500);
    assert_eq!(sent["post_info"]["brand_organic_toggle"], true);

    // Two chunks, in order, the remainder on the last; together the file.
    let chunks = fake.seen("/tiktok/upload/");
    assert_eq!(chunks.len(), 2);
    assert!(chunks.iter().all(|chunk| chunk.method == "PUT"));
    assert_eq!(chunks[0].header("content-range"), format!("bytes 0-6291455/{size}"));
    assert_eq!(chunks[1].header("content-range"), format!("bytes 6291456-{}/{size}", size - 1));
    assert_eq!(chunks[0].header("content-type"), "video/mp4");
    assert_eq!(chunks[0].header("content-length"), "6291456");
    assert!(chunks[0].headers.get("authorization").is_none(), "the upload URL carries its own token");
    let joined: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.body.to_vec()).collect();
    assert!(joined == bytes, "the chunks are the file");
    assert_eq!(fake.seen("/tiktok/v2/post/publish/status/fetch/").len(), 3, "polled until complete");
    assert_eq!(
        fake.seen("/tiktok/v2/post/publish/status/fetch/")[0].json(),
        json!({"publish_id": "v_pub_file~v2-1.7312"})
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn tiktok_photos_are_pulled_from_herald_and_a_private_post_keeps_its_publish_id() {
    let (app, fake, client, tiktok, _) = app().await;
    let first = upload(&app, &client.key, jpeg(1080, 1350)).await;
    let second = upload(&app, &client.key, jpeg(1080, 1080)).await;
    *fake.statuses.lock().unwrap() = vec![json!({"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": []})];
    let options = json!({"platform": "tiktok", "privacy_level": "SELF_ONLY", "title": "Two loaves"});
    let body = json!({"content": "photos", "media": [{"id": first}, {"id": second}], "targets": [{"account_id": tiktok, "options": options}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    assert_eq!(delivery["platform_post_id"], "p_pub_url~v2.7313", "a private post has no public id");
    assert!(delivery["platform_url"].is_null());
    let sent = fake.seen("/tiktok/v2/post/publish/content/init/")[0].json();
    assert_eq!(sent["media_type"], "PHOTO");
    assert_eq!(sent["post_mode"], "DIRECT_POST");
    assert_eq!(sent["post_info"]["title"], "Two loaves");
    assert_eq!(sent["post_info"]["description"], "photos");
    assert_eq!(sent["source_info"]["source"], "PULL_FROM_URL");
    let urls = sent["source_info"]["photo_images"].as_array().unwrap().clone();
    assert_eq!(urls.len(), 2);
    // The URLs are herald's signed ones, and serve the photos in order.
    let served = client.http.get(urls[1].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.to_vec(), jpeg(1080, 1080));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn tiktok_refuses_a_privacy_level_the_creator_lacks_and_the_posting_cap_is_permanent() {
    let (app, fake, client, tiktok, _) = app().await;
    let video = upload(&app, &client.key, mp4(720, 1280, 5, 2_000)).await;
    let target = |options: Value| json!({"content": "v", "media": [{"id": video}], "targets": [{"account_id": tiktok, "options": options}]});
    let delivery =
        publish(&app, &client, target(json!({"platform": "tiktok", "privacy_level": "FOLLOWER_OF_CREATOR"}))).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected");
    let message = delivery["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("PUBLIC_TO_EVERYONE, MUTUAL_FOLLOW_FRIENDS, SELF_ONLY"), "{message}");
    assert!(fake.seen("/tiktok/v2/post/publish/video/init/").is_empty(), "nothing was sent");

    *fake.init_error.lock().unwrap() = Some("spam_risk_too_many_posts");
    let delivery = publish(&app, &client, target(json!({"platform": "tiktok", "privacy_level": "SELF_ONLY"}))).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    let message = delivery["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("daily cap") && message.contains("spam_risk_too_many_posts"), "{message}");
    assert_eq!(fake.seen("/tiktok/v2/post/publish/video/init/").len(), 1, "never retried");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn pinterest_boards_are_listed_and_image_and_carousel_pins_made_on_one() {
    let (app, fake, client, tiktok, pinterest) = app().await;
    let boards = get_json(&app, &client, &format!("/v1/accounts/{pinterest}/boards")).await;
    assert_eq!(
        boards["data"],
        json!([
            {"id": "1021", "name": "Cakes", "description": "Layered", "privacy": "PUBLIC"},
            {"id": "1022", "name": "Bread", "description": null, "privacy": "SECRET"},
        ])
    );
    let refused = client
        .http
        .get(app.url(&format!("/v1/accounts/{tiktok}/boards")))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");

    let image = upload(&app, &client.key, png(1000, 1500)).await;
    let options = json!({"platform": "pinterest", "board_id": "1021", "title": "Layer cake", "link": "https://bakes.example/cake"});
    let body = json!({"content": "a cake", "media": [{"id": image, "alt_text": "a layered cake"}], "targets": [{"account_id": pinterest, "options": options}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    assert_eq!(delivery["platform_post_id"], "813744226420795884");
    assert_eq!(delivery["platform_url"], "https://www.pinterest.com/pin/813744226420795884/");
    let pin = fake.seen("/pinterest/pins")[0].clone();
    assert_eq!(pin.method, "POST");
    assert_eq!(pin.header("content-type"), "application/json");
    let sent = pin.json();
    assert_eq!(sent["board_id"], "1021");
    assert_eq!(sent["title"], "Layer cake");
    assert_eq!(sent["description"], "a cake");
    assert_eq!(sent["link"], "https://bakes.example/cake");
    assert_eq!(sent["alt_text"], "a layered cake");
    assert_eq!(sent["media_source"]["source_type"], "image_url");
    let served = client.http.get(sent["media_source"]["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(served.bytes().await.unwrap().to_vec(), png(1000, 1500));

    let more = upload(&app, &client.key, png(1000, 1000)).await;
    let body = json!({"content": "two cakes", "media": [{"id": image}, {"id": more}], "targets": [{"account_id": pinterest, "options": {"platform": "pinterest", "board_id": "1022"}}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let sent = fake.seen("/pinterest/pins")[1].json();
    assert_eq!(sent["media_source"]["source_type"], "multiple_image_urls");
    assert_eq!(sent["media_source"]["items"].as_array().unwrap().len(), 2);

    let body = json!({"content": "no board", "media": [{"id": image}], "targets": [{"account_id": pinterest}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("board_id"), "{delivery}");
    assert_eq!(fake.seen("/pinterest/pins").len(), 2, "no Pin without a board");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_pinterest_video_is_uploaded_as_a_form_and_awaited_before_its_pin() {
    let (app, fake, client, _, pinterest) = app().await;
    let bytes = mp4(720, 1280, 6, 50_000);
    let video = upload(&app, &client.key, bytes.clone()).await;
    *fake.media_statuses.lock().unwrap() = vec!["registered", "processing", "succeeded"];
    let options = json!({"platform": "pinterest", "board_id": "1021", "cover_image_key_frame_time": 2});
    let body = json!({"content": "a video", "media": [{"id": video}], "targets": [{"account_id": pinterest, "options": options}]});
    let delivery = publish(&app, &client, body).await;
    assert_eq!(delivery["status"], "published", "{delivery}");

    assert_eq!(fake.seen("/pinterest/media")[0].json(), json!({"media_type": "video"}));
    let form = fake.seen("/pinterest/s3/")[0].clone();
    assert!(form.headers.get("authorization").is_none(), "S3 takes the policy, not the token");
    let boundary = form.header("content-type").strip_prefix("multipart/form-data; boundary=").unwrap().to_owned();
    assert_eq!(form.header("content-length"), form.body.len().to_string());
    let text = String::from_utf8_lossy(&form.body).to_string();
    for (name, value) in [("key", "uploads/12/34/5.mp4"), ("policy", "eyJleHBpcmF0aW9u"), ("x-amz-signature", "abc")] {
        assert!(text.contains(&format!("name=\"{name}\"\r\n\r\n{value}\r\n")), "{name}");
    }
    // The file comes last, whole.
    let file_at = text.find("name=\"file\"").unwrap();
    assert!(text.find("name=\"policy\"").unwrap() < file_at);
    let start = form.body.windows(4).skip(file_at).position(|window| window == b"\r\n\r\n").unwrap() + file_at + 4;
    let end = form.body.len() - format!("\r\n--{boundary}--\r\n").len();
    assert!(form.body[start..end] == bytes[..], "the video, whole");
    assert_eq!(fake.seen("/pinterest/media/12345").len(), 3, "awaited until succeeded");

    let sent = fake.seen("/pinterest/pins")[0].json();
    assert_eq!(
        sent["media_source"],
        json!({"source_type": "video_id", "media_id": "12345", "cover_image_key_frame_time": 2})
    );
    let order: Vec<String> = fake.seen.lock().unwrap().iter().map(|seen| seen.path.clone()).collect();
    assert!(
        order.iter().rposition(|path| path == "/pinterest/media/12345")
            < order.iter().position(|path| path == "/pinterest/pins")
    );
    app.stop().await.unwrap();
}
