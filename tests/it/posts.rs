//! Posts published through the built-in sandbox platform: now, later, canceled, edited, rate
//! limited, failing and recovering, with a dead grant, through approval, and when the platform
//! gives no answer: each target published at most once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::connect::{Client, accounts, authorize, client, get_json};
use crate::harness::{TestApp, TestDb, test_config};

/// The app with a short platform timeout (for "no answer" cases), a client key and the three
/// sandbox accounts of user `ada`, person first.
pub(crate) async fn app_with_accounts() -> (TestApp, Client, Vec<String>) {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.platform_timeout_secs = 1;
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let mut listed = accounts(&app, &client).await;
    listed.sort_by_key(|account| account["kind"] != "person");
    let ids = listed.iter().map(|account| account["id"].as_str().unwrap().to_owned()).collect();
    (app, client, ids)
}

async fn send(app: &TestApp, client: &Client, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = client.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(&client.key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

pub(crate) async fn create(app: &TestApp, client: &Client, body: Value) -> Value {
    let created = send(app, client, "POST", "/v1/posts", Some(body)).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json().await.unwrap()
}

/// Waits until the post's status is one of `wanted`; returns the post.
pub(crate) async fn wait_for(
    app: &TestApp,
    client: &Client,
    post_id: &str,
    wanted: &[&str],
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let post = get_json(app, client, &format!("/v1/posts/{post_id}")).await;
        if wanted.contains(&post["status"].as_str().unwrap_or_default()) {
            return post;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the post is still {} after {within:?}: {post}",
            post["status"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many posts the sandbox made with this text.
pub(crate) async fn made(app: &TestApp, text: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sandbox_posts WHERE text = $1")
        .bind(text)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_post_for_three_accounts_is_published_to_each_with_results() {
    let (app, client, accounts) = app_with_accounts().await;
    let targets: Vec<Value> = accounts.iter().map(|id| json!({"account_id": id})).collect();
    let post =
        create(&app, &client, json!({"content": "hello world", "targets": targets, "external_id": "campaign-1"})).await;
    let post_id = post["id"].as_str().unwrap();
    let done = wait_for(&app, &client, post_id, &["published"], Duration::from_secs(10)).await;
    assert_eq!(made(&app, "hello world").await, 3);

    let results = get_json(&app, &client, &format!("/v1/posts/{post_id}/results")).await;
    assert_eq!(results["status"], "published");
    for delivery in results["data"].as_array().unwrap() {
        assert_eq!(delivery["status"], "published");
        assert_eq!(delivery["attempts"], 1);
        assert!(delivery["platform_post_id"].is_string());
        let url = delivery["platform_url"].as_str().unwrap();
        let shown = client.http.get(url).send().await.unwrap();
        assert_eq!(shown.status(), StatusCode::OK, "the post's URL is a real page");
        assert!(shown.text().await.unwrap().contains("hello world"));
        assert!(delivery["published_at"].is_string());
    }
    assert_eq!(done["external_id"], "campaign-1");
    let listed = get_json(&app, &client, "/v1/posts?external_id=campaign-1").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    let horizon = herald_shared::events::reader::wait_for_horizon(&app.pool, Duration::from_secs(30));
    assert!(horizon.await.unwrap(), "the feed caught up");
    let feed = get_json(&app, &client, "/v1/events?types=post.created,delivery.published&limit=100").await;
    let types: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "delivery.published").count(), 3, "{types:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_scheduled_post_is_published_within_a_second_of_its_time() {
    let (app, client, accounts) = app_with_accounts().await;
    let due = chrono::Utc::now() + chrono::Duration::seconds(2);
    let body =
        json!({"content": "on time", "targets": [{"account_id": accounts[0]}], "scheduled_at": due.to_rfc3339()});
    let post = create(&app, &client, body).await;
    assert_eq!(post["status"], "scheduled");
    let post_id = post["id"].as_str().unwrap();
    let done = wait_for(&app, &client, post_id, &["published"], Duration::from_secs(10)).await;
    let published_at: chrono::DateTime<chrono::Utc> =
        done["deliveries"][0]["published_at"].as_str().unwrap().parse().unwrap();
    assert!(published_at >= due, "not before its time");
    assert!(published_at - due < chrono::Duration::seconds(1), "{} after its time", published_at - due);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn canceled_and_edited_posts_reach_their_deliveries_before_they_start() {
    let (app, client, accounts) = app_with_accounts().await;
    let due = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let canceled = create(
        &app,
        &client,
        json!({"content": "never", "targets": [{"account_id": accounts[0]}], "scheduled_at": due}),
    )
    .await;
    let edited = create(
        &app,
        &client,
        json!({"content": "first draft", "targets": [{"account_id": accounts[1]}], "scheduled_at": due}),
    )
    .await;

    let deleted = send(&app, &client, "DELETE", &format!("/v1/posts/{}", canceled["id"].as_str().unwrap()), None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(deleted.json::<Value>().await.unwrap()["status"], "canceled");
    let path = format!("/v1/posts/{}", edited["id"].as_str().unwrap());
    let changed = send(&app, &client, "PATCH", &path, Some(json!({"content": "final words"}))).await;
    assert_eq!(changed.status(), StatusCode::OK);

    wait_for(&app, &client, edited["id"].as_str().unwrap(), &["published"], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(made(&app, "final words").await, 1);
    assert_eq!(made(&app, "first draft").await, 0, "the old content is never published");
    assert_eq!(made(&app, "never").await, 0, "the canceled post never reaches the platform");
    let refused = send(&app, &client, "PATCH", &path, Some(json!({"content": "too late"}))).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn failures_are_retried_rate_limits_waited_out_and_dead_grants_reported() {
    let (app, client, accounts) = app_with_accounts().await;
    let flaky = create(
        &app,
        &client,
        json!({"content": "[fail:500x2] third time lucky", "targets": [{"account_id": accounts[0]}]}),
    )
    .await;
    let limited = create(
        &app,
        &client,
        json!({"content": "[fail:429:2x1] after the reset", "targets": [{"account_id": accounts[1]}]}),
    )
    .await;
    let started = chrono::Utc::now();

    let flaky = wait_for(&app, &client, flaky["id"].as_str().unwrap(), &["published"], Duration::from_secs(20)).await;
    assert_eq!(flaky["deliveries"][0]["attempts"], 3, "published on the third attempt");
    let limited =
        wait_for(&app, &client, limited["id"].as_str().unwrap(), &["published"], Duration::from_secs(20)).await;
    let published_at: chrono::DateTime<chrono::Utc> =
        limited["deliveries"][0]["published_at"].as_str().unwrap().parse().unwrap();
    assert!(published_at - started >= chrono::Duration::seconds(2), "waited for the platform's reset");
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'delivery.retrying' AND payload->'error'->>'code' = 'rate_limited'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(retried, 1);
    assert_eq!(made(&app, "[fail:500x2] third time lucky").await, 1);

    let dead = create(&app, &client, json!({"content": "[fail:401]", "targets": [{"account_id": accounts[2]}]})).await;
    let dead = wait_for(&app, &client, dead["id"].as_str().unwrap(), &["failed"], Duration::from_secs(10)).await;
    assert_eq!(dead["deliveries"][0]["last_error"]["code"], "reconnect_required");
    // The platform's request id for the refusal, to quote to its support.
    let results = get_json(&app, &client, &format!("/v1/posts/{}/results", dead["id"].as_str().unwrap())).await;
    let quoted = results["data"][0]["last_error"]["platform_request_id"].as_str().unwrap_or_default().to_owned();
    assert!(!quoted.is_empty(), "no platform request id in {results}");
    let account = get_json(&app, &client, &format!("/v1/accounts/{}", accounts[2])).await;
    assert_eq!(account["status"], "needs_reconnect");
    let refused = send(
        &app,
        &client,
        "POST",
        "/v1/posts",
        Some(json!({"content": "x", "targets": [{"account_id": accounts[2]}]})),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "a disconnected target is refused");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_unanswered_publish_is_looked_up_never_sent_twice() {
    let (app, client, accounts) = app_with_accounts().await;
    // The sandbox posts, then never answers: the retry finds the post instead of posting again.
    let text = "[fail:timeout-after-successx1] once only";
    let post = create(&app, &client, json!({"content": text, "targets": [{"account_id": accounts[0]}]})).await;
    let done = wait_for(&app, &client, post["id"].as_str().unwrap(), &["published"], Duration::from_secs(20)).await;
    assert_eq!(made(&app, text).await, 1, "published exactly once");
    assert!(done["deliveries"][0]["platform_post_id"].is_string());

    // The sandbox never answers and posts nothing: the look-up finds nothing, so it is sent again.
    let text = "[fail:timeoutx1] second try";
    let post = create(&app, &client, json!({"content": text, "targets": [{"account_id": accounts[1]}]})).await;
    wait_for(&app, &client, post["id"].as_str().unwrap(), &["published"], Duration::from_secs(20)).await;
    assert_eq!(made(&app, text).await, 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn approval_drafts_and_validation() {
    let (app, client, accounts) = app_with_accounts().await;
    let target = json!([{"account_id": accounts[0]}]);
    let waiting =
        create(&app, &client, json!({"content": "needs a yes", "targets": target, "requires_approval": true})).await;
    assert_eq!(waiting["status"], "pending_approval");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(made(&app, "needs a yes").await, 0, "nothing before approval");
    let id = waiting["id"].as_str().unwrap();
    let approved = send(&app, &client, "POST", &format!("/v1/posts/{id}/approve"), None).await;
    assert_eq!(approved.status(), StatusCode::OK);
    wait_for(&app, &client, id, &["published"], Duration::from_secs(10)).await;

    let draft = create(&app, &client, json!({"content": "a draft", "targets": target, "draft": true})).await;
    assert_eq!(draft["status"], "draft");
    let id = draft["id"].as_str().unwrap();
    send(&app, &client, "POST", &format!("/v1/posts/{id}/publish"), None).await;
    wait_for(&app, &client, id, &["published"], Duration::from_secs(10)).await;

    let too_long = "x".repeat(501);
    let refused = send(&app, &client, "POST", "/v1/posts", Some(json!({"content": too_long, "targets": target}))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("at most 500"), "{problem}");
    let unknown = json!({"content": "x", "targets": [{"account_id": uuid::Uuid::new_v4()}], "scheduled_at": "2030-01-01T10:00:00"});
    let refused = send(&app, &client, "POST", "/v1/posts", Some(unknown)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "a time without an offset is refused");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_scheduler_sweeps_queue_each_delivery_once() {
    let (app, client, accounts) = app_with_accounts().await;
    // A post whose deliveries nothing queued (as after a crash between commands): insert it
    // through the domain without queueing.
    let post_id = uuid::Uuid::now_v7();
    let project_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let target = herald_shared::domain::post::Target {
        delivery_id: uuid::Uuid::now_v7(),
        account_id: accounts[0].parse().unwrap(),
        content: None,
        options: Value::Null,
        media: None,
        thread: None,
        first_comment: None,
    };
    let command = herald_shared::domain::post::Command::Create {
        project_id,
        content: "swept".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: vec![target],
        scheduled_at: None,
        draft: false,
        requires_approval: false,
        external_id: None,
        now: chrono::Utc::now(),
    };
    let mut tx = app.pool.begin().await.unwrap();
    let metadata = herald_shared::events::EventMetadata::default();
    herald_shared::commands::execute::<herald_shared::domain::post::Post>(&mut tx, post_id, command, &metadata)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let horizon = chrono::Duration::minutes(1);
    let (first, second) = tokio::join!(
        herald_shared::commands::deliveries::queue_due(&app.pool, horizon, 100),
        herald_shared::commands::deliveries::queue_due(&app.pool, horizon, 100)
    );
    assert_eq!(first.unwrap() + second.unwrap(), 1, "one of the replicas queued it");
    wait_for(&app, &client, &post_id.to_string(), &["published"], Duration::from_secs(10)).await;
    assert_eq!(made(&app, "swept").await, 1);
    app.stop().await.unwrap();
}

/// A `herald worker` process on the test's database and api.
pub(crate) fn worker_process(app: &TestApp) -> std::process::Child {
    crate::harness::worker_command(app).env("HERALD_PLATFORM_TIMEOUT_SECS", "3").spawn().unwrap()
}

#[tokio::test]
async fn a_worker_killed_during_a_slow_publish_never_publishes_twice() {
    let db = TestDb::new().await;
    let config = test_config(&db);
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let mut first = worker_process(&app);
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let account = accounts(&app, &client).await[0]["id"].as_str().unwrap().to_owned();

    let text = "[fail:slow:2000] killed mid-call";
    let post = create(&app, &client, json!({"content": text, "targets": [{"account_id": account}]})).await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    // Kill the worker while the platform is still answering.
    wait_for(&app, &client, &post_id, &["publishing"], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    // Another worker rescues the job once its lease is over, and looks the post up first.
    let mut second = worker_process(&app);
    let done = wait_for(&app, &client, &post_id, &["published", "failed"], Duration::from_secs(30)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let status = done["deliveries"][0]["status"].as_str().unwrap().to_owned();
    let made = made(&app, text).await;
    assert!(made <= 1, "published {made} times");
    assert!(
        (status == "published" && made == 1) || status == "unknown",
        "the delivery ended {status} with {made} post(s): {done}"
    );
    app.stop().await.unwrap();
}
