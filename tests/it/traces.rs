//! One trace from the request that creates a post to the platform's answer: `herald api` and
//! `herald worker` processes export over OTLP/HTTP to a receiver here that decodes the protobuf
//! they send. The api's request span, the worker's job span (continuing the trace context the
//! job stored), the platform call (with the platform's request id and the delivery, account and
//! post ids) and the outcome's event append share one trace id; no token, key or content is
//! anywhere in what was exported.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Json, Router};
use herald_shared::crypto::Keyring;
use herald_shared::events::EventMetadata;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestDb, connected_account, free_port, herald_binary};

const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PLATFORM_REQUEST_ID: &str = "fake-platform-request-7";

/// Every export body received.
type Received = Arc<Mutex<Vec<Bytes>>>;

async fn start_receiver() -> (String, Received) {
    let received = Received::default();
    let router = Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(|State(received): State<Received>, body: Bytes| async move {
                received.lock().unwrap().push(body);
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

/// The sandbox platform's API as herald calls it, answering with a request id.
async fn start_platform() -> String {
    let router = Router::new().route(
        "/api/posts",
        axum::routing::post(|| async {
            let id = Uuid::now_v7();
            (
                axum::http::StatusCode::CREATED,
                [("x-request-id", PLATFORM_REQUEST_ID)],
                Json(json!({"id": id, "url": format!("https://fake.example/{id}")})),
            )
                .into_response()
        })
        .get(|| async { Json(json!({"data": []})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn role(role: &str, db: &TestDb, listen: u16, platform: &str, receiver: &str) -> Child {
    Command::new(herald_binary())
        .arg(role)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("HERALD_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("HERALD_LISTEN", format!("127.0.0.1:{listen}"))
        .env("HERALD_OPS_LISTEN", "127.0.0.1:0")
        .env("HERALD_PLATFORMS__SANDBOX__API_URL", format!("{platform}/api"))
        .env("HERALD_QUEUE__POLL_INTERVAL_MS", "100")
        .env("HERALD_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start herald")
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
        match attribute.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(value) => Some(value.clone()),
            AnyValue::IntValue(value) => Some(value.to_string()),
            AnyValue::BoolValue(value) => Some(value.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

fn spans(received: &Received) -> Vec<Span> {
    let bodies = received.lock().unwrap().clone();
    bodies
        .iter()
        .flat_map(|body| {
            ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf export").resource_spans
        })
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .collect()
}

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_job_to_the_platform_and_the_outcome() {
    let db = TestDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (project_id, _, secret) =
        herald_shared::commands::keys::create_project(&pool, "traced", &EventMetadata::default()).await.unwrap();
    let key = herald_shared::commands::keys::reveal(&secret).to_owned();
    let token = format!("trace-secret-token-{}", Uuid::now_v7().simple());
    let mut keyring = Keyring::default();
    keyring.push_base64(ENCRYPTION_KEY).unwrap();
    let account = connected_account(&pool, &keyring, project_id, "sandbox", "person-traced", "person", &token).await;
    let (receiver, received) = start_receiver().await;
    let platform = start_platform().await;
    let port = free_port();
    let mut api = role("api", &db, port, &platform, &receiver);
    let mut worker = role("worker", &db, free_port(), &platform, &receiver);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(tokio::time::Instant::now() < deadline, "the api never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let content = format!("a traced post {}", Uuid::now_v7().simple());
    let created: Value = http
        .post(format!("{base}/v1/posts"))
        .bearer_auth(&key)
        .json(&json!({"content": content, "targets": [{"account_id": account}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post_id = created["id"].as_str().expect("a post").to_owned();
    let delivery_id = created["deliveries"][0]["id"].as_str().unwrap().to_owned();
    loop {
        let post: Value = http
            .get(format!("{base}/v1/posts/{post_id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if post["status"] == "published" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never published: {post}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Wait for both processes' spans of this post.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (request, call) = loop {
        let all = spans(&received);
        let request = all.iter().find(|span| {
            span.name == "request"
                && attribute(span, "path").as_deref() == Some("/v1/posts")
                && attribute(span, "method").as_deref() == Some("POST")
        });
        let call = all
            .iter()
            .find(|span| span.name == "platform.call" && attribute(span, "post_id").as_deref() == Some(&post_id));
        if let (Some(request), Some(call)) = (request, call) {
            break (request.clone(), call.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "spans: {:?}", all.iter().map(|s| &s.name).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    api.kill().unwrap();
    worker.kill().unwrap();
    let _ = (api.wait(), worker.wait());

    assert_eq!(call.trace_id, request.trace_id, "the platform call continues the request's trace");
    assert_eq!(attribute(&call, "platform").as_deref(), Some("sandbox"));
    assert_eq!(attribute(&call, "call").as_deref(), Some("publish"));
    assert_eq!(attribute(&call, "delivery_id"), Some(delivery_id));
    assert_eq!(attribute(&call, "account_id"), Some(account.to_string()));
    assert_eq!(attribute(&call, "outcome").as_deref(), Some("published"));
    assert_eq!(attribute(&call, "platform_request_id").as_deref(), Some(PLATFORM_REQUEST_ID));
    let all = spans(&received);
    let in_trace: Vec<&Span> = all.iter().filter(|span| span.trace_id == request.trace_id).collect();
    let job = in_trace.iter().find(|span| span.name == "job").expect("the worker's job span is in the trace");
    assert_eq!(attribute(job, "job.kind").as_deref(), Some("delivery.publish"));
    assert_eq!(call.parent_span_id, job.span_id, "the platform call runs inside the job");
    assert!(
        in_trace.iter().any(|span| span.name == "event.append" && span.parent_span_id == job.span_id),
        "the outcome"
    );

    // Nothing secret, and not the content, went out.
    let bodies = received.lock().unwrap().clone();
    let exported: Vec<u8> = bodies.iter().flat_map(|body| body.to_vec()).collect();
    let contains = |needle: &str| exported.windows(needle.len()).any(|window| window == needle.as_bytes());
    assert!(!contains(&token), "a token was exported");
    assert!(!contains(&key), "the API key was exported");
    assert!(!contains(&content), "the post's content was exported");
    pool.close().await;
}
