//! `POST /v1/media/import`: media fetched by the import job from an in-test HTTP server on
//! 127.0.0.1 (so the app runs with `allow_private_networks`, except where the guard itself is
//! under test): an image, a 404, too large, an unsupported type, a redirect chain, and refused
//! addresses with the guard on (a literal refused by the route, a name that resolves to
//! loopback refused by the job's resolver, nothing reaching the server); and an import whose
//! worker dies on every attempt, which the scheduler's sweep ends `failed`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use herald_shared::commands::keys::{self, KeyRequest};
use herald_shared::events::EventMetadata;

use crate::abandoned::die_on_every_attempt;
use crate::connect::{Client, client};
use crate::harness::{TestApp, TestDb, test_config};

/// A 1x1 PNG.
const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(PNG_1X1).unwrap()
}

/// The largest image the test app takes.
const IMAGE_LIMIT: u64 = 4096;

/// The files the import fetches, counting every request.
struct MediaServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl MediaServer {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/image.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], png()) }))
            .route(
                "/big.png",
                get(|| async {
                    let mut body = png();
                    body.resize(IMAGE_LIMIT as usize * 4, 0);
                    body
                }),
            )
            .route(
                "/page.html",
                get(|| async { ([(header::CONTENT_TYPE, "image/png")], "<html><body>hi</body></html>") }),
            )
            .route("/broken", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route("/r/{n}", get(redirect))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), count));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn count(
    State(hits): State<Arc<AtomicUsize>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// `/r/{n}` redirects to `/r/{n-1}`; `/r/0` to the image.
async fn redirect(Path(n): Path<u32>) -> Response {
    if n == 0 {
        Redirect::to("/image.png").into_response()
    } else {
        Redirect::to(&format!("/r/{}", n - 1)).into_response()
    }
}

/// The app, with private networks allowed or not, small image limits, and a key.
async fn app(allow_private_networks: bool) -> (TestApp, Client) {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.allow_private_networks = allow_private_networks;
    config.media.max_image_bytes = IMAGE_LIMIT;
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;
    (app, client)
}

async fn import(app: &TestApp, client: &Client, url: &str) -> reqwest::Response {
    client
        .http
        .post(app.url("/v1/media/import"))
        .bearer_auth(&client.key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap()
}

/// Imports `url` (expecting the 202) and waits until the item is no longer `importing`.
async fn imported(app: &TestApp, client: &Client, url: &str) -> Value {
    let response = import(app, client, url).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let item: Value = response.json().await.unwrap();
    assert_eq!(item["status"], "importing", "{item}");
    let id = item["id"].as_str().unwrap().to_owned();
    for _ in 0..400 {
        let item: Value = client
            .http
            .get(app.url(&format!("/v1/media/{id}")))
            .bearer_auth(&client.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if item["status"] != "importing" {
            return item;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import of {url} did not finish");
}

#[tokio::test]
async fn an_image_is_imported_and_failures_name_their_reason() {
    let (app, client) = app(true).await;
    let server = MediaServer::start().await;

    let item = imported(&app, &client, &server.url("/image.png")).await;
    assert_eq!(item["status"], "ready", "{item}");
    assert_eq!(item["kind"], "image");
    assert_eq!(item["content_type"], "image/png");
    assert_eq!(item["size_bytes"], png().len());
    assert_eq!(item["width"], 1);
    assert_eq!(item["height"], 1);
    assert_eq!(item["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(png())));

    let missing = imported(&app, &client, &server.url("/missing.png")).await;
    assert_eq!(missing["status"], "failed");
    assert!(missing["failure_reason"].as_str().unwrap().contains("404"), "{missing}");

    let big = imported(&app, &client, &server.url("/big.png")).await;
    assert_eq!(big["status"], "failed");
    assert!(big["failure_reason"].as_str().unwrap().contains(&format!("limit of {IMAGE_LIMIT} bytes")), "{big}");

    // The header says image/png; the bytes are HTML.
    let page = imported(&app, &client, &server.url("/page.html")).await;
    assert_eq!(page["status"], "failed");
    assert!(page["failure_reason"].as_str().unwrap().contains("unsupported"), "{page}");

    // A failed import leaves no object behind.
    let ready_objects: i64 =
        sqlx::query_scalar("SELECT count(*) FROM media WHERE status = 'ready'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(ready_objects, 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn redirects_are_followed_up_to_five() {
    let (app, client) = app(true).await;
    let server = MediaServer::start().await;
    let item = imported(&app, &client, &server.url("/r/4")).await;
    assert_eq!(item["status"], "ready", "{item}");
    assert_eq!(item["source_url"], server.url("/r/4"));
    let too_many = imported(&app, &client, &server.url("/r/5")).await;
    assert_eq!(too_many["status"], "failed");
    assert!(too_many["failure_reason"].as_str().unwrap().contains("redirects"), "{too_many}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_error_retries_then_fails() {
    let (app, client) = app(true).await;
    let server = MediaServer::start().await;
    let item = imported(&app, &client, &server.url("/broken")).await;
    assert_eq!(item["status"], "failed");
    assert!(item["failure_reason"].as_str().unwrap().contains("503"), "{item}");
    assert_eq!(server.hits(), 4, "every attempt of the job fetched once");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_guard_refuses_loopback_unless_private_networks_are_allowed() {
    let (app, client) = app(false).await;
    let server = MediaServer::start().await;
    let port = server.addr.port();
    // Literals are refused by the route, before anything is recorded.
    for url in [
        format!("http://127.0.0.1:{port}/image.png"),
        format!("http://127.0.0.2:{port}/image.png"),
        format!("http://[::1]:{port}/image.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/image.png"),
        format!("http://0.0.0.0:{port}/image.png"),
    ] {
        let response = import(&app, &client, &url).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["errors"][0]["field"], "url");
        assert!(problem["errors"][0]["message"].as_str().unwrap().starts_with("refused: the address is"), "{problem}");
    }
    // A name is judged when the job resolves it.
    let item = imported(&app, &client, &format!("http://localhost:{port}/image.png")).await;
    assert_eq!(item["status"], "failed");
    assert_eq!(item["failure_reason"], "refused: the address is loopback");
    assert_eq!(server.hits(), 0, "nothing reached the server");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_urls_are_422_problems() {
    let (app, client) = app(true).await;
    let long = format!("https://example.com/{}", "a".repeat(2048));
    for url in ["ftp://example.com/a.png", "https://user:secret@example.com/a.png", "not a url", long.as_str()] {
        let response = import(&app, &client, url).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed");
        assert!(!problem.to_string().contains("secret"), "the password is not echoed: {problem}");
    }
    let unknown = client
        .http
        .post(app.url("/v1/media/import"))
        .bearer_auth(&client.key)
        .json(&json!({ "url": "https://example.com/a.png", "extra": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Importing needs `media:upload`.
    let (project_id, _, _) = keys::create_project(&app.pool, "Readers", &EventMetadata::default()).await.unwrap();
    let reader = KeyRequest { scopes: vec!["media:read".into()], ..KeyRequest::admin("reader") };
    let (_, secret) = keys::create_key(&app.pool, project_id, reader, 10, &EventMetadata::default()).await.unwrap();
    let refused = client
        .http
        .post(app.url("/v1/media/import"))
        .bearer_auth(keys::reveal(&secret))
        .json(&json!({ "url": "https://example.com/a.png" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM media").fetch_one(&app.pool).await.unwrap();
    assert_eq!(recorded, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_import_whose_worker_dies_on_every_attempt_ends_failed_as_abandoned() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    config.allow_private_networks = true;
    // The api and the scheduler only: the test plays the workers, which die every time (so the
    // URL is never fetched).
    let app = TestApp::spawn_without_worker(db, Arc::new(config)).await;
    let client = client(&app).await;
    let response = import(&app, &client, "http://127.0.0.1:9/never-fetched.png").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let item: Value = response.json().await.unwrap();
    let id = item["id"].as_str().unwrap().to_owned();

    let attempts = die_on_every_attempt(&app, &[("media", "media.import")], async || {}).await;
    assert_eq!(attempts, 4, "every attempt of the import job was lost");
    let (state, error): (String, String) =
        sqlx::query_as("SELECT state, last_error FROM finished_jobs WHERE kind = 'media.import'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), error.as_str()), ("failed", "lease expired on the last attempt"));
    let get = || async {
        let response =
            client.http.get(app.url(&format!("/v1/media/{id}"))).bearer_auth(&client.key).send().await.unwrap();
        response.json::<Value>().await.unwrap()
    };

    // The sweep (the scheduler's, called here rather than waited for; whichever runs first ends
    // it, once) fails the item with the job's ending as the reason.
    herald_shared::commands::abandoned::end_abandoned(&app.pool, Duration::ZERO, 100).await.unwrap();
    let item = get().await;
    assert_eq!(item["status"], "failed", "{item}");
    let reason = item["failure_reason"].as_str().unwrap();
    assert!(reason.starts_with("import_abandoned: "), "{reason}");
    assert!(reason.contains("after 4 attempt(s): lease expired on the last attempt"), "{reason}");
    assert!(item["url"].is_null() && item["sha256"].is_null(), "a failed item has no object: {item}");
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'media.import_failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failed, 1, "ended once");

    // Another sweep (a second scheduler) finds nothing left to end.
    let again = herald_shared::commands::abandoned::end_abandoned(&app.pool, Duration::ZERO, 100).await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
    app.stop().await.unwrap();
}
