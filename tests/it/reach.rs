//! A key's reach: a key limited to platforms, to accounts or to the test environment sees and
//! changes nothing beyond them on any route (404, 403 or an empty list, never the data), the
//! event feed included, and cannot widen itself through `/v1/keys`. Driven from the OpenAPI
//! document, so every new route is tried too.

use std::time::Duration;

use herald_shared::commands::execute;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::connect_session::{self, ConnectSession, SessionSpec};
use herald_shared::events::EventMetadata;
use herald_shared::events::reader::wait_for_horizon;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api_edge::{documented_operations, request};
use crate::fixtures::{connected_account, draft_post};
use crate::harness::TestApp;

fn metadata(project_id: Uuid) -> EventMetadata {
    EventMetadata { project_id: Some(project_id), ..EventMetadata::default() }
}

/// A connected account whose external id is `external_id`.
async fn account(app: &TestApp, project_id: Uuid, platform: &str, external_id: &str) -> Uuid {
    connected_account(app, project_id, platform, &format!("{platform}-{external_id}"), Some(external_id)).await
}

/// A connect session on `platform` that completed with `account_ids`.
async fn completed_session(app: &TestApp, project_id: Uuid, platform: &str, account_ids: &[Uuid]) -> Uuid {
    let id = Uuid::now_v7();
    let spec = SessionSpec {
        project_id,
        platform: platform.into(),
        app_id: None,
        redirect_uri: None,
        external_id: None,
        scopes: vec![],
        state_hash: hex::encode(Uuid::new_v4().as_bytes()),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(10),
    };
    let mut tx = app.pool.begin().await.unwrap();
    let now = chrono::Utc::now();
    for command in [
        connect_session::Command::Start(Box::new(spec)),
        connect_session::Command::Authorize { now },
        connect_session::Command::Complete { account_ids: account_ids.to_vec() },
    ] {
        execute::<ConnectSession>(&mut tx, id, command, &metadata(project_id)).await.unwrap();
    }
    tx.commit().await.unwrap();
    id
}

async fn key(app: &TestApp, project_id: Uuid, request: KeyRequest) -> (Uuid, String) {
    let (id, secret) = keys::create_key(&app.pool, project_id, request, 100, &metadata(project_id)).await.unwrap();
    (id, keys::reveal(&secret).to_owned())
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|item| (*item).to_owned()).collect())
}

/// One restricted key and what lies beyond its reach.
struct Limited {
    name: &'static str,
    secret: String,
    /// Route template → a resource of that kind the key must not reach.
    beyond: Vec<(&'static str, String)>,
    /// Texts that must never appear in what the key reads.
    hidden: Vec<String>,
    /// Texts it must see (so the test would notice a key that sees nothing at all).
    seen: Vec<String>,
    /// A platform it does not reach, for `/v1/connect/{platform}`.
    foreign_platform: Option<&'static str>,
}

fn beyond_for(template: &str, limited: &Limited) -> Option<String> {
    // `/v1/posts/{id}/approve` is about the post, `/v1/accounts/{id}/refresh` about the account.
    let resource = template.trim_start_matches("/v1/").split('/').next().unwrap_or_default();
    let wanted = match resource {
        "connect" if template.contains("/sessions/") => "session",
        "posts" => "post",
        "accounts" => "account",
        "keys" => "key",
        "apps" => "app",
        other => other,
    };
    limited.beyond.iter().find(|(kind, _)| *kind == wanted).map(|(_, id)| id.clone())
}

#[tokio::test]
async fn a_limited_key_sees_and_changes_nothing_beyond_its_reach_on_any_route() {
    let app = TestApp::spawn().await;
    let (project_id, _, admin) = keys::create_project(&app.pool, "Acme", &EventMetadata::default()).await.unwrap();
    let admin = keys::reveal(&admin).to_owned();
    let admin_id: Uuid = {
        let listed: Value =
            app.http.get(app.url("/v1/keys")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        listed["data"][0]["id"].as_str().unwrap().parse().unwrap()
    };
    let sandbox_one = account(&app, project_id, "sandbox", "user-1").await;
    let sandbox_two = account(&app, project_id, "sandbox", "user-2").await;
    let on_x = account(&app, project_id, "x", "user-3").await;
    let post_one = draft_post(&app, project_id, "draft for sandbox one", &[sandbox_one]).await;
    let post_two = draft_post(&app, project_id, "draft for sandbox two", &[sandbox_two]).await;
    let post_x = draft_post(&app, project_id, "draft for x", &[on_x]).await;
    let post_mixed = draft_post(&app, project_id, "draft for sandbox one and x", &[sandbox_one, on_x]).await;
    let session_both = completed_session(&app, project_id, "sandbox", &[sandbox_one, sandbox_two]).await;
    let session_x = completed_session(&app, project_id, "x", &[on_x]).await;
    let registered = request(&app, "POST", "/v1/apps", &admin)
        .json(&json!({"platform": "x", "name": "Acme on X", "client_id": "acme-x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let app_x = registered.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let every = || KeyRequest::admin("limited");
    let (key_x, _) = key(&app, project_id, KeyRequest { platforms: strings(&["x"]), ..every() }).await;

    let (_, on_sandbox) = key(&app, project_id, KeyRequest { platforms: strings(&["sandbox"]), ..every() }).await;
    let (_, on_one) =
        key(&app, project_id, KeyRequest { accounts: Some(vec![sandbox_one.to_string()]), ..every() }).await;
    let (_, by_external_id) = key(&app, project_id, KeyRequest { accounts: strings(&["user-1"]), ..every() }).await;
    let (_, test_key) = key(&app, project_id, KeyRequest { environment: Environment::Test, ..every() }).await;

    let beyond_platform = |name, secret: String| Limited {
        name,
        secret,
        beyond: vec![
            ("account", on_x.to_string()),
            ("post", post_x.to_string()),
            ("app", app_x.clone()),
            ("session", session_x.to_string()),
            ("key", key_x.to_string()),
        ],
        hidden: vec![
            on_x.to_string(),
            post_x.to_string(),
            post_mixed.to_string(),
            app_x.clone(),
            session_x.to_string(),
            key_x.to_string(),
            admin_id.to_string(),
            "draft for x".into(),
            "user-3".into(),
        ],
        seen: vec![sandbox_one.to_string(), sandbox_two.to_string(), "draft for sandbox two".into()],
        foreign_platform: Some("x"),
    };
    let beyond_account = |name, secret: String| Limited {
        name,
        secret,
        beyond: vec![
            ("account", sandbox_two.to_string()),
            ("post", post_mixed.to_string()),
            ("key", key_x.to_string()),
        ],
        hidden: vec![
            sandbox_two.to_string(),
            on_x.to_string(),
            post_two.to_string(),
            post_x.to_string(),
            post_mixed.to_string(),
            key_x.to_string(),
            admin_id.to_string(),
            "draft for sandbox two".into(),
            "draft for x".into(),
            "user-2".into(),
            "user-3".into(),
        ],
        seen: vec![sandbox_one.to_string(), post_one.to_string(), "draft for sandbox one".into()],
        foreign_platform: None,
    };
    let limited = [
        beyond_platform("platforms: [sandbox]", on_sandbox),
        beyond_platform("hk_test_", test_key),
        beyond_account("accounts: [id]", on_one),
        beyond_account("accounts: [external id]", by_external_id),
    ];

    let operations = documented_operations(&app).await;
    assert!(wait_for_horizon(&app.pool, Duration::from_secs(30)).await.unwrap());
    for key in &limited {
        for (method, template, _) in &operations {
            let path = if template.contains("{id}") {
                let Some(id) = beyond_for(template, key) else { continue };
                template.replace("{id}", &id)
            } else if template.contains("{platform}") {
                let Some(platform) = key.foreign_platform else { continue };
                template.replace("{platform}", platform)
            } else if method == "GET" {
                // Lists and the feed: nothing beyond the key's reach, and what is within it.
                let listed = request(&app, method, template, &key.secret).send().await.unwrap();
                assert_eq!(listed.status(), StatusCode::OK, "{} {method} {template}", key.name);
                let text = listed.text().await.unwrap();
                for hidden in &key.hidden {
                    assert!(
                        !text.contains(hidden.as_str()),
                        "{}: {method} {template} shows `{hidden}`: {text}",
                        key.name
                    );
                }
                continue;
            } else {
                continue;
            };
            let refused = request(&app, method, &path, &key.secret).send().await.unwrap();
            let status = refused.status();
            let body = refused.text().await.unwrap();
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
                "{}: {method} {path} answered {status}: {body}",
                key.name
            );
            for hidden in &key.hidden {
                assert!(!body.contains(hidden.as_str()), "{}: {method} {path} shows `{hidden}`", key.name);
            }
        }
        let feed: Value =
            request(&app, "GET", "/v1/events?limit=1000", &key.secret).send().await.unwrap().json().await.unwrap();
        let text = feed.to_string();
        for seen in &key.seen {
            assert!(text.contains(seen.as_str()), "{}: the feed lacks `{seen}` within reach: {text}", key.name);
        }
        let session: Value = request(&app, "GET", &format!("/v1/connect/sessions/{session_both}"), &key.secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            session["account_ids"].as_array().unwrap().iter().any(|id| *id == sandbox_one.to_string()),
            "{session}"
        );
    }

    // Nothing beyond anyone's reach changed.
    for (path, field, expected) in [
        (format!("/v1/accounts/{on_x}"), "status", "connected"),
        (format!("/v1/accounts/{sandbox_two}"), "status", "connected"),
        (format!("/v1/posts/{post_x}"), "status", "draft"),
        (format!("/v1/posts/{post_mixed}"), "status", "draft"),
    ] {
        let now: Value = request(&app, "GET", &path, &admin).send().await.unwrap().json().await.unwrap();
        assert_eq!(now[field], expected, "{path}: {now}");
    }
    for id in [key_x, admin_id] {
        let now: Value =
            request(&app, "GET", &format!("/v1/keys/{id}"), &admin).send().await.unwrap().json().await.unwrap();
        assert!(now["revoked_at"].is_null(), "{now}");
    }
    let apps: Value = request(&app, "GET", "/v1/apps", &admin).send().await.unwrap().json().await.unwrap();
    assert!(apps.to_string().contains(&app_x), "{apps}");
    app.stop().await.unwrap();
}

async fn create_key(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let response = request(app, "POST", "/v1/keys", key).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_key_creates_lists_and_revokes_only_keys_within_its_own_reach() {
    let app = TestApp::spawn().await;
    let (project_id, _, admin) = keys::create_project(&app.pool, "Acme", &EventMetadata::default()).await.unwrap();
    let admin = keys::reveal(&admin).to_owned();
    let listed: Value = request(&app, "GET", "/v1/keys", &admin).send().await.unwrap().json().await.unwrap();
    let admin_id = listed["data"][0]["id"].as_str().unwrap().to_owned();

    // The issue's own example: a key with only keys:read and keys:write, on X only.
    let narrow = KeyRequest {
        scopes: vec!["keys:read".into(), "keys:write".into()],
        platforms: strings(&["x"]),
        ..KeyRequest::admin("narrow")
    };
    let (narrow_id, narrow) = key(&app, project_id, narrow).await;
    let wider = [
        (json!({"name": "all", "scopes": ["read", "write"], "platforms": ["x"]}), "scope"),
        (json!({"name": "everywhere", "scopes": ["keys:read"]}), "platforms x"),
        (json!({"name": "sandbox", "scopes": ["keys:read"], "platforms": ["sandbox"]}), "sandbox"),
    ];
    for (body, named) in wider {
        let (status, problem) = create_key(&app, &narrow, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {problem}");
        assert_eq!(problem["code"], "forbidden");
        assert!(problem["detail"].as_str().unwrap().contains(named), "{body}: {problem}");
    }
    let (status, within) =
        create_key(&app, &narrow, json!({"name": "within", "scopes": ["keys:read"], "platforms": ["x"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{within}");
    let within_id = within["id"].as_str().unwrap().to_owned();

    let seen: Value = request(&app, "GET", "/v1/keys", &narrow).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = seen["data"].as_array().unwrap().iter().map(|key| key["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![within_id.as_str(), &narrow_id.to_string()], "only keys within its reach: {seen}");
    let shown = request(&app, "GET", &format!("/v1/keys/{admin_id}"), &narrow).send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::FORBIDDEN);
    let revoked = request(&app, "DELETE", &format!("/v1/keys/{admin_id}"), &narrow).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::FORBIDDEN);
    let still = request(&app, "GET", "/v1/keys", &admin).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::OK, "the admin key still works");
    let revoked = request(&app, "DELETE", &format!("/v1/keys/{within_id}"), &narrow).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::OK, "a key within reach can be revoked");

    // A test key never reaches live keys, not even to list them.
    let (_, test_key) =
        key(&app, project_id, KeyRequest { environment: Environment::Test, ..KeyRequest::admin("t") }).await;
    let seen: Value = request(&app, "GET", "/v1/keys", &test_key).send().await.unwrap().json().await.unwrap();
    assert!(seen["data"].as_array().unwrap().iter().all(|key| key["environment"] == "test"), "{seen}");
    let revoked = request(&app, "DELETE", &format!("/v1/keys/{admin_id}"), &test_key).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::FORBIDDEN);
    let (status, problem) =
        create_key(&app, &test_key, json!({"name": "live", "scopes": ["posts:read"], "environment": "live"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, created) = create_key(&app, &test_key, json!({"name": "test", "scopes": ["posts:read"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["environment"], "test");

    // An account-limited key creates only keys limited to its accounts.
    let (_, one) =
        key(&app, project_id, KeyRequest { accounts: strings(&["user-1"]), ..KeyRequest::admin("one") }).await;
    let (status, _) = create_key(&app, &one, json!({"name": "all", "scopes": ["posts:read"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        create_key(&app, &one, json!({"name": "other", "scopes": ["posts:read"], "accounts": ["user-2"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        create_key(&app, &one, json!({"name": "same", "scopes": ["posts:read"], "accounts": ["user-1"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_keys_platforms_and_accounts_are_checked_at_creation() {
    let app = TestApp::spawn().await;
    let (_, _, admin) = keys::create_project(&app.pool, "Acme", &EventMetadata::default()).await.unwrap();
    let admin = keys::reveal(&admin).to_owned();
    let (status, problem) = create_key(
        &app,
        &admin,
        json!({"name": "bad", "scopes": ["posts:read"], "platforms": ["x", "myspace", "x"], "accounts": ["", " padded"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["platforms[1]", "platforms[2]", "accounts[0]", "accounts[1]"], "{problem}");
    let (status, problem) =
        create_key(&app, &admin, json!({"name": "none", "scopes": ["posts:read"], "platforms": [], "accounts": []}))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["platforms", "accounts"], "{problem}");
    app.stop().await.unwrap();
}
