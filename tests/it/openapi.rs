//! The OpenAPI document, as client generators and contract fuzzers read it: valid OpenAPI 3.1,
//! one unique and stable id and a description for every operation, and every rejection a route
//! answers is a problem (`application/problem+json`, a stable `code`) that its operation lists.

use std::collections::HashSet;

use herald_shared::commands::keys;
use herald_shared::events::EventMetadata;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::TestApp;

/// The official OpenAPI 3.1 schema (`https://spec.openapis.org/oas/3.1/schema/2022-10-07`,
/// Apache-2.0, as the `openapi-spec-validator` package ships it), vendored so the test runs
/// offline.
const OPENAPI_31_SCHEMA: &str = include_str!("openapi-3.1-schema.json");

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::to_value(&*herald_api::openapi::DOCUMENT).unwrap()
}

/// Every operation: (method, path template, operation).
fn operations(document: &Value) -> Vec<(&str, &str, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                operations.push((method.as_str(), path.as_str(), operation));
            }
        }
    }
    operations
}

/// Calls `visit` on every object and array element under `value`.
fn walk<'a>(value: &'a Value, visit: &mut impl FnMut(&'a Value)) {
    visit(value);
    match value {
        Value::Object(map) => map.values().for_each(|child| walk(child, visit)),
        Value::Array(items) => items.iter().for_each(|child| walk(child, visit)),
        _ => {}
    }
}

#[test]
fn the_document_validates_against_the_openapi_3_1_schema() {
    let schema: Value = serde_json::from_str(OPENAPI_31_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let document = document();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."), "{}", document["openapi"]);
    let errors: Vec<String> =
        validator.iter_errors(&document).map(|error| format!("{}: {error}", error.instance_path())).collect();
    assert!(errors.is_empty(), "the document is not valid OpenAPI 3.1:\n{}", errors.join("\n"));

    // The validator does refuse what OpenAPI forbids.
    let mut broken = document.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["ok"] = json!({ "description": "not a status" });
    assert!(!validator.is_valid(&broken), "a response keyed by something other than a status passed");
    let mut broken = document.clone();
    broken["info"] = json!("herald");
    assert!(!validator.is_valid(&broken), "an info that is not an object passed");

    // The 3.1 schema leaves Schema Objects to their dialect, JSON Schema 2020-12: check each.
    let mut schemas = Vec::new();
    walk(&document["paths"], &mut |value| {
        if let Some(schema) = value.get("schema").filter(|schema| schema.is_object()) {
            schemas.push(schema);
        }
    });
    schemas.extend(document["components"]["schemas"].as_object().unwrap().values());
    assert!(schemas.len() > 20, "{}", schemas.len());
    for schema in schemas {
        if let Err(error) = jsonschema::draft202012::meta::validate(schema) {
            panic!("not a JSON Schema 2020-12 schema ({error}): {schema}");
        }
    }

    // Every reference points at something in the document.
    walk(&document, &mut |value| {
        if let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} leaves the document"));
            assert!(document.pointer(pointer).is_some(), "{reference} points at nothing");
        }
    });
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

/// Operation ids clients have been generated with: renaming one breaks every generated client,
/// so each must stay on its operation. A new operation adds its id here once published.
const PUBLISHED_IDS: &[(&str, &str, &str)] = &[
    ("get", "/v1/keys", "listKeys"),
    ("post", "/v1/keys", "createKey"),
    ("get", "/v1/keys/{id}", "getKey"),
    ("delete", "/v1/keys/{id}", "revokeKey"),
    ("get", "/v1/events", "listEvents"),
    ("post", "/v1/connect/{platform}", "startConnectSession"),
    ("get", "/v1/connect/{platform}/callback", "completeConnectSession"),
    ("get", "/v1/connect/sessions/{id}", "getConnectSession"),
    ("get", "/v1/accounts", "listAccounts"),
    ("get", "/v1/accounts/{id}", "getAccount"),
    ("patch", "/v1/accounts/{id}", "updateAccount"),
    ("post", "/v1/accounts/{id}/disconnect", "disconnectAccount"),
    ("post", "/v1/accounts/{id}/refresh", "refreshAccount"),
    ("get", "/v1/apps", "listApps"),
    ("post", "/v1/apps", "createApp"),
    ("get", "/v1/apps/{id}", "getApp"),
    ("patch", "/v1/apps/{id}", "updateApp"),
    ("delete", "/v1/apps/{id}", "deleteApp"),
    ("get", "/v1/posts", "listPosts"),
    ("post", "/v1/posts", "createPost"),
    ("get", "/v1/posts/{id}", "getPost"),
    ("patch", "/v1/posts/{id}", "updatePost"),
    ("delete", "/v1/posts/{id}", "cancelPost"),
    ("post", "/v1/posts/{id}/approve", "approvePost"),
    ("post", "/v1/posts/{id}/publish", "publishPost"),
    ("post", "/v1/posts/{id}/retry", "retryPost"),
    ("get", "/v1/posts/{id}/results", "getPostResults"),
    ("post", "/v1/media", "uploadMedia"),
    ("get", "/v1/media", "listMedia"),
    ("get", "/v1/media/{id}", "getMedia"),
    ("delete", "/v1/media/{id}", "deleteMedia"),
    ("post", "/v1/media/uploads", "createMediaUpload"),
    ("put", "/v1/media/uploads/{id}/parts/{n}", "putMediaUploadPart"),
    ("post", "/v1/media/uploads/{id}/complete", "completeMediaUpload"),
    ("delete", "/v1/media/uploads/{id}", "abortMediaUpload"),
    ("get", "/media/{id}", "getMediaContent"),
    ("get", "/v1/openapi.json", "getOpenApiDocument"),
    ("get", "/docs", "getApiReference"),
    ("get", "/docs/scalar.js", "getApiReferenceRenderer"),
    ("get", "/healthz", "getHealth"),
    ("get", "/readyz", "getReadiness"),
    ("get", "/metrics", "getMetrics"),
    ("get", "/sandbox/oauth/authorize", "authorizeSandboxApp"),
    ("post", "/sandbox/oauth/token", "issueSandboxToken"),
    ("post", "/sandbox/oauth/revoke", "revokeSandboxToken"),
    ("get", "/sandbox/api/accounts", "listSandboxAccounts"),
    ("post", "/sandbox/api/posts", "publishSandboxPost"),
    ("get", "/sandbox/api/posts", "findSandboxPosts"),
    ("get", "/sandbox/posts/{id}", "getSandboxPost"),
];

#[test]
fn every_operation_has_a_unique_stable_id_a_summary_and_a_description() {
    let document = document();
    let mut seen = HashSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        let camel_case =
            id.starts_with(|c: char| c.is_ascii_lowercase()) && id.chars().all(|c| c.is_ascii_alphanumeric());
        assert!(camel_case, "{method} {path}: `{id}` is not camelCase (verbNoun)");
        assert!(seen.insert(id), "{method} {path}: the operationId `{id}` is used twice");
        let summary = operation["summary"].as_str().unwrap_or_default();
        let description = operation["description"].as_str().unwrap_or_default();
        assert!(!summary.trim().is_empty(), "{method} {path} has no summary");
        assert!(description.len() > summary.len(), "{method} {path} has no description beyond its summary");
    }
    for (method, path, id) in PUBLISHED_IDS {
        let operation = &document["paths"][path][method];
        assert_eq!(operation["operationId"], *id, "{method} {path} changed its published operationId");
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
        // A NUL character (PostgreSQL stores none) in a query, a path, a JSON string, a form.
        (
            "get",
            "/v1/posts",
            http.get(url("/v1/posts?status=%00")).bearer_auth(&key),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "get",
            "/v1/connect/{platform}/callback",
            http.get(url("/v1/connect/sand%00box/callback?state=x")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "post",
            "/v1/keys",
            http.post(url("/v1/keys")).bearer_auth(&key).json(&json!({ "name": "a\u{0}b", "scopes": ["read"] })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "get",
            "/sandbox/oauth/authorize",
            http.get(url(
                "/sandbox/oauth/authorize?response_type=code&client_id=c&redirect_uri=https://a.example/&login=%00",
            )),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "post",
            "/sandbox/oauth/revoke",
            form(http.post(url("/sandbox/oauth/revoke")), "token=a%00".into()),
            StatusCode::BAD_REQUEST,
            "bad_request",
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
