//! The real platforms' adapters against an in-test platform that answers in each one's shapes:
//! X (OAuth 2.0 with PKCE, `users/me`, rotating refresh) and LinkedIn (no PKCE,
//! `client_secret_post`, the member and their organisations, `rest/posts` with `x-restli-id`) and
//! Bluesky (an app password opens a session; `refreshSession` rotates; `createRecord`) and
//! Facebook (a long-lived user token, each Page with its own token, Graph error codes) and
//! Threads (a 60-day token that refreshes itself, two-step publishing), Mastodon (statuses
//! with `Idempotency-Key`), and YouTube, Pinterest, Instagram and TikTok, which connect but
//! cannot publish text. And a platform's pace set by setting replaces its spec's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use herald_shared::platforms::PlatformSettings;
use serde_json::{Value, json};

use crate::connect::Client;
use crate::connect::get_json;
use crate::credentials::{account_of, app_with_fake, refresh, refreshes_settled};
use crate::fake_oauth::FakeOAuth;
use crate::harness::{TestApp, TestDb, test_config};

/// Connects the fake's accounts on `platform` through the whole OAuth flow; how many the result
/// page says were connected.
async fn connect(app: &TestApp, client: &Client, platform: &str) -> usize {
    let (_, callback) = crate::connect::authorize_on(app, client, platform, json!({}), "").await;
    let page = client.http.get(&callback).send().await.unwrap().text().await.unwrap();
    let count = page.split(" account(s) connected").next().and_then(|head| head.rsplit('>').next());
    count.and_then(|count| count.trim().parse().ok()).unwrap_or_else(|| panic!("no accounts connected: {page}"))
}

/// A refresh of `account_id` makes one token request and leaves the account connected.
async fn refreshes_once(app: &TestApp, fake: &FakeOAuth, client: &Client, account_id: &str) {
    refresh(app, client, account_id).await;
    refreshes_settled(app).await;
    assert_eq!(fake.refresh_requests.load(Ordering::SeqCst), 1);
    assert_eq!(account_of(app, client, account_id).await["status"], "connected");
}

/// A refresh of `account_id` makes one token request and leaves it connected, and a post of
/// text alone to it is refused (its platform needs media).
async fn refreshes_once_and_refuses_text(app: &TestApp, fake: &FakeOAuth, client: &Client, account_id: &str) {
    refreshes_once(app, fake, client, account_id).await;
    let body = json!({"content": "text alone", "targets": [{"account_id": account_id}]});
    let refused = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
}

/// Creates a post from `body` and waits (up to 10 s) for its first delivery to be published;
/// returns that delivery.
async fn publish_one(app: &TestApp, client: &Client, body: Value) -> Value {
    let created = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    let post_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mut delivery = Value::Null;
    for _ in 0..400 {
        delivery = get_json(app, client, &format!("/v1/posts/{post_id}")).await["deliveries"][0].clone();
        if delivery["status"] == "published" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    delivery
}

#[tokio::test]
async fn an_x_account_connects_with_x_shapes_and_refreshes() {
    let (app, fake, client) = app_with_fake().await;
    let (_, callback) = crate::connect::authorize_on(&app, &client, "x", json!({}), "").await;
    assert!(callback.contains("/v1/connect/x/callback"), "{callback}");
    let page = client.http.get(&callback).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("1 account(s) connected"));
    let account = get_json(&app, &client, "/v1/accounts?platform=x").await["data"][0].clone();
    assert_eq!(account["platform_user_id"], "2244994945");
    assert_eq!(account["username"], "ada");
    assert_eq!(account["display_name"], "Ada Lovelace");
    let account_id = account["id"].as_str().unwrap();
    refreshes_once(&app, &fake, &client, account_id).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_linkedin_member_and_their_organisation_connect_and_the_organisation_publishes() {
    let (app, fake, client) = app_with_fake().await;
    // LinkedIn web apps take no PKCE (the helper checks the URL has none).
    assert_eq!(connect(&app, &client, "linkedin").await, 2);
    assert_eq!(fake.last_client_id.lock().unwrap().as_deref(), Some("fake-client (in the body)"), "client_secret_post");

    let listed = get_json(&app, &client, "/v1/accounts?platform=linkedin").await;
    let accounts = listed["data"].as_array().unwrap();
    let ids: Vec<&str> = accounts.iter().map(|a| a["platform_user_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"urn:li:person:782bbtaQ") && ids.contains(&"urn:li:organization:2414183"), "{ids:?}");
    let organisation = accounts.iter().find(|a| a["kind"] == "organization").unwrap()["id"].clone();
    let delivery = publish_one(
        &app,
        &client,
        json!({"content": "From the company page", "targets": [{"account_id": organisation}]}),
    )
    .await;
    assert_eq!(delivery["platform_post_id"], "urn:li:share:7263", "{delivery}");
    assert_eq!(delivery["platform_url"], "https://www.linkedin.com/feed/update/urn:li:share:7263");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_bluesky_app_password_opens_a_session_that_refreshes_and_publishes() {
    let (app, fake, client) = app_with_fake().await;
    let start =
        |body: Value| client.http.post(app.url("/v1/connect/bluesky")).bearer_auth(&client.key).json(&body).send();
    let wrong = start(json!({"identifier": "ada.bsky.social", "app_password": "wrong"})).await.unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::CREATED);
    let wrong: Value = wrong.json().await.unwrap();
    assert_eq!(wrong["status"], "failed", "{wrong}");
    let missing = start(json!({})).await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);

    let connected =
        start(json!({"identifier": "ada.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"})).await.unwrap();
    let connected: Value = connected.json().await.unwrap();
    assert_eq!(connected["status"], "connected", "{connected}");
    assert!(connected.get("url").is_none());
    let account = get_json(&app, &client, "/v1/accounts?platform=bluesky").await["data"][0].clone();
    assert_eq!(account["platform_user_id"], "did:plc:ada");
    assert_eq!(account["username"], "ada.bsky.social");
    assert!(account["expires_at"].is_string(), "read from the JWT");
    let found = crate::harness::tables_containing(&app.pool, "abcd-efgh-ijkl-mnop").await;
    assert!(found.is_empty(), "the app password is stored nowhere: {found:?}");

    let account_id = account["id"].as_str().unwrap();
    refreshes_once(&app, &fake, &client, account_id).await;

    let delivery =
        publish_one(&app, &client, json!({"content": "hello from herald", "targets": [{"account_id": account_id}]}))
            .await;
    assert_eq!(delivery["platform_post_id"], "at://did:plc:ada/app.bsky.feed.post/3l2s5xxv2ze2c", "{delivery}");
    assert_eq!(delivery["platform_url"], "https://bsky.app/profile/did:plc:ada/post/3l2s5xxv2ze2c");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn facebook_pages_connect_with_their_own_tokens_and_publish() {
    let (app, _fake, client) = app_with_fake().await;
    assert_eq!(connect(&app, &client, "facebook").await, 2, "both Pages, not the person");

    let listed = get_json(&app, &client, "/v1/accounts?platform=facebook").await;
    let bakery =
        listed["data"].as_array().unwrap().iter().find(|a| a["display_name"] == "Ada's Bakery").unwrap().clone();
    assert_eq!(bakery["kind"], "page");
    assert!(bakery["expires_at"].is_null(), "Page tokens from a long-lived user token do not expire");
    let delivery =
        publish_one(&app, &client, json!({"content": "Fresh bread today", "targets": [{"account_id": bakery["id"]}]}))
            .await;
    assert_eq!(delivery["platform_post_id"], "101_9001", "published with the Page's own token: {delivery}");
    assert_eq!(delivery["platform_url"], "https://www.facebook.com/101_9001");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_threads_account_keeps_a_long_lived_token_fresh_and_publishes_in_two_steps() {
    let (app, fake, client) = app_with_fake().await;
    assert_eq!(connect(&app, &client, "threads").await, 1);
    let account = get_json(&app, &client, "/v1/accounts?platform=threads").await["data"][0].clone();
    assert_eq!(account["platform_user_id"], "17841400001");
    let expires: chrono::DateTime<chrono::Utc> = account["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires - chrono::Utc::now() > chrono::Duration::days(59), "the long-lived token");

    let account_id = account["id"].as_str().unwrap();
    refreshes_once(&app, &fake, &client, account_id).await;

    let delivery =
        publish_one(&app, &client, json!({"content": "threads, from herald", "targets": [{"account_id": account_id}]}))
            .await;
    assert_eq!(delivery["platform_post_id"], "18000000001", "{delivery}");
    assert_eq!(delivery["platform_url"], "https://www.threads.net/@ada/post/C1a2b3");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_mastodon_account_publishes_with_an_idempotency_key() {
    let (app, fake, client) = app_with_fake().await;
    assert_eq!(connect(&app, &client, "mastodon").await, 1);
    let account = get_json(&app, &client, "/v1/accounts?platform=mastodon").await["data"][0].clone();
    assert_eq!(account["platform_user_id"], "109348");

    let delivery = publish_one(
        &app,
        &client,
        json!({"content": "toot", "targets": [{"account_id": account["id"], "options": {"platform": "mastodon", "visibility": "unlisted"}}]}),
    )
    .await;
    assert_eq!(
        delivery["platform_url"],
        format!("https://mastodon.example/@ada/{}", delivery["platform_post_id"].as_str().unwrap())
    );
    let keys: Vec<String> = fake.mastodon_statuses.lock().unwrap().keys().cloned().collect();
    assert_eq!(keys, vec![format!("{}:1", delivery["id"].as_str().unwrap())], "the delivery and its generation");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn youtube_channels_and_pinterest_accounts_connect_but_are_refused_as_text_targets() {
    let (app, _fake, client) = app_with_fake().await;
    assert_eq!(connect(&app, &client, "youtube").await, 2, "both channels");
    let started = client
        .http
        .post(app.url("/v1/connect/youtube"))
        .bearer_auth(&client.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = started.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let query = crate::connect::query_of(&url);
    assert_eq!(
        (query["access_type"].as_str(), query["prompt"].as_str()),
        ("offline", "consent"),
        "asks for a refresh token"
    );

    let started = client
        .http
        .post(app.url("/v1/connect/pinterest"))
        .bearer_auth(&client.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = started.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::connect::query_of(&url)["scope"],
        "boards:read,pins:read,pins:write",
        "commas, as Pinterest wants"
    );
    let consented = client.http.get(&url).send().await.unwrap();
    client.http.get(crate::connect::location(&consented)).send().await.unwrap();
    let pinterest = get_json(&app, &client, "/v1/accounts?platform=pinterest").await["data"][0].clone();
    assert_eq!(pinterest["platform_user_id"], "549755885175");

    let channel = get_json(&app, &client, "/v1/accounts?platform=youtube").await["data"][0]["id"].clone();
    for account in [channel, pinterest["id"].clone()] {
        let body = json!({"content": "text alone", "targets": [{"account_id": account}]});
        let refused = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = refused.json().await.unwrap();
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("image or a video"), "{problem}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_instagram_account_keeps_a_long_lived_token_fresh_but_is_refused_as_a_text_target() {
    let (app, fake, client) = app_with_fake().await;
    assert_eq!(connect(&app, &client, "instagram").await, 1);
    let account = get_json(&app, &client, "/v1/accounts?platform=instagram").await["data"][0].clone();
    let expires: chrono::DateTime<chrono::Utc> = account["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires - chrono::Utc::now() > chrono::Duration::days(59), "exchanged for the long-lived token");
    refreshes_once_and_refuses_text(&app, &fake, &client, account["id"].as_str().unwrap()).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_tiktok_account_connects_with_client_key_and_rotates_its_refresh_token() {
    let (app, fake, client) = app_with_fake().await;
    let started =
        client.http.post(app.url("/v1/connect/tiktok")).bearer_auth(&client.key).json(&json!({})).send().await.unwrap();
    let url = started.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let query = crate::connect::query_of(&url);
    assert_eq!(query["client_key"], "fake-client", "TikTok's name for the client id");
    assert!(!query.contains_key("client_id"));
    assert_eq!(connect(&app, &client, "tiktok").await, 1);
    assert_eq!(fake.last_client_id.lock().unwrap().as_deref(), Some("fake-client (in the body)"));
    let account = get_json(&app, &client, "/v1/accounts?platform=tiktok").await["data"][0].clone();
    assert_eq!(account["platform_user_id"], "723f24d7-e717-40f8");

    refreshes_once_and_refuses_text(&app, &fake, &client, account["id"].as_str().unwrap()).await;
    app.stop().await.unwrap();
}

/// A publish rate set for one platform (`HERALD_PLATFORMS__SANDBOX__PUBLISHES_PER_HOUR=1`)
/// replaces its spec's: an account's second publish within the hour waits for the limiter
/// (its job comes back about an hour later), instead of going out at once.
#[tokio::test]
async fn a_configured_publish_rate_makes_the_second_publish_wait() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    let once_an_hour = PlatformSettings { publishes_per_hour: Some(1), ..PlatformSettings::default() };
    config.platforms.insert("sandbox".into(), once_an_hour);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = crate::connect::client(&app).await;
    let (_, callback) = crate::connect::authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let account = crate::connect::accounts(&app, &client).await[0]["id"].clone();

    let first =
        crate::posts::create(&app, &client, json!({"content": "first", "targets": [{"account_id": account}]})).await;
    crate::posts::wait_for(&app, &client, first["id"].as_str().unwrap(), &["published"], Duration::from_secs(30)).await;
    let second =
        crate::posts::create(&app, &client, json!({"content": "second", "targets": [{"account_id": account}]})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'delivery.publish' AND run_at > now() + interval '30 minutes'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second publish was never put off");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let post = get_json(&app, &client, &format!("/v1/posts/{}", second["id"].as_str().unwrap())).await;
    assert_ne!(post["status"], "published", "{post}");
    assert_eq!(crate::posts::made(&app, "second").await, 0);
    app.stop().await.unwrap();
}
