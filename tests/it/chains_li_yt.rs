//! First comments on LinkedIn and YouTube, at the adapter level (the API's chains land on main
//! separately): the real adapters, configured as the worker configures them, against one
//! in-test fake that speaks LinkedIn's Comments API (`/rest/socialActions/{urn}/comments`, with
//! its versioned headers) and YouTube's `commentThreads` (insert and list). Each test checks
//! what herald sent (method, path and query, the bearer token, headers, the body) and what it
//! made of the answer: the comment it published, the platform's refusals classified, and the
//! look-ups for an unanswered comment (found, not found, cannot tell).

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use herald_shared::config::Config;
use herald_shared::media::MediaStore;
use herald_shared::platforms::{
    FollowUp, FollowUpKind, LookUp, Platform, PlatformError, PlatformSettings, Platforms, Publication, Published,
    TokenSet,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// One call the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// The raw path and query, as sent (URNs percent-encoded).
    uri: String,
    headers: HeaderMap,
    body: Value,
}

/// What the fake answers next to a call, by `METHOD /path` (the raw path, without the query); a
/// 404 otherwise.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    scripted: Mutex<Vec<(String, StatusCode, HeaderMap, Value)>>,
}

impl Fake {
    fn script(&self, call: &str, status: StatusCode, headers: &[(&'static str, &str)], body: Value) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        self.scripted.lock().unwrap().push((call.to_owned(), status, map, body));
    }

    fn calls(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    let uri = parts.uri.path_and_query().map(ToString::to_string).unwrap_or_default();
    fake.seen.lock().unwrap().push(Seen { method: parts.method.clone(), uri, headers: parts.headers, body });
    let call = format!("{} {}", parts.method, parts.uri.path());
    let mut scripted = fake.scripted.lock().unwrap();
    let Some(at) = scripted.iter().position(|(name, ..)| *name == call) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": format!("nothing scripted for {call}")})))
            .into_response();
    };
    let (_, status, headers, body) = scripted.remove(at);
    (status, headers, Json(body)).into_response()
}

/// The fake on loopback, and the adapters of `linkedin` and `youtube` pointed at it (under
/// `/li` and `/yt`), as `Platforms` builds them for the worker.
async fn adapters() -> (Arc<Fake>, Arc<dyn Platform>, Arc<dyn Platform>, MediaStore) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(answer).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = Config {
        data_dir: std::env::temp_dir().join(format!("herald-chains-{}", uuid::Uuid::new_v4().simple())),
        ..Config::default()
    };
    let on = |api: String| PlatformSettings { api_url: Some(api), ..PlatformSettings::default() };
    config.platforms.insert("linkedin".into(), on(format!("{base}/li")));
    config.platforms.insert("youtube".into(), on(format!("{base}/yt")));
    let platforms = Platforms::from_config(&config).unwrap();
    let store = MediaStore::from_config(&config).unwrap();
    (fake, platforms.get("linkedin").unwrap(), platforms.get("youtube").unwrap(), store)
}

fn tokens() -> TokenSet {
    TokenSet {
        access_token: SecretString::from("access-of-the-author".to_owned()),
        refresh_token: None,
        expires_at: None,
        scopes: Vec::new(),
    }
}

/// The first comment of a chain, by `author`.
fn comment<'a>(author: &'a str, text: &'a str, store: &'a MediaStore) -> Publication<'a> {
    Publication {
        platform_user_id: author,
        content: text,
        media: &[],
        store,
        options: &Value::Null,
        reference: "0195d1e0-0000-7000-8000-000000000001:1",
        began: None,
        checkpoints: &crate::fixtures::CHECKPOINTS,
    }
}

fn on<'a>(root: &'a Published) -> FollowUp<'a> {
    FollowUp { kind: FollowUpKind::Comment, root, parent: root, index: 1 }
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

/// LinkedIn's Comments API, as herald calls it for a member's post and an organization's.
#[tokio::test]
async fn linkedin_first_comments_go_on_the_post_as_its_member_or_organization() {
    let (fake, linkedin, _, store) = adapters().await;
    let post = Published::new("urn:li:share:7270000000000000001", None);
    let path = "/li/rest/socialActions/urn%3Ali%3Ashare%3A7270000000000000001/comments";
    for (author, comment_id) in
        [("urn:li:person:Ada123", "7270000000000000101"), ("urn:li:organization:4242", "7270000000000000102")]
    {
        let urn = format!("urn:li:comment:(urn:li:activity:7270000000000000000,{comment_id})");
        fake.script(
            &format!("POST {path}"),
            StatusCode::CREATED,
            &[("x-restli-id", comment_id)],
            json!({"$URN": urn, "id": comment_id, "actor": author, "object": post.platform_post_id,
                   "message": {"text": "Sources in the comments"}}),
        );
        let made = linkedin
            .publish_follow_up(&tokens(), &comment(author, "Sources in the comments", &store), &on(&post))
            .await
            .unwrap();
        assert_eq!(made.platform_post_id, urn);
        let encoded = urn.replace(':', "%3A").replace('(', "%28").replace(',', "%2C").replace(')', "%29");
        assert_eq!(
            made.url.as_deref(),
            Some(format!("https://www.linkedin.com/feed/update/urn:li:share:7270000000000000001?commentUrn={encoded}"))
                .as_deref()
        );
        let calls = fake.calls();
        let sent = calls.last().unwrap();
        assert_eq!(sent.method, Method::POST);
        // The post's URN, encoded as one path segment.
        assert_eq!(sent.uri, "/li/rest/socialActions/urn%3Ali%3Ashare%3A7270000000000000001/comments");
        assert_eq!(header(sent, "authorization"), "Bearer access-of-the-author");
        assert_eq!(header(sent, "linkedin-version"), "202605");
        assert_eq!(header(sent, "x-restli-protocol-version"), "2.0.0");
        assert_eq!(
            sent.body,
            json!({"actor": author, "object": "urn:li:share:7270000000000000001",
                   "message": {"text": "Sources in the comments"}})
        );
    }
    assert_eq!(fake.calls().len(), 2);

    // An answer naming the comment only in `x-restli-id` still names it.
    fake.script(&format!("POST {path}"), StatusCode::CREATED, &[("x-restli-id", "7270000000000000103")], json!({}));
    let made = linkedin
        .publish_follow_up(&tokens(), &comment("urn:li:person:Ada123", "again", &store), &on(&post))
        .await
        .unwrap();
    assert_eq!(made.platform_post_id, "7270000000000000103");

    // Refusals: a revoked token, a post that takes no comments.
    fake.script(
        &format!("POST {path}"),
        StatusCode::UNAUTHORIZED,
        &[],
        json!({"status": 401, "code": "REVOKED_ACCESS_TOKEN"}),
    );
    let dead = linkedin.publish_follow_up(&tokens(), &comment("urn:li:person:Ada123", "x", &store), &on(&post)).await;
    assert!(matches!(dead, Err(PlatformError::AuthDead(_))), "{dead:?}");
    fake.script(
        &format!("POST {path}"),
        StatusCode::FORBIDDEN,
        &[],
        json!({"status": 403, "message": "Comments disabled"}),
    );
    let refused =
        linkedin.publish_follow_up(&tokens(), &comment("urn:li:person:Ada123", "x", &store), &on(&post)).await;
    assert!(
        matches!(&refused, Err(PlatformError::Permanent(reason)) if reason.contains("Comments disabled")),
        "{refused:?}"
    );

    // Replies are not LinkedIn's chain: refused without a call.
    let before = fake.calls().len();
    let reply = FollowUp { kind: FollowUpKind::Reply, root: &post, parent: &post, index: 1 };
    let refused = linkedin.publish_follow_up(&tokens(), &comment("urn:li:person:Ada123", "x", &store), &reply).await;
    assert!(matches!(refused, Err(PlatformError::Permanent(_))), "{refused:?}");
    assert_eq!(fake.calls().len(), before);
}

/// A look-up lists the post's comments for the author's with the same text.
#[tokio::test]
async fn linkedin_looks_up_a_first_comment_among_the_posts_comments() {
    let (fake, linkedin, _, store) = adapters().await;
    let post = Published::new("urn:li:ugcPost:7270000000000000009", None);
    let path = "GET /li/rest/socialActions/urn%3Ali%3AugcPost%3A7270000000000000009/comments";
    let ours = "urn:li:comment:(urn:li:activity:7270000000000000000,7270000000000000201)";
    let listed = json!({"paging": {"start": 0, "count": 100}, "elements": [
        {"$URN": "urn:li:comment:(urn:li:activity:7270000000000000000,1)", "actor": "urn:li:person:Someone",
         "message": {"text": "Sources in the comments"}},
        {"$URN": "urn:li:comment:(urn:li:activity:7270000000000000000,2)", "actor": "urn:li:person:Ada123",
         "message": {"text": "something else"}},
        {"$URN": ours, "actor": "urn:li:person:Ada123", "message": {"text": "Sources in the comments"}},
    ]});
    fake.script(path, StatusCode::OK, &[], listed.clone());
    let publication = comment("urn:li:person:Ada123", "Sources in the comments", &store);
    let found = linkedin.look_up_follow_up(&tokens(), &publication, &on(&post)).await.unwrap();
    assert!(matches!(&found, LookUp::Found(made) if made.platform_post_id == ours), "{found:?}");
    let calls = fake.calls();
    let sent = calls.last().unwrap();
    assert_eq!(sent.method, Method::GET);
    assert_eq!(sent.uri, "/li/rest/socialActions/urn%3Ali%3AugcPost%3A7270000000000000009/comments?count=100");
    assert_eq!(header(sent, "authorization"), "Bearer access-of-the-author");
    assert_eq!(header(sent, "linkedin-version"), "202605");

    // Another author's comment with the same text is not ours.
    fake.script(path, StatusCode::OK, &[], listed);
    let other = comment("urn:li:organization:4242", "Sources in the comments", &store);
    assert_eq!(linkedin.look_up_follow_up(&tokens(), &other, &on(&post)).await.unwrap(), LookUp::NotFound);

    // A grant that may not read comments: herald cannot tell.
    fake.script(path, StatusCode::FORBIDDEN, &[], json!({"status": 403, "serviceErrorCode": 100}));
    assert_eq!(linkedin.look_up_follow_up(&tokens(), &publication, &on(&post)).await.unwrap(), LookUp::CannotTell);

    // A full page without ours: it may be on the next.
    let many: Vec<Value> = (0..100)
        .map(|n| {
            json!({"$URN": format!("urn:li:comment:(urn:li:activity:1,{n})"), "actor": "urn:li:person:Someone",
                        "message": {"text": "hi"}})
        })
        .collect();
    fake.script(path, StatusCode::OK, &[], json!({"elements": many}));
    assert_eq!(linkedin.look_up_follow_up(&tokens(), &publication, &on(&post)).await.unwrap(), LookUp::CannotTell);
}

/// commentThreads.insert on the video, as the channel.
#[tokio::test]
async fn youtube_first_comment_is_a_comment_thread_on_the_video() {
    let (fake, _, youtube, store) = adapters().await;
    let video = Published::new("dQw4w9WgXcQ", Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ".into()));
    let channel = "UCuAXFkgsw1L7xaCfnd5JJOw";
    fake.script(
        "POST /yt/commentThreads",
        StatusCode::OK,
        &[],
        json!({"kind": "youtube#commentThread", "id": "UgzThread123", "snippet": {
            "channelId": channel, "videoId": "dQw4w9WgXcQ", "topLevelComment": {"kind": "youtube#comment",
            "id": "UgzThread123", "snippet": {"authorChannelId": {"value": channel},
            "textOriginal": "Chapters below", "textDisplay": "Chapters below"}}}}),
    );
    let made =
        youtube.publish_follow_up(&tokens(), &comment(channel, "Chapters below", &store), &on(&video)).await.unwrap();
    assert_eq!(
        made,
        Published::new("UgzThread123", Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ&lc=UgzThread123".into()))
    );
    let calls = fake.calls();
    let sent = &calls[0];
    assert_eq!(sent.method, Method::POST);
    assert_eq!(sent.uri, "/yt/commentThreads?part=snippet");
    assert_eq!(header(sent, "authorization"), "Bearer access-of-the-author");
    assert_eq!(
        sent.body,
        json!({"snippet": {"channelId": channel, "videoId": "dQw4w9WgXcQ",
               "topLevelComment": {"snippet": {"textOriginal": "Chapters below"}}}})
    );

    // The spec asks for the scope commentThreads.insert needs.
    assert!(youtube.spec().endpoints.scopes.contains(&"https://www.googleapis.com/auth/youtube.force-ssl"));
    assert!(youtube.content_rules().chains.comments);
}

/// YouTube's refusals of a comment: the daily quota waits for midnight Pacific, the rest are
/// permanent with YouTube's reason.
#[tokio::test]
async fn youtube_comment_refusals_say_what_to_do() {
    let (fake, _, youtube, store) = adapters().await;
    let video = Published::new("dQw4w9WgXcQ", None);
    let error = |code: u16, reason: &str, message: &str| {
        json!({"error": {"code": code, "message": message, "errors": [{"domain": "youtube.commentThread",
               "reason": reason, "message": message}]}})
    };
    let channel = "UCuAXFkgsw1L7xaCfnd5JJOw";
    fake.script("POST /yt/commentThreads", StatusCode::FORBIDDEN, &[], error(403, "quotaExceeded", "quota"));
    let before = chrono::Utc::now();
    let quota = youtube.publish_follow_up(&tokens(), &comment(channel, "x", &store), &on(&video)).await;
    let Err(PlatformError::RateLimited { until, .. }) = quota else { panic!("{quota:?}") };
    let pacific = until.with_timezone(&chrono::FixedOffset::west_opt(8 * 3600).unwrap());
    let daylight = until.with_timezone(&chrono::FixedOffset::west_opt(7 * 3600).unwrap());
    assert!(
        [pacific, daylight].iter().any(|at| chrono::Timelike::hour(at) == 0 && chrono::Timelike::minute(at) == 0),
        "{until}"
    );
    assert!(until > before && until <= before + chrono::Duration::hours(25), "{until}");

    fake.script("POST /yt/commentThreads", StatusCode::FORBIDDEN, &[], error(403, "commentsDisabled", "disabled"));
    let disabled = youtube.publish_follow_up(&tokens(), &comment(channel, "x", &store), &on(&video)).await;
    assert!(
        matches!(&disabled, Err(PlatformError::Permanent(reason)) if reason.contains("commentsDisabled")),
        "{disabled:?}"
    );
    fake.script(
        "POST /yt/commentThreads",
        StatusCode::FORBIDDEN,
        &[],
        error(403, "forbidden", "insufficient permissions"),
    );
    let forbidden = youtube.publish_follow_up(&tokens(), &comment(channel, "x", &store), &on(&video)).await;
    assert!(
        matches!(&forbidden, Err(PlatformError::Permanent(reason)) if reason.contains("forbidden")),
        "{forbidden:?}"
    );
    fake.script("POST /yt/commentThreads", StatusCode::UNAUTHORIZED, &[], error(401, "authError", "invalid"));
    let dead = youtube.publish_follow_up(&tokens(), &comment(channel, "x", &store), &on(&video)).await;
    assert!(matches!(dead, Err(PlatformError::AuthDead(_))), "{dead:?}");
}

/// A look-up lists the video's threads, page by page, for the channel's comment.
#[tokio::test]
async fn youtube_looks_up_a_first_comment_among_the_videos_threads() {
    let (fake, _, youtube, store) = adapters().await;
    let video = Published::new("dQw4w9WgXcQ", None);
    let channel = "UCuAXFkgsw1L7xaCfnd5JJOw";
    let thread = |id: &str, author: &str, text: &str| {
        json!({"kind": "youtube#commentThread", "id": id, "snippet": {"videoId": "dQw4w9WgXcQ",
               "topLevelComment": {"id": id, "snippet": {"authorChannelId": {"value": author}, "textOriginal": text}}}})
    };
    fake.script(
        "GET /yt/commentThreads",
        StatusCode::OK,
        &[],
        json!({"items": [thread("Ug1", "UCsomeoneelse", "Chapters below"), thread("Ug2", channel, "first!")],
               "nextPageToken": "page two"}),
    );
    fake.script(
        "GET /yt/commentThreads",
        StatusCode::OK,
        &[],
        json!({"items": [thread("Ug3", channel, "Chapters below")]}),
    );
    let publication = comment(channel, "Chapters below", &store);
    let found = youtube.look_up_follow_up(&tokens(), &publication, &on(&video)).await.unwrap();
    assert!(matches!(&found, LookUp::Found(made) if made.platform_post_id == "Ug3"), "{found:?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let query = "part=snippet&videoId=dQw4w9WgXcQ&order=time&maxResults=100&textFormat=plainText";
    assert_eq!(calls[0].method, Method::GET);
    assert_eq!(calls[0].uri, format!("/yt/commentThreads?{query}"));
    assert_eq!(calls[1].uri, format!("/yt/commentThreads?{query}&pageToken=page+two"));
    assert!(calls.iter().all(|call| header(call, "authorization") == "Bearer access-of-the-author"));

    fake.script(
        "GET /yt/commentThreads",
        StatusCode::OK,
        &[],
        json!({"items": [thread("Ug1", "UCsomeoneelse", "Chapters below")]}),
    );
    assert_eq!(youtube.look_up_follow_up(&tokens(), &publication, &on(&video)).await.unwrap(), LookUp::NotFound);

    fake.script(
        "GET /yt/commentThreads",
        StatusCode::FORBIDDEN,
        &[],
        json!({"error": {"code": 403, "errors": [{"reason": "quotaExceeded"}]}}),
    );
    let quota = youtube.look_up_follow_up(&tokens(), &publication, &on(&video)).await;
    assert!(matches!(quota, Err(PlatformError::RateLimited { .. })), "{quota:?}");
}
