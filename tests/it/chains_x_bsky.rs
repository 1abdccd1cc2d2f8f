//! X and Bluesky threads, options, Bluesky rich text and link cards, and look-ups, through the
//! real adapters against an in-test fake on 127.0.0.1 that answers in each platform's documented
//! shapes and keeps every request (method, path and query, authorization, JSON body), so each
//! test checks exactly what herald sent:
//! - X: a thread's items are `POST /2/tweets` with `reply.in_reply_to_tweet_id` the item before
//!   (a reply may carry media); `reply_settings` and `quote_tweet_id` on the first post; look-ups
//!   read `GET /2/users/{id}/tweets` from the attempt's start; 402 is a permanent refusal.
//! - Bluesky: replies carry `reply.root`/`reply.parent` strong references with the cids kept in
//!   `thread_ref`; facets on UTF-8 byte offsets, mentions resolved through `resolveHandle`;
//!   `langs`; a link card read from the linked page (on loopback, private networks allowed) with
//!   its image uploaded, given explicitly, turned off, or refused for a private address;
//!   look-ups find the record by herald's reference through `listRecords`.
//!
//! These run at the adapter level (no database): the chain API on main calls these same methods.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_shared::domain::media::{MediaFacts, MediaKind};
use herald_shared::media::MediaStore;
use herald_shared::media::samples::png;
use herald_shared::outbound::{self, OutboundClient, OutboundError};
use herald_shared::platforms::bluesky::BlueskyAdapter;
use herald_shared::platforms::oauth::OAuthClient;
use herald_shared::platforms::x::XAdapter;
use herald_shared::platforms::{
    Endpoints, FollowUp, FollowUpKind, LookUp, MediaFile, Platform, PlatformError, Publication, Published, TokenSet,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// With the query.
    path: String,
    authorization: String,
    content_type: String,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The fake: X's and Bluesky's endpoints, and a web page with its card image.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    /// The next answer of `GET /2/users/{id}/tweets` or `listRecords`.
    listing: Mutex<Option<Value>>,
    /// The status of the next `POST /2/tweets` when not 201.
    refuse_tweet: Mutex<Option<(StatusCode, Value)>>,
    ids: Mutex<u64>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|seen| format!("{} {}", seen.method, seen.path)).collect()
    }

    fn to(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.path.split('?').next() == Some(path)).cloned().collect()
    }

    fn next_id(&self) -> u64 {
        let mut ids = self.ids.lock().unwrap();
        *ids += 1;
        *ids
    }
}

const TOKEN: &str = "fake-access-token-chains";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
/// The card image the fake page names.
fn card_image() -> Vec<u8> {
    png(40, 21)
}

async fn answer(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let path = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    };
    fake.seen.lock().unwrap().push(seen.clone());
    let bare = uri.path();
    // The web page and its image need no token.
    match bare {
        "/page" => {
            let html = r#"<!doctype html><html><head><title>Fallback</title>
                <meta property="og:title" content="Caf&eacute; &amp; crème">
                <meta property="og:description" content="What the café serves">
                <meta property="og:image" content="/card.png"></head><body>…</body></html>"#;
            return ([("content-type", "text/html; charset=utf-8")], html).into_response();
        }
        "/card.png" => return ([("content-type", "image/png")], card_image()).into_response(),
        "/xrpc/com.atproto.identity.resolveHandle" => {
            return if uri.query() == Some("handle=ada.bsky.social") {
                axum::Json(json!({"did": "did:plc:adaadaadaadaadaadaadaada"})).into_response()
            } else {
                let body = json!({"error": "InvalidRequest", "message": "Unable to resolve handle"});
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
            };
        }
        _ => {}
    }
    if seen.authorization != format!("Bearer {TOKEN}") {
        let body = json!({"title": "Unauthorized", "status": 401, "detail": "Unauthorized", "error": "AuthMissing"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let id = fake.next_id();
    match (method, bare) {
        (Method::POST, "/2/tweets") => {
            if let Some((status, body)) = fake.refuse_tweet.lock().unwrap().take() {
                return (status, axum::Json(body)).into_response();
            }
            let text = seen.json()["text"].clone();
            let id = format!("18{id:017}");
            (StatusCode::CREATED, axum::Json(json!({"data": {"id": id, "text": text, "edit_history_tweet_ids": [id]}})))
                .into_response()
        }
        (Method::GET, path) if path.starts_with("/2/users/") || path == "/xrpc/com.atproto.repo.listRecords" => {
            axum::Json(fake.listing.lock().unwrap().take().unwrap_or(json!({}))).into_response()
        }
        (Method::POST, "/2/media/upload/initialize") => {
            axum::Json(json!({"data": {"id": format!("77{id}"), "media_key": format!("3_77{id}")}})).into_response()
        }
        (Method::POST, path) if path.ends_with("/append") => axum::Json(json!({"data": {}})).into_response(),
        (Method::POST, path) if path.ends_with("/finalize") => {
            let id = path.trim_start_matches("/2/media/upload/").trim_end_matches("/finalize");
            axum::Json(json!({"data": {"id": id, "size": 1}})).into_response()
        }
        (Method::POST, "/xrpc/com.atproto.repo.createRecord") => {
            let rkey = format!("3k{id:011}");
            axum::Json(json!({
                "uri": format!("at://{DID}/app.bsky.feed.post/{rkey}"),
                "cid": format!("bafyreicid{id}"),
                "commit": {"cid": "bafyreicommit", "rev": "3k"},
                "validationStatus": "valid",
            }))
            .into_response()
        }
        (Method::POST, "/xrpc/com.atproto.repo.uploadBlob") => axum::Json(json!({"blob": {
            "$type": "blob",
            "ref": {"$link": format!("bafkreiblob{id}")},
            "mimeType": seen.content_type,
            "size": seen.body.len(),
        }}))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "NotFound"}))).into_response(),
    }
}

/// The fake, listening on loopback; answers it and its base URL.
async fn fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(answer).with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (fake, format!("http://{address}"))
}

fn oauth(label: &'static str, api_url: String) -> OAuthClient {
    let endpoints = Endpoints {
        authorize_url: format!("{api_url}/authorize"),
        token_url: format!("{api_url}/token"),
        upload_url: Some(api_url.clone()),
        api_url,
        revoke_url: None,
        scopes: Vec::new(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    OAuthClient::new(label, endpoints, http)
}

fn x(base: &str) -> XAdapter {
    XAdapter::new(oauth("X", base.to_owned()))
}

/// Bluesky with link cards fetched through a guarded client that allows private networks or not.
fn bluesky(base: &str, allow_private: bool) -> BlueskyAdapter {
    let outbound = OutboundClient::with_timeout(allow_private, Duration::from_secs(30)).unwrap();
    BlueskyAdapter::new(oauth("Bluesky", format!("{base}/xrpc")).with_outbound(outbound))
}

fn tokens() -> TokenSet {
    TokenSet { access_token: SecretString::from(TOKEN), refresh_token: None, expires_at: None, scopes: Vec::new() }
}

/// A media store on a fresh directory, holding one PNG as `card.png`.
fn store_with_png() -> (MediaStore, MediaFile) {
    let config = herald_shared::Config {
        data_dir: std::env::temp_dir().join(format!("herald-chains-{}", uuid::Uuid::new_v4().simple())),
        ..herald_shared::Config::default()
    };
    let store = MediaStore::from_config(&config).unwrap();
    let bytes = png(64, 48);
    std::fs::write(config.media_dir().join("card.png"), &bytes).unwrap();
    let file = MediaFile {
        id: uuid::Uuid::new_v4(),
        alt_text: None,
        facts: MediaFacts {
            kind: MediaKind::Image,
            content_type: "image/png".into(),
            size_bytes: i64::try_from(bytes.len()).unwrap(),
            sha256: String::new(),
            width: Some(64),
            height: Some(48),
            duration_ms: None,
            frame_rate: None,
            video_codec: None,
            audio_codec: None,
        },
        url: "http://127.0.0.1:9/unused".into(),
        object_key: "card.png".into(),
    };
    (store, file)
}

fn empty_store() -> MediaStore {
    store_with_png().0
}

fn publication<'a>(
    user: &'a str,
    content: &'a str,
    store: &'a MediaStore,
    options: &'a Value,
    reference: &'a str,
) -> Publication<'a> {
    Publication {
        platform_user_id: user,
        content,
        media: &[],
        store,
        options,
        reference,
        began: None,
        checkpoints: &crate::fixtures::CHECKPOINTS,
    }
}

fn reply<'a>(root: &'a Published, parent: &'a Published, index: usize) -> FollowUp<'a> {
    FollowUp { kind: FollowUpKind::Reply, root, parent, index }
}

#[tokio::test]
async fn an_x_thread_of_three_replies_each_to_the_one_before_and_a_reply_carries_media() {
    let (fake, base) = fake().await;
    let adapter = x(&base);
    let store = empty_store();
    let (media_store, file) = store_with_png();
    let options = json!({"platform": "x", "reply_settings": "following"});
    let first =
        adapter.publish(&tokens(), &publication("2244994945", "1/3 the café", &store, &options, "r0")).await.unwrap();
    let second_item = publication("2244994945", "2/3 ça va", &store, &options, "r1");
    let second = adapter.publish_follow_up(&tokens(), &second_item, &reply(&first, &first, 1)).await.unwrap();
    let files = [file];
    let third_item =
        Publication { media: &files, ..publication("2244994945", "3/3 🎉", &media_store, &options, "r2") };
    let third = adapter.publish_follow_up(&tokens(), &third_item, &reply(&first, &second, 2)).await.unwrap();
    assert_ne!(first.platform_post_id, second.platform_post_id);
    assert_eq!(third.url, Some(format!("https://x.com/i/web/status/{}", third.platform_post_id)));

    let tweets = fake.to("/2/tweets");
    assert_eq!(tweets.len(), 3);
    assert!(tweets.iter().all(|seen| seen.method == Method::POST && seen.authorization == format!("Bearer {TOKEN}")));
    // The options are the first post's: who may reply to the thread.
    assert_eq!(tweets[0].json(), json!({"text": "1/3 the café", "reply_settings": "following"}));
    assert_eq!(
        tweets[1].json(),
        json!({"text": "2/3 ça va", "reply": {"in_reply_to_tweet_id": first.platform_post_id}})
    );
    let media_id = fake.to("/2/media/upload/initialize").len();
    assert_eq!(media_id, 1, "{:?}", fake.calls());
    let finalize = fake.calls().into_iter().find(|call| call.ends_with("/finalize")).unwrap();
    let uploaded = finalize.trim_start_matches("POST /2/media/upload/").trim_end_matches("/finalize").to_owned();
    assert_eq!(
        tweets[2].json(),
        json!({
            "text": "3/3 🎉",
            "media": {"media_ids": [uploaded]},
            "reply": {"in_reply_to_tweet_id": second.platform_post_id},
        })
    );
}

#[tokio::test]
async fn x_options_are_checked_at_create_and_sent_with_the_post() {
    let spec = &herald_shared::platforms::x::SPEC.options;
    let check = |options: Value| herald_shared::platforms::options::problems("x", spec, &options);
    assert!(
        check(json!({"platform": "x", "reply_settings": "mentionedUsers", "quote_tweet_id": "1346889436626259968"}))
            .is_empty()
    );
    for setting in ["following", "mentionedUsers", "subscribers", "verified"] {
        assert!(check(json!({"platform": "x", "reply_settings": setting})).is_empty(), "{setting}");
    }
    assert_eq!(check(json!({"platform": "x", "reply_settings": "everyone"}))[0].field, "reply_settings");
    assert_eq!(
        check(json!({"platform": "x", "quote_tweet_id": "https://x.com/a/status/1"}))[0].field,
        "quote_tweet_id"
    );
    assert!(check(json!({"platform": "x", "poll": {}}))[0].message.contains("unknown field"));

    let (fake, base) = fake().await;
    let store = empty_store();
    let options = json!({"platform": "x", "reply_settings": "verified", "quote_tweet_id": "1346889436626259968"});
    x(&base).publish(&tokens(), &publication("2244994945", "Quoting", &store, &options, "r0")).await.unwrap();
    assert_eq!(
        fake.to("/2/tweets")[0].json(),
        json!({"text": "Quoting", "reply_settings": "verified", "quote_tweet_id": "1346889436626259968"})
    );
}

#[tokio::test]
async fn an_x_look_up_reads_the_timeline_since_the_attempt_and_matches_the_text() {
    let (fake, base) = fake().await;
    let adapter = x(&base);
    let store = empty_store();
    let began = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().to_utc();
    let options = json!({});
    let item = Publication {
        began: Some(began),
        ..publication("2244994945", "Fish & chips at https://example.com/menu", &store, &options, "r0")
    };
    // X escapes `&` and shortens the link.
    *fake.listing.lock().unwrap() = Some(json!({
        "data": [
            {"id": "1800000000000000002", "text": "Another post", "created_at": "2026-12-02T10:00:03.000Z"},
            {"id": "1800000000000000001", "text": "Fish &amp; chips at https://t.co/abc123", "created_at": "2026-12-02T10:00:01.000Z"},
        ],
        "meta": {"result_count": 2, "newest_id": "1800000000000000002", "oldest_id": "1800000000000000001"},
    }));
    let found = adapter.look_up(&tokens(), &item).await.unwrap();
    assert_eq!(
        found,
        LookUp::Found(Published::new(
            "1800000000000000001",
            Some("https://x.com/i/web/status/1800000000000000001".into())
        ))
    );
    let listed = fake.to("/2/users/2244994945/tweets");
    assert_eq!(listed[0].method, Method::GET);
    assert_eq!(listed[0].authorization, format!("Bearer {TOKEN}"));
    assert!(listed[0].path.contains("start_time=2026-12-02T09%3A58%3A00Z"), "{}", listed[0].path);
    assert!(listed[0].path.contains("exclude=retweets"), "{}", listed[0].path);

    // A reply is only found among replies to its parent.
    let root = Published::new("1799999999999999999", None);
    let follow = reply(&root, &root, 1);
    *fake.listing.lock().unwrap() = Some(json!({
        "data": [{"id": "1800000000000000001", "text": "Fish &amp; chips at https://t.co/abc123", "referenced_tweets": [{"type": "quoted", "id": "1799999999999999999"}]}],
        "meta": {"result_count": 1},
    }));
    assert_eq!(adapter.look_up_follow_up(&tokens(), &item, &follow).await.unwrap(), LookUp::NotFound);
    *fake.listing.lock().unwrap() = Some(json!({
        "data": [{"id": "1800000000000000003", "text": "Fish &amp; chips at https://t.co/abc123", "referenced_tweets": [{"type": "replied_to", "id": "1799999999999999999"}]}],
        "meta": {"result_count": 1},
    }));
    let found = adapter.look_up_follow_up(&tokens(), &item, &follow).await.unwrap();
    assert!(matches!(found, LookUp::Found(published) if published.platform_post_id == "1800000000000000003"));

    // An empty timeline that answered in full: nothing was made.
    *fake.listing.lock().unwrap() = Some(json!({"meta": {"result_count": 0}}));
    assert_eq!(adapter.look_up(&tokens(), &item).await.unwrap(), LookUp::NotFound);
    // More pages than herald reads, none matching: it cannot tell.
    let page = json!({"data": [{"id": "1", "text": "other"}], "meta": {"result_count": 1, "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"}});
    *fake.listing.lock().unwrap() = Some(page);
    // Each page after the first answers `{}` (no data, no next token): the end of the timeline.
    assert_eq!(adapter.look_up(&tokens(), &item).await.unwrap(), LookUp::NotFound);
    assert!(fake.calls().last().unwrap().contains("pagination_token=7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"));
    // Without the attempt's start there is nothing to search from.
    let unknown = publication("2244994945", "x", &store, &options, "r0");
    assert_eq!(adapter.look_up(&tokens(), &unknown).await.unwrap(), LookUp::CannotTell);
}

#[tokio::test]
async fn x_out_of_credits_is_a_permanent_refusal_that_says_so() {
    let (fake, base) = fake().await;
    let store = empty_store();
    let options = json!({});
    let body = json!({"title": "CreditsDepleted", "detail": "Your enrolled account does not have any credits", "type": "https://api.twitter.com/2/problems/credits"});
    *fake.refuse_tweet.lock().unwrap() = Some((StatusCode::PAYMENT_REQUIRED, body));
    let root = Published::new("1799999999999999999", None);
    let item = publication("2244994945", "a reply", &store, &options, "r1");
    let refused = x(&base).publish_follow_up(&tokens(), &item, &reply(&root, &root, 1)).await.unwrap_err();
    assert!(
        matches!(&refused, PlatformError::Permanent(reason) if reason.contains("pay-per-use credits are used up") && reason.contains("402")),
        "{refused:?}"
    );
    assert_eq!(fake.to("/2/tweets").len(), 1);
}

/// The record a `createRecord` call carried.
fn record(seen: &Seen) -> Value {
    let body = seen.json();
    assert_eq!((body["repo"].as_str(), body["collection"].as_str()), (Some(DID), Some("app.bsky.feed.post")));
    body["record"].clone()
}

#[tokio::test]
async fn a_bluesky_thread_replies_with_strong_references_to_the_root_and_the_parent() {
    let (fake, base) = fake().await;
    let adapter = bluesky(&base, true);
    let store = empty_store();
    let options = json!({"platform": "bluesky", "languages": ["fr", "en-GB"]});
    let first = adapter.publish(&tokens(), &publication(DID, "Un", &store, &options, "ref-0")).await.unwrap();
    let second = adapter
        .publish_follow_up(&tokens(), &publication(DID, "Deux", &store, &options, "ref-1"), &reply(&first, &first, 1))
        .await
        .unwrap();
    let third = adapter
        .publish_follow_up(&tokens(), &publication(DID, "Trois", &store, &options, "ref-2"), &reply(&first, &second, 2))
        .await
        .unwrap();
    let rkey = third.platform_post_id.rsplit('/').next().unwrap();
    assert_eq!(third.url, Some(format!("https://bsky.app/profile/{DID}/post/{rkey}")));

    let created = fake.to("/xrpc/com.atproto.repo.createRecord");
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|seen| seen.authorization == format!("Bearer {TOKEN}")));
    let records: Vec<Value> = created.iter().map(record).collect();
    assert_eq!(records[0].get("reply"), None);
    let strong = |post: &Published| json!({"uri": post.platform_post_id, "cid": post.thread_ref.clone().unwrap()});
    assert_eq!(records[1]["reply"], json!({"root": strong(&first), "parent": strong(&first)}));
    assert_eq!(records[2]["reply"], json!({"root": strong(&first), "parent": strong(&second)}));
    assert!(first.thread_ref.as_deref().unwrap().starts_with("bafyreicid"));
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["$type"], "app.bsky.feed.post");
        assert_eq!(record["langs"], json!(["fr", "en-GB"]));
        assert_eq!(record["heraldReference"], format!("ref-{index}"));
    }

    // A parent without a kept cid cannot be answered.
    let bare = Published::new(first.platform_post_id.clone(), None);
    let refused = adapter
        .publish_follow_up(&tokens(), &publication(DID, "Quatre", &store, &options, "ref-3"), &reply(&first, &bare, 3))
        .await
        .unwrap_err();
    assert!(matches!(refused, PlatformError::Permanent(reason) if reason.contains("no cid")));
}

#[tokio::test]
async fn bluesky_facets_are_on_utf8_byte_offsets_and_mentions_are_resolved() {
    let (fake, base) = fake().await;
    let store = empty_store();
    let options = json!({"platform": "bluesky", "no_link_card": true});
    let text = "Café 🎉 ça: https://example.com/a?b=1. Hi @ada.bsky.social and @nobody.example! #Rust #été";
    bluesky(&base, true).publish(&tokens(), &publication(DID, text, &store, &options, "ref-0")).await.unwrap();
    let bytes = text.as_bytes();
    let at = |needle: &str| bytes.windows(needle.len()).position(|window| window == needle.as_bytes()).unwrap();
    // "Café 🎉 ça: " is 11 characters and 16 bytes.
    assert_eq!(at("https://"), 16);
    let record = record(&fake.to("/xrpc/com.atproto.repo.createRecord")[0]);
    assert_eq!(
        record["facets"],
        json!([
            {"index": {"byteStart": 16, "byteEnd": 41}, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/a?b=1"}]},
            {"index": {"byteStart": at("@ada"), "byteEnd": at("@ada") + 16}, "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:adaadaadaadaadaadaadaada"}]},
            {"index": {"byteStart": at("#Rust"), "byteEnd": at("#Rust") + 5}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Rust"}]},
            {"index": {"byteStart": at("#été"), "byteEnd": text.len()}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "été"}]},
        ])
    );
    assert_eq!(&text[41..42], ".");
    // Both handles were asked for; the one that does not resolve has no facet.
    let resolved = fake.to("/xrpc/com.atproto.identity.resolveHandle");
    let asked: Vec<&str> = resolved.iter().map(|seen| seen.path.as_str()).collect();
    assert_eq!(
        asked,
        [
            "/xrpc/com.atproto.identity.resolveHandle?handle=ada.bsky.social",
            "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.example"
        ]
    );
    // Turned off, there is no card and no page is read.
    assert_eq!(record.get("embed"), None);
    assert!(fake.to("/page").is_empty());
}

#[tokio::test]
async fn a_bluesky_link_card_is_read_from_the_page_with_its_image_as_the_thumbnail() {
    let (fake, base) = fake().await;
    let store = empty_store();
    let options = json!({});
    let text = format!("Lunch: {base}/page");
    bluesky(&base, true).publish(&tokens(), &publication(DID, &text, &store, &options, "ref-0")).await.unwrap();
    assert_eq!(fake.to("/page")[0].method, Method::GET);
    // The page and its image get no platform token.
    assert_eq!(fake.to("/page")[0].authorization, "");
    assert_eq!(fake.to("/card.png")[0].authorization, "");
    let blobs = fake.to("/xrpc/com.atproto.repo.uploadBlob");
    assert_eq!(blobs.len(), 1);
    assert_eq!((blobs[0].content_type.as_str(), blobs[0].body.to_vec()), ("image/png", card_image()));
    let record = record(&fake.to("/xrpc/com.atproto.repo.createRecord")[0]);
    assert_eq!(
        record["embed"],
        json!({
            "$type": "app.bsky.embed.external",
            "external": {
                "uri": format!("{base}/page"),
                "title": "Caf&eacute; & crème",
                "description": "What the café serves",
                "thumb": {"$type": "blob", "ref": {"$link": "bafkreiblob1"}, "mimeType": "image/png", "size": card_image().len()},
            },
        })
    );
}

#[tokio::test]
async fn a_bluesky_link_card_can_be_given_and_a_private_address_is_never_fetched() {
    let (fake, base) = fake().await;
    let store = empty_store();
    let text = format!("Read {base}/page");
    // Given: no page is read.
    let options = json!({"platform": "bluesky", "link_card": {"url": "https://example.com/given", "title": "Given", "description": "As said"}});
    bluesky(&base, true).publish(&tokens(), &publication(DID, &text, &store, &options, "ref-0")).await.unwrap();
    let given = record(&fake.to("/xrpc/com.atproto.repo.createRecord")[0]);
    assert_eq!(
        given["embed"],
        json!({"$type": "app.bsky.embed.external", "external": {"uri": "https://example.com/given", "title": "Given", "description": "As said"}})
    );
    assert!(fake.to("/page").is_empty());

    // Without HERALD_ALLOW_PRIVATE_NETWORKS the loopback page is refused before any connection,
    // and the post goes out without a card.
    let options = json!({});
    bluesky(&base, false).publish(&tokens(), &publication(DID, &text, &store, &options, "ref-1")).await.unwrap();
    let plain = record(&fake.to("/xrpc/com.atproto.repo.createRecord")[1]);
    assert_eq!(plain.get("embed"), None);
    assert!(fake.to("/page").is_empty());
    // The classifier refuses private, link-local and metadata addresses (no packet is sent).
    for (url, class) in [
        ("http://10.1.2.3/page", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://127.0.0.1:8080/", "loopback"),
    ] {
        assert_eq!(outbound::parse_url(url, false), Err(OutboundError::Refused { class }), "{url}");
    }

    // The options are checked at create.
    let spec = &herald_shared::platforms::bluesky::SPEC.options;
    let check = |options: Value| herald_shared::platforms::options::problems("bluesky", spec, &options);
    assert!(check(json!({"platform": "bluesky", "languages": ["en", "pt-BR", "zh-Hant-TW"]})).is_empty());
    assert_eq!(check(json!({"platform": "bluesky", "languages": ["en", "fr", "de", "es"]}))[0].field, "languages");
    assert_eq!(check(json!({"platform": "bluesky", "languages": ["english"]}))[0].field, "languages[0]");
    let card =
        check(json!({"platform": "bluesky", "no_link_card": true, "link_card": {"url": "ftp://x", "title": " "}}));
    let fields: Vec<&str> = card.iter().map(|problem| problem.field.as_str()).collect();
    assert_eq!(fields, ["no_link_card", "link_card.url", "link_card.title"]);
}

#[tokio::test]
async fn a_bluesky_look_up_finds_the_record_by_heralds_reference() {
    let (fake, base) = fake().await;
    let adapter = bluesky(&base, true);
    let store = empty_store();
    let options = json!({});
    let began = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().to_utc();
    let item = Publication { began: Some(began), ..publication(DID, "Same text", &store, &options, "ref-7") };
    let uri = format!("at://{DID}/app.bsky.feed.post/3kabc");
    *fake.listing.lock().unwrap() = Some(json!({
        "records": [
            {"uri": format!("at://{DID}/app.bsky.feed.post/3kdef"), "cid": "bafyother", "value": {"$type": "app.bsky.feed.post", "text": "Same text", "createdAt": "2026-12-02T10:00:02.000Z", "heraldReference": "ref-8"}},
            {"uri": uri, "cid": "bafyfound", "value": {"$type": "app.bsky.feed.post", "text": "Same text", "createdAt": "2026-12-02T10:00:01.000Z", "heraldReference": "ref-7"}},
        ],
        "cursor": "3kabc",
    }));
    let found = adapter.look_up(&tokens(), &item).await.unwrap();
    assert_eq!(
        found,
        LookUp::Found(Published {
            platform_post_id: uri.clone(),
            url: Some(format!("https://bsky.app/profile/{DID}/post/3kabc")),
            thread_ref: Some("bafyfound".into()),
        })
    );
    let listed = fake.to("/xrpc/com.atproto.repo.listRecords");
    assert_eq!(listed[0].authorization, format!("Bearer {TOKEN}"));
    assert_eq!(
        listed[0].path,
        "/xrpc/com.atproto.repo.listRecords?repo=did%3Aplc%3Aewvi7nxzyoun6zhxrhs64oiz&collection=app.bsky.feed.post&limit=100"
    );
    // Records back to before the attempt without the reference: it was never made.
    *fake.listing.lock().unwrap() = Some(json!({
        "records": [{"uri": uri, "cid": "bafyold", "value": {"text": "Same text", "createdAt": "2026-12-02T09:00:00.000Z"}}],
        "cursor": "3kold",
    }));
    let root = Published::new(uri.clone(), None);
    assert_eq!(adapter.look_up_follow_up(&tokens(), &item, &reply(&root, &root, 1)).await.unwrap(), LookUp::NotFound);
}
