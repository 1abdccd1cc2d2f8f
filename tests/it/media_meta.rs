//! Media on Meta's platforms, against an in-test Graph API that speaks Instagram's, Threads' and
//! Facebook's shapes: it fetches each signed media URL as the real platforms do, keeps containers
//! that stay `IN_PROGRESS` for a number of checks, and records every request so each test asserts
//! what herald sent (method, path, parameters, token, chunk order and sizes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_shared::media::samples::{jpeg, mp4, png};
use herald_shared::platforms::PlatformSettings;
use serde_json::{Value, json};

use crate::connect::{Client, client, get_json};
use crate::fake_oauth::FakeOAuth;
use crate::harness::{TestApp, TestDb, test_config};
use crate::post_media::upload;

/// The long-lived tokens the fake hands out, one per platform.
const IG_TOKEN: &str = "ig-long-lived-token";
const THREADS_TOKEN: &str = "threads-long-lived-token";
const PAGE_TOKEN: &str = "fake-page-token-101";
const IG_USER: &str = "17841400008";
const THREADS_USER: &str = "17841400009";
const PAGE: &str = "101";

/// A post the fake made: platform prefix, id, caption or text, when.
type MadePost = (String, String, Option<String>, chrono::DateTime<chrono::Utc>);

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// Without the platform's prefix (`/ig`, `/threads`, `/fb`).
    path: String,
    query: HashMap<String, String>,
    bearer: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

/// A media container, as Instagram and Threads keep it.
#[derive(Debug, Clone)]
struct Container {
    params: HashMap<String, String>,
    /// Checks still answered `IN_PROGRESS`.
    in_progress: usize,
    error: Option<String>,
    /// The bytes fetched from the media URL.
    fetched: Option<(String, usize)>,
    /// Published: its status is `PUBLISHED`, and it cannot be published again.
    published: bool,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    containers: Mutex<HashMap<String, Container>>,
    next_id: AtomicU64,
    /// How many checks a new video container stays `IN_PROGRESS`.
    video_checks: AtomicUsize,
    /// The `ERROR` reason the next new container ends in.
    fail_next_container: Mutex<Option<String>>,
    /// The answer the next publish gets instead of success: status and Graph error body.
    fail_next_publish: Mutex<Option<(StatusCode, Value)>>,
    /// Whether that failed publish still made the post (Instagram's 4/2207051 may).
    failed_publish_posts: std::sync::atomic::AtomicBool,
    /// Instagram's `quota_usage` of 100.
    quota_usage: AtomicU64,
    /// Published posts: (platform prefix, id, caption or text, created).
    posts: Mutex<Vec<MadePost>>,
    http: reqwest::Client,
    /// The video bytes Facebook received, in order, and the size of each transfer.
    video: Mutex<(Vec<u8>, Vec<usize>)>,
    /// herald's id of the connected Page.
    facebook_page: Mutex<String>,
}

/// The range Facebook asks for in each transfer.
const FB_CHUNK: usize = 1024 * 1024;

fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"});
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    (status, [("x-fb-trace-id", "AbCdEf")], axum::Json(json!({ "error": error }))).into_response()
}

fn token_error() -> Response {
    graph_error(StatusCode::BAD_REQUEST, 190, None, "Invalid OAuth access token")
}

impl Fake {
    fn id(&self) -> String {
        (17_900_000_000 + self.next_id.fetch_add(1, Ordering::SeqCst)).to_string()
    }

    fn seen(&self, method: &str, path_ends: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|request| request.method == method && request.path.ends_with(path_ends)).cloned().collect()
    }

    /// Fetches a media URL as the platform does; answers its content type and size.
    async fn fetch(&self, url: &str) -> Result<(String, usize), String> {
        let response = self.http.get(url).send().await.map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the media URL answered {}", response.status()));
        }
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let bytes = response.bytes().await.map_err(|error| error.to_string())?;
        Ok((content_type, bytes.len()))
    }

    /// `POST /{user}/media` (Instagram) or `/{user}/threads` (Threads): a new container.
    async fn create_container(&self, query: &HashMap<String, String>) -> Response {
        let url = query.get("image_url").or_else(|| query.get("video_url"));
        let fetched = match url {
            Some(url) => match self.fetch(url).await {
                Ok(fetched) => Some(fetched),
                Err(reason) => return graph_error(StatusCode::BAD_REQUEST, -2, Some(2_207_003), &reason),
            },
            None => None,
        };
        if let Some(children) = query.get("children") {
            let containers = self.containers.lock().unwrap();
            for child in children.split(',') {
                let ready = containers.get(child).is_some_and(|c| c.in_progress == 0 && c.error.is_none());
                assert!(ready, "child {child} was not ready when the carousel was made");
            }
        }
        let is_video = query.contains_key("video_url");
        let container = Container {
            params: query.clone(),
            in_progress: if is_video { self.video_checks.load(Ordering::SeqCst) } else { 0 },
            error: self.fail_next_container.lock().unwrap().take(),
            fetched,
            published: false,
        };
        let id = self.id();
        self.containers.lock().unwrap().insert(id.clone(), container);
        axum::Json(json!({ "id": id })).into_response()
    }

    /// `GET /{container}?fields=status_code,status` (Instagram) or `status,error_message` (Threads).
    fn container_status(&self, id: &str, threads: bool) -> Option<Response> {
        let mut containers = self.containers.lock().unwrap();
        let container = containers.get_mut(id)?;
        let status = if container.published {
            "PUBLISHED"
        } else if container.in_progress > 0 {
            container.in_progress -= 1;
            "IN_PROGRESS"
        } else if container.error.is_some() {
            "ERROR"
        } else {
            "FINISHED"
        };
        let answer = match (threads, &container.error) {
            (true, Some(reason)) if status == "ERROR" => json!({"id": id, "status": status, "error_message": reason}),
            (true, _) => json!({"id": id, "status": status}),
            (false, Some(reason)) if status == "ERROR" => json!({"id": id, "status_code": status, "status": reason}),
            (false, _) => json!({"id": id, "status_code": status}),
        };
        Some(axum::Json(answer).into_response())
    }

    /// `POST /{user}/media_publish` or `/{user}/threads_publish` with `creation_id`.
    fn publish(&self, prefix: &str, query: &HashMap<String, String>) -> Response {
        let creation = query.get("creation_id").cloned().unwrap_or_default();
        let failure = self.fail_next_publish.lock().unwrap().take();
        let posts = failure.is_none() || self.failed_publish_posts.load(Ordering::SeqCst);
        let text = {
            let mut containers = self.containers.lock().unwrap();
            let Some(container) = containers.get_mut(&creation) else {
                return graph_error(StatusCode::BAD_REQUEST, 24, Some(2_207_008), "Media builder not found");
            };
            assert!(container.in_progress == 0 && container.error.is_none(), "published a container not ready");
            if container.published {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    9004,
                    Some(2_207_006),
                    "The media has already been published",
                );
            }
            container.published = posts;
            container.params.get("caption").or_else(|| container.params.get("text")).cloned()
        };
        let id = self.id();
        if posts {
            self.posts.lock().unwrap().push((prefix.to_owned(), id.clone(), text, chrono::Utc::now()));
        }
        match failure {
            Some((status, body)) => (status, axum::Json(body)).into_response(),
            None => axum::Json(json!({ "id": id })).into_response(),
        }
    }

    /// The account's recent posts, newest first, as Instagram's `/{user}/media` and Threads'
    /// `/{user}/threads` list them.
    fn recent(&self, prefix: &str) -> Response {
        let posts = self.posts.lock().unwrap();
        let field = if prefix == "ig" { "caption" } else { "text" };
        let data: Vec<Value> = posts
            .iter()
            .rev()
            .filter(|(platform, ..)| platform == prefix)
            .map(|(_, id, text, at)| {
                json!({
                    "id": id,
                    field: text,
                    "timestamp": at.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
                    "permalink": format!("https://www.instagram.com/p/{id}/"),
                })
            })
            .collect();
        axum::Json(json!({ "data": data, "paging": {} })).into_response()
    }
}

async fn handle(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = reqwest::Url::parse(&format!("http://fake{uri}")).unwrap();
    let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let bearer = header("authorization").and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned));
    let full = uri.path().to_owned();
    let (prefix, path) = full.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
    let (prefix, path) = (prefix.to_owned(), format!("/{path}"));
    fake.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        bearer: bearer.clone(),
        content_type: header("content-type"),
        body: body.clone(),
    });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // The long-lived exchanges and the accounts a grant reaches.
    match (prefix.as_str(), method.as_str(), segments.as_slice()) {
        ("ig" | "threads", "GET", ["access_token"]) => {
            let token = if prefix == "ig" { IG_TOKEN } else { THREADS_TOKEN };
            return axum::Json(json!({"access_token": token, "token_type": "bearer", "expires_in": 5_184_000}))
                .into_response();
        }
        ("ig", "GET", ["me"]) if bearer.as_deref() == Some(IG_TOKEN) => {
            return axum::Json(json!({"user_id": IG_USER, "username": "ada.bakes"})).into_response();
        }
        ("threads", "GET", ["me"]) if bearer.as_deref() == Some(THREADS_TOKEN) => {
            return axum::Json(json!({"id": THREADS_USER, "username": "ada", "name": "Ada"})).into_response();
        }
        _ => {}
    }
    if prefix == "fb" && segments == ["me", "accounts"] {
        if bearer.as_deref() != Some("fake-access-token-long-lived") {
            return token_error();
        }
        let pages = json!([{"id": PAGE, "name": "Ada's Bakery", "access_token": PAGE_TOKEN}]);
        return axum::Json(json!({"data": pages, "paging": {}})).into_response();
    }
    let authorized = match prefix.as_str() {
        "ig" => bearer.as_deref() == Some(IG_TOKEN),
        "threads" => bearer.as_deref() == Some(THREADS_TOKEN),
        "fb" | "fbvideo" => bearer.as_deref() == Some(PAGE_TOKEN),
        _ => false,
    };
    if !authorized {
        return token_error();
    }
    if prefix == "fb" || prefix == "fbvideo" {
        return facebook(&fake, &prefix, &method, &segments, &query, &body).await;
    }
    let threads = prefix == "threads";
    match (method.as_str(), segments.as_slice()) {
        ("GET", [user, "content_publishing_limit"]) if !threads && *user == IG_USER => {
            let used = fake.quota_usage.load(Ordering::SeqCst);
            axum::Json(
                json!({"data": [{"quota_usage": used, "config": {"quota_total": 100, "quota_duration": 86400}}]}),
            )
            .into_response()
        }
        ("POST", [user, "media"]) if !threads && *user == IG_USER => fake.create_container(&query).await,
        ("POST", [user, "threads"]) if threads && *user == THREADS_USER => fake.create_container(&query).await,
        ("POST", [user, "media_publish" | "threads_publish"]) if [IG_USER, THREADS_USER].contains(user) => {
            fake.publish(&prefix, &query)
        }
        ("GET", [_, "media" | "threads"]) => fake.recent(&prefix),
        ("GET", [id]) => {
            let fields = query.get("fields").cloned().unwrap_or_default();
            if fields.starts_with("status") {
                return fake
                    .container_status(id, threads)
                    .unwrap_or_else(|| graph_error(StatusCode::BAD_REQUEST, 100, Some(33), "Unsupported get request"));
            }
            let permalink = if threads {
                format!("https://www.threads.net/@ada/post/{id}")
            } else {
                format!("https://www.instagram.com/p/{id}/")
            };
            axum::Json(json!({"id": id, "permalink": permalink})).into_response()
        }
        _ => graph_error(StatusCode::BAD_REQUEST, 100, None, &format!("Unknown path components: {path}")),
    }
}

/// Facebook's `/{page}/photos`, `/{page}/feed` and, on the video host, `/{page}/videos` in its
/// `upload_phase`s.
async fn facebook(
    fake: &Fake,
    prefix: &str,
    method: &Method,
    segments: &[&str],
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    match (prefix, method.as_str(), segments) {
        ("fb", "POST", [PAGE, "photos"]) => {
            let sent: Value = serde_json::from_slice(body).unwrap();
            if let Err(reason) = fake.fetch(sent["url"].as_str().unwrap()).await {
                return graph_error(StatusCode::BAD_REQUEST, 324, Some(2_069_019), &reason);
            }
            let id = fake.id();
            match sent["published"].as_bool() {
                Some(false) => axum::Json(json!({ "id": id })).into_response(),
                _ => axum::Json(json!({"id": id, "post_id": format!("{PAGE}_{id}")})).into_response(),
            }
        }
        ("fb", "POST", [PAGE, "feed"]) => axum::Json(json!({"id": format!("{PAGE}_{}", fake.id())})).into_response(),
        ("fbvideo", "POST", [PAGE, "videos"]) => {
            let form: HashMap<String, String> =
                reqwest::Url::parse(&format!("http://f/?{}", String::from_utf8_lossy(body)))
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
            let phase = query.get("upload_phase").or_else(|| form.get("upload_phase")).cloned().unwrap_or_default();
            let range = |from: usize, size: usize| json!({"start_offset": from.to_string(), "end_offset": (from + FB_CHUNK).min(size).to_string()});
            match phase.as_str() {
                "start" => {
                    let size: usize = form["file_size"].parse().unwrap();
                    *fake.video.lock().unwrap() = (Vec::with_capacity(size), Vec::new());
                    let mut answer = range(0, size);
                    answer["video_id"] = json!("6001");
                    answer["upload_session_id"] = json!("session-1");
                    axum::Json(answer).into_response()
                }
                "transfer" => {
                    assert_eq!(query["upload_session_id"], "session-1");
                    let text = body.as_ref();
                    let start = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let end = text.windows(4).rposition(|w| w == b"\r\n--").unwrap();
                    let mut video = fake.video.lock().unwrap();
                    assert_eq!(query["start_offset"], video.0.len().to_string(), "ranges in order");
                    video.0.extend_from_slice(&text[start..end]);
                    video.1.push(end - start);
                    let size = video.0.capacity();
                    axum::Json(range(video.0.len(), size)).into_response()
                }
                "finish" => axum::Json(json!({"success": true})).into_response(),
                other => graph_error(StatusCode::BAD_REQUEST, 100, None, &format!("unknown upload_phase {other}")),
            }
        }
        _ => graph_error(StatusCode::BAD_REQUEST, 100, None, "Unknown path components"),
    }
}

/// The app with Instagram and Threads pointing at a new fake (the code grant at FakeOAuth), a
/// short platform timeout, and both accounts connected; answers the account ids.
async fn app_with_meta() -> (TestApp, Arc<Fake>, Client, String, String) {
    let fake = Arc::new(Fake { http: reqwest::Client::new(), ..Fake::default() });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.platform_timeout_secs = 1;
    let (_oauth, oauth_settings) = FakeOAuth::start().await;
    for (platform, prefix) in [("instagram", "ig"), ("threads", "threads"), ("facebook", "fb")] {
        let settings = PlatformSettings {
            api_url: Some(format!("{base}/{prefix}")),
            upload_url: Some(format!("{base}/fbvideo")),
            ..oauth_settings.clone()
        };
        config.platforms.insert(platform.into(), settings);
    }
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    let mut ids = Vec::new();
    for platform in ["instagram", "threads", "facebook"] {
        let (_, callback) = crate::connect::authorize_on(&app, &client, platform, json!({}), "").await;
        let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("1 account(s) connected"), "{page}");
        let listed = get_json(&app, &client, &format!("/v1/accounts?platform={platform}")).await;
        ids.push(listed["data"][0]["id"].as_str().unwrap().to_owned());
    }
    let threads = ids[1].clone();
    let instagram = ids[0].clone();
    *fake.facebook_page.lock().unwrap() = ids[2].clone();
    (app, fake, client, instagram, threads)
}

/// Creates a post from `body` and waits (up to 30 s) until its first delivery is no longer
/// queued or publishing, or has the error `until_error`; answers the delivery.
async fn deliver(app: &TestApp, client: &Client, body: Value, until_error: Option<&str>) -> Value {
    let created = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    let status = created.status();
    let post: Value = created.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{post}");
    let post_id = post["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let post = get_json(app, client, &format!("/v1/posts/{post_id}")).await;
        let delivery = post["deliveries"][0].clone();
        let settled = !matches!(delivery["status"].as_str(), Some("queued" | "publishing" | "pending"));
        if settled || (until_error.is_some() && delivery["last_error"]["code"].as_str() == until_error) {
            return delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "the delivery never settled: {post}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_instagram_image_is_a_container_pulled_from_the_signed_url_then_published() {
    let (app, fake, client, instagram, _) = app_with_meta().await;
    let image = upload(&app, &client.key, jpeg(1080, 1080)).await;
    let body = json!({
        "content": "Fresh loaves #bakery",
        "targets": [{"account_id": instagram, "media": [{"id": image, "alt_text": "three loaves on a rack"}]}],
    });
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");

    let limit = fake.seen("GET", "/content_publishing_limit");
    assert_eq!(limit.len(), 1, "the publishing limit is read first");
    let created = fake.seen("POST", &format!("/{IG_USER}/media"));
    assert_eq!(created.len(), 1);
    let params = &created[0].query;
    assert_eq!(created[0].bearer.as_deref(), Some(IG_TOKEN));
    assert_eq!(params["caption"], "Fresh loaves #bakery");
    assert_eq!(params["alt_text"], "three loaves on a rack");
    assert!(!params.contains_key("media_type"), "an image container names no type: {params:?}");
    let container_id = {
        let containers = fake.containers.lock().unwrap();
        let (id, container) = containers.iter().next().unwrap();
        assert_eq!(container.fetched, Some(("image/jpeg".to_owned(), jpeg(1080, 1080).len())), "fetched whole");
        id.clone()
    };
    assert!(params["image_url"].starts_with(&app.url("/")), "herald's signed URL: {}", params["image_url"]);
    let published = fake.seen("POST", "/media_publish");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].query["creation_id"], container_id);
    let media_id = fake.posts.lock().unwrap()[0].1.clone();
    assert_eq!(delivery["platform_post_id"], media_id.as_str());
    assert_eq!(delivery["platform_url"], format!("https://www.instagram.com/p/{media_id}/"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_instagram_carousel_makes_each_child_ready_before_the_album_and_a_lone_video_is_a_reel() {
    let (app, fake, client, instagram, _) = app_with_meta().await;
    fake.video_checks.store(2, Ordering::SeqCst);
    let first = upload(&app, &client.key, jpeg(1080, 1350)).await;
    let video = upload(&app, &client.key, mp4(1080, 1350, 4, 4_000)).await;
    let second = upload(&app, &client.key, jpeg(1080, 1080)).await;
    let media = json!([{"id": first, "alt_text": "the counter"}, {"id": video}, {"id": second}]);
    let body = json!({"content": "A morning at the bakery", "targets": [{"account_id": instagram, "media": media}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");

    let created = fake.seen("POST", "/media");
    assert_eq!(created.len(), 4, "three children and the album");
    for child in &created[..3] {
        assert_eq!(child.query["is_carousel_item"], "true");
        assert!(!child.query.contains_key("caption"), "children carry no caption");
    }
    assert_eq!(created[0].query["alt_text"], "the counter");
    assert_eq!(created[1].query["media_type"], "VIDEO");
    assert!(created[1].query.contains_key("video_url"));
    let album = &created[3].query;
    assert_eq!(album["media_type"], "CAROUSEL");
    assert_eq!(album["caption"], "A morning at the bakery");
    let children: Vec<String> = album["children"].split(',').map(str::to_owned).collect();
    assert_eq!(children.len(), 3);
    // The video child was checked until it was ready: twice in progress, then finished.
    let video_checks = fake.seen("GET", &format!("/{}", children[1]));
    assert_eq!(video_checks.len(), 3, "{video_checks:?}");
    assert!(video_checks.iter().all(|check| check.query["fields"] == "status_code,status"));
    assert_eq!(fake.seen("POST", "/media_publish").len(), 1);

    // One video alone is a reel, also waited for.
    let reel = upload(&app, &client.key, mp4(1080, 1920, 5, 2_000)).await;
    let body = json!({"content": "Kneading", "targets": [{"account_id": instagram, "media": [{"id": reel}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let created = fake.seen("POST", "/media");
    let reel = &created[4].query;
    assert_eq!((reel["media_type"].as_str(), reel["share_to_feed"].as_str()), ("REELS", "true"));
    assert_eq!(reel["caption"], "Kneading");
    assert_eq!(fake.seen("POST", "/media_publish").len(), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_instagram_story_carries_no_caption_and_a_failed_container_is_refused_with_its_reason() {
    let (app, fake, client, instagram, _) = app_with_meta().await;
    let image = upload(&app, &client.key, jpeg(1080, 1350)).await;
    let story = json!({
        "content": "today only",
        "targets": [{"account_id": instagram, "media": [{"id": image}], "options": {"platform": "instagram", "placement": "story"}}],
    });
    let delivery = deliver(&app, &client, story, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let created = fake.seen("POST", "/media");
    assert_eq!(created[0].query["media_type"], "STORIES");
    assert!(created[0].query.contains_key("image_url") && !created[0].query.contains_key("caption"));

    *fake.fail_next_container.lock().unwrap() = Some("Error: 2207026: unsupported video format".into());
    let body = json!({"content": "broken", "targets": [{"account_id": instagram, "media": [{"id": image}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected", "{delivery}");
    let message = delivery["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("2207026: unsupported video format"), "{message}");
    assert_eq!(fake.seen("POST", "/media_publish").len(), 1, "the failed container was never published");

    // A reel is one video: an image is refused before anything is made.
    let reel = json!({
        "content": "not a reel",
        "targets": [{"account_id": instagram, "media": [{"id": image}], "options": {"platform": "instagram", "placement": "reel"}}],
    });
    let delivery = deliver(&app, &client, reel, None).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("reel is one video"), "{delivery}");
    assert_eq!(fake.seen("POST", "/media").len(), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn instagram_errors_are_classified_from_graphs_codes() {
    let (app, fake, client, instagram, _) = app_with_meta().await;
    let image = upload(&app, &client.key, jpeg(1080, 1080)).await;
    let post = |text: &str| json!({"content": text, "targets": [{"account_id": instagram, "media": [{"id": image}]}]});

    // 4/2207051 may come although the post went live: looked up, found, never published twice.
    *fake.fail_next_publish.lock().unwrap() = Some((
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": "We restrict certain activity to protect our community.", "type": "OAuthException",
            "code": 4, "error_subcode": 2207051, "is_transient": false, "error_user_title": "Action is blocked",
            "error_user_msg": "We restrict certain activity to protect our community. Tell us if you think we made a mistake.",
            "fbtrace_id": "A6LJylpZRKw2xKLFsAP-cJh"}}),
    ));
    fake.failed_publish_posts.store(true, Ordering::SeqCst);
    let delivery = deliver(&app, &client, post("restricted but live"), None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let made = fake.posts.lock().unwrap().clone();
    assert_eq!(made.len(), 1);
    assert_eq!(delivery["platform_post_id"], made[0].1.as_str(), "the post the restricted publish made");
    assert_eq!(fake.seen("POST", "/media_publish").len(), 1, "the look-up never published again");
    assert_eq!(fake.seen("GET", &format!("/{IG_USER}/media")).len(), 1, "looked up among the recent media");

    // A dead token: the account must reconnect.
    *fake.fail_next_publish.lock().unwrap() = Some((
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}}),
    ));
    fake.failed_publish_posts.store(false, Ordering::SeqCst);
    let delivery = deliver(&app, &client, post("token died"), None).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "reconnect_required", "{delivery}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_instagram_account_at_its_publishing_cap_waits_without_making_a_container() {
    let (app, fake, client, instagram, _) = app_with_meta().await;
    let image = upload(&app, &client.key, jpeg(1080, 1080)).await;
    fake.quota_usage.store(100, Ordering::SeqCst);
    let body = json!({"content": "capped", "targets": [{"account_id": instagram, "media": [{"id": image}]}]});
    let delivery = deliver(&app, &client, body, Some("rate_limited")).await;
    assert_eq!(delivery["status"], "queued", "{delivery}");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("100 of its 100"), "{delivery}");
    assert!(fake.seen("POST", "/media").is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_post_to_instagram_without_media_or_with_a_png_is_refused_at_creation() {
    let (app, _fake, client, instagram, _) = app_with_meta().await;
    let image = upload(&app, &client.key, png(1080, 1080)).await;
    for media in [json!([]), json!([{"id": image}])] {
        let body = json!({"content": "no", "targets": [{"account_id": instagram, "media": media}]});
        let refused = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn threads_publishes_an_image_and_a_carousel_each_container_waited_for() {
    let (app, fake, client, _, threads) = app_with_meta().await;
    fake.video_checks.store(2, Ordering::SeqCst);
    let image = upload(&app, &client.key, png(1440, 1080)).await;
    let body = json!({
        "content": "New on the shelf",
        "targets": [{"account_id": threads, "media": [{"id": image, "alt_text": "a shelf of jars"}]}],
    });
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let created = fake.seen("POST", &format!("/{THREADS_USER}/threads"));
    let single = &created[0];
    assert_eq!(single.bearer.as_deref(), Some(THREADS_TOKEN));
    assert_eq!(single.query["media_type"], "IMAGE");
    assert_eq!(single.query["text"], "New on the shelf");
    assert_eq!(single.query["alt_text"], "a shelf of jars");
    let id = delivery["platform_post_id"].as_str().unwrap();
    assert_eq!(delivery["platform_url"], format!("https://www.threads.net/@ada/post/{id}"));

    let video = upload(&app, &client.key, mp4(720, 1280, 3, 3_000)).await;
    let media = json!([{"id": image}, {"id": video, "alt_text": "pouring"}]);
    let body = json!({"content": "Two ways", "targets": [{"account_id": threads, "media": media}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let created = fake.seen("POST", &format!("/{THREADS_USER}/threads"));
    assert_eq!(created.len(), 4, "one single, two children and the carousel");
    assert_eq!(created[1].query["is_carousel_item"], "true");
    assert_eq!(created[2].query["media_type"], "VIDEO");
    assert_eq!(created[2].query["alt_text"], "pouring");
    let carousel = &created[3].query;
    assert_eq!((carousel["media_type"].as_str(), carousel["text"].as_str()), ("CAROUSEL", "Two ways"));
    let children: Vec<&str> = carousel["children"].split(',').collect();
    let checks = fake.seen("GET", &format!("/{}", children[1]));
    assert_eq!(checks.len(), 3, "the video was checked until ready");
    assert!(checks.iter().all(|check| check.query["fields"] == "status,error_message"));
    let published = fake.seen("POST", "/threads_publish");
    assert_eq!(published.len(), 2);
    assert_ne!(published[1].query["creation_id"], children[0]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_threads_container_in_error_is_refused_with_its_message() {
    let (app, fake, client, _, threads) = app_with_meta().await;
    let image = upload(&app, &client.key, jpeg(800, 800)).await;
    *fake.fail_next_container.lock().unwrap() = Some("Media download has failed.".into());
    let body = json!({"content": "won't", "targets": [{"account_id": threads, "media": [{"id": image}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "rejected");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("Media download has failed."), "{delivery}");
    assert!(fake.seen("POST", "/threads_publish").is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_facebook_page_posts_photos_by_url_and_uploads_a_video_range_by_range() {
    let (app, fake, client, _, _) = app_with_meta().await;
    let page = fake.facebook_page.lock().unwrap().clone();
    let photo = upload(&app, &client.key, png(800, 600)).await;
    let body = json!({"content": "Open today", "targets": [{"account_id": page, "media": [{"id": photo, "alt_text": "the door"}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let sent = fake.seen("POST", &format!("/{PAGE}/photos"));
    let one: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(sent[0].bearer.as_deref(), Some(PAGE_TOKEN), "the Page's own token");
    assert_eq!((one["message"].as_str(), one["alt_text_custom"].as_str()), (Some("Open today"), Some("the door")));
    assert_eq!(one["published"], true);
    assert!(delivery["platform_post_id"].as_str().unwrap().starts_with("101_"), "the post, not the photo");

    let second = upload(&app, &client.key, jpeg(640, 480)).await;
    let body = json!({"content": "Both", "targets": [{"account_id": page, "media": [{"id": photo}, {"id": second}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let sent = fake.seen("POST", &format!("/{PAGE}/photos"));
    let unpublished: Vec<Value> = sent[1..].iter().map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
    assert!(unpublished.iter().all(|photo| photo["published"] == false && photo.get("message").is_none()));
    let feed = fake.seen("POST", &format!("/{PAGE}/feed"));
    let post: Value = serde_json::from_slice(&feed[0].body).unwrap();
    assert_eq!(post["message"], "Both");
    assert_eq!(post["attached_media"].as_array().unwrap().len(), 2);

    let bytes = mp4(1280, 720, 4, 2_500_000);
    let video = upload(&app, &client.key, bytes.clone()).await;
    let body = json!({"content": "Behind the counter", "targets": [{"account_id": page, "media": [{"id": video}]}]});
    let delivery = deliver(&app, &client, body, None).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let (received, chunks) = fake.video.lock().unwrap().clone();
    assert_eq!(received, bytes, "every byte, in order");
    let last = bytes.len() - 2 * FB_CHUNK;
    assert_eq!(chunks, [FB_CHUNK, FB_CHUNK, last], "each range Facebook asked for");
    let phases = fake.seen("POST", &format!("/{PAGE}/videos"));
    assert_eq!(phases.len(), 5, "start, three transfers, finish");
    assert!(phases[1].content_type.as_deref().unwrap().starts_with("multipart/form-data; boundary="));
    assert!(String::from_utf8_lossy(&phases[4].body).contains("description=Behind+the+counter"));
    assert_eq!(delivery["platform_post_id"], "6001");
    assert_eq!(delivery["platform_url"], "https://www.facebook.com/101/videos/6001");
    app.stop().await.unwrap();
}
