//! The api's edge: keys authenticate, scopes authorize, projects are walled off, limits are
//! shared and announced, and the event feed shows a project its own history only.

use std::time::Duration;

use herald_shared::events::EventMetadata;
use herald_shared::events::reader::wait_for_horizon;
use herald_shared::keys::{self, KeyRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::TestApp;

struct Project {
    id: Uuid,
    admin_key: String,
}

async fn project(app: &TestApp, name: &str) -> Project {
    let (id, _, secret) = keys::create_project(&app.pool, name, &EventMetadata::default()).await.unwrap();
    Project { id, admin_key: keys::reveal(&secret).to_owned() }
}

async fn key_with(app: &TestApp, project: &Project, request: KeyRequest) -> String {
    let (_, secret) = keys::create_key(&app.pool, project.id, request, 10, &EventMetadata::default()).await.unwrap();
    keys::reveal(&secret).to_owned()
}

async fn get(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.http.get(app.url(path)).bearer_auth(key).send().await.unwrap()
}

async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[tokio::test]
async fn requests_without_a_usable_key_are_401_problems() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let url = app.url("/v1/keys");

    let missing = app.http.get(&url).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body = problem(missing, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("Authorization: Bearer"));
    let basic = app.http.get(&url).basic_auth("user", Some("pass")).send().await.unwrap();
    problem(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
    problem(get(&app, "/v1/keys", "hk_live_nothex").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = format!("hk_live_{}", "0".repeat(32));
    let body = problem(get(&app, "/v1/keys", &unknown).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(!body.to_string().contains(&unknown), "the key is not echoed");

    let expiring = KeyRequest {
        expires_at: Some(chrono::Utc::now() + chrono::Duration::milliseconds(300)),
        ..KeyRequest::admin("short")
    };
    let short_lived = key_with(&app, &acme, expiring).await;
    assert_eq!(get(&app, "/v1/keys", &short_lived).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = problem(get(&app, "/v1/keys", &short_lived).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_without_the_scope_gets_a_403_naming_it() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let reader =
        key_with(&app, &acme, KeyRequest { scopes: vec!["posts:read".into()], ..KeyRequest::admin("reader") }).await;
    let routes =
        [("GET", "/v1/keys", "keys:read"), ("POST", "/v1/keys", "keys:write"), ("GET", "/v1/events", "events:read")];
    for (method, path, scope) in routes {
        let request = app.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(&reader);
        let request = if method == "POST" { request.json(&json!({"name": "x", "scopes": ["read"]})) } else { request };
        let body = problem(request.send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
        assert!(body["detail"].as_str().unwrap().contains(scope), "{method} {path}: {body}");
        let allowed = app.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(&acme.admin_key);
        let allowed = if method == "POST" { allowed.json(&json!({"name": "x", "scopes": ["read"]})) } else { allowed };
        assert_ne!(allowed.send().await.unwrap().status(), StatusCode::FORBIDDEN, "{method} {path} with the scope");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn keys_are_created_shown_once_listed_and_revoked() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let created = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&acme.admin_key)
        .json(&json!({"name": "scheduler", "scopes": ["posts:read", "posts:write"], "requests_per_minute": 120,
                      "allowed_origins": ["https://app.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(keys::is_well_formed(&secret));
    assert_eq!(created["prefix"], secret[..12]);
    assert_eq!(created["scopes"], json!(["posts:read", "posts:write"]));
    let id = created["id"].as_str().unwrap().to_owned();

    let listed: Value = get(&app, "/v1/keys", &acme.admin_key).await.json().await.unwrap();
    let text = listed.to_string();
    assert!(!text.contains(&secret) && !text.contains(&keys::hash(&secret)), "never the key nor its hash");
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let page: Value = get(&app, "/v1/keys?limit=1", &acme.admin_key).await.json().await.unwrap();
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value =
        get(&app, &format!("/v1/keys?limit=1&cursor={cursor}"), &acme.admin_key).await.json().await.unwrap();
    assert_ne!(page["data"][0]["id"], rest["data"][0]["id"]);
    assert!(rest["next_cursor"].is_null());

    let invalid = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&acme.admin_key)
        .json(&json!({"name": "", "scopes": ["posts:publish"], "allowed_ips": ["nowhere"]}))
        .send()
        .await
        .unwrap();
    let body = problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["name", "scopes", "allowed_ips[0]"]);

    let revoked =
        app.http.delete(app.url(&format!("/v1/keys/{id}"))).bearer_auth(&acme.admin_key).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    problem(get(&app, "/v1/events", &secret).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let again = app.http.delete(app.url(&format!("/v1/keys/{id}"))).bearer_auth(&acme.admin_key).send().await.unwrap();
    problem(again, StatusCode::CONFLICT, "conflict").await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn another_projects_key_sees_nothing_of_this_one() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let globex = project(&app, "Globex").await;
    let acme_keys: Value = get(&app, "/v1/keys", &acme.admin_key).await.json().await.unwrap();
    let acme_key_id = acme_keys["data"][0]["id"].as_str().unwrap().to_owned();

    problem(get(&app, &format!("/v1/keys/{acme_key_id}"), &globex.admin_key).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let delete = app
        .http
        .delete(app.url(&format!("/v1/keys/{acme_key_id}")))
        .bearer_auth(&globex.admin_key)
        .send()
        .await
        .unwrap();
    problem(delete, StatusCode::NOT_FOUND, "not_found").await;
    let globex_keys: Value = get(&app, "/v1/keys", &globex.admin_key).await.json().await.unwrap();
    assert!(!globex_keys.to_string().contains(&acme_key_id));

    assert!(wait_for_horizon(&app.pool, Duration::from_secs(30)).await.unwrap());
    let feed: Value = get(&app, "/v1/events", &globex.admin_key).await.json().await.unwrap();
    let streams: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert!(streams.contains(&format!("project:{}", globex.id).as_str()), "{streams:?}");
    assert!(!feed.to_string().contains(&acme.id.to_string()), "nothing of Acme in Globex's feed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_feed_pages_in_order_without_gaps_or_repeats_and_filters_by_type() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    for name in ["a", "b", "c"] {
        key_with(&app, &acme, KeyRequest::admin(name)).await;
    }
    assert!(wait_for_horizon(&app.pool, Duration::from_secs(30)).await.unwrap());
    let everything: Value = get(&app, "/v1/events?limit=100", &acme.admin_key).await.json().await.unwrap();
    let all: Vec<i64> =
        everything["data"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert_eq!(all.len(), 5, "project + 4 keys");
    assert!(!everything.to_string().contains("key_hash"));

    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value =
            get(&app, &format!("/v1/events?limit=2&after={after}"), &acme.admin_key).await.json().await.unwrap();
        let data = page["data"].as_array().unwrap();
        if data.is_empty() {
            assert_eq!(page["next_cursor"].as_str().unwrap(), after, "an empty page keeps the cursor");
            break;
        }
        paged.extend(data.iter().map(|e| e["position"].as_i64().unwrap()));
        after = page["next_cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(paged, all);

    let keys_only: Value = get(&app, "/v1/events?types=key.created", &acme.admin_key).await.json().await.unwrap();
    assert_eq!(keys_only["data"].as_array().unwrap().len(), 4);
    problem(
        get(&app, "/v1/events?after=garbage", &acme.admin_key).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn limits_are_announced_on_every_response_and_enforced_with_429() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let limited = key_with(&app, &acme, KeyRequest { requests_per_minute: 3, ..KeyRequest::admin("tight") }).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = get(&app, "/v1/keys", &limited).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit"], "3");
        assert!(response.headers()["x-ratelimit-reset"].to_str().unwrap().parse::<u64>().unwrap() <= 60);
        remaining.push(response.headers()["x-ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);
    let refused = get(&app, "/v1/keys", &limited).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "one request's worth of a minute: {retry_after}");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(get(&app, "/v1/keys", &acme.admin_key).await.status(), StatusCode::OK, "limits are per key");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn allowed_ips_and_origins_are_enforced() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let office =
        key_with(&app, &acme, KeyRequest { allowed_ips: vec!["10.0.0.0/8".into()], ..KeyRequest::admin("office") })
            .await;
    let local =
        key_with(&app, &acme, KeyRequest { allowed_ips: vec!["127.0.0.1".into()], ..KeyRequest::admin("local") }).await;
    let body = problem(get(&app, "/v1/keys", &office).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("127.0.0.1"));
    let spoofed = app
        .http
        .get(app.url("/v1/keys"))
        .bearer_auth(&office)
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::FORBIDDEN, "X-Forwarded-For is not trusted unless configured");
    assert_eq!(get(&app, "/v1/keys", &local).await.status(), StatusCode::OK);

    let browser = key_with(
        &app,
        &acme,
        KeyRequest { allowed_origins: vec!["https://app.example".into()], ..KeyRequest::admin("web") },
    )
    .await;
    let from =
        |origin: &'static str| app.http.get(app.url("/v1/keys")).bearer_auth(&browser).header("origin", origin).send();
    assert_eq!(from("https://app.example").await.unwrap().status(), StatusCode::OK);
    problem(from("https://evil.example").await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(get(&app, "/v1/keys", &browser).await.status(), StatusCode::OK, "servers send no Origin");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_revocation_on_one_api_process_is_refused_by_another_at_once() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let doomed = key_with(&app, &acme, KeyRequest::admin("doomed")).await;
    let other_shutdown = tokio_util::sync::CancellationToken::new();
    let other = herald_api::start(app.config.clone(), other_shutdown.clone()).await.unwrap();
    let other_url = format!("http://{}/v1/keys", other.local_addr);
    assert_eq!(app.http.get(&other_url).bearer_auth(&doomed).send().await.unwrap().status(), StatusCode::OK);

    let listed: Value = get(&app, "/v1/keys", &acme.admin_key).await.json().await.unwrap();
    let doomed_id = listed["data"].as_array().unwrap().iter().find(|k| k["name"] == "doomed").unwrap()["id"].clone();
    let revoked = app
        .http
        .delete(app.url(&format!("/v1/keys/{}", doomed_id.as_str().unwrap())))
        .bearer_auth(&acme.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    // The other process had the key cached; the notification must reach it within a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let answer = app.http.get(&other_url).bearer_auth(&doomed).send().await.unwrap();
        if answer.status() == StatusCode::UNAUTHORIZED {
            problem(answer, StatusCode::UNAUTHORIZED, "unauthorized").await;
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(tokio::time::Instant::now() < deadline, "the other process still admits a revoked key after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    other_shutdown.cancel();
    other.task.await.unwrap().unwrap();
    app.stop().await.unwrap();
}

async fn create_key_request(app: &TestApp, key: &str, idempotency_key: &str, name: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/keys"))
        .bearer_auth(key)
        .header("idempotency-key", idempotency_key)
        .json(&json!({"name": name, "scopes": ["posts:read"]}))
        .send()
        .await
        .unwrap()
}

async fn key_count(app: &TestApp, project: &Project) -> usize {
    let listed: Value = get(app, "/v1/keys", &project.admin_key).await.json().await.unwrap();
    listed["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_response_without_acting_again() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let first = create_key_request(&app, &acme.admin_key, "retry-1", "ci").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = create_key_request(&app, &acme.admin_key, "retry-1", "ci").await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the same answer, the same key");
    assert_eq!(key_count(&app, &acme).await, 2, "the admin key and one more");

    let other_body = create_key_request(&app, &acme.admin_key, "retry-1", "another name").await;
    problem(other_body, StatusCode::CONFLICT, "idempotency_conflict").await;

    let globex = project(&app, "Globex").await;
    let theirs = create_key_request(&app, &globex.admin_key, "retry-1", "ci").await;
    assert_eq!(theirs.status(), StatusCode::CREATED, "keys are per project");
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn racing_requests_with_one_idempotency_key_act_once() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let (one, two) = tokio::join!(
        create_key_request(&app, &acme.admin_key, "race", "ci"),
        create_key_request(&app, &acme.admin_key, "race", "ci"),
    );
    assert_eq!((one.status(), two.status()), (StatusCode::CREATED, StatusCode::CREATED));
    let (one, two): (Value, Value) = (one.json().await.unwrap(), two.json().await.unwrap());
    assert_eq!(one, two);
    assert_eq!(key_count(&app, &acme).await, 2, "one key created, not two");
    app.stop().await.unwrap();
}
