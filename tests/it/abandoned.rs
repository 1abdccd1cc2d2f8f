//! Jobs that end without writing their outcome: a publish job (or a connect exchange) whose
//! worker dies on every attempt, so its lease runs out on the last one. The scheduler ends what
//! it left half-way, with the job's last error as the reason and an event in the feed. (The media
//! import's version is in `media_import.rs`.)

use std::sync::Arc;
use std::time::Duration;

use herald_shared::commands::execute;
use herald_shared::domain::post::{Command, Post};
use herald_shared::events::EventMetadata;
use herald_shared::queue::{self, maintenance};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::connect::{authorize, client, get_json};
use crate::harness::{TestApp, TestDb, test_config};

/// A connected sandbox account of the key's project, recorded as the exchange job would.
pub async fn sandbox_account(app: &TestApp) -> Uuid {
    let project_id: Uuid = sqlx::query_scalar("SELECT id FROM projects LIMIT 1").fetch_one(&app.pool).await.unwrap();
    crate::fixtures::connected_account(app, project_id, "sandbox", "person-ada", None).await
}

/// Plays a worker that claims every due job of `queues` and dies before reporting, until no
/// job is left: each lease runs out and is rescued, the last time as failed. `on_first_claim`
/// runs once, after the first claim (what the job got done before its worker died).
pub async fn die_on_every_attempt(app: &TestApp, queues: &[(&str, &str)], on_first_claim: impl AsyncFnOnce()) -> usize {
    let mut first = Some(on_first_claim);
    let mut attempts = 0;
    for _ in 0..50 {
        let worker = Uuid::now_v7();
        for (queue, kind) in queues {
            let kinds = vec![(*kind).to_owned()];
            let claimed = queue::claim(&app.pool, worker, queue, &kinds, 10, Duration::from_millis(1)).await.unwrap();
            attempts += claimed.len();
        }
        if let Some(first) = first.take() {
            first().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        maintenance::rescue_expired(&app.pool, 100).await.unwrap();
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind <> 'maintenance.prune'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if live == 0 {
            return attempts;
        }
    }
    panic!("jobs were still live after 50 deaths");
}

/// Waits until `path`'s JSON satisfies `done`; returns it.
async fn wait_until(app: &TestApp, key: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value: Value = http.get(app.url(path)).bearer_auth(key).send().await.unwrap().json().await.unwrap();
        if done(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never got there: {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn jobs_that_lose_their_lease_on_every_attempt_leave_their_subjects_ended_with_a_reason() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.platform_timeout_secs = 1;
    // The api and the scheduler only: the test plays the workers, which die every time.
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let client = client(&app).await;
    let account = sandbox_account(&app).await;
    let create = |content: &str| {
        let body = json!({"content": content, "targets": [{"account_id": account}]});
        client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send()
    };
    let started = create("started, then lost").await.unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Value = started.json().await.unwrap();
    let never: Value = create("lost before it started").await.unwrap().json().await.unwrap();
    let started_id: Uuid = started["id"].as_str().unwrap().parse().unwrap();
    let started_delivery: Uuid = started["deliveries"][0]["id"].as_str().unwrap().parse().unwrap();
    // A connect whose exchange job will die too: the callback queued it and answers `pending`.
    let (session_id, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();

    let attempts =
        die_on_every_attempt(&app, &[("publish", "delivery.publish"), ("connect", "connect.exchange")], async || {
            // The first attempt of one post got as far as `publishing` (committed before the
            // platform call) before its worker died.
            let start = Command::StartPublishing { delivery_id: started_delivery, generation: 1 };
            let mut tx = app.pool.begin().await.unwrap();
            execute::<Post>(&mut tx, started_id, start, &EventMetadata::default()).await.unwrap();
            tx.commit().await.unwrap();
        })
        .await;
    assert_eq!(attempts, 5 + 5 + 5, "every attempt of the three jobs was lost");
    let failed: Vec<(String, String)> =
        sqlx::query_as("SELECT state, last_error FROM finished_jobs WHERE kind <> 'maintenance.prune'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|(state, error)| state == "failed" && error.contains("lease expired")), "{failed:?}");

    // The scheduler ends each: unknown if it had started, failed if not, with the reason.
    let settled = |post: &Value| !matches!(post["deliveries"][0]["status"].as_str(), Some("queued" | "publishing"));
    let path = format!("/v1/posts/{started_id}");
    let started = wait_until(&app, &client.key, &path, settled).await;
    let delivery = &started["deliveries"][0];
    assert_eq!(delivery["status"], "unknown", "{started}");
    assert_eq!(delivery["last_error"]["code"], "outcome_unknown");
    let message = delivery["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("lease expired on the last attempt") && message.contains("force"), "{message}");
    assert_eq!(started["status"], "failed");

    let path = format!("/v1/posts/{}", never["id"].as_str().unwrap());
    let never = wait_until(&app, &client.key, &path, settled).await;
    let delivery = &never["deliveries"][0];
    assert_eq!(delivery["status"], "failed", "{never}");
    assert_eq!(delivery["last_error"]["code"], "job_failed");
    assert!(delivery["last_error"]["message"].as_str().unwrap().contains("lease expired"), "{never}");

    let path = format!("/v1/connect/sessions/{session_id}");
    let session = wait_until(&app, &client.key, &path, |session| session["status"] != "pending").await;
    assert_eq!(session["status"], "failed", "{session}");
    assert!(session["error"].as_str().unwrap().contains("lease expired"), "{session}");
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM connect_session_secrets WHERE session_id = $1")
        .bind(session_id.parse::<Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(secrets, 0, "the abandoned session's code and verifier are forgotten");

    // The customer is told: the events are in the feed.
    let horizon = herald_shared::events::reader::wait_for_horizon(&app.pool, Duration::from_secs(30));
    assert!(horizon.await.unwrap(), "the feed caught up");
    let feed = get_json(&app, &client, "/v1/events?types=delivery.unknown,delivery.failed,connect.failed").await;
    let mut types: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, ["connect.failed", "delivery.failed", "delivery.unknown"]);

    // Another sweep (a second scheduler) finds nothing left to end.
    let again = herald_shared::commands::abandoned::end_abandoned(&app.pool, Duration::ZERO, 100).await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");

    // The one that never started can simply be retried; nothing was ever sent.
    let retried = client
        .http
        .post(app.url(&format!("/v1/posts/{}/retry", never["id"].as_str().unwrap())))
        .bearer_auth(&client.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sandbox_posts").fetch_one(&app.pool).await.unwrap();
    assert_eq!(sent, 0);
    app.stop().await.unwrap();
}
