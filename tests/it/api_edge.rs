//! The api's edge: keys authenticate, scopes authorize, projects are walled off, limits are
//! shared and announced, and the event feed shows a project its own history only.

use std::time::Duration;

use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::domain::api_key;
use herald_shared::events::EventMetadata;
use herald_shared::events::reader::wait_for_horizon;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::{connected_account, draft_post};
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

/// Every `/v1` operation in the OpenAPI document, with the scopes it declares. The document is
/// built from the router, so these lists grow with every new route.
pub(crate) async fn documented_operations(app: &TestApp) -> Vec<(String, String, Vec<String>)> {
    let document: Value = app.http.get(app.url("/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") || PUBLIC_V1.contains(&path.as_str()) {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let scopes: Vec<String> = operation["security"][0]["api_key"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares no scope"))
                .iter()
                .map(|scope| scope.as_str().unwrap().to_owned())
                .collect();
            assert!(!scopes.is_empty(), "{method} {path} declares no scope");
            operations.push((method.to_uppercase(), path.clone(), scopes));
        }
    }
    assert!(operations.len() >= 5, "{operations:?}");
    operations
}

/// The `/v1` routes that need no key: the document itself, and the OAuth callback (its state is
/// the credential).
const PUBLIC_V1: &[&str] = &["/v1/openapi.json", "/v1/connect/{platform}/callback"];

/// A concrete path for a route template.
fn concrete(template: &str, id: &str) -> String {
    template
        .replace("{id}", id)
        .replace("{platform}", "sandbox")
        .replace("{n}", "1")
        .replace("{attempt_id}", "00000000-0000-7000-8000-000000000000")
}

pub(crate) fn request(app: &TestApp, method: &str, path: &str, key: &str) -> reqwest::RequestBuilder {
    let request = app.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(key);
    if matches!(method, "POST" | "PATCH" | "PUT") { request.json(&json!({})) } else { request }
}

#[tokio::test]
async fn every_route_refuses_a_key_without_its_scope_and_admits_one_with_it() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    for (method, template, needed) in documented_operations(&app).await {
        let path = concrete(&template, &Uuid::new_v4().to_string());
        let others: Vec<String> = api_key::SCOPES
            .iter()
            .filter(|scope| !needed.iter().any(|n| n == *scope))
            .map(|s| (*s).to_owned())
            .collect();
        let lacking = KeyRequest { scopes: others, ..KeyRequest::admin(&format!("without {needed:?}")) };
        let (_, lacking) =
            keys::create_key(&app.pool, acme.id, lacking, 1000, &EventMetadata::default()).await.unwrap();
        let refused = request(&app, &method, &path, keys::reveal(&lacking)).send().await.unwrap();
        let body = problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(body["detail"].as_str().unwrap().contains(&needed[0]), "{method} {template}: {body}");

        let only = KeyRequest { scopes: needed.clone(), ..KeyRequest::admin(&format!("only {needed:?}")) };
        let (_, only) = keys::create_key(&app.pool, acme.id, only, 1000, &EventMetadata::default()).await.unwrap();
        let admitted = request(&app, &method, &path, keys::reveal(&only)).send().await.unwrap();
        assert_ne!(admitted.status(), StatusCode::FORBIDDEN, "{method} {template} with {needed:?}");
        assert_ne!(admitted.status(), StatusCode::UNAUTHORIZED, "{method} {template} with {needed:?}");
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
    assert!(api_key::is_well_formed(&secret));
    assert_eq!(created["prefix"], secret[..12]);
    assert_eq!(created["scopes"], json!(["posts:read", "posts:write"]));
    let id = created["id"].as_str().unwrap().to_owned();

    let listed: Value = get(&app, "/v1/keys", &acme.admin_key).await.json().await.unwrap();
    let text = listed.to_string();
    assert!(!text.contains(&secret) && !text.contains(&api_key::hash(&secret)), "never the key nor its hash");
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

    // One of Acme's resources for every route that names one; a new route must add its own.
    let acme_account =
        connected_account(&app, acme.id, "sandbox", &format!("person-{}", Uuid::now_v7()), None).await.to_string();
    let started = request(&app, "POST", "/v1/connect/sandbox", &acme.admin_key).send().await.unwrap();
    let acme_session = started.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_owned();
    let registered = request(&app, "POST", "/v1/apps", &acme.admin_key)
        .json(&json!({"platform": "sandbox", "name": "Acme", "client_id": "acme"}))
        .send()
        .await
        .unwrap();
    let acme_app = registered.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let acme_post = draft_post(&app, acme.id, "acme's draft", &[acme_account.parse().unwrap()]).await.to_string();
    let acme_media = crate::media::recorded_media(&app, acme.id).await.to_string();
    let created = request(&app, "POST", "/v1/media/uploads", &acme.admin_key).send().await.unwrap();
    let acme_upload = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // It hears only test messages, which only Acme could ask for: nothing is ever sent.
    let created = request(&app, "POST", "/v1/webhooks", &acme.admin_key)
        .json(&json!({"url": "https://localhost:1/hook", "event_types": ["webhook.test"]}))
        .send()
        .await
        .unwrap();
    let acme_webhook = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let acme_resources = [
        ("/v1/webhooks/{id}", acme_webhook.clone()),
        ("/v1/webhooks/{id}/rotate-secret", acme_webhook.clone()),
        ("/v1/webhooks/{id}/attempts", acme_webhook.clone()),
        ("/v1/webhooks/{id}/test", acme_webhook.clone()),
        ("/v1/webhooks/{id}/replay", acme_webhook.clone()),
        ("/v1/webhooks/{id}/attempts/{attempt_id}/resend", acme_webhook.clone()),
        ("/v1/apps/{id}", acme_app.clone()),
        ("/v1/posts/{id}", acme_post.clone()),
        ("/v1/posts/{id}/approve", acme_post.clone()),
        ("/v1/posts/{id}/publish", acme_post.clone()),
        ("/v1/posts/{id}/retry", acme_post.clone()),
        ("/v1/posts/{id}/results", acme_post.clone()),
        ("/v1/keys/{id}", acme_key_id.clone()),
        ("/v1/accounts/{id}", acme_account.clone()),
        ("/v1/accounts/{id}/disconnect", acme_account.clone()),
        ("/v1/accounts/{id}/refresh", acme_account.clone()),
        ("/v1/accounts/{id}/boards", acme_account.clone()),
        ("/v1/connect/sessions/{id}", acme_session.clone()),
        ("/v1/media/{id}", acme_media.clone()),
        ("/v1/media/uploads/{id}", acme_upload.clone()),
        ("/v1/media/uploads/{id}/parts/{n}", acme_upload.clone()),
        ("/v1/media/uploads/{id}/complete", acme_upload.clone()),
    ];
    for (method, template, _) in documented_operations(&app).await {
        if !template.contains("{id}") {
            continue;
        }
        let (_, id) = acme_resources
            .iter()
            .find(|(path, _)| *path == template)
            .unwrap_or_else(|| panic!("add one of Acme's resources for {template} to this test"));
        let path = concrete(&template, id);
        let refused = request(&app, &method, &path, &globex.admin_key).send().await.unwrap();
        problem(refused, StatusCode::NOT_FOUND, "not_found").await;
    }
    let still_there = get(&app, &format!("/v1/keys/{acme_key_id}"), &acme.admin_key).await;
    let still_there: Value = still_there.json().await.unwrap();
    assert!(still_there["revoked_at"].is_null(), "Globex's DELETE changed nothing: {still_there}");

    let still_connected: Value =
        get(&app, &format!("/v1/accounts/{acme_account}"), &acme.admin_key).await.json().await.unwrap();
    assert_eq!(still_connected["status"], "connected", "Globex's disconnect changed nothing");
    let still_a_draft: Value =
        get(&app, &format!("/v1/posts/{acme_post}"), &acme.admin_key).await.json().await.unwrap();
    assert_eq!(still_a_draft["status"], "draft", "Globex's cancel and publish changed nothing");
    let still_enabled: Value =
        get(&app, &format!("/v1/webhooks/{acme_webhook}"), &acme.admin_key).await.json().await.unwrap();
    assert_eq!(still_enabled["enabled"], true, "Globex's DELETE changed nothing: {still_enabled}");
    for list in ["/v1/keys", "/v1/accounts", "/v1/apps", "/v1/posts", "/v1/media", "/v1/webhooks"] {
        let seen: Value = get(&app, list, &globex.admin_key).await.json().await.unwrap();
        for acme_id in [&acme_key_id, &acme_account, &acme_session, &acme_app, &acme_post, &acme_media, &acme_webhook] {
            assert!(!seen.to_string().contains(acme_id.as_str()), "{list} shows Globex an Acme resource");
        }
    }
    assert!(wait_for_horizon(&app.pool, Duration::from_secs(30)).await.unwrap());
    let feed: Value = get(&app, "/v1/events", &globex.admin_key).await.json().await.unwrap();
    let streams: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert!(streams.contains(&format!("project:{}", globex.id).as_str()), "{streams:?}");
    assert!(!feed.to_string().contains(&acme.id.to_string()), "nothing of Acme in Globex's feed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_with_its_errors_and_headers() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let served = app.http.get(app.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "application/json");
    let document: Value = served.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with('3'));

    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // The route is served: neither the 404 for unknown paths nor a 405.
            let answer =
                request(&app, &method.to_uppercase(), &concrete(path, &Uuid::new_v4().to_string()), &acme.admin_key)
                    .send()
                    .await
                    .unwrap();
            assert_ne!(answer.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let text = answer.text().await.unwrap();
            assert!(!text.contains("no resource at"), "{method} {path} is documented but not routed");

            if operation.get("security").is_none() {
                assert!(!path.starts_with("/v1/") || PUBLIC_V1.contains(&path.as_str()), "{method} {path} has no key");
                continue;
            }
            let responses = operation["responses"].as_object().unwrap();
            for status in ["401", "403", "429", "500"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            let success = responses.iter().find(|(status, _)| status.starts_with('2')).unwrap().1;
            for header in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-Id"] {
                assert!(success["headers"].get(header).is_some(), "{method} {path} lacks {header}");
            }
            if method != "get" {
                assert!(responses.contains_key("409"), "{method} {path} lacks 409");
                let parameters = operation["parameters"].to_string();
                assert!(parameters.contains("Idempotency-Key"), "{method} {path} lacks Idempotency-Key");
            }
        }
    }
    let problem_schema = &document["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "request_id", "errors"] {
        assert!(problem_schema.get(field).is_some(), "Problem lacks {field}");
    }

    // Every route goes through `utoipa_axum::routes!`, so none can be missing from the document.
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/src");
    for file in walk(&sources) {
        let text = std::fs::read_to_string(&file).unwrap();
        for bypass in [".route(\"", "routing::get", "routing::post", "routing::delete", "routing::patch"] {
            assert!(!text.contains(bypass), "{} registers a route outside the OpenAPI document", file.display());
        }
    }

    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = docs.text().await.unwrap();
    assert!(page.contains("herald"));
    // The page works offline: everything it loads comes from herald itself.
    assert!(!page.contains("://"), "the reference page loads something from elsewhere: {page}");
    assert!(page.contains(r#"<script src="/docs/scalar.js">"#), "{page}");
    let renderer = app.http.get(app.url("/docs/scalar.js")).send().await.unwrap();
    assert_eq!(renderer.status(), StatusCode::OK);
    assert!(renderer.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let script = renderer.text().await.unwrap();
    assert!(script.len() > 1_000_000 && script.contains("createApiReference"), "not Scalar's renderer");
    app.stop().await.unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
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
    let other = herald_api::start(app.config.clone(), other_shutdown.clone()).await.unwrap().expect("serving");
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

    let secret = first["key"].as_str().unwrap();
    let kept: Vec<Option<String>> =
        sqlx::query_scalar("SELECT sealed_body FROM idempotency_keys").fetch_all(&app.pool).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept.iter().flatten().all(|body| !body.contains(secret)), "the kept response is sealed");

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

#[tokio::test]
async fn a_retry_after_a_crash_acts_only_if_the_first_request_never_committed() {
    let app = TestApp::spawn().await;
    let acme = project(&app, "Acme").await;
    let template = create_key_request(&app, &acme.admin_key, "template", "ci").await;
    assert_eq!(template.status(), StatusCode::CREATED);
    // Two claims for the same request, as a process leaves them when it dies a minute ago:
    // one before its transaction committed, one after it committed but before it answered.
    for (key, applied) in [("died-before-commit", false), ("died-after-commit", true)] {
        sqlx::query(
            "INSERT INTO idempotency_keys (project_id, idempotency_key, fingerprint, created_at, applied_at)
             SELECT project_id, $1, fingerprint, now() - interval '1 minute',
                    CASE WHEN $2 THEN now() - interval '1 minute' END
             FROM idempotency_keys WHERE idempotency_key = 'template'",
        )
        .bind(key)
        .bind(applied)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    assert_eq!(key_count(&app, &acme).await, 2);

    let retried = create_key_request(&app, &acme.admin_key, "died-before-commit", "ci").await;
    assert_eq!(retried.status(), StatusCode::CREATED, "nothing happened the first time: the retry acts");
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(key_count(&app, &acme).await, 3);
    let again = create_key_request(&app, &acme.admin_key, "died-before-commit", "ci").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), retried);

    let lost = create_key_request(&app, &acme.admin_key, "died-after-commit", "ci").await;
    problem(lost, StatusCode::CONFLICT, "idempotency_response_lost").await;
    assert_eq!(key_count(&app, &acme).await, 3, "the first request acted; the retry does not act again");
    app.stop().await.unwrap();
}
