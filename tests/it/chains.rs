//! Threads and first comments through the sandbox: each item of a chain published once, in
//! order, as a reply to the one before (and the first comment on the post); checked per platform
//! at creation; an unanswered item looked up rather than sent again; a refused item failing the
//! delivery with what it published, and a retry resuming after that; a worker killed mid-chain.

use std::time::Duration;

use herald_shared::media::samples::png;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::connected_account;
use crate::harness::TestApp;
use crate::post_media::{field_errors, post_json, upload};
use crate::posts::{app_with_accounts, create, made, wait_for, worker_process};

/// The sandbox post made with `text`: its id and what it answers (`reply_to`, `comment_on`).
async fn sandbox_post(app: &TestApp, text: &str) -> (String, Option<String>, Option<String>) {
    let rows: Vec<(Uuid, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, reply_to, comment_on FROM sandbox_posts WHERE text = $1")
            .bind(text)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{text:?} was published {} times", rows.len());
    let (id, reply_to, comment_on) = rows.into_iter().next().unwrap();
    (id.to_string(), reply_to, comment_on)
}

/// The ids of the delivery's published items, by index.
fn item_ids(delivery: &Value) -> Vec<(u64, String)> {
    delivery["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {delivery}"))
        .iter()
        .map(|item| (item["index"].as_u64().unwrap(), item["platform_post_id"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_thread_and_a_first_comment_are_published_in_order_each_once() {
    let (app, client, accounts) = app_with_accounts().await;
    let image = upload(&app, &client.key, png(320, 240)).await;
    let body = json!({
        "content": "chain root",
        "thread": [{"content": "chain two"}, {"content": "chain three", "media": [{"id": image, "alt_text": "a square"}]}],
        "first_comment": "chain comment",
        "targets": [{"account_id": accounts[0]}],
    });
    let post = create(&app, &client, body).await;
    assert_eq!(post["thread"][1]["media"][0]["id"], image.as_str());
    assert_eq!(post["first_comment"], "chain comment");
    let post_id = post["id"].as_str().unwrap();
    let done = wait_for(&app, &client, post_id, &["published", "failed", "partial"], Duration::from_secs(60)).await;
    assert_eq!(done["status"], "published", "{done}");
    let delivery = &done["deliveries"][0];

    let (root, root_reply, root_comment) = sandbox_post(&app, "chain root").await;
    let (two, two_reply, _) = sandbox_post(&app, "chain two").await;
    let (three, three_reply, _) = sandbox_post(&app, "chain three").await;
    let (comment, comment_reply, comment_on) = sandbox_post(&app, "chain comment").await;
    assert_eq!((root_reply, root_comment), (None, None));
    assert_eq!(two_reply.as_deref(), Some(root.as_str()), "the first item answers the post");
    assert_eq!(three_reply.as_deref(), Some(two.as_str()), "each item answers the one before");
    assert_eq!((comment_reply, comment_on.as_deref()), (None, Some(root.as_str())), "the comment is on the post");
    assert_eq!(delivery["platform_post_id"], root.as_str());
    assert_eq!(item_ids(delivery), vec![(1, two), (2, three.clone()), (3, comment)]);
    let media: Value = sqlx::query_scalar("SELECT media FROM sandbox_posts WHERE id = $1::uuid")
        .bind(&three)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(media[0]["media_id"], image.as_str(), "an item carries its own media");
    assert_eq!(media[0]["alt_text"], "a square");

    // The post's page on the sandbox shows what follows it.
    let page = app.http.get(delivery["platform_url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Replies") && page.contains("chain two"), "{page}");
    assert!(page.contains("Comments") && page.contains("chain comment"), "{page}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn chains_are_checked_against_each_targets_platform_at_creation() {
    let (app, client, accounts) = app_with_accounts().await;
    let project_id: Uuid = sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap();
    // Pinterest takes neither replies nor comments.
    let pinterest = connected_account(&app, project_id, "pinterest", "pin-1", None).await;
    let image = upload(&app, &client.key, png(1000, 1500)).await;
    let missing = Uuid::now_v7();
    let body = json!({
        "content": "checked",
        "media": [{"id": image}],
        "thread": [{"content": "x".repeat(501)}, {"content": "", "media": [{"id": missing}]}, {"content": "  "}],
        "first_comment": "  ",
        "targets": [{"account_id": accounts[0]}, {"account_id": pinterest, "options": {"platform": "pinterest", "board_id": "1"}}],
    });
    let (status, problem) = post_json(&app, &client.key, "POST", "/v1/posts", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let errors = field_errors(&problem);
    let has = |field: &str, words: &str| {
        assert!(
            errors.iter().any(|(at, message)| at == field && message.contains(words)),
            "no {field}: {words} in {errors:?}"
        )
    };
    has("thread[0].content", "takes at most 500");
    has("thread[1].media[0].id", "no such media");
    has("thread[2].content", "must not be empty");
    has("first_comment", "must not be blank");
    has("thread", "no threads on pinterest");
    assert!(!errors.iter().any(|(at, _)| at.starts_with("targets[0]")), "{errors:?}");

    // A target's own (empty) thread and no first comment: only the sandbox gets one.
    let body = json!({
        "content": "checked",
        "media": [{"id": image}],
        "thread": [{"content": "fine"}],
        "targets": [{"account_id": accounts[0]}, {"account_id": pinterest, "thread": [], "options": {"platform": "pinterest", "board_id": "1"}}],
    });
    let (status, post) = post_json(&app, &client.key, "POST", "/v1/posts", json!(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{post}");
    let pinterest_delivery =
        post["deliveries"].as_array().unwrap().iter().find(|d| d["account_id"] == pinterest.to_string()).unwrap();
    assert_eq!(pinterest_delivery["thread"], json!([]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_unanswered_item_is_looked_up_and_never_sent_twice() {
    let (app, client, accounts) = app_with_accounts().await;
    let body = json!({
        "content": "lookup root",
        "thread": [{"content": "[fail:timeout-after-success] lookup two"}, {"content": "lookup three"}],
        "targets": [{"account_id": accounts[0]}],
    });
    let post = create(&app, &client, body).await;
    let post_id = post["id"].as_str().unwrap();
    let done = wait_for(&app, &client, post_id, &["published", "failed", "partial"], Duration::from_secs(60)).await;
    assert_eq!(done["status"], "published", "{done}");
    let (root, _, _) = sandbox_post(&app, "lookup root").await;
    let (two, two_reply, _) = sandbox_post(&app, "[fail:timeout-after-success] lookup two").await;
    let (three, three_reply, _) = sandbox_post(&app, "lookup three").await;
    assert_eq!((two_reply.as_deref(), three_reply.as_deref()), (Some(root.as_str()), Some(two.as_str())));
    assert_eq!(item_ids(&done["deliveries"][0]), vec![(1, two), (2, three)]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_item_fails_the_delivery_and_a_retry_resumes_after_what_was_published() {
    let (app, client, accounts) = app_with_accounts().await;
    let body = json!({
        "content": "resume root",
        "thread": [{"content": "resume two"}, {"content": "[fail:400x1] resume three"}, {"content": "resume four"}],
        "targets": [{"account_id": accounts[0]}],
    });
    let post = create(&app, &client, body).await;
    let post_id = post["id"].as_str().unwrap();
    let failed = wait_for(&app, &client, post_id, &["published", "failed", "partial"], Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let delivery = &failed["deliveries"][0];
    assert_eq!(delivery["last_error"]["code"], "rejected");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("item 2 of the chain"), "{delivery}");
    assert_eq!(item_ids(delivery).len(), 1, "the first item stays published: {delivery}");
    assert_eq!(made(&app, "resume four").await, 0);

    let (status, retried) =
        post_json(&app, &client.key, "POST", &format!("/v1/posts/{post_id}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let done = wait_for(&app, &client, post_id, &["published", "failed"], Duration::from_secs(60)).await;
    assert_eq!(done["status"], "published", "{done}");
    for text in ["resume root", "resume two", "[fail:400x1] resume three", "resume four"] {
        assert_eq!(made(&app, text).await, 1, "{text:?}");
    }
    let (two, _, _) = sandbox_post(&app, "resume two").await;
    let (three, three_reply, _) = sandbox_post(&app, "[fail:400x1] resume three").await;
    let (four, four_reply, _) = sandbox_post(&app, "resume four").await;
    assert_eq!((three_reply.as_deref(), four_reply.as_deref()), (Some(two.as_str()), Some(three.as_str())));
    assert_eq!(item_ids(&done["deliveries"][0]), vec![(1, two), (2, three), (3, four)]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_killed_mid_chain_resumes_without_a_duplicate() {
    let db = crate::harness::TestDb::new().await;
    let config = crate::harness::test_config(&db);
    let app = TestApp::spawn_without_worker(db, std::sync::Arc::new(config)).await;
    let mut first = worker_process(&app);
    let client = crate::connect::client(&app).await;
    let (_, callback) = crate::connect::authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let account = crate::connect::accounts(&app, &client).await[0]["id"].as_str().unwrap().to_owned();
    let slow = "[fail:slow:2000] killed two";
    let body = json!({
        "content": "killed root",
        "thread": [{"content": slow}, {"content": "killed three"}],
        "targets": [{"account_id": account}],
    });
    let post = create(&app, &client, body).await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    // Kill the worker while the second item's call is still waiting for the sandbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while made(&app, "killed root").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the post itself was never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = worker_process(&app);
    let done = wait_for(&app, &client, &post_id, &["published", "failed"], Duration::from_secs(60)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    for text in ["killed root", slow, "killed three"] {
        assert!(made(&app, text).await <= 1, "{text:?} published twice");
    }
    let status = done["deliveries"][0]["status"].as_str().unwrap().to_owned();
    assert!(status == "published" || status == "unknown", "{done}");
    if status == "published" {
        assert_eq!(made(&app, slow).await, 1);
        assert_eq!(made(&app, "killed three").await, 1);
        assert_eq!(item_ids(&done["deliveries"][0]).len(), 2);
    }
    app.stop().await.unwrap();
}
