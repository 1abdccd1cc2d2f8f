//! Threads and first comments on Threads, Mastodon, Instagram and Facebook, at the adapter:
//! each adapter is built from settings that point it at an in-test fake of the platform (one
//! server, a prefix per platform) that keeps what it was sent and answers in the platform's
//! shapes, and the test calls `publish` / `publish_follow_up` / the look-ups directly, asserting
//! every request (method, path, token, parameters and bodies). No database is needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use herald_shared::config::Config;
use herald_shared::domain::media::{MediaFacts, MediaKind};
use herald_shared::media::MediaStore;
use herald_shared::platforms::{
    FollowUp, FollowUpKind, LookUp, MediaFile, PlatformError, PlatformSettings, Platforms, Publication, Published,
    TokenSet,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "meta-or-mastodon-token";
const USER: &str = "17841400009";
const PAGE: &str = "101";

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// Without the platform's prefix.
    path: String,
    query: HashMap<String, String>,
    bearer: Option<String>,
    idempotency_key: Option<String>,
    body: Value,
}

/// Something the fake made: a container, a post, a comment or a status.
#[derive(Debug, Clone)]
struct Made {
    id: String,
    /// The parameters or body it was made with.
    params: Value,
    status: &'static str,
    error: Option<String>,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    next_id: AtomicU64,
    /// Containers (Threads, Instagram) by id.
    containers: Mutex<HashMap<String, Made>>,
    /// Published posts, replies, comments and statuses, in order, by platform prefix.
    made: Mutex<Vec<(String, Made)>>,
    /// The next publish (`threads_publish`, `media_publish`, a status) is made, but answered only
    /// after the client has given up.
    answer_late: AtomicBool,
    /// The next publish is neither made nor answered in time.
    drop_next: AtomicBool,
    /// The next container's status check is an error (`Some("")`: Graph refuses the check).
    container_fails: Mutex<Option<String>>,
    /// Mastodon's statuses by `Idempotency-Key`: a repeat answers the same status.
    keys: Mutex<HashMap<String, Value>>,
    /// The Graph error code the next request is refused with.
    fail_next: Mutex<Option<i64>>,
}

fn graph_error(code: i64, message: &str) -> Response {
    let error = json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}});
    (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
}

impl Fake {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", 1000 + self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.method == method && seen.path == path).cloned().collect()
    }

    fn made(&self, prefix: &str) -> Vec<Made> {
        self.made
            .lock()
            .unwrap()
            .iter()
            .filter(|(platform, _)| platform == prefix)
            .map(|(_, made)| made.clone())
            .collect()
    }

    fn keep(&self, prefix: &str, id: String, params: Value) -> Made {
        let made = Made { id, params, status: "PUBLISHED", error: None, at: Utc::now() };
        self.made.lock().unwrap().push((prefix.to_owned(), made.clone()));
        made
    }

    /// Makes it or not, answers at once or late, as the test set.
    async fn publishing(&self, make: impl FnOnce() -> Response) -> Response {
        if self.drop_next.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return graph_error(2, "Service temporarily unavailable");
        }
        let late = self.answer_late.swap(false, Ordering::SeqCst);
        let answer = make();
        if late {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        answer
    }

    /// `POST /{user}/threads` (Threads), `/{user}/media` (Instagram): a container, `FINISHED`.
    fn container(&self, query: &HashMap<String, String>) -> Response {
        let id = self.id("c");
        let made = Made { id: id.clone(), params: json!(query), status: "FINISHED", error: None, at: Utc::now() };
        self.containers.lock().unwrap().insert(id.clone(), made);
        axum::Json(json!({ "id": id })).into_response()
    }

    /// `GET /{container}?fields=status,error_message` (Threads) or `status_code,status` (Instagram).
    fn container_status(&self, id: &str, threads: bool) -> Response {
        if let Some(reason) = self.container_fails.lock().unwrap().take() {
            if reason.is_empty() {
                return graph_error(100, "Unsupported get request");
            }
            self.containers.lock().unwrap().get_mut(id).unwrap().error = Some(reason);
        }
        let containers = self.containers.lock().unwrap();
        let Some(container) = containers.get(id) else { return graph_error(100, "Unsupported get request") };
        let status = if container.error.is_some() { "ERROR" } else { container.status };
        let reason = container.error.clone();
        axum::Json(match threads {
            true => json!({"id": id, "status": status, "error_message": reason}),
            false => json!({"id": id, "status_code": status, "status": reason}),
        })
        .into_response()
    }

    /// `POST /{user}/threads_publish` or `/{user}/media_publish`: the container's post.
    fn publish_container(&self, prefix: &str, query: &HashMap<String, String>) -> Response {
        let mut containers = self.containers.lock().unwrap();
        let Some(container) = containers.get_mut(&query["creation_id"]) else {
            return graph_error(24, "Media builder not found");
        };
        assert_eq!((container.status, &container.error), ("FINISHED", &None), "published a container not ready");
        container.status = "PUBLISHED";
        let params = container.params.clone();
        drop(containers);
        let made = self.keep(prefix, self.id("p"), params);
        axum::Json(json!({ "id": made.id })).into_response()
    }

    /// `GET /{user}/replies` (Threads): the account's replies, newest first.
    fn threads_replies(&self) -> Response {
        let data: Vec<Value> = self
            .made("threads")
            .iter()
            .rev()
            .filter(|made| made.params.get("reply_to_id").is_some())
            .map(|made| {
                json!({"id": made.id, "text": made.params["text"], "timestamp": graph_time(made.at),
                    "permalink": format!("https://www.threads.com/@ada/post/{}", made.id),
                    "replied_to": {"id": made.params["reply_to_id"]}})
            })
            .collect();
        axum::Json(json!({ "data": data, "paging": {} })).into_response()
    }

    /// `GET /{object}/comments` (Instagram, Facebook): its comments, newest first, with `from`.
    fn comments(&self, prefix: &str, object: &str) -> Response {
        let text = if prefix == "ig" { "text" } else { "message" };
        let time = if prefix == "ig" { "timestamp" } else { "created_time" };
        let data: Vec<Value> = self
            .made(prefix)
            .iter()
            .rev()
            .filter(|made| made.params["on"] == object)
            .map(|made| json!({"id": made.id, text: made.params["message"], time: graph_time(made.at), "from": {"id": made.params["from"]}}))
            .collect();
        axum::Json(json!({ "data": data, "paging": {} })).into_response()
    }

    /// `POST /api/v1/statuses` (Mastodon), once per `Idempotency-Key`.
    fn status(&self, key: &str, body: &Value) -> Response {
        if let Some(status) = self.keys.lock().unwrap().get(key) {
            return axum::Json(status.clone()).into_response();
        }
        let made = self.keep("masto", self.id(""), body.clone());
        let status = status_entity(&made);
        self.keys.lock().unwrap().insert(key.to_owned(), status.clone());
        axum::Json(status).into_response()
    }
}

fn graph_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

fn status_entity(made: &Made) -> Value {
    json!({"id": made.id, "url": format!("https://mastodon.example/@ada/{}", made.id),
        "created_at": made.at.to_rfc3339(), "in_reply_to_id": made.params.get("in_reply_to_id"),
        "content": format!("<p>{}</p>", made.params["status"].as_str().unwrap())})
}

async fn handle(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = reqwest::Url::parse(&format!("http://fake{uri}")).unwrap();
    let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let bearer = header("authorization").and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned));
    let (prefix, path) = uri.path().trim_start_matches('/').split_once('/').unwrap();
    let (prefix, path) = (prefix.to_owned(), format!("/{path}"));
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        bearer: bearer.clone(),
        idempotency_key: header("idempotency-key"),
        body: body.clone(),
    });
    if bearer.as_deref() != Some(TOKEN) {
        return graph_error(190, "Invalid OAuth access token");
    }
    if let Some(code) = fake.fail_next.lock().unwrap().take() {
        return graph_error(code, "refused as the test asked");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let fields = query.get("fields").cloned().unwrap_or_default();
    match (prefix.as_str(), method.as_str(), segments.as_slice()) {
        ("threads", "POST", [USER, "threads"]) | ("ig", "POST", [USER, "media"]) => fake.container(&query),
        ("threads" | "ig", "POST", [USER, "threads_publish" | "media_publish"]) => {
            fake.publishing(|| fake.publish_container(&prefix, &query)).await
        }
        ("threads", "GET", [USER, "replies"]) => fake.threads_replies(),
        ("threads" | "ig", "GET", [id]) if fields.starts_with("status") => {
            fake.container_status(id, prefix == "threads")
        }
        ("threads", "GET", [id]) => {
            axum::Json(json!({"id": id, "permalink": format!("https://www.threads.com/@ada/post/{id}")}))
                .into_response()
        }
        ("ig", "GET", [USER, "content_publishing_limit"]) => {
            axum::Json(json!({"data": [{"quota_usage": 3, "config": {"quota_total": 100, "quota_duration": 86400}}]}))
                .into_response()
        }
        ("ig", "GET", [USER, "media"]) => {
            let data: Vec<Value> = fake
                .made("ig")
                .iter()
                .rev()
                .filter(|made| made.params.get("on").is_none())
                .map(|made| json!({"id": made.id, "caption": made.params["caption"], "timestamp": graph_time(made.at)}))
                .collect();
            axum::Json(json!({ "data": data })).into_response()
        }
        ("ig", "GET", [id]) => {
            axum::Json(json!({"id": id, "permalink": format!("https://www.instagram.com/p/{id}/")})).into_response()
        }
        ("ig", "POST", [media, "comments"]) => {
            let params = json!({"on": media, "message": query.get("message"), "from": USER});
            axum::Json(json!({ "id": fake.keep("ig", fake.id("ic"), params).id })).into_response()
        }
        ("ig" | "fb", "GET", [object, "comments"]) => fake.comments(&prefix, object),
        ("fb", "POST", [PAGE, "feed"]) => {
            axum::Json(json!({ "id": fake.keep("fb", fake.id("101_"), body).id })).into_response()
        }
        ("fb", "POST", [PAGE, "photos"]) => {
            let photo = fake.id("");
            let post = fake.keep("fb", format!("101_{photo}"), body);
            axum::Json(json!({"id": photo, "post_id": post.id})).into_response()
        }
        ("fb", "POST", [object, "comments"]) => {
            let params = json!({"on": object, "message": body["message"], "from": PAGE});
            axum::Json(json!({ "id": fake.keep("fb", format!("{object}_{}", fake.id("")), params).id })).into_response()
        }
        ("masto", "POST", ["api", "v1", "statuses"]) => {
            let key = header("idempotency-key").unwrap_or_default();
            fake.publishing(|| fake.status(&key, &body)).await
        }
        ("masto", "GET", ["api", "v1", "accounts", USER, "statuses"]) => {
            let statuses: Vec<Value> = fake.made("masto").iter().rev().map(status_entity).collect();
            axum::Json(statuses).into_response()
        }
        _ => graph_error(100, &format!("Unknown path components: {path}")),
    }
}

/// The fake, and the adapters pointed at it with a one-second platform timeout.
async fn platforms() -> (Arc<Fake>, Platforms, MediaStore) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut config = Config {
        data_dir: std::env::temp_dir().join(format!("herald-chains-{}", uuid::Uuid::new_v4().simple())),
        platform_timeout_secs: 1,
        ..Config::default()
    };
    for (platform, prefix) in [("threads", "threads"), ("instagram", "ig"), ("facebook", "fb"), ("mastodon", "masto")] {
        let settings = PlatformSettings { api_url: Some(format!("{base}/{prefix}")), ..PlatformSettings::default() };
        config.platforms.insert(platform.into(), settings);
    }
    let store = MediaStore::from_config(&config).unwrap();
    (fake, Platforms::from_config(&config).unwrap(), store)
}

fn tokens() -> TokenSet {
    TokenSet { access_token: SecretString::from(TOKEN), refresh_token: None, expires_at: None, scopes: Vec::new() }
}

fn image(alt_text: &str) -> MediaFile {
    let facts = MediaFacts {
        kind: MediaKind::Image,
        content_type: "image/jpeg".into(),
        size_bytes: 4096,
        sha256: "0".repeat(64),
        width: Some(1080),
        height: Some(1080),
        duration_ms: None,
        frame_rate: None,
        video_codec: None,
        audio_codec: None,
    };
    MediaFile {
        id: uuid::Uuid::new_v4(),
        alt_text: Some(alt_text.into()),
        facts,
        url: "https://herald.example/media/signed-jpeg".into(),
        object_key: "media/none".into(),
    }
}

/// A publication of `content` for `user`, with `reference` as its own reference.
fn item<'a>(
    store: &'a MediaStore,
    user: &'a str,
    content: &'a str,
    media: &'a [MediaFile],
    options: &'a Value,
    reference: &'a str,
) -> Publication<'a> {
    Publication {
        platform_user_id: user,
        content,
        media,
        store,
        options,
        reference,
        began: Some(Utc::now() - chrono::Duration::seconds(1)),
        checkpoints: &crate::fixtures::CHECKPOINTS,
    }
}

fn reply<'a>(root: &'a Published, parent: &'a Published, index: usize) -> FollowUp<'a> {
    FollowUp { kind: FollowUpKind::Reply, root, parent, index }
}

fn comment(root: &Published) -> FollowUp<'_> {
    FollowUp { kind: FollowUpKind::Comment, root, parent: root, index: 1 }
}

#[tokio::test]
async fn a_threads_thread_is_three_posts_each_a_reply_to_the_one_before_with_its_media_and_options() {
    let (fake, platforms, store) = platforms().await;
    let threads = platforms.get("threads").unwrap();
    assert!(threads.content_rules().chains.replies);
    let options = json!({"platform": "threads", "reply_control": "accounts_you_follow", "topic_tag": "Baking"});
    let root = threads.publish(&tokens(), &item(&store, USER, "1/ a loaf a day", &[], &options, "r-0")).await.unwrap();
    let photo = [image("the crumb")];
    let second = item(&store, USER, "2/ the crumb", &photo, &options, "r-1");
    let second = threads.publish_follow_up(&tokens(), &second, &reply(&root, &root, 1)).await.unwrap();
    let third = item(&store, USER, "3/ the end", &[], &options, "r-2");
    let third = threads.publish_follow_up(&tokens(), &third, &reply(&root, &second, 2)).await.unwrap();

    let created = fake.seen("POST", &format!("/{USER}/threads"));
    assert_eq!(created.len(), 3, "one container an item");
    assert!(created.iter().all(|seen| seen.bearer.as_deref() == Some(TOKEN)));
    let first = &created[0].query;
    assert_eq!((first["media_type"].as_str(), first["text"].as_str()), ("TEXT", "1/ a loaf a day"));
    assert_eq!((first["reply_control"].as_str(), first["topic_tag"].as_str()), ("accounts_you_follow", "Baking"));
    assert!(!first.contains_key("reply_to_id"));
    let with_image = &created[1].query;
    assert_eq!(with_image["media_type"], "IMAGE");
    assert_eq!(with_image["image_url"], "https://herald.example/media/signed-jpeg");
    assert_eq!(with_image["alt_text"], "the crumb");
    assert_eq!(with_image["text"], "2/ the crumb");
    assert_eq!(with_image["reply_to_id"], root.platform_post_id, "a reply to the post");
    assert_eq!(with_image["reply_control"], "accounts_you_follow", "who may reply holds for every item");
    assert!(!with_image.contains_key("topic_tag"), "the topic is the post's");
    let last = &created[2].query;
    assert_eq!((last["media_type"].as_str(), last["reply_to_id"].as_str()), ("TEXT", second.platform_post_id.as_str()));

    // Each container was checked ready (the image) and published on its own.
    let published = fake.seen("POST", &format!("/{USER}/threads_publish"));
    assert_eq!(published.len(), 3);
    let made = fake.made("threads");
    assert_eq!(
        made.iter().map(|post| post.id.as_str()).collect::<Vec<_>>(),
        [root.platform_post_id.as_str(), &second.platform_post_id, &third.platform_post_id]
    );
    assert_eq!(
        second.url.as_deref(),
        Some(format!("https://www.threads.com/@ada/post/{}", second.platform_post_id).as_str())
    );

    // A look-up finds the reply among the account's replies: to that parent, with that text.
    let again = item(&store, USER, "3/ the end", &[], &options, "r-2");
    let found = threads.look_up_follow_up(&tokens(), &again, &reply(&root, &second, 2)).await.unwrap();
    assert_eq!(found, LookUp::Found(Published::new(third.platform_post_id.clone(), third.url.clone())));
    let elsewhere = threads.look_up_follow_up(&tokens(), &again, &reply(&root, &root, 2)).await.unwrap();
    assert_eq!(elsewhere, LookUp::CannotTell, "the same words answering another post are not this item");
    let listed = fake.seen("GET", &format!("/{USER}/replies"));
    assert_eq!(listed[0].query["fields"], "id,text,timestamp,permalink,replied_to");
    assert!(listed[0].query.contains_key("since"));
}

#[tokio::test]
async fn a_threads_link_attachment_goes_on_a_text_post_only() {
    let (fake, platforms, store) = platforms().await;
    let threads = platforms.get("threads").unwrap();
    let options = json!({"platform": "threads", "link_attachment": "https://ada.example/bread"});
    threads.publish(&tokens(), &item(&store, USER, "read this", &[], &options, "r-0")).await.unwrap();
    let created = fake.seen("POST", &format!("/{USER}/threads"));
    assert_eq!(created[0].query["link_attachment"], "https://ada.example/bread");
    assert!(!created[0].query.contains_key("reply_control"), "no option, no parameter");

    let photo = [image("a loaf")];
    let refused = threads.publish(&tokens(), &item(&store, USER, "and look", &photo, &options, "r-1")).await;
    assert!(matches!(refused, Err(PlatformError::Permanent(reason)) if reason.contains("text post only")));
    assert_eq!(fake.seen("POST", &format!("/{USER}/threads")).len(), 1, "nothing made for the refused one");
}

#[tokio::test]
async fn an_unanswered_threads_publish_is_settled_by_its_containers_status() {
    let (fake, platforms, store) = platforms().await;
    let threads = platforms.get("threads").unwrap();
    let none = json!(null);

    // Not made: the container is still FINISHED, so it is published again, once.
    fake.drop_next.store(true, Ordering::SeqCst);
    let published = threads.publish(&tokens(), &item(&store, USER, "second try", &[], &none, "r-0")).await.unwrap();
    assert_eq!(fake.seen("POST", &format!("/{USER}/threads_publish")).len(), 2);
    assert_eq!(fake.made("threads").len(), 1, "one post");
    assert_eq!(published.platform_post_id, fake.made("threads")[0].id);

    // Made, but the answer never came: the container is PUBLISHED, the outcome is looked up.
    fake.answer_late.store(true, Ordering::SeqCst);
    let unknown = threads.publish(&tokens(), &item(&store, USER, "went live", &[], &none, "r-1")).await;
    assert!(
        matches!(&unknown, Err(PlatformError::Ambiguous(reason)) if reason.contains("container is published")),
        "{unknown:?}"
    );
    assert_eq!(fake.made("threads").len(), 2, "never published twice");

    // Not answered, and the container's status cannot be read: still unknown.
    fake.drop_next.store(true, Ordering::SeqCst);
    *fake.container_fails.lock().unwrap() = Some(String::new());
    let unreadable = threads.publish(&tokens(), &item(&store, USER, "no status", &[], &none, "r-2")).await;
    assert!(matches!(unreadable, Err(PlatformError::Ambiguous(_))), "a status it cannot read leaves it unknown");
}

#[tokio::test]
async fn an_unanswered_instagram_publish_whose_container_is_in_error_is_refused_with_its_reason() {
    let (fake, platforms, store) = platforms().await;
    let instagram = platforms.get("instagram").unwrap();
    let none = json!(null);
    let photo = [image("a loaf")];
    // The first check (before publishing) passes; the one after the unanswered publish is ERROR.
    fake.drop_next.store(true, Ordering::SeqCst);
    let publication = item(&store, USER, "fresh", &photo, &none, "r-0");
    let tokens = tokens();
    let publish = instagram.publish(&tokens, &publication);
    let fail_after_first_check = async {
        while fake.seen("POST", &format!("/{USER}/media_publish")).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *fake.container_fails.lock().unwrap() = Some("2207001: the media could not be processed".into());
    };
    let (refused, ()) = tokio::join!(publish, fail_after_first_check);
    assert_eq!(
        refused,
        Err(PlatformError::Permanent(
            "Instagram could not use the media: 2207001: the media could not be processed".into()
        ))
    );
    assert_eq!(fake.seen("POST", &format!("/{USER}/media_publish")).len(), 1, "not tried again");
    assert!(fake.made("ig").is_empty());
}

#[tokio::test]
async fn a_mastodon_thread_replies_to_the_status_before_each_with_its_own_idempotency_key() {
    let (fake, platforms, store) = platforms().await;
    let mastodon = platforms.get("mastodon").unwrap();
    assert!(mastodon.content_rules().chains.replies);
    let options = json!({"platform": "mastodon", "visibility": "unlisted", "spoiler_text": "bread talk"});
    let root = mastodon.publish(&tokens(), &item(&store, USER, "one", &[], &options, "d1-g1")).await.unwrap();
    let second = item(&store, USER, "two", &[], &options, "d1-g1-1");
    let second = mastodon.publish_follow_up(&tokens(), &second, &reply(&root, &root, 1)).await.unwrap();
    let third = item(&store, USER, "three", &[], &options, "d1-g1-2");
    let third = mastodon.publish_follow_up(&tokens(), &third, &reply(&root, &second, 2)).await.unwrap();

    let sent = fake.seen("POST", "/api/v1/statuses");
    assert_eq!(sent.len(), 3);
    let keys: Vec<_> = sent.iter().map(|seen| seen.idempotency_key.clone().unwrap()).collect();
    assert_eq!(keys, ["d1-g1", "d1-g1-1", "d1-g1-2"], "each item's own reference");
    assert!(sent[0].body.get("in_reply_to_id").is_none());
    assert_eq!(sent[1].body["in_reply_to_id"], root.platform_post_id);
    assert_eq!(sent[2].body["in_reply_to_id"], second.platform_post_id);
    assert!(sent.iter().all(|seen| seen.body["visibility"] == "unlisted" && seen.body["spoiler_text"] == "bread talk"));
    assert_eq!((sent[2].body["status"].as_str(), sent[2].bearer.as_deref()), (Some("three"), Some(TOKEN)));

    // Inside the key's window, the look-up repeats the request: the same status, not a new one.
    let again = item(&store, USER, "three", &[], &options, "d1-g1-2");
    let found = mastodon.look_up_follow_up(&tokens(), &again, &reply(&root, &second, 2)).await.unwrap();
    assert_eq!(found, LookUp::Found(third.clone()));
    assert_eq!(fake.made("masto").len(), 3, "no fourth status");

    // Past it: the account's status that answers that item with those words, not someone else's.
    let mut late = item(&store, USER, "three", &[], &options, "d1-g1-2");
    late.began = Some(Utc::now() - chrono::Duration::hours(2));
    for (_, made) in fake.made.lock().unwrap().iter_mut() {
        made.at = Utc::now() - chrono::Duration::minutes(90);
    }
    let found = mastodon.look_up_follow_up(&tokens(), &late, &reply(&root, &second, 2)).await.unwrap();
    assert_eq!(found, LookUp::Found(third));
    let wrong_parent = mastodon.look_up_follow_up(&tokens(), &late, &reply(&root, &root, 2)).await.unwrap();
    assert_eq!(wrong_parent, LookUp::CannotTell);
    assert_eq!(fake.seen("POST", "/api/v1/statuses").len(), 4, "past the window nothing is sent again");
    assert_eq!(fake.seen("GET", &format!("/api/v1/accounts/{USER}/statuses")).len(), 2);
}

#[tokio::test]
async fn an_instagram_first_comment_is_posted_on_the_published_media_and_found_again() {
    let (fake, platforms, store) = platforms().await;
    let instagram = platforms.get("instagram").unwrap();
    assert!(instagram.content_rules().chains.comments);
    let none = json!(null);
    let photo = [image("a loaf")];
    let root = instagram.publish(&tokens(), &item(&store, USER, "Fresh loaves", &photo, &none, "r-0")).await.unwrap();
    let first = item(&store, USER, "#bread #bakery", &[], &none, "r-1");
    let made = instagram.publish_follow_up(&tokens(), &first, &comment(&root)).await.unwrap();

    let sent = fake.seen("POST", &format!("/{}/comments", root.platform_post_id));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].query["message"].as_str(), sent[0].bearer.as_deref()), ("#bread #bakery", Some(TOKEN)));
    assert_eq!(made.platform_post_id, fake.made("ig")[1].id);

    let found = instagram.look_up_follow_up(&tokens(), &first, &comment(&root)).await.unwrap();
    assert_eq!(found, LookUp::Found(Published::new(made.platform_post_id.clone(), None)));
    let listed = fake.seen("GET", &format!("/{}/comments", root.platform_post_id));
    assert_eq!(listed[0].query["fields"], "id,text,timestamp,from");
    let other = item(&store, USER, "another comment", &[], &none, "r-1");
    assert_eq!(instagram.look_up_follow_up(&tokens(), &other, &comment(&root)).await.unwrap(), LookUp::CannotTell);

    // A story takes no comments: refused before anything is sent.
    let story = json!({"platform": "instagram", "placement": "story"});
    let refused =
        instagram.publish_follow_up(&tokens(), &item(&store, USER, "hi", &[], &story, "r-2"), &comment(&root)).await;
    assert!(matches!(refused, Err(PlatformError::Permanent(reason)) if reason.contains("story")));
    assert_eq!(fake.seen("POST", &format!("/{}/comments", root.platform_post_id)).len(), 1);
}

#[tokio::test]
async fn a_facebook_first_comment_goes_on_the_page_post_of_a_text_or_a_photo_post() {
    let (fake, platforms, store) = platforms().await;
    let facebook = platforms.get("facebook").unwrap();
    assert!(facebook.content_rules().chains.comments);
    let link = json!({"platform": "facebook", "link": "https://ada.example/menu"});
    let text = facebook.publish(&tokens(), &item(&store, PAGE, "Our new menu", &[], &link, "r-0")).await.unwrap();
    let feed = fake.seen("POST", &format!("/{PAGE}/feed"));
    assert_eq!(feed[0].body, json!({"message": "Our new menu", "link": "https://ada.example/menu"}));

    let none = json!(null);
    let first = item(&store, PAGE, "Bookings open at noon", &[], &none, "r-1");
    let on_text = facebook.publish_follow_up(&tokens(), &first, &comment(&text)).await.unwrap();
    let sent = fake.seen("POST", &format!("/{}/comments", text.platform_post_id));
    assert_eq!(
        (sent[0].body.clone(), sent[0].bearer.as_deref()),
        (json!({"message": "Bookings open at noon"}), Some(TOKEN))
    );
    assert!(on_text.platform_post_id.starts_with(&format!("{}_", text.platform_post_id)));

    // A photo post: the comment goes on the Page post the photo made, not on the photo alone.
    let photo = [image("the door")];
    let photo_post =
        facebook.publish(&tokens(), &item(&store, PAGE, "Open today", &photo, &none, "r-2")).await.unwrap();
    assert!(photo_post.platform_post_id.starts_with("101_"), "{photo_post:?}");
    let first = item(&store, PAGE, "Until 6 pm", &[], &none, "r-3");
    let on_photo = facebook.publish_follow_up(&tokens(), &first, &comment(&photo_post)).await.unwrap();
    assert_eq!(fake.seen("POST", &format!("/{}/comments", photo_post.platform_post_id)).len(), 1);

    let found = facebook.look_up_follow_up(&tokens(), &first, &comment(&photo_post)).await.unwrap();
    assert_eq!(found, LookUp::Found(Published::new(on_photo.platform_post_id, None)));
    let listed = fake.seen("GET", &format!("/{}/comments", photo_post.platform_post_id));
    assert_eq!(listed[0].query["fields"], "id,message,created_time,from");
    assert_eq!(listed[0].query["order"], "reverse_chronological");

    // A link post carries no media: refused before anything is sent.
    let refused = facebook.publish(&tokens(), &item(&store, PAGE, "menu", &photo, &link, "r-4")).await;
    assert!(matches!(refused, Err(PlatformError::Permanent(reason)) if reason.contains("link post")));
    assert_eq!(fake.seen("POST", &format!("/{PAGE}/photos")).len(), 1);
}

#[tokio::test]
async fn graph_refusals_of_a_follow_up_are_classified_by_their_codes() {
    let (fake, platforms, store) = platforms().await;
    let none = json!(null);
    let root = Published::new("101_7", None);
    let facebook = platforms.get("facebook").unwrap();
    for code in [10, 200, 190, 4, 17, 32, 613] {
        *fake.fail_next.lock().unwrap() = Some(code);
        let refused =
            facebook.publish_follow_up(&tokens(), &item(&store, PAGE, "hi", &[], &none, "r-1"), &comment(&root)).await;
        match code {
            10 | 200 => assert!(
                matches!(&refused, Err(PlatformError::Permanent(reason)) if reason.contains("lacks a permission")),
                "{code}: {refused:?}"
            ),
            190 => assert!(matches!(refused, Err(PlatformError::AuthDead(_))), "{code}: {refused:?}"),
            _ => assert!(matches!(refused, Err(PlatformError::RateLimited { .. })), "{code}: {refused:?}"),
        }
    }
    assert_eq!(fake.seen("POST", "/101_7/comments").len(), 7);
    assert!(fake.made("fb").is_empty());

    // The same on Instagram's comments and Threads' replies.
    let instagram = platforms.get("instagram").unwrap();
    *fake.fail_next.lock().unwrap() = Some(10);
    let refused =
        instagram.publish_follow_up(&tokens(), &item(&store, USER, "hi", &[], &none, "r-2"), &comment(&root)).await;
    assert!(
        matches!(&refused, Err(PlatformError::Permanent(reason)) if reason.contains("lacks a permission")),
        "{refused:?}"
    );
    let threads = platforms.get("threads").unwrap();
    *fake.fail_next.lock().unwrap() = Some(200);
    let reply_to = reply(&root, &root, 1);
    let refused = threads.publish_follow_up(&tokens(), &item(&store, USER, "hi", &[], &none, "r-3"), &reply_to).await;
    assert!(
        matches!(&refused, Err(PlatformError::Permanent(reason)) if reason.contains("lacks a permission")),
        "{refused:?}"
    );
    assert!(fake.seen("POST", &format!("/{USER}/threads_publish")).is_empty(), "no container, nothing published");
}
