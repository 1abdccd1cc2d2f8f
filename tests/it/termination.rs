//! Graceful termination, as Kubernetes does it: SIGTERM, then the grace period. A `herald
//! worker` given SIGTERM stops claiming, lets a publish that ends within its grace period
//! finish, gives back the one that does not (at once, not after its lease), and exits within
//! the grace period. The publish it gave back mid-call is looked up by the next worker, so each
//! post is published once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::connect::{accounts, authorize, client};
use crate::harness::{TestApp, TestDb, test_config, worker_command};
use crate::posts::{create, made, wait_for};

/// The worker's grace period, and the lease (long, so only a release explains a prompt retry).
const GRACE_SECS: u64 = 2;
const LEASE_SECS: &str = "60";

fn worker(app: &TestApp) -> std::process::Child {
    worker_command(app)
        .env("HERALD_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
        .env("HERALD_QUEUE__LEASE_SECS", LEASE_SECS)
        // A rescued publish waits this long after the attempt it follows began, then looks up.
        .env("HERALD_PLATFORM_TIMEOUT_SECS", "8")
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_worker_given_sigterm_finishes_or_gives_back_its_jobs_within_the_grace_period() {
    let db = TestDb::new().await;
    let config = test_config(&db);
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let mut first = worker(&app);
    let client = client(&app).await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let account = loop {
        if let Some(account) = accounts(&app, &client).await.first() {
            break account["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the account never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let quick = "[fail:slow:1000] finishes within the grace period";
    let long = "[fail:slow:5000] outlasts the grace period";
    let quick_post = create(&app, &client, json!({"content": quick, "targets": [{"account_id": account}]})).await;
    let long_post = create(&app, &client, json!({"content": long, "targets": [{"account_id": account}]})).await;
    let (quick_id, long_id) = (quick_post["id"].as_str().unwrap(), long_post["id"].as_str().unwrap());
    wait_for(&app, &client, quick_id, &["publishing"], Duration::from_secs(10)).await;
    wait_for(&app, &client, long_id, &["publishing"], Duration::from_secs(10)).await;

    let terminated = Instant::now();
    let status = std::process::Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(status.success());
    // Waited for without blocking: this test's runtime also serves the sandbox the worker calls.
    let exit = loop {
        if let Some(exit) = first.try_wait().unwrap() {
            break exit;
        }
        assert!(terminated.elapsed() < Duration::from_secs(30), "the worker did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = terminated.elapsed();
    assert!(exit.success(), "the worker exited {exit}");
    assert!(took < Duration::from_secs(GRACE_SECS + 2), "the worker took {took:?} to stop");

    // The quick one finished before the worker left; the long one is back in the queue, free.
    let quick_done = wait_for(&app, &client, quick_id, &["published"], Duration::from_secs(1)).await;
    assert_eq!(quick_done["status"], "published");
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'running'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(held, 0, "the worker left a job leased");
    let given_back: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'delivery.publish' AND state = 'available' AND attempt = 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(given_back, 1, "the long publish was given back with its attempt spent");

    // The next worker takes it at once (the lease was 60 s), looks it up, and it is published once.
    let mut second = worker(&app);
    let long_done = wait_for(&app, &client, long_id, &["published", "failed"], Duration::from_secs(40)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(long_done["status"], "published", "{long_done}");
    assert_eq!(made(&app, quick).await, 1);
    assert_eq!(made(&app, long).await, 1);
    app.stop().await.unwrap();
}
