//! Connecting accounts through the built-in sandbox platform: the whole OAuth flow (authorize,
//! callback, exchange job, account listing), reconnects, every bad callback, and no token in
//! plain text anywhere in the database.

use herald_shared::commands::execute;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::crypto::Keyring;
use herald_shared::domain::connect_session::{Command, ConnectSession, SessionSpec};
use herald_shared::events::EventMetadata;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::harness::{TestApp, tables_containing};

pub struct Client {
    pub http: reqwest::Client,
    pub key: String,
}

/// A project and a key with every scope and limits no test reaches (tests poll).
pub async fn client(app: &TestApp) -> Client {
    let (project_id, _, _) = keys::create_project(&app.pool, "Acme", &EventMetadata::default()).await.unwrap();
    let unlimited =
        KeyRequest { requests_per_minute: 100_000, requests_per_day: 1_000_000, ..KeyRequest::admin("tests") };
    let (_, secret) = keys::create_key(&app.pool, project_id, unlimited, 10, &EventMetadata::default()).await.unwrap();
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    Client { http, key: keys::reveal(&secret).to_owned() }
}

pub fn location(response: &reqwest::Response) -> String {
    assert!(response.status().is_redirection(), "expected a redirect, got {}", response.status());
    response.headers()["location"].to_str().unwrap().to_owned()
}

pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// Starts a session and follows the sandbox's authorize page as user `login` (or denies).
/// Returns the session id and the callback URL the platform sent the browser to.
pub async fn authorize(app: &TestApp, client: &Client, body: Value, consent: &str) -> (String, String) {
    authorize_on(app, client, "sandbox", body, consent).await
}

/// [`authorize`] on any platform.
pub async fn authorize_on(
    app: &TestApp,
    client: &Client,
    platform: &str,
    body: Value,
    consent: &str,
) -> (String, String) {
    let started = client
        .http
        .post(app.url(&format!("/v1/connect/{platform}")))
        .bearer_auth(&client.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Value = started.json().await.unwrap();
    let url = started["url"].as_str().unwrap();
    let query = query_of(url);
    // Every platform that takes PKCE gets it (LinkedIn, Meta's and Pinterest's web apps do not).
    let takes_pkce = !matches!(platform, "linkedin" | "facebook" | "threads" | "instagram" | "pinterest");
    assert_eq!(query.get("code_challenge_method").map(String::as_str), takes_pkce.then_some("S256"), "{url}");
    assert_eq!(query["redirect_uri"], app.url(&format!("/v1/connect/{platform}/callback")));
    let consented = client.http.get(format!("{url}&{consent}")).send().await.unwrap();
    (started["session_id"].as_str().unwrap().to_owned(), location(&consented))
}

pub async fn get_json(app: &TestApp, client: &Client, path: &str) -> Value {
    client.http.get(app.url(path)).bearer_auth(&client.key).send().await.unwrap().json().await.unwrap()
}

pub async fn accounts(app: &TestApp, client: &Client) -> Vec<Value> {
    let listed = get_json(app, client, "/v1/accounts").await;
    listed["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_connect_imports_every_account_the_grant_reaches_and_a_reconnect_updates_them() {
    let app = TestApp::spawn().await;
    let client = client(&app).await;
    let body = json!({"redirect_uri": "https://client.example/done?from=herald", "external_id": "user-1"});
    let (session_id, callback) = authorize(&app, &client, body, "login=ada").await;
    assert!(callback.starts_with(&app.url("/v1/connect/sandbox/callback?")), "{callback}");

    let landed = client.http.get(&callback).send().await.unwrap();
    let destination = location(&landed);
    assert!(destination.starts_with("https://client.example/done?from=herald&"), "{destination}");
    let outcome = query_of(&destination);
    assert_eq!(outcome["session_id"], session_id);
    assert_eq!(outcome["status"], "connected");
    let first_ids: Vec<&str> = outcome["account_ids"].split(',').collect();
    assert_eq!(first_ids.len(), 3, "a person and two pages");

    let listed = accounts(&app, &client).await;
    assert_eq!(listed.len(), 3);
    for account in &listed {
        assert_eq!(account["status"], "connected");
        assert_eq!(account["external_id"], "user-1");
        assert_eq!(account["platform"], "sandbox");
        assert!(account["expires_at"].is_string());
        assert!(first_ids.contains(&account["id"].as_str().unwrap()));
    }
    let kinds: Vec<&str> = listed.iter().map(|account| account["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == "page").count(), 2, "{kinds:?}");
    let session: Value = get_json(&app, &client, &format!("/v1/connect/sessions/{session_id}")).await;
    assert_eq!(session["status"], "connected");

    // The same state again is refused: it is single use.
    let reused = client.http.get(&callback).send().await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert!(reused.text().await.unwrap().contains("already used"));

    // A reconnect by the same user updates the same three accounts and never duplicates them.
    let (_, callback) = authorize(&app, &client, json!({"external_id": "user-2"}), "login=ada").await;
    let page = client.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "no redirect_uri: a result page");
    assert!(page.text().await.unwrap().contains("3 account(s) connected"));
    let listed = accounts(&app, &client).await;
    assert_eq!(listed.len(), 3, "reconnecting never duplicates");
    assert!(listed.iter().all(|account| account["external_id"] == "user-2"));
    let ids: Vec<&str> = listed.iter().map(|account| account["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| first_ids.contains(id)), "the same accounts");

    // Filters.
    let filtered: Value = get_json(&app, &client, "/v1/accounts?external_id=user-1").await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_callbacks_get_a_clear_page_and_a_recorded_failure() {
    let app = TestApp::spawn().await;
    let client = client(&app).await;

    let unknown = client.http.get(app.url("/v1/connect/sandbox/callback?state=nope&code=x")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.text().await.unwrap().contains("not valid"));
    let no_state = client.http.get(app.url("/v1/connect/sandbox/callback?code=x")).send().await.unwrap();
    assert_eq!(no_state.status(), StatusCode::BAD_REQUEST);

    // The user says no on the platform.
    let body = json!({"redirect_uri": "https://client.example/done"});
    let (session_id, callback) = authorize(&app, &client, body.clone(), "decision=deny").await;
    assert!(query_of(&callback).contains_key("error"));
    let denied = client.http.get(&callback).send().await.unwrap();
    let outcome = query_of(&location(&denied));
    assert_eq!(outcome["status"], "denied");
    assert_eq!(outcome["session_id"], session_id);

    // A callback with the state but no code.
    let (session_id, callback) = authorize(&app, &client, body, "login=ada").await;
    let state = &query_of(&callback)["state"];
    let no_code =
        client.http.get(app.url(&format!("/v1/connect/sandbox/callback?state={state}"))).send().await.unwrap();
    assert_eq!(no_code.status(), StatusCode::BAD_REQUEST);
    assert!(no_code.text().await.unwrap().contains("no authorization code"));
    let session: Value = get_json(&app, &client, &format!("/v1/connect/sessions/{session_id}")).await;
    assert_eq!(session["status"], "failed");
    assert!(session["error"].as_str().unwrap().contains("no code"));

    // An expired link: a session whose ten minutes are over.
    let project_id: Uuid = sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let session_id = Uuid::now_v7();
    let state = "an-expired-state";
    let spec = SessionSpec {
        project_id,
        platform: "sandbox".into(),
        app_id: None,
        redirect_uri: None,
        external_id: None,
        scopes: vec![],
        state_hash: hex::encode(Sha256::digest(state.as_bytes())),
        expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
    };
    let mut tx = app.pool.begin().await.unwrap();
    execute::<ConnectSession>(&mut tx, session_id, Command::Start(Box::new(spec)), &EventMetadata::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expired =
        client.http.get(app.url(&format!("/v1/connect/sandbox/callback?state={state}&code=abc"))).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    assert!(expired.text().await.unwrap().contains("expired"));
    let status: String = sqlx::query_scalar("SELECT status FROM connect_sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");

    // A test key reaches only the sandbox.
    let (_, test_key) = keys::create_key(
        &app.pool,
        project_id,
        KeyRequest { environment: herald_shared::domain::api_key::Environment::Test, ..KeyRequest::admin("test") },
        10,
        &EventMetadata::default(),
    )
    .await
    .unwrap();
    let refused = client
        .http
        .post(app.url("/v1/connect/x"))
        .bearer_auth(keys::reveal(&test_key))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn no_token_code_or_state_is_stored_in_plain_text() {
    let app = TestApp::spawn().await;
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    let sent = query_of(&callback);
    client.http.get(&callback).send().await.unwrap();
    let account_id: Uuid = sqlx::query_scalar("SELECT id FROM accounts LIMIT 1").fetch_one(&app.pool).await.unwrap();

    let keyring = Keyring::from_config(&app.config).unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let stored = herald_shared::credentials::load_account_tokens(&mut tx, &keyring, account_id).await.unwrap().unwrap();
    drop(tx);
    let access = stored.access_token.unwrap().expose_secret().to_owned();
    let refresh = stored.refresh_token.unwrap().expose_secret().to_owned();
    assert!(access.len() >= 32 && refresh.len() >= 32);

    let secrets =
        [("access token", &access), ("refresh token", &refresh), ("code", &sent["code"]), ("state", &sent["state"])];
    for (what, secret) in secrets {
        let found = tables_containing(&app.pool, secret).await;
        assert!(found.is_empty(), "the {what} is in plain text in {found:?}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_disconnect_wipes_the_tokens_revokes_the_grant_and_a_reconnect_revives_the_account() {
    let app = TestApp::spawn().await;
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let person = accounts(&app, &client).await.into_iter().find(|account| account["kind"] == "person").unwrap();
    let account_id = person["id"].as_str().unwrap().to_owned();

    let path = format!("/v1/accounts/{account_id}/disconnect");
    let disconnected = client.http.post(app.url(&path)).bearer_auth(&client.key).send().await.unwrap();
    assert_eq!(disconnected.status(), StatusCode::OK);
    assert_eq!(disconnected.json::<Value>().await.unwrap()["status"], "disconnected");
    let (access, refresh): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT access_token, refresh_token FROM account_credentials WHERE account_id = $1")
            .bind(Uuid::parse_str(&account_id).unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(access.is_none() && refresh.is_none(), "the tokens are wiped at once");
    // The grant's two pages go too (one of them only would leave the grant to the other).
    for page in accounts(&app, &client).await.into_iter().filter(|account| account["kind"] != "person") {
        let path = format!("/v1/accounts/{}/disconnect", page["id"].as_str().unwrap());
        let disconnected = client.http.post(app.url(&path)).bearer_auth(&client.key).send().await.unwrap();
        assert_eq!(disconnected.status(), StatusCode::OK);
    }

    // The last disconnect's revocation job tells the sandbox, which revokes the grant.
    let mut revoked: Option<String> = None;
    for _ in 0..200 {
        revoked = sqlx::query_scalar("SELECT revoked_because FROM sandbox_grants WHERE revoked_at IS NOT NULL")
            .fetch_optional(&app.pool)
            .await
            .unwrap();
        if revoked.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(revoked.as_deref(), Some("revoked by the client"));
    let again = client.http.post(app.url(&path)).bearer_auth(&client.key).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT, "already disconnected");

    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let revived = get_json(&app, &client, &format!("/v1/accounts/{account_id}")).await;
    assert_eq!(revived["status"], "connected", "the same account, connected again");
    assert_eq!(accounts(&app, &client).await.len(), 3);
    app.stop().await.unwrap();
}
