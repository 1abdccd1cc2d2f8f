//! The OpenAPI document, as contract fuzzers read it: every rejection a route answers is a
//! problem (`application/problem+json`, a stable `code`) that its operation lists.

use herald_shared::events::EventMetadata;
use herald_shared::keys;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::TestApp;

fn document() -> Value {
    serde_json::to_value(&*herald_api::openapi::DOCUMENT).unwrap()
}

/// axum's own extractors answer their rejections in plain text: the api's handlers take their
/// input through `herald_api::extract` (`ApiPath`, `ApiQuery`, `ApiForm`, `ApiJson`) instead.
#[test]
fn handlers_read_their_input_through_extractors_that_answer_problems() {
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/src");
    let mut files = Vec::new();
    let mut folders = vec![sources.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") && !path.ends_with("extract.rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    let plain = |text: &str, token: &str| {
        text.match_indices(token).any(|(at, _)| {
            text[..at].chars().next_back().is_none_or(|before| !(before.is_alphanumeric() || before == '_'))
        })
    };
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for token in ["Path<", "Query<", "Form<", "Path(", "Query(", "Form("] {
            assert!(!plain(&text, token), "{} extracts with axum's {token}", file.display());
        }
        for token in [": Json<", ": axum::Json<"] {
            assert!(!text.contains(token), "{} extracts with axum's Json", file.display());
        }
    }
}

fn form(request: reqwest::RequestBuilder, body: String) -> reqwest::RequestBuilder {
    request.header("content-type", "application/x-www-form-urlencoded").body(body)
}

/// Whether the document lists `status` for `method path` with a problem body.
fn lists_problem(document: &Value, method: &str, path: &str, status: StatusCode) -> bool {
    let mut response = &document["paths"][path][method]["responses"][status.as_str()];
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        response = document.pointer(reference.strip_prefix('#').unwrap()).unwrap();
    }
    response["content"].get("application/problem+json").is_some()
}

#[tokio::test]
async fn every_rejection_is_a_problem_its_operation_lists() {
    let app = TestApp::spawn().await;
    let (_, _, secret) = keys::create_project(&app.pool, "Acme", &EventMetadata::default()).await.unwrap();
    let key = keys::reveal(&secret).to_owned();
    let document = document();
    let huge = "x".repeat(app.config.max_body_bytes + 1);
    let post = Value::Null;
    let http = &app.http;
    let url = |path: &str| app.url(path);

    // (method and template as documented, the request, the status and code it must answer)
    let cases: Vec<(&str, &str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        // Path parameters that do not parse, on the api and on the sandbox.
        (
            "get",
            "/v1/connect/sessions/{id}",
            http.get(url("/v1/connect/sessions/not-a-uuid")).bearer_auth(&key),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "get",
            "/v1/posts/{id}",
            http.get(url("/v1/posts/%FF")).bearer_auth(&key),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("get", "/sandbox/posts/{id}", http.get(url("/sandbox/posts/12")), StatusCode::BAD_REQUEST, "bad_request"),
        // An empty path parameter matches no route.
        ("get", "/sandbox/posts/{id}", http.get(url("/sandbox/posts/")), StatusCode::NOT_FOUND, "not_found"),
        // Query strings: unreadable, against the rules, missing what is required, repeated.
        (
            "get",
            "/v1/keys",
            http.get(url("/v1/keys?limit=many")).bearer_auth(&key),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "get",
            "/v1/keys",
            http.get(url("/v1/keys?limit=0")).bearer_auth(&key),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        ("get", "/sandbox/api/posts", http.get(url("/sandbox/api/posts")), StatusCode::BAD_REQUEST, "bad_request"),
        (
            "get",
            "/v1/connect/{platform}/callback",
            http.get(url("/v1/connect/sandbox/callback?state=a&state=b")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // JSON bodies: another content type, not JSON, the wrong shape, too large.
        (
            "post",
            "/v1/keys",
            http.post(url("/v1/keys")).bearer_auth(&key).body("name=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/v1/keys",
            http.post(url("/v1/keys")).bearer_auth(&key).header("content-type", "application/json").body("{"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "post",
            "/v1/keys",
            http.post(url("/v1/keys")).bearer_auth(&key).json(&json!({ "name": 1 })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "post",
            "/v1/keys",
            http.post(url("/v1/keys")).bearer_auth(&key).json(&json!({ "name": huge })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "post",
            "/sandbox/api/posts",
            http.post(url("/sandbox/api/posts")).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/sandbox/api/posts",
            http.post(url("/sandbox/api/posts")).json(&post),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        // Forms: another content type, the wrong shape, too large.
        (
            "post",
            "/sandbox/oauth/token",
            http.post(url("/sandbox/oauth/token")).json(&json!({ "grant_type": "refresh_token" })),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/sandbox/oauth/token",
            form(http.post(url("/sandbox/oauth/token")), "code=x".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "post",
            "/sandbox/oauth/revoke",
            form(http.post(url("/sandbox/oauth/revoke")), format!("token={huge}")),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        // `Idempotency-Key`: malformed, and the body it hashes on a write that reads none.
        (
            "post",
            "/v1/posts/{id}/approve",
            http.post(url(&format!("/v1/posts/{}/approve", uuid::Uuid::new_v4())))
                .bearer_auth(&key)
                .header("idempotency-key", "k".repeat(300)),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "delete",
            "/v1/posts/{id}",
            http.delete(url(&format!("/v1/posts/{}", uuid::Uuid::new_v4())))
                .bearer_auth(&key)
                .header("idempotency-key", "once")
                .body(huge.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (method, template, request, status, code) in cases {
        let response = request.send().await.unwrap();
        let url = response.url().to_string();
        assert_eq!(response.status(), status, "{method} {url}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{method} {url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {url}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{method} {url}: {body}");
        assert!(lists_problem(&document, method, template, status), "{method} {template} does not list its {status}");
    }
    app.stop().await.unwrap();
}
