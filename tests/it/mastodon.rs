//! Mastodon's look-up after an unanswered publish, once the instance's idempotency window has
//! passed: a repeat with the same `Idempotency-Key` would post again, so herald looks for the
//! status among the account's recent ones, and without it ends the delivery `unknown`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use serde_json::{Value, json};

use crate::connect::{Client, client, get_json};
use crate::fake_oauth::{FakeOAuth, mastodon_status_entity};
use crate::harness::{TestApp, TestDb, test_config};

/// The app with Mastodon pointing at a fake, a short platform timeout, and the fake's account
/// connected; returns it and the account id.
async fn app_with_mastodon() -> (TestApp, Arc<FakeOAuth>, Client, String) {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.platform_timeout_secs = 1;
    let (fake, settings) = FakeOAuth::start().await;
    config.platforms.insert("mastodon".into(), settings);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    let (_, callback) = crate::connect::authorize_on(&app, &client, "mastodon", json!({}), "").await;
    let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("1 account(s) connected"), "{page}");
    let account =
        get_json(&app, &client, "/v1/accounts?platform=mastodon").await["data"][0]["id"].as_str().unwrap().to_owned();
    (app, fake, client, account)
}

/// Posts `text` to the account; its first publish gets no answer. Once the publish has reached
/// the instance, the test moves the attempt's start two hours back (past the instance's
/// idempotency window) and waits for the delivery to end; returns it.
async fn publish_unanswered_and_age(
    app: &TestApp,
    fake: &FakeOAuth,
    client: &Client,
    account: &str,
    text: &str,
) -> Value {
    fake.mastodon_unanswered.store(1, Ordering::SeqCst);
    let body = json!({"content": text, "targets": [{"account_id": account}]});
    let created = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    let post: Value = created.json().await.unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();
    let delivery_id: uuid::Uuid = post["deliveries"][0]["id"].as_str().unwrap().parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fake.mastodon_posts.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the publish never reached the instance");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `publishing` was recorded before the call, so this row already says when it began.
    let aged = sqlx::query(
        "UPDATE deliveries SET updated_at = now() - interval '2 hours' WHERE id = $1 AND status = 'publishing'",
    )
    .bind(delivery_id)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let post = get_json(app, client, &format!("/v1/posts/{post_id}")).await;
        let delivery = post["deliveries"][0].clone();
        if !matches!(delivery["status"].as_str(), Some("queued" | "publishing")) {
            return delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "the delivery never ended: {post}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn past_the_idempotency_window_a_status_that_was_made_is_found_among_the_accounts_statuses() {
    let (app, fake, client, account) = app_with_mastodon().await;
    let text = "Lost & found\nsecond line";
    // The same text, tooted by hand before this attempt began: not the one it made.
    let mut earlier = mastodon_status_entity("1099", text, &json!("public"));
    earlier["created_at"] = json!((chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339());
    fake.mastodon_timeline.lock().unwrap().push(earlier);
    // The instance makes the status, then never answers.
    fake.mastodon_unanswered_posts.store(true, Ordering::SeqCst);

    let delivery = publish_unanswered_and_age(&app, &fake, &client, &account, text).await;
    assert_eq!(delivery["status"], "published", "{delivery}");
    let made = fake.mastodon_statuses.lock().unwrap().values().next().cloned().unwrap();
    assert_eq!(delivery["platform_post_id"], made.as_str(), "the status this attempt made, not the older one");
    assert_eq!(delivery["platform_url"], format!("https://mastodon.example/@ada/{made}"));
    assert_eq!(fake.mastodon_posts.load(Ordering::SeqCst), 1, "the look-up never posted again");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn past_the_idempotency_window_a_status_not_among_the_recent_ones_ends_unknown_and_is_not_posted_again() {
    let (app, fake, client, account) = app_with_mastodon().await;
    // The instance makes nothing and never answers.
    fake.mastodon_unanswered_posts.store(false, Ordering::SeqCst);

    let delivery = publish_unanswered_and_age(&app, &fake, &client, &account, "gone quiet").await;
    assert_eq!(delivery["status"], "unknown", "{delivery}");
    assert_eq!(delivery["last_error"]["code"], "outcome_unknown", "{delivery}");
    assert_eq!(fake.mastodon_posts.load(Ordering::SeqCst), 1, "the look-up never posted again");
    assert!(fake.mastodon_timeline.lock().unwrap().is_empty(), "no status was made");
    app.stop().await.unwrap();
}
