//! Webhooks, heard by an in-test receiver on loopback that checks every message the way a
//! customer's would: the Standard Webhooks headers, and each signature verified with the
//! algorithm as the specification states it (written here, not herald's signing code). Retries
//! after 500s and timeouts keep the `webhook-id`; a 410 disables; order; rotation; replay and
//! resend; the address rules; reach; and a worker killed mid-send.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::domain::api_key::Environment;
use herald_shared::events::EventMetadata;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::connect::{Client, accounts, authorize, client, get_json};
use crate::harness::{TestApp, TestDb, test_config};

/// What the receiver answers to the next request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Answers 200 after this long (longer than herald's timeout: a timed-out attempt).
    Late(Duration),
}

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// An HTTP receiver on 127.0.0.1 that keeps every request and answers from its script (204
/// once the script is spent).
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (kept, answers) = (received.clone(), script.clone());
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (kept, answers) = (kept.clone(), answers.clone());
            async move {
                kept.lock().unwrap().push(Received { headers, body });
                let answer = answers.lock().unwrap().pop_front();
                match answer {
                    Some(Answer::Status(status)) => (StatusCode::from_u16(status).unwrap(), "scripted answer"),
                    Some(Answer::Late(wait)) => {
                        tokio::time::sleep(wait).await;
                        (StatusCode::OK, "too late")
                    }
                    None => (StatusCode::NO_CONTENT, ""),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received, script }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn answer(&self, answers: &[Answer]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 60 s) until the receiver holds a request that `done` accepts of the ones so
    /// far; answers them all.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            let types: Vec<String> = received.iter().map(Received::event_type).collect();
            assert!(tokio::time::Instant::now() < deadline, "never received {what}; got {types:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Standard Webhooks verification, from the specification: the key is the base64 after
/// `whsec_`; the signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the header holds
/// space-separated `v1,<base64 HMAC-SHA256>` signatures, any of which may match.
fn verifies(secret: &str, message: &Received) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("a whsec_ secret")).expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let signed = format!("{}.{}.", message.header("webhook-id"), message.header("webhook-timestamp"));
    mac.update(signed.as_bytes());
    mac.update(&message.body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    message.header("webhook-signature").split(' ').any(|signature| signature.strip_prefix("v1,") == Some(&expected))
}

/// The app with private networks allowed (the receiver is on loopback), receiver timeouts of
/// 2 s and retries a second apart; a project with a key of every scope and user ada's three
/// sandbox accounts.
async fn app_with_accounts() -> (TestApp, Client, Vec<String>) {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.allow_private_networks = true;
    config.webhooks.timeout_secs = 2;
    config.webhooks.retry_schedule_secs = vec![1, 1, 1, 1];
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let ids = accounts(&app, &client).await.iter().map(|account| account["id"].as_str().unwrap().to_owned()).collect();
    (app, client, ids)
}

async fn call(app: &TestApp, key: &str, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = reqwest::Client::new().request(method.parse().unwrap(), app.url(path)).bearer_auth(key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Creates an endpoint; answers it (with its secret).
async fn endpoint(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, created) = call(app, key, "POST", "/v1/webhooks", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn publish(app: &TestApp, client: &Client, content: &str, accounts: &[String]) -> String {
    let targets: Vec<Value> = accounts.iter().map(|id| json!({"account_id": id})).collect();
    let (status, post) =
        call(app, &client.key, "POST", "/v1/posts", Some(json!({"content": content, "targets": targets}))).await;
    assert_eq!(status, StatusCode::CREATED, "{post}");
    post["id"].as_str().unwrap().to_owned()
}

async fn project_of(app: &TestApp) -> Uuid {
    sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap()
}

/// A key of the test's project.
async fn key(app: &TestApp, environment: Environment, scopes: &[&str], platforms: Option<&[&str]>) -> String {
    let request = KeyRequest {
        environment,
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        platforms: platforms.map(|platforms| platforms.iter().map(|platform| (*platform).to_owned()).collect()),
        requests_per_minute: 100_000,
        requests_per_day: 1_000_000,
        ..KeyRequest::admin("webhooks")
    };
    let (_, secret) =
        keys::create_key(&app.pool, project_of(app).await, request, 50, &EventMetadata::default()).await.unwrap();
    keys::reveal(&secret).to_owned()
}

#[tokio::test]
async fn a_published_post_is_heard_signed_in_order_with_the_resource_as_the_api_shows_it() {
    let (app, client, accounts) = app_with_accounts().await;
    let receiver = Receiver::start().await;
    let created = endpoint(
        &app,
        &client.key,
        json!({"url": receiver.url(), "event_types": ["delivery.published", "post.published"],
               "headers": {"Authorization": "Bearer receiver-token"}, "description": "orders"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && STANDARD.decode(&secret[6..]).unwrap().len() >= 24);
    assert_eq!(created["header_names"], json!(["authorization"]));
    let id = created["id"].as_str().unwrap().to_owned();
    let shown = get_json(&app, &client, &format!("/v1/webhooks/{id}")).await;
    assert!(shown.get("secret").is_none() && !shown.to_string().contains("receiver-token"), "{shown}");

    let post_id = publish(&app, &client, "heard by webhooks", &accounts[..2]).await;
    let received =
        receiver.wait_until("post.published", |got| got.iter().any(|m| m.event_type() == "post.published")).await;
    let types: Vec<String> = received.iter().map(Received::event_type).collect();
    assert_eq!(types, vec!["delivery.published", "delivery.published", "post.published"], "log order, one each");
    let post = get_json(&app, &client, &format!("/v1/posts/{post_id}")).await;
    let mut ids = Vec::new();
    for message in &received {
        assert!(verifies(&secret, message), "the signature of {} does not verify", message.header("webhook-id"));
        assert_eq!(message.header("content-type"), "application/json");
        assert_eq!(message.header("authorization"), "Bearer receiver-token");
        let timestamp: i64 = message.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 120);
        let body = message.json();
        assert_eq!(body["data"]["event"]["id"], message.header("webhook-id"));
        assert_eq!(body["data"]["post"]["id"], post["id"]);
        assert_eq!(body["data"]["post"]["deliveries"].as_array().unwrap().len(), 2);
        ids.push(message.header("webhook-id").to_owned());
    }
    assert_eq!(received[2].json()["data"]["post"], post, "the post as GET /v1/posts/{{id}} shows it");
    let delivered = received[0].json()["data"]["delivery"]["id"].clone();
    assert!(post["deliveries"].as_array().unwrap().iter().any(|delivery| delivery["id"] == delivered));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each message has its own id");

    // The attempt log says what happened, once each answer is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let attempts = loop {
        let attempts = get_json(&app, &client, &format!("/v1/webhooks/{id}/attempts")).await;
        if attempts["data"].as_array().is_some_and(|data| data.len() == 3) || tokio::time::Instant::now() > deadline {
            break attempts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = attempts["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{attempts}");
    assert!(data.iter().all(|attempt| attempt["status_code"] == 204 && attempt["succeeded"] == true), "{attempts}");
    // Nothing secret is stored in the clear.
    assert!(crate::harness::tables_containing(&app.pool, &secret[6..]).await.is_empty());
    assert!(crate::harness::tables_containing(&app.pool, "receiver-token").await.is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn failures_are_retried_with_the_same_id_and_a_410_disables_the_endpoint() {
    let (app, client, _) = app_with_accounts().await;
    let receiver = Receiver::start().await;
    let created = endpoint(&app, &client.key, json!({"url": receiver.url()})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // A 500, then no answer within the timeout, then a 200.
    receiver.answer(&[Answer::Status(500), Answer::Late(Duration::from_secs(4)), Answer::Status(200)]);
    let (status, _) = call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let received = receiver.wait_until("three attempts", |got| got.len() >= 3).await;
    assert!(received.iter().all(|message| message.event_type() == "webhook.test"));
    let webhook_id = received[0].header("webhook-id").to_owned();
    assert!(received.iter().all(|message| message.header("webhook-id") == webhook_id), "the same id on every retry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let attempts = loop {
        let attempts = get_json(&app, &client, &format!("/v1/webhooks/{id}/attempts")).await;
        let data = attempts["data"].as_array().cloned().unwrap_or_default();
        if data.iter().any(|attempt| attempt["succeeded"] == true) || tokio::time::Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Newest first: the 200, the timeout, the 500.
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 200);
    assert!(attempts[1]["status_code"].is_null() && attempts[1]["error"].as_str().unwrap().contains("timed out"));
    assert_eq!(attempts[2]["status_code"], 500);
    assert_eq!(attempts[2]["response_snippet"], "scripted answer");

    // A 410 disables the endpoint at once, with an event in the log.
    receiver.answer(&[Answer::Status(410)]);
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let shown = get_json(&app, &client, &format!("/v1/webhooks/{id}")).await;
        if shown["enabled"] == false || tokio::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));
    let (status, problem) = call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let feed = get_json(&app, &client, "/v1/events?types=webhook.disabled").await;
    assert_eq!(feed["data"].as_array().unwrap().len(), 1, "{feed}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_and_the_others_hear_of_it() {
    let (app, client, _) = app_with_accounts().await;
    let failing = Receiver::start().await;
    let watching = Receiver::start().await;
    let id = endpoint(&app, &client.key, json!({"url": failing.url()})).await["id"].as_str().unwrap().to_owned();
    endpoint(&app, &client.key, json!({"url": watching.url(), "event_types": ["endpoint.disabled"]})).await;
    // Its attempts have failed since six days ago (as if retried all along); one more fails.
    let endpoint_id: Uuid = id.parse().unwrap();
    sqlx::query("INSERT INTO webhook_lanes (endpoint_id, failing_since) VALUES ($1, now() - interval '6 days')")
        .bind(endpoint_id)
        .execute(&app.pool)
        .await
        .unwrap();
    failing.answer(&[Answer::Status(503)]);
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    let heard = watching.wait_until("endpoint.disabled", |got| !got.is_empty()).await;
    assert_eq!(heard[0].event_type(), "endpoint.disabled");
    assert_eq!(heard[0].json()["data"]["endpoint"]["id"], id.as_str());
    let shown = get_json(&app, &client, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(shown["enabled"], false);
    assert!(shown["disabled_reason"].as_str().unwrap().contains("failed since"), "{shown}");
    assert_eq!(failing.received().len(), 1, "a disabled endpoint hears nothing more, not even of itself");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_for_a_day_then_alone() {
    let (app, client, _) = app_with_accounts().await;
    let receiver = Receiver::start().await;
    let created = endpoint(&app, &client.key, json!({"url": receiver.url()})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let old = created["secret"].as_str().unwrap().to_owned();
    let (status, rotated) = call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/rotate-secret"), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    let first = receiver.wait_until("a test", |got| !got.is_empty()).await[0].clone();
    assert_eq!(first.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&old, &first) && verifies(&new, &first), "both secrets sign during the overlap");

    // The overlap ends (the clock moved on a day).
    sqlx::query("UPDATE webhook_secrets SET previous_until = now() - interval '1 second' WHERE endpoint_id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    let second = receiver.wait_until("a second test", |got| got.len() >= 2).await[1].clone();
    assert!(verifies(&new, &second), "the new secret signs");
    assert!(!verifies(&old, &second), "the old secret no longer does");
    assert_eq!(second.header("webhook-signature").split(' ').count(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn replay_and_resend_send_messages_again_with_their_original_ids() {
    let (app, client, accounts) = app_with_accounts().await;
    let receiver = Receiver::start().await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let created =
        endpoint(&app, &client.key, json!({"url": receiver.url(), "event_types": ["delivery.published"]})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    publish(&app, &client, "replayed one", &accounts[..1]).await;
    publish(&app, &client, "replayed two", &accounts[..1]).await;
    let first = receiver.wait_until("two deliveries", |got| got.len() >= 2).await;
    let original: Vec<String> = first.iter().map(|message| message.header("webhook-id").to_owned()).collect();

    let (status, queued) =
        call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/replay"), Some(json!({"since": since}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued, json!({"queued": 2, "truncated": false}));
    let replayed = receiver.wait_until("the replay", |got| got.len() >= 4).await;
    let again: Vec<String> = replayed[2..].iter().map(|message| message.header("webhook-id").to_owned()).collect();
    assert_eq!(again, original, "the same messages, in the same order");
    assert!(verifies(created["secret"].as_str().unwrap(), &replayed[3]));

    let attempts = get_json(&app, &client, &format!("/v1/webhooks/{id}/attempts?limit=1")).await;
    let attempt = attempts["data"][0]["id"].as_str().unwrap().to_owned();
    let resent_id = attempts["data"][0]["webhook_id"].as_str().unwrap().to_owned();
    let (status, _) =
        call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/attempts/{attempt}/resend"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let resent = receiver.wait_until("the resend", |got| got.len() >= 5).await;
    assert_eq!(resent[4].header("webhook-id"), resent_id);
    assert_eq!(resent[4].body, replayed.iter().find(|m| m.header("webhook-id") == resent_id).unwrap().body);
    let (status, problem) =
        call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/attempts/{}/resend", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, problem) = call(
        &app,
        &client.key,
        "POST",
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({"since": chrono::Utc::now() + chrono::Duration::hours(1)})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_a_problem_per_field() {
    let (app, client, _) = app_with_accounts().await;
    for (body, field) in [
        (json!({"url": "ftp://example.test/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "https://example.test/hook", "event_types": ["post.exploded"]}), "event_types"),
        (json!({"url": "https://example.test/hook", "event_types": []}), "event_types"),
        (json!({"url": "https://example.test/hook", "max_in_flight": 0}), "max_in_flight"),
        (json!({"url": "https://example.test/hook", "headers": {"webhook-id": "mine"}}), "headers"),
        (json!({"url": "https://example.test/hook", "headers": {"bad name": "x"}}), "headers"),
        (json!({"url": "https://example.test/hook", "headers": {"x-ok": "line\nbreak"}}), "headers"),
    ] {
        let (status, problem) = call(&app, &client.key, "POST", "/v1/webhooks", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["code"], "validation_failed", "{problem}");
        assert!(problem["errors"].as_array().unwrap().iter().any(|error| error["field"] == field), "{problem}");
        assert!(!problem.to_string().contains("line\\nbreak"), "a header value is never echoed");
    }
    let (status, problem) =
        call(&app, &client.key, "POST", "/v1/webhooks", Some(json!({"url": "https://e.test", "x": 1}))).await;
    assert!(status.is_client_error() && problem["code"].is_string(), "{problem}");
    let (status, _) = call(&app, &client.key, "GET", &format!("/v1/webhooks/{}", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_private_networks_loopback_receivers_are_refused_before_a_packet_is_sent() {
    let db = TestDb::new().await;
    let config = test_config(&db);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    for url in ["http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "https://[::1]/hook", "https://0x7f.1/hook"] {
        let (status, problem) = call(&app, &client.key, "POST", "/v1/webhooks", Some(json!({"url": url}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
    }
    // A name that resolves to loopback passes creation, and is refused on the connected address.
    let receiver = Receiver::start().await;
    let url = format!("https://localhost:{}/hook", receiver.addr.port());
    let created = endpoint(&app, &client.key, json!({"url": url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let attempt = loop {
        let attempts = get_json(&app, &client, &format!("/v1/webhooks/{id}/attempts")).await;
        if let Some(attempt) = attempts["data"].as_array().and_then(|data| data.first()).cloned() {
            break attempt;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt was recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(attempt["status_code"].is_null());
    assert!(attempt["error"].as_str().unwrap().contains("loopback"), "{attempt}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_hears_only_what_its_key_could_read_and_keys_see_only_endpoints_within_reach() {
    let (app, client, accounts) = app_with_accounts().await;
    let everything = Receiver::start().await;
    let x_only = Receiver::start().await;
    let no_posts = Receiver::start().await;
    let test = Receiver::start().await;
    endpoint(&app, &client.key, json!({"url": everything.url(), "event_types": ["delivery.published"]})).await;
    let x_key = key(&app, Environment::Live, &["webhooks:write", "webhooks:read", "posts:read"], Some(&["x"])).await;
    let x_endpoint = endpoint(&app, &x_key, json!({"url": x_only.url()})).await;
    let narrow = key(&app, Environment::Live, &["webhooks:write", "webhooks:read", "connections:read"], None).await;
    endpoint(&app, &narrow, json!({"url": no_posts.url(), "event_types": ["delivery.published", "account.connected"]}))
        .await;
    let test_key = key(&app, Environment::Test, &["read", "write"], None).await;
    endpoint(&app, &test_key, json!({"url": test.url(), "event_types": ["delivery.published"]})).await;

    publish(&app, &client, "heard within reach", &accounts[..1]).await;
    everything.wait_until("the delivery", |got| !got.is_empty()).await;
    // The test key reaches the sandbox, where this post went: it hears it too.
    test.wait_until("the sandbox delivery", |got| !got.is_empty()).await;
    // Give the others the time the first two took, then some.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(x_only.received().is_empty(), "an X-only key's endpoint heard of a sandbox post");
    assert!(no_posts.received().is_empty(), "a key without posts:read heard of a post");

    // A key sees only endpoints within its reach; a key without webhooks:read sees none.
    let (status, listed) = call(&app, &x_key, "GET", "/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], x_endpoint["id"]);
    let (status, listed) = call(&app, &client.key, "GET", "/v1/webhooks", None).await;
    assert_eq!((status, listed["data"].as_array().unwrap().len()), (StatusCode::OK, 4));
    let wide_id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platforms"].is_null() && e["environment"] == "live")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        ("GET", format!("/v1/webhooks/{wide_id}")),
        ("DELETE", format!("/v1/webhooks/{wide_id}")),
        ("POST", format!("/v1/webhooks/{wide_id}/test")),
        ("POST", format!("/v1/webhooks/{wide_id}/rotate-secret")),
        ("GET", format!("/v1/webhooks/{wide_id}/attempts")),
    ] {
        let (status, problem) = call(&app, &x_key, method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
    }
    let reader = key(&app, Environment::Live, &["posts:read"], None).await;
    let (status, _) = call(&app, &reader, "GET", "/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&app, &reader, "POST", "/v1/webhooks", Some(json!({"url": everything.url()}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let read_only = key(&app, Environment::Live, &["webhooks:read"], None).await;
    let (status, _) = call(&app, &read_only, "POST", &format!("/v1/webhooks/{wide_id}/test"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another project's key sees none of these.
    let other = crate::connect::client(&app).await;
    let (status, listed) = call(&app, &other.key, "GET", "/v1/webhooks", None).await;
    assert_eq!((status, listed["data"].as_array().unwrap().len()), (StatusCode::OK, 0));
    let (status, _) = call(&app, &other.key, "GET", &format!("/v1/webhooks/{wide_id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

/// A `herald worker` process on the test's database that sends webhooks with a 2 s timeout.
fn worker_process(app: &TestApp) -> std::process::Child {
    crate::harness::worker_command(app)
        .env("HERALD_ALLOW_PRIVATE_NETWORKS", "true")
        .env("HERALD_WEBHOOKS__TIMEOUT_SECS", "2")
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_send_leaves_the_message_to_the_next_worker_never_lost() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.allow_private_networks = true;
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let client = client(&app).await;
    let receiver = Receiver::start().await;
    let id = endpoint(&app, &client.key, json!({"url": receiver.url()})).await["id"].as_str().unwrap().to_owned();
    // The receiver holds the first request open; the worker is killed while it waits.
    receiver.answer(&[Answer::Late(Duration::from_secs(30))]);
    let mut first = worker_process(&app);
    call(&app, &client.key, "POST", &format!("/v1/webhooks/{id}/test"), None).await;
    receiver.wait_until("the first send", |got| !got.is_empty()).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = worker_process(&app);
    let received = receiver.wait_until("the resend", |got| got.len() >= 2).await;
    assert_eq!(received[0].header("webhook-id"), received[1].header("webhook-id"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let counts = herald_shared::webhooks::dispatch::message_counts(&app.pool, id.parse().unwrap()).await.unwrap();
        if counts.get("delivered") == Some(&1) || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(counts.get("delivered"), Some(&1), "one message, delivered: {counts:?}");
    assert_eq!(counts.len(), 1, "{counts:?}");
    app.stop().await.unwrap();
}
