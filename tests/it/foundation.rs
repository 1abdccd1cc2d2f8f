//! The house: health, readiness, problems, request ids, graceful shutdown, configuration errors,
//! and the binary's own start and stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::harness::{TestApp, TestDb, herald_binary, test_config};

async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code);
    assert_eq!(body["request_id"], request_id.as_str());
    assert_eq!(body["type"], format!("https://herald.dev/problems/{code}"));
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn health_answers_ok() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": "ok" }));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn ready_when_the_database_answers_and_unready_when_it_is_gone() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    app.db.drop_now().await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    let body = problem(response, 503, "database_unreachable").await;
    assert!(!body.to_string().contains("herald_test_"), "no internals in the problem: {body}");
    // The api itself lives on.
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn readiness_can_require_a_live_worker() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.ready_requires_worker = true;
    let app = TestApp::spawn_without_worker(db, std::sync::Arc::new(config)).await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    problem(response, 503, "no_live_worker").await;

    let worker_config = app.config.clone();
    let shutdown = app.shutdown.clone();
    let worker = tokio::spawn(herald_worker::run(worker_config, shutdown));
    let mut status = 0;
    for _ in 0..200 {
        status = app.http.get(app.url("/readyz")).send().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200, "ready once a worker reports");
    app.stop().await.unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn unready_when_a_migration_is_missing() {
    let app = TestApp::spawn().await;
    app.wait_for_roles().await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    problem(response, 503, "migrations_missing").await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    let body = problem(app.http.get(app.url("/v1/nothing-here")).send().await.unwrap(), 404, "not_found").await;
    assert_eq!(body["detail"], "no resource at /v1/nothing-here");
    let response = app.http.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    problem(response, 405, "method_not_allowed").await;
    app.stop().await.unwrap();
}

#[derive(serde::Deserialize)]
struct Echo {
    #[allow(dead_code)]
    name: String,
}

fn json_route() -> Router<herald_api::AppState> {
    Router::new()
        .route("/test/echo", post(|herald_api::extract::ApiJson(_): herald_api::extract::ApiJson<Echo>| async { "ok" }))
}

#[tokio::test]
async fn bad_bodies_are_problems() {
    let app = TestApp::spawn_with(json_route()).await;
    let url = app.url("/test/echo");
    let malformed = app.http.post(&url).header("content-type", "application/json").body("{\"name\":").send().await;
    problem(malformed.unwrap(), 400, "bad_request").await;

    let wrong_shape = app.http.post(&url).json(&json!({ "name": 7 })).send().await.unwrap();
    let body = problem(wrong_shape, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "body");

    let not_json = app.http.post(&url).body("name=x").send().await.unwrap();
    problem(not_json, 415, "unsupported_media_type").await;

    let huge = json!({ "name": "x".repeat(app.config.max_body_bytes + 1) });
    problem(app.http.post(&url).json(&huge).send().await.unwrap(), 413, "payload_too_large").await;

    assert_eq!(app.http.post(&url).json(&json!({ "name": "x" })).send().await.unwrap().status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_lives_on() {
    async fn explode() -> &'static str {
        panic!("boom with a secret inside")
    }
    let extra = Router::new().route("/test/panic", get(explode));
    let app = TestApp::spawn_with(extra).await;
    let body = problem(app.http.get(app.url("/test/panic")).send().await.unwrap(), 500, "internal").await;
    assert!(!body.to_string().contains("secret"), "the panic message is not sent: {body}");
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_taken_or_made_and_always_echoed() {
    let app = TestApp::spawn().await;
    let given = app.http.get(app.url("/healthz")).header("x-request-id", "client-chosen-42").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "client-chosen-42");

    let made = app.http.get(app.url("/healthz")).send().await.unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");

    let unprintable = app.http.get(app.url("/nope")).header("x-request-id", "a b").send().await.unwrap();
    let replaced = unprintable.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(replaced, "a b");
    let body: Value = unprintable.json().await.unwrap();
    assert_eq!(body["request_id"], replaced.as_str());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = TestApp::spawn().await;
    app.http.get(app.url("/healthz")).send().await.unwrap();
    let page = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#), "{page}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_with_a_503_problem_at_once() {
    let extra = Router::new().route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "finished"
        }),
    );
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.max_in_flight = 2;
    let app = TestApp::spawn_on(db, std::sync::Arc::new(config), extra).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (app.http.clone(), app.url("/test/slow"));
            tokio::spawn(async move { http.get(url).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both slots are taken: the next request is refused at once, not queued.
    let started = std::time::Instant::now();
    let shed = app.http.get(app.url("/v1/keys")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1000), "shed at once, not after the slow ones");
    assert_eq!(shed.headers()["retry-after"], "1");
    problem(shed, 503, "overloaded").await;
    // The operations paths are never shed.
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().text().await.unwrap(), "finished");
    }
    // Once they end, requests are served again.
    assert_eq!(app.http.get(app.url("/v1/keys")).send().await.unwrap().status(), 401);
    let page = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("herald_requests_shed_total "), "{page}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_stops_accepting() {
    let extra = Router::new().route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            "finished"
        }),
    );
    let app = TestApp::spawn_with(extra).await;
    let in_flight = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/test/slow"));
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = app.addr;
    let stopped = tokio::spawn(app.stop());

    let response = in_flight.await.unwrap().expect("the request in flight is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    stopped.await.unwrap().expect("every role stops cleanly");
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.is_err(), "no longer accepting");
}

#[test]
fn a_bad_setting_stops_the_binary_with_its_name() {
    let output = Command::new(herald_binary())
        .arg("api")
        .env("HERALD_LISTEN", "not-an-address")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HERALD_LISTEN"), "{stderr}");

    let output =
        Command::new(herald_binary()).arg("api").env("HERALD_ENCRYPTION_KEY", "dG9vIHNob3J0").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HERALD_ENCRYPTION_KEY: expected 32 bytes, base64"), "{stderr}");
    assert!(!stderr.contains("dG9vIHNob3J0"), "the key is not echoed: {stderr}");
}

#[tokio::test]
async fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    let data_dir = std::env::temp_dir().join(format!("herald-bin-{}", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(herald_binary())
        .arg("dev")
        .env("DATABASE_URL", &db.url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_DATA_DIR", &data_dir)
        .env("HERALD_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, url) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let url = line.split("listening on ").nth(1).map(|rest| rest.split('"').next().unwrap().to_owned());
            lines.push(line);
            if let Some(url) = url {
                return (lines, url);
            }
        }
        panic!("the binary never said where it listens: {lines:?}");
    })
    .await
    .unwrap();
    assert!(lines.iter().any(|line| line.contains("generated one into the data directory")), "{lines:?}");
    assert!(data_dir.join("encryption.key").is_file());

    let response = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit on SIGTERM");
    std::fs::remove_dir_all(&data_dir).ok();
}
