//! Publish checkpoints outlive their worker: a `herald worker` process killed (SIGKILL) on the
//! last chunk of a YouTube upload leaves its sealed session to the next worker, whose look-up
//! asks the session and finds the video, so nothing is uploaded or published twice. The sealed
//! store round-trips across keyrings (processes), replaces, forgets and prunes. No checkpoint
//! holds its state in the clear, and none is left once the publish has its outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_shared::credentials;
use herald_shared::crypto::Keyring;
use herald_shared::platforms::PublishCheckpoints;
use serde_json::json;
use uuid::Uuid;

use crate::connect::{Client, client};
use crate::harness::{TestApp, TestDb, test_config};
use crate::posts::{create, wait_for};

/// A YouTube account of the client's project, connected as the exchange job records it, with a
/// token the fake accepts (no connect flow: no worker needs to run for it).
async fn youtube_account(app: &TestApp) -> Uuid {
    let project_id: Uuid = sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let keyring = Keyring::from_config(&app.config).unwrap();
    let token = format!("fake-access-token-{}", Uuid::now_v7().simple());
    crate::harness::connected_account(&app.pool, &keyring, project_id, "youtube", "UC_ada_main", "channel", &token)
        .await
}

/// A `herald worker` process on the test's database, publishing to YouTube at `base`.
fn worker_process(app: &TestApp, base: &str) -> std::process::Child {
    crate::harness::worker_command(app)
        .env("HERALD_DATA_DIR", &app.config.data_dir)
        // A rescued publish waits this long after the dead attempt began before it looks up.
        .env("HERALD_PLATFORM_TIMEOUT_SECS", "10")
        .env("HERALD_PLATFORMS__YOUTUBE__API_URL", format!("{base}/yt"))
        .env("HERALD_PLATFORMS__YOUTUBE__UPLOAD_URL", format!("{base}/yt-upload"))
        .env("HERALD_PLATFORMS__YOUTUBE__CLIENT_ID", "herald-tests")
        .env("HERALD_PLATFORMS__YOUTUBE__CLIENT_SECRET", "herald-tests-secret")
        .spawn()
        .unwrap()
}

async fn checkpoint_rows(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT reference, state FROM publish_checkpoints").fetch_all(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_youtube_upload_whose_worker_died_on_the_last_chunk_is_found_through_its_session() {
    let (fake, base) = crate::media_li_yt::youtube_fake().await;
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.platform_timeout_secs = 10;
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let client: Client = client(&app).await;
    let account = youtube_account(&app).await;
    let bytes = crate::media_li_yt::video(1920, 1080, 9 * 1024 * 1024);
    let total = bytes.len();
    let media = crate::post_media::upload(&app, &client.key, bytes.clone()).await;

    // The first worker sends every byte; the answer to the last chunk never comes.
    *fake.yt.hold_last.lock().unwrap() = true;
    let mut first = worker_process(&app, &base);
    let post = create(
        &app,
        &client,
        json!({"content": "Resumed, not repeated", "media": [{"id": media}], "targets": [{"account_id": account,
               "options": {"platform": "youtube", "title": "Resumed", "privacy": "unlisted"}}]}),
    )
    .await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fake.uploads.lock().unwrap().get("/yt-upload/session/0").map_or(0, Vec::len) < total {
        assert!(tokio::time::Instant::now() < deadline, "the upload never completed: {:?}", fake.calls.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The session is kept, sealed: its URI (and upload id) appear nowhere in the clear.
    let rows = checkpoint_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].1.starts_with("v1."), "sealed");
    assert!(crate::harness::tables_containing(&app.pool, "xa298sd_0").await.is_empty());
    first.kill().unwrap();
    first.wait().unwrap();

    // The next worker rescues the job, asks the session where it stands, and finds the video.
    *fake.yt.hold_last.lock().unwrap() = false;
    let mut second = worker_process(&app, &base);
    let done = wait_for(&app, &client, &post_id, &["published", "failed"], Duration::from_secs(60)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let delivery = &done["deliveries"][0];
    assert_eq!(delivery["status"], "published", "{done}");
    assert_eq!(delivery["platform_post_id"], "dQw4w9WgXc0");
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().filter(|call| call.starts_with("POST /videos")).count(), 1, "one session: {calls:?}");
    assert!(calls.contains(&format!("PUT bytes */{total}")), "the session was asked: {calls:?}");
    assert!(fake.uploads.lock().unwrap()["/yt-upload/session/0"] == bytes, "each byte sent once, in order");
    assert!(checkpoint_rows(&app).await.is_empty(), "the checkpoint is forgotten with the outcome");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_stored_checkpoints_seal_their_state_and_round_trip_through_any_process() {
    let db = TestDb::new().await;
    let config = test_config(&db);
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let keyring = Keyring::from_config(&app.config).unwrap();
    let reference = format!("{}:1", Uuid::now_v7());
    let state = r#"{"uri":"https://upload.example/session?upload_id=secret-session-42","total":9}"#;
    credentials::save_checkpoint(&app.pool, &keyring, &reference, "youtube", state).await.unwrap();
    assert!(crate::harness::tables_containing(&app.pool, "secret-session-42").await.is_empty());
    // Another keyring holding the same key (another process) reads it back; a replace keeps one row.
    let again = Keyring::from_config(&app.config).unwrap();
    assert_eq!(credentials::load_checkpoint(&app.pool, &again, &reference).await.unwrap().as_deref(), Some(state));
    credentials::save_checkpoint(&app.pool, &keyring, &reference, "youtube", "{}").await.unwrap();
    assert_eq!(credentials::load_checkpoint(&app.pool, &again, &reference).await.unwrap().as_deref(), Some("{}"));
    assert_eq!(checkpoint_rows(&app).await.len(), 1);
    // A checkpoint left behind by a delivery that ended without forgetting it goes with the prune.
    sqlx::query("UPDATE publish_checkpoints SET updated_at = now() - interval '9 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let pruned = credentials::prune_checkpoints(&app.pool, Utc::now() - chrono::Duration::days(8), 100).await.unwrap();
    assert_eq!(pruned, 1);
    credentials::forget_checkpoint(&app.pool, &reference).await.unwrap();
    assert_eq!(credentials::load_checkpoint(&app.pool, &keyring, &reference).await.unwrap(), None);
    // The in-memory store the adapter tests use behaves the same.
    let memory = crate::fixtures::MemoryCheckpoints::new();
    memory.save("r", "tiktok", "a").await.unwrap();
    memory.save("r", "tiktok", "b").await.unwrap();
    assert_eq!(memory.load("r").await.unwrap().as_deref(), Some("b"));
    memory.forget("r").await.unwrap();
    assert_eq!(memory.load("r").await.unwrap(), None);
    app.stop().await.unwrap();
}
