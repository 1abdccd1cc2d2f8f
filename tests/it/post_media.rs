//! Posts carry media from the library: on the post and per target, checked at creation against
//! each target platform's rules (one 422 naming each target and rule), published through the
//! sandbox (which checks each signed URL as a pull platform's fetch would), kept through edits,
//! refused when not the key's to use, and holding off a delete while a post still needs them.

use std::time::Duration;

use herald_shared::commands::execute;
use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::domain::api_key::Environment;
use herald_shared::domain::media_item::{self, Media};
use herald_shared::events::EventMetadata;
use herald_shared::media::samples::{mp4, png};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::connect::{Client, get_json};
use crate::fixtures::connected_account;
use crate::harness::TestApp;
use crate::posts::{app_with_accounts, create, wait_for};

/// Uploads `bytes` with `key` and answers the item's id (every media test uses it).
pub(crate) async fn upload(app: &TestApp, key: &str, bytes: Vec<u8>) -> String {
    let part = Part::bytes(bytes).file_name("file.bin").mime_str("application/octet-stream").unwrap();
    let response =
        app.http.post(app.url("/v1/media")).bearer_auth(key).multipart(Form::new().part("file", part)).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let item: Value = response.json().await.unwrap();
    item["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn post_json(app: &TestApp, key: &str, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let response =
        app.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
    let status = response.status();
    if status.is_client_error() {
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    (status, response.json().await.unwrap())
}

/// The `(field, message)` pairs of a 422.
pub(crate) fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {problem}"))
        .iter()
        .map(|error| (error["field"].as_str().unwrap().to_owned(), error["message"].as_str().unwrap().to_owned()))
        .collect()
}

/// The sandbox's stored media of the post it made with `text`.
async fn sandbox_media(app: &TestApp, text: &str) -> Vec<Value> {
    let stored: Vec<Value> = sqlx::query_scalar("SELECT media FROM sandbox_posts WHERE text = $1 ORDER BY created_at")
        .bind(text)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    stored
}

/// An item of the test client's project (its key is named `tests`) whose import has been asked for and not done, recorded as
/// the import route records it (without the job, which would end it).
async fn importing_item(app: &TestApp) -> Uuid {
    let project_id: Uuid =
        sqlx::query_scalar("SELECT project_id FROM api_keys WHERE name = 'tests'").fetch_one(&app.pool).await.unwrap();
    let id = Uuid::now_v7();
    let command = media_item::Command::RequestImport {
        project_id,
        environment: Environment::Live,
        source_url: "https://media.example/never.png".into(),
        object_key: media_item::object_key(id),
    };
    let metadata = EventMetadata { project_id: Some(project_id), ..EventMetadata::default() };
    let mut tx = app.pool.begin().await.unwrap();
    execute::<Media>(&mut tx, id, command, &metadata).await.unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn a_post_with_an_image_and_a_video_is_published_with_them_in_order() {
    let (app, client, accounts) = app_with_accounts().await;
    let image = upload(&app, &client.key, png(640, 480)).await;
    let video = upload(&app, &client.key, mp4(320, 240, 3, 2_000)).await;
    let post = create(
        &app,
        &client,
        json!({
            "content": "with media",
            "media": [{"id": image, "alt_text": "a red square"}, {"id": video}],
            "targets": [{"account_id": accounts[0]}],
        }),
    )
    .await;
    assert_eq!(post["media"], json!([{"id": image, "alt_text": "a red square"}, {"id": video}]));
    assert!(post["deliveries"][0]["media"].is_null(), "the target takes the post's media");
    let done = wait_for(&app, &client, post["id"].as_str().unwrap(), &["published"], Duration::from_secs(60)).await;

    let stored = sandbox_media(&app, "with media").await;
    assert_eq!(stored.len(), 1, "published once");
    assert_eq!(
        stored[0],
        json!([{"media_id": image, "alt_text": "a red square"}, {"media_id": video, "alt_text": null}])
    );
    let page_url = done["deliveries"][0]["platform_url"].as_str().unwrap();
    let page = client.http.get(page_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("alt=\"a red square\""), "{page}");
    assert!(page.contains("<video"), "{page}");
    // The page's media URLs are herald's signed ones, and they serve the bytes.
    let src = page.split("<img src=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let served = client.http.get(&src).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().to_vec(), png(640, 480));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_target_may_carry_its_own_media_or_none() {
    let (app, client, accounts) = app_with_accounts().await;
    let shared = upload(&app, &client.key, png(10, 10)).await;
    let own = upload(&app, &client.key, png(20, 20)).await;
    let post = create(
        &app,
        &client,
        json!({
            "content": "per target",
            "media": [{"id": shared}],
            "targets": [
                {"account_id": accounts[0]},
                {"account_id": accounts[1], "media": [{"id": own, "alt_text": "its own"}]},
                {"account_id": accounts[2], "content": "per target, bare", "media": []},
            ],
        }),
    )
    .await;
    wait_for(&app, &client, post["id"].as_str().unwrap(), &["published"], Duration::from_secs(60)).await;
    let mut stored = sandbox_media(&app, "per target").await;
    stored.sort_by_key(|media| media.to_string());
    assert_eq!(
        stored,
        [json!([{"media_id": own, "alt_text": "its own"}]), json!([{"media_id": shared, "alt_text": null}])]
    );
    assert_eq!(sandbox_media(&app, "per target, bare").await, [json!([])]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_media WHERE post_id = $1::uuid")
        .bind(post["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "the post's item and the one target's own");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn one_422_names_each_target_and_each_rule_its_media_break() {
    let (app, client, accounts) = app_with_accounts().await;
    let project_id: Uuid =
        sqlx::query_scalar("SELECT project_id FROM accounts LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let x_account = connected_account(&app, project_id, "x", "x-user", None).await;
    let mut media = Vec::new();
    for side in 1..=11 {
        media.push(json!({"id": upload(&app, &client.key, png(side, side)).await}));
    }
    media[0]["alt_text"] = json!("a".repeat(1001));
    let (status, problem) = post_json(
        &app,
        &client.key,
        "POST",
        "/v1/posts",
        json!({
            "content": "too much",
            "media": media,
            "targets": [{"account_id": accounts[0]}, {"account_id": x_account}],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "validation_failed");
    let errors = field_errors(&problem);
    assert!(errors.contains(&("targets[0].media".into(), "sandbox takes at most 10 attachments in a post".into())));
    assert!(errors.contains(&("targets[0].media".into(), "sandbox takes at most 10 images in a post".into())));
    assert!(errors.contains(&(
        "targets[0].media".into(),
        "media[0]: alt text of 1001 characters; sandbox takes at most 1000".into()
    )));
    assert!(errors.iter().any(|(field, _)| field.starts_with("targets[1].")), "the X target is named too: {errors:?}");
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts").fetch_one(&app.pool).await.unwrap();
    assert_eq!(posts, 0, "nothing was written");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_platform_whose_adapter_cannot_attach_media_yet_refuses_them_rather_than_dropping_them() {
    let (app, client, _) = app_with_accounts().await;
    let project_id: Uuid =
        sqlx::query_scalar("SELECT project_id FROM accounts LIMIT 1").fetch_one(&app.pool).await.unwrap();
    // Any platform whose adapter does not publish media yet (once all do, there is none to ask).
    let Some(platform) = herald_shared::platforms::ALL.iter().find(|spec| !spec.content.publishes_media) else {
        return app.stop().await.unwrap();
    };
    let account = connected_account(&app, project_id, platform.name, "m-user", None).await;
    let image = upload(&app, &client.key, png(10, 10)).await;
    let body = json!({"content": "hi", "media": [{"id": image}], "targets": [{"account_id": account}]});
    let (status, problem) = post_json(&app, &client.key, "POST", "/v1/posts", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let errors = field_errors(&problem);
    assert!(
        errors.iter().any(|(field, message)| field.starts_with("targets[0].") && message.contains(platform.name)),
        "{errors:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn media_a_key_may_not_use_or_that_is_not_ready_is_named() {
    let (app, client, accounts) = app_with_accounts().await;
    // Another project's item, a deleted one, an import still running, and one named twice.
    let (other, _, other_secret) = keys::create_project(&app.pool, "Other", &EventMetadata::default()).await.unwrap();
    let foreign = upload(&app, keys::reveal(&other_secret), png(5, 5)).await;
    let deleted = upload(&app, &client.key, png(6, 6)).await;
    let gone = app.http.delete(app.url(&format!("/v1/media/{deleted}"))).bearer_auth(&client.key).send().await;
    assert_eq!(gone.unwrap().status(), StatusCode::NO_CONTENT);
    let importing = importing_item(&app).await;
    let ready = upload(&app, &client.key, png(7, 7)).await;
    let media = json!([
        {"id": foreign}, {"id": deleted}, {"id": importing}, {"id": ready}, {"id": ready, "alt_text": " "},
        {"id": Uuid::now_v7()},
    ]);
    let body = json!({"content": "bad media", "media": media, "targets": [{"account_id": accounts[0]}]});
    let (status, problem) = post_json(&app, &client.key, "POST", "/v1/posts", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let errors = field_errors(&problem);
    for field in ["media[0].id", "media[1].id", "media[5].id"] {
        assert!(errors.contains(&(field.into(), "no such media".into())), "{field}: {errors:?}");
    }
    assert!(
        errors.iter().any(|(field, message)| field == "media[2].id" && message.contains("not ready")),
        "{errors:?}"
    );
    assert!(errors.contains(&("media[4].id".into(), "attached twice".into())), "{errors:?}");
    assert!(errors.iter().any(|(field, _)| field == "media[4].alt_text"), "{errors:?}");
    assert!(!errors.iter().any(|(field, _)| field == "media[3].id"), "the ready item is fine: {errors:?}");

    // A test key sees only test media: the live item is not its to use.
    let test_key = KeyRequest { environment: Environment::Test, ..KeyRequest::admin("t") };
    let (_, secret) = keys::create_key(&app.pool, other, test_key, 100, &EventMetadata::default()).await.unwrap();
    let test_key = keys::reveal(&secret).to_owned();
    let own_test_item = upload(&app, &test_key, png(8, 8)).await;
    let test_client = Client { http: client.http.clone(), key: test_key.clone() };
    let sandbox = connected_account(&app, other, "sandbox", "person-t", None).await;
    let body = json!({"content": "t", "media": [{"id": foreign}, {"id": own_test_item}], "targets": [{"account_id": sandbox}]});
    let (status, problem) = post_json(&app, &test_client.key, "POST", "/v1/posts", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(field_errors(&problem), [("media[0].id".to_owned(), "no such media".to_owned())]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_edit_replaces_or_keeps_the_media_and_checks_them_again() {
    let (app, client, accounts) = app_with_accounts().await;
    let first = upload(&app, &client.key, png(10, 10)).await;
    let second = upload(&app, &client.key, png(11, 11)).await;
    let post = create(
        &app,
        &client,
        json!({"content": "draft", "media": [{"id": first}], "targets": [{"account_id": accounts[0]}], "draft": true}),
    )
    .await;
    let path = format!("/v1/posts/{}", post["id"].as_str().unwrap());
    let (status, edited) = post_json(&app, &client.key, "PATCH", &path, json!({"content": "edited"})).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["media"], json!([{"id": first}]), "an edit of the text keeps the media");
    let (status, edited) = post_json(&app, &client.key, "PATCH", &path, json!({"media": [{"id": second}]})).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["media"], json!([{"id": second}]));
    let attached: Vec<Uuid> = sqlx::query_scalar("SELECT media_id FROM post_media WHERE post_id = $1::uuid")
        .bind(post["id"].as_str().unwrap())
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(attached, [second.parse::<Uuid>().unwrap()]);
    let bad = json!({"media": [{"id": Uuid::now_v7()}]});
    let (status, problem) = post_json(&app, &client.key, "PATCH", &path, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(field_errors(&problem), [("media[0].id".to_owned(), "no such media".to_owned())]);
    let unchanged = get_json(&app, &client, &path).await;
    assert_eq!(unchanged["media"], json!([{"id": second}]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_item_is_not_deleted_while_a_post_that_has_not_published_needs_it() {
    let (app, client, accounts) = app_with_accounts().await;
    let image = upload(&app, &client.key, png(12, 12)).await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let post = create(
        &app,
        &client,
        json!({"content": "later", "media": [{"id": image}], "targets": [{"account_id": accounts[0]}], "scheduled_at": later}),
    )
    .await;
    let delete = || app.http.delete(app.url(&format!("/v1/media/{image}"))).bearer_auth(&client.key).send();
    let refused = delete().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "in_use");
    let path = format!("/v1/posts/{}", post["id"].as_str().unwrap());
    let canceled = app.http.delete(app.url(&path)).bearer_auth(&client.key).send().await.unwrap();
    assert_eq!(canceled.status(), StatusCode::OK);
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT, "a canceled post needs nothing");
    app.stop().await.unwrap();
}
