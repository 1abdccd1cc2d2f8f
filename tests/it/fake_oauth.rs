//! An in-test OAuth 2.0 platform, reached through the per-platform URL settings: it checks PKCE
//! (S256) and the redirect URI, rotates refresh tokens (a reused one is `invalid_grant`), counts
//! token requests, and can be told to fail (503) or to leave out the refresh token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_shared::platforms::PlatformSettings;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{TestApp, TestDb, test_config};

#[derive(Default)]
pub struct FakeOAuth {
    /// Codes: code -> (PKCE challenge if one was sent, redirect_uri).
    codes: Mutex<HashMap<String, (Option<String>, String)>>,
    /// Live refresh tokens; used ones are removed.
    refresh_tokens: Mutex<Vec<String>>,
    issued: AtomicUsize,
    /// Refresh requests received.
    pub refresh_requests: AtomicUsize,
    /// Answer this many next token requests with a 503.
    pub fail_next: AtomicUsize,
    /// Leave the refresh token out of code exchanges.
    pub omit_refresh_token: std::sync::atomic::AtomicBool,
    /// Mastodon statuses made, by `Idempotency-Key`.
    pub mastodon_statuses: Mutex<HashMap<String, String>>,
    /// The Mastodon account's statuses, oldest first, as `GET /api/v1/accounts/{id}/statuses`
    /// lists them (newest first).
    pub mastodon_timeline: Mutex<Vec<serde_json::Value>>,
    /// `POST /api/v1/statuses` requests received.
    pub mastodon_posts: AtomicUsize,
    /// Leave this many next status posts unanswered (the connection stays silent).
    pub mastodon_unanswered: AtomicUsize,
    /// Whether an unanswered status post still makes the status before going silent.
    pub mastodon_unanswered_posts: std::sync::atomic::AtomicBool,
    /// The client id of the last token request (from its Basic credentials).
    pub last_client_id: Mutex<Option<String>>,
    /// Issue access tokens that live 60 s instead of an hour.
    pub short_lived: std::sync::atomic::AtomicBool,
}

impl FakeOAuth {
    /// Starts the platform; returns it and the settings that point herald's sandbox at it.
    pub async fn start() -> (Arc<Self>, PlatformSettings) {
        let fake = Arc::new(Self::default());
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token).get(facebook_long_lived))
            .route("/api/me/accounts", get(facebook_pages))
            .route("/api/{page}/feed", post(facebook_feed))
            .route("/api/api/v1/accounts/verify_credentials", get(mastodon_me))
            .route("/api/api/v1/statuses", post(mastodon_status))
            .route("/api/api/v1/accounts/{id}/statuses", get(mastodon_account_statuses))
            .route("/api/channels", get(youtube_channels))
            .route("/api/v2/user/info/", get(tiktok_user))
            .route("/api/user_account", get(pinterest_account))
            .route("/api/access_token", get(threads_long_lived))
            .route("/api/refresh_access_token", get(threads_refresh))
            .route("/api/me", get(threads_me))
            .route("/api/{page}/threads", post(threads_container))
            .route("/api/{page}/threads_publish", post(threads_publish))
            .route("/api/{page}", get(threads_permalink))
            .route("/api/accounts", get(accounts))
            .route("/api/2/users/me", get(x_me))
            .route("/api/v2/userinfo", get(linkedin_userinfo))
            .route("/api/v2/organizationalEntityAcls", get(linkedin_acls))
            .route("/api/rest/posts", post(linkedin_post))
            .route("/api/xrpc/com.atproto.server.createSession", post(bluesky_create_session))
            .route("/api/xrpc/com.atproto.server.refreshSession", post(bluesky_refresh_session))
            .route("/api/xrpc/com.atproto.server.getSession", get(bluesky_get_session))
            .route("/api/xrpc/com.atproto.repo.createRecord", post(bluesky_create_record))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = PlatformSettings {
            authorize_url: Some(format!("{base}/authorize")),
            token_url: Some(format!("{base}/token")),
            api_url: Some(format!("{base}/api")),
            client_id: Some("fake-client".into()),
            client_secret: Some("fake-secret".to_owned().into()),
            ..PlatformSettings::default()
        };
        (fake, settings)
    }

    /// The whole app on a fresh database, with every platform with an adapter pointing at a new
    /// fake (it answers in each one's shapes).
    pub async fn app_in_front() -> (TestApp, Arc<Self>) {
        let db = TestDb::new().await;
        let mut config = test_config(&db);
        let (fake, settings) = Self::start().await;
        config.platforms.insert("sandbox".into(), settings.clone());
        config.platforms.insert("x".into(), settings.clone());
        config.platforms.insert("linkedin".into(), settings.clone());
        config.platforms.insert("facebook".into(), settings.clone());
        config.platforms.insert("threads".into(), settings.clone());
        config.platforms.insert("mastodon".into(), settings.clone());
        config.platforms.insert("youtube".into(), settings.clone());
        config.platforms.insert("instagram".into(), settings.clone());
        config.platforms.insert("tiktok".into(), settings.clone());
        config.platforms.insert("pinterest".into(), settings.clone());
        let xrpc = settings.api_url.as_ref().map(|api| format!("{api}/xrpc"));
        config.platforms.insert("bluesky".into(), PlatformSettings { api_url: xrpc, ..settings });
        (TestApp::spawn_on(db, Arc::new(config), Router::new()).await, fake)
    }

    /// Makes every refresh token invalid (the user revoked the app).
    pub fn revoke_all(&self) {
        self.refresh_tokens.lock().unwrap().clear();
    }

    fn issue(&self, with_refresh: bool) -> serde_json::Value {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let refresh = format!("fake-refresh-token-{n}-{}", uuid::Uuid::new_v4().simple());
        let mut answer = json!({
            "access_token": format!("fake-access-token-{n}-{}", uuid::Uuid::new_v4().simple()),
            "token_type": "bearer",
            "expires_in": if self.short_lived.load(Ordering::SeqCst) { 60 } else { 3600 },
            "scope": "profile publish",
        });
        if with_refresh {
            self.refresh_tokens.lock().unwrap().push(refresh.clone());
            answer["refresh_token"] = json!(refresh);
        }
        answer
    }
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    redirect_uri: String,
    state: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

async fn authorize(State(fake): State<Arc<FakeOAuth>>, Query(query): Query<AuthorizeQuery>) -> Response {
    if query.code_challenge.is_some() {
        assert_eq!(query.code_challenge_method.as_deref(), Some("S256"));
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    fake.codes.lock().unwrap().insert(code.clone(), (query.code_challenge, query.redirect_uri.clone()));
    Redirect::to(&format!("{}?code={code}&state={}", query.redirect_uri, query.state)).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    /// `client_secret_post` puts the client's credentials here instead of in HTTP Basic.
    client_id: Option<String>,
    /// TikTok's name for the client id.
    client_key: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
}

async fn token(State(fake): State<Arc<FakeOAuth>>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    // The client's credentials come as HTTP Basic, or in the body.
    let basic = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let client_id = match basic.strip_prefix("Basic ") {
        Some(encoded) => {
            let credentials = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
            String::from_utf8(credentials).unwrap_or_default().split(':').next().map(str::to_owned)
        }
        None => form
            .client_id
            .clone()
            .or(form.client_key.clone())
            .filter(|_| form.client_secret.is_some())
            .map(|id| format!("{id} (in the body)")),
    };
    let Some(client_id) = client_id else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    };
    *fake.last_client_id.lock().unwrap() = Some(client_id);
    if form.grant_type == "refresh_token" {
        fake.refresh_requests.fetch_add(1, Ordering::SeqCst);
    }
    if fake.fail_next.load(Ordering::SeqCst) > 0 {
        fake.fail_next.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
    }
    let invalid =
        |why: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant", "error_description": why})));
    match form.grant_type.as_str() {
        "authorization_code" => {
            let Some((challenge, redirect_uri)) = form.code.and_then(|code| fake.codes.lock().unwrap().remove(&code))
            else {
                return invalid("unknown code").into_response();
            };
            if let Some(challenge) = challenge {
                let verifier = form.code_verifier.unwrap_or_default();
                if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                    return invalid("PKCE verification failed").into_response();
                }
            }
            if form.redirect_uri.as_deref() != Some(redirect_uri.as_str()) {
                return invalid("redirect_uri mismatch").into_response();
            }
            let with_refresh = !fake.omit_refresh_token.load(Ordering::SeqCst);
            Json(fake.issue(with_refresh)).into_response()
        }
        "refresh_token" => {
            let presented = form.refresh_token.unwrap_or_default();
            let mut live = fake.refresh_tokens.lock().unwrap();
            let Some(index) = live.iter().position(|token| *token == presented) else {
                return invalid("refresh token revoked or already used").into_response();
            };
            live.remove(index);
            drop(live);
            Json(fake.issue(true)).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response(),
    }
}

async fn accounts(headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !bearer.starts_with("Bearer fake-access-token-") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    }
    Json(json!({"data": [{"id": "fake-person-1", "kind": "person", "username": "ada", "name": "Ada"}]})).into_response()
}

/// X's `GET /2/users/me`.
async fn x_me(headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !bearer.starts_with("Bearer fake-access-token-") {
        let body = json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    Json(json!({"data": {"id": "2244994945", "name": "Ada Lovelace", "username": "ada"}})).into_response()
}

fn has_fake_token(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|bearer| bearer.starts_with("Bearer fake-access-token-"))
}

/// LinkedIn's `GET /v2/userinfo` (OpenID Connect).
async fn linkedin_userinfo(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"status": 401, "serviceErrorCode": 65600}))).into_response();
    }
    Json(json!({"sub": "782bbtaQ", "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace"}))
        .into_response()
}

/// LinkedIn's organisation roles of the member.
async fn linkedin_acls(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let acl = json!({"organization": "urn:li:organization:2414183", "role": "ADMINISTRATOR", "state": "APPROVED"});
    Json(json!({"elements": [acl], "paging": {"count": 10, "start": 0}})).into_response()
}

/// LinkedIn's `POST /rest/posts`: 201 with the post's URN in `x-restli-id`.
async fn linkedin_post(headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    if !has_fake_token(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let versioned = headers.contains_key("linkedin-version") && headers.contains_key("x-restli-protocol-version");
    if !versioned || body["author"].as_str().is_none_or(|author| !author.starts_with("urn:li:")) {
        return (StatusCode::BAD_REQUEST, Json(json!({"message": "bad request"}))).into_response();
    }
    let mut response = StatusCode::CREATED.into_response();
    response.headers_mut().insert("x-restli-id", "urn:li:share:7263".parse().unwrap());
    response
}

/// A Bluesky session: JWTs whose payload carries `exp`, and a refresh token that rotates.
fn bluesky_session(fake: &FakeOAuth) -> serde_json::Value {
    let n = fake.issued.fetch_add(1, Ordering::SeqCst);
    let exp = chrono::Utc::now().timestamp() + 7200;
    let payload = URL_SAFE_NO_PAD.encode(json!({"exp": exp, "scope": "com.atproto.access"}).to_string());
    let refresh = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.refresh-{n}");
    fake.refresh_tokens.lock().unwrap().push(refresh.clone());
    json!({
        "accessJwt": format!("eyJhbGciOiJIUzI1NiJ9.{payload}.access-{n}"),
        "refreshJwt": refresh,
        "handle": "ada.bsky.social",
        "did": "did:plc:ada",
    })
}

async fn bluesky_create_session(State(fake): State<Arc<FakeOAuth>>, Json(body): Json<serde_json::Value>) -> Response {
    if body["identifier"] != "ada.bsky.social" || body["password"] != "abcd-efgh-ijkl-mnop" {
        let refusal = json!({"error": "AuthenticationRequired", "message": "Invalid identifier or password"});
        return (StatusCode::UNAUTHORIZED, Json(refusal)).into_response();
    }
    Json(bluesky_session(&fake)).into_response()
}

async fn bluesky_refresh_session(State(fake): State<Arc<FakeOAuth>>, headers: HeaderMap) -> Response {
    fake.refresh_requests.fetch_add(1, Ordering::SeqCst);
    let presented = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let presented = presented.trim_start_matches("Bearer ").to_owned();
    let mut live = fake.refresh_tokens.lock().unwrap();
    let Some(index) = live.iter().position(|token| *token == presented) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "ExpiredToken", "message": "Token has been revoked"})))
            .into_response();
    };
    live.remove(index);
    drop(live);
    Json(bluesky_session(&fake)).into_response()
}

fn bluesky_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|value| value.to_str().ok()).is_some_and(|bearer| bearer.contains(".access-"))
}

async fn bluesky_get_session(headers: HeaderMap) -> Response {
    if !bluesky_authorized(&headers) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "InvalidToken"}))).into_response();
    }
    Json(json!({"handle": "ada.bsky.social", "did": "did:plc:ada", "active": true})).into_response()
}

async fn bluesky_create_record(headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    if !bluesky_authorized(&headers) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "InvalidToken"}))).into_response();
    }
    let valid = body["repo"] == "did:plc:ada"
        && body["collection"] == "app.bsky.feed.post"
        && body["record"]["$type"] == "app.bsky.feed.post"
        && body["record"]["createdAt"].is_string();
    if !valid {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "InvalidRequest"}))).into_response();
    }
    Json(json!({"uri": "at://did:plc:ada/app.bsky.feed.post/3l2s5xxv2ze2c", "cid": "bafyreib2"})).into_response()
}

#[derive(Deserialize)]
struct ExchangeQuery {
    grant_type: String,
    client_id: String,
    client_secret: String,
    fb_exchange_token: String,
}

/// Facebook's long-lived token exchange (`GET /oauth/access_token?grant_type=fb_exchange_token`).
async fn facebook_long_lived(Query(query): Query<ExchangeQuery>) -> Response {
    let valid = query.grant_type == "fb_exchange_token"
        && query.client_id == "fake-client"
        && query.client_secret == "fake-secret"
        && query.fb_exchange_token.starts_with("fake-access-token-");
    if !valid {
        let error = json!({"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    Json(json!({"access_token": "fake-access-token-long-lived", "token_type": "bearer", "expires_in": 5_184_000}))
        .into_response()
}

/// The Pages the user manages, each with its own token.
async fn facebook_pages(headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if bearer != "Bearer fake-access-token-long-lived" {
        let error =
            json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let pages = json!([
        {"id": "101", "name": "Ada's Bakery", "access_token": "fake-page-token-101"},
        {"id": "102", "name": "Ada's Books", "access_token": "fake-page-token-102"},
    ]);
    Json(json!({"data": pages, "paging": {}})).into_response()
}

/// `POST /{page-id}/feed`, with that Page's own token.
async fn facebook_feed(axum::extract::Path(page): axum::extract::Path<String>, headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if bearer != format!("Bearer fake-page-token-{page}") {
        let error =
            json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    Json(json!({"id": format!("{page}_9001")})).into_response()
}

#[derive(Deserialize)]
struct ThreadsTokenQuery {
    grant_type: String,
    access_token: String,
}

fn graph_token_error() -> Response {
    let error = json!({"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}});
    (StatusCode::BAD_REQUEST, Json(error)).into_response()
}

/// Threads' `th_exchange_token` (Instagram's `ig_exchange_token`): a one-hour token for a
/// 60-day one.
async fn threads_long_lived(Query(query): Query<ThreadsTokenQuery>) -> Response {
    let known = matches!(query.grant_type.as_str(), "th_exchange_token" | "ig_exchange_token");
    if !known || !query.access_token.starts_with("fake-access-token-") {
        return graph_token_error();
    }
    Json(json!({"access_token": "fake-access-token-threads-0", "token_type": "bearer", "expires_in": 5_184_000}))
        .into_response()
}

/// Threads' `th_refresh_token` (Instagram's `ig_refresh_token`): a long-lived token renews
/// itself.
async fn threads_refresh(State(fake): State<Arc<FakeOAuth>>, Query(query): Query<ThreadsTokenQuery>) -> Response {
    fake.refresh_requests.fetch_add(1, Ordering::SeqCst);
    let known = matches!(query.grant_type.as_str(), "th_refresh_token" | "ig_refresh_token");
    if !known || !query.access_token.starts_with("fake-access-token-threads-") {
        return graph_token_error();
    }
    let n = fake.issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({"access_token": format!("fake-access-token-threads-{n}"), "token_type": "bearer", "expires_in": 5_184_000}))
        .into_response()
}

fn threads_authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|bearer| bearer.starts_with("Bearer fake-access-token-threads-"))
}

async fn threads_me(headers: HeaderMap) -> Response {
    if !threads_authorized(&headers) {
        return graph_token_error();
    }
    Json(json!({"id": "17841400001", "username": "ada", "name": "Ada Lovelace"})).into_response()
}

#[derive(Deserialize)]
struct ContainerQuery {
    media_type: String,
    text: String,
}

async fn threads_container(headers: HeaderMap, Query(query): Query<ContainerQuery>) -> Response {
    if !threads_authorized(&headers) {
        return graph_token_error();
    }
    assert_eq!(query.media_type, "TEXT");
    assert!(!query.text.is_empty());
    Json(json!({"id": "container-1"})).into_response()
}

#[derive(Deserialize)]
struct PublishQuery {
    creation_id: String,
}

async fn threads_publish(headers: HeaderMap, Query(query): Query<PublishQuery>) -> Response {
    if !threads_authorized(&headers) || query.creation_id != "container-1" {
        return graph_token_error();
    }
    Json(json!({"id": "18000000001"})).into_response()
}

async fn threads_permalink(headers: HeaderMap) -> Response {
    if !threads_authorized(&headers) {
        return graph_token_error();
    }
    Json(json!({"permalink": "https://www.threads.net/@ada/post/C1a2b3", "id": "18000000001"})).into_response()
}

async fn mastodon_me(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    Json(json!({"id": "109348", "username": "ada", "acct": "ada", "display_name": "Ada"})).into_response()
}

/// `POST /api/v1/statuses`: a repeat with the same `Idempotency-Key` answers the same status.
async fn mastodon_status(
    State(fake): State<Arc<FakeOAuth>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    let Some(key) = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).map(str::to_owned) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "herald always sends Idempotency-Key"})))
            .into_response();
    };
    if body["status"].as_str().is_none_or(str::is_empty) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "Validation failed: Text can't be blank"})))
            .into_response();
    }
    fake.mastodon_posts.fetch_add(1, Ordering::SeqCst);
    let silent =
        fake.mastodon_unanswered.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if silent && !fake.mastodon_unanswered_posts.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(300)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let status = {
        let mut statuses = fake.mastodon_statuses.lock().unwrap();
        let next = format!("1133{}", statuses.len());
        let made = !statuses.contains_key(&key);
        let id = statuses.entry(key).or_insert(next).clone();
        let status = mastodon_status_entity(&id, body["status"].as_str().unwrap_or_default(), &body["visibility"]);
        if made {
            fake.mastodon_timeline.lock().unwrap().push(status.clone());
        }
        status
    };
    if silent {
        tokio::time::sleep(std::time::Duration::from_secs(300)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    Json(status).into_response()
}

/// A Mastodon `Status` entity (the fields herald and most clients read), its text rendered to
/// HTML the way Mastodon does: escaped, paragraphs for blank lines, `<br />` for line breaks.
pub fn mastodon_status_entity(id: &str, text: &str, visibility: &serde_json::Value) -> serde_json::Value {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let paragraphs: Vec<String> =
        escaped.split("\n\n").map(|paragraph| format!("<p>{}</p>", paragraph.replace('\n', "<br />"))).collect();
    json!({
        "id": id,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "in_reply_to_id": null,
        "in_reply_to_account_id": null,
        "sensitive": false,
        "spoiler_text": "",
        "visibility": visibility.as_str().unwrap_or("public"),
        "language": "en",
        "uri": format!("https://mastodon.example/users/ada/statuses/{id}"),
        "url": format!("https://mastodon.example/@ada/{id}"),
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "content": paragraphs.concat(),
        "reblog": null,
        "account": {"id": "109348", "username": "ada", "acct": "ada", "display_name": "Ada"},
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": null,
        "poll": null,
    })
}

#[derive(Deserialize)]
struct AccountStatusesQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/accounts/{id}/statuses`: the account's statuses, newest first, at most `limit`
/// (default 20, at most 40).
async fn mastodon_account_statuses(
    State(fake): State<Arc<FakeOAuth>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    Query(query): Query<AccountStatusesQuery>,
) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "The access token is invalid"}))).into_response();
    }
    if id != "109348" {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "Record not found"}))).into_response();
    }
    let limit = query.limit.unwrap_or(20).min(40);
    let timeline = fake.mastodon_timeline.lock().unwrap();
    let page: Vec<serde_json::Value> = timeline.iter().rev().take(limit).cloned().collect();
    Json(page).into_response()
}

/// YouTube's `GET /channels?part=snippet&mine=true`.
async fn youtube_channels(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        let error = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    let items = json!([
        {"kind": "youtube#channel", "id": "UC_ada_main", "snippet": {"title": "Ada Codes", "customUrl": "@adacodes"}},
        {"kind": "youtube#channel", "id": "UC_ada_music", "snippet": {"title": "Ada Plays", "customUrl": "@adaplays"}},
    ]);
    Json(json!({"kind": "youtube#channelListResponse", "items": items})).into_response()
}

/// Pinterest's `GET /v5/user_account`.
async fn pinterest_account(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 2, "message": "Authentication failed."})))
            .into_response();
    }
    Json(json!({"account_type": "BUSINESS", "id": "549755885175", "username": "adabakes"})).into_response()
}

/// TikTok's `GET /v2/user/info/`.
async fn tiktok_user(headers: HeaderMap) -> Response {
    if !has_fake_token(&headers) {
        let error = json!({"error": {"code": "access_token_invalid", "message": "The access token is invalid."}});
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    let user = json!({"open_id": "723f24d7-e717-40f8", "display_name": "Ada"});
    Json(json!({"data": {"user": user}, "error": {"code": "ok", "message": ""}})).into_response()
}
