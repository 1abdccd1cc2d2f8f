//! The OpenAPI document, generated from the code.
//!
//! Every route is registered through `utoipa_axum::routes!`, so the router and the document come
//! from the same annotations and cannot name different paths. What operations share is added
//! here once by [`apply_conventions`] rather than repeated on each handler, so a new route cannot
//! forget it: the problems their extractors answer when the path, query or body cannot be read
//! (every route, the sandbox's too), the 500 of the panic handler, and for `/v1` the bearer key,
//! the 401/403/429 problems, the `X-RateLimit-*` headers, and on writes `Idempotency-Key` with
//! its 400, 409 and 413. A handler declares only its own answers.
//!
//! Operation ids are `verbNoun` in camelCase (`listPosts`, `createKey`, `getConnectSession`),
//! written on each handler and unique in the document (a test checks it): client generators
//! name their functions after them, so they never change once published.
//!
//! Served as JSON at `GET /v1/openapi.json` and rendered by Scalar at `GET /docs` (the page
//! loads Scalar's script from its CDN in the browser; nothing is downloaded at build time).

// utoipa's macros expand the types we name into fully qualified paths.
#![allow(unused_qualifications)]

use std::collections::HashMap;
use std::collections::btree_map::Entry;
use std::sync::LazyLock;

use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Header, OpenApi, Ref, RefOr, Required, Response as ResponseDoc};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{FieldError, Problem};

/// The document's fixed parts; the paths come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Self-hostable social publishing. Connect your users' social accounts, create posts aimed \
                       at several of them, schedule them, and read every outcome. Authenticate with \
                       `Authorization: Bearer <key>`; every error is `application/problem+json` with a stable `code`."
    ),
    components(schemas(FieldError, Problem<'static>)),
    tags(
        (name = "keys", description = "A project's API keys"),
        (name = "events", description = "The project's event feed"),
        (name = "connect", description = "Connecting social accounts through OAuth"),
        (name = "accounts", description = "Connected social accounts and their health"),
        (name = "apps", description = "Your own OAuth apps (bring your own app)"),
        (name = "posts", description = "Posts, their deliveries and outcomes"),
        (name = "media", description = "The media library: uploads, imports, and the signed URLs platforms fetch from"),
        (name = "webhooks", description = "Endpoints that hear the project's events as signed Standard Webhooks messages"),
        (name = "sandbox", description = "The built-in fake platform, for tests; no key needed"),
        (name = "operations", description = "Liveness, readiness, metrics and this document; no key needed"),
    )
)]
pub struct ApiDoc;

/// The security scheme's name in the document.
const BEARER: &str = "api_key";

/// Every problem an operation may answer: its status, what it means in a few words (added to a
/// response the handler declares with another body), and its description. One response
/// component each, named `Problem<status>`. Which of them an operation lists follows from what
/// it reads and whether it needs a key (see [`problem_statuses`]).
const PROBLEMS: &[(&str, &str, &str)] = &[
    (
        "400",
        "the request could not be read (`bad_request`)",
        "The request could not be read (`bad_request`): a path parameter of the wrong type (an id that is not a \
         UUID), a query string or body that does not parse, or an `Idempotency-Key` that is not 1 to 255 visible \
         characters.",
    ),
    (
        "401",
        "no usable key (`unauthorized`)",
        "No key, another scheme, or a malformed, unknown, expired or revoked key (`unauthorized`).",
    ),
    (
        "403",
        "the key may not do this (`forbidden`)",
        "The key lacks the scope the problem names, what the request touches lies beyond the key's reach \
         (another platform, account or environment, or a key wider than this one), or its IP or origin \
         rules refuse the request (`forbidden`).",
    ),
    ("404", "nothing here (`not_found`)", "Nothing here, or nothing this key may see (`not_found`)."),
    (
        "409",
        "a conflict (`conflict`, `idempotency_*`)",
        "The state changed underneath the request (`conflict`); an `Idempotency-Key` was reused with another body \
         (`idempotency_conflict`), its first request is still running (`idempotency_in_progress`) or acted without \
         its response being kept (`idempotency_response_lost`), or a retry took this request's key over \
         (`idempotency_taken_over`).",
    ),
    ("413", "the body is too large (`payload_too_large`)", "The body is over the size limit (`payload_too_large`)."),
    (
        "415",
        "the body's content type is not the one read here (`unsupported_media_type`)",
        "The body's `Content-Type` is not the one this operation reads (`unsupported_media_type`).",
    ),
    (
        "422",
        "the query or body breaks the rules (`validation_failed`)",
        "The query or body breaks the rules (`validation_failed`); `errors` lists each field and why.",
    ),
    (
        "429",
        "over the key's limit (`rate_limited`)",
        "Over the key's per-minute or per-day limit (`rate_limited`); `Retry-After` says when to come back.",
    ),
    (
        "500",
        "something broke on herald's side (`internal`)",
        "Something broke on herald's side (`internal`); quote the request id.",
    ),
    (
        "503",
        "herald is busy or its database away (`overloaded`, `database_unreachable`, `starting`)",
        "Not served now, nothing done (`overloaded`: too many requests in flight or no database connection free; \
         `database_unreachable`; `starting`: waiting for the database); `Retry-After` says when to try again.",
    ),
];

/// What an operation reads and how it is reached: what decides the problems it may answer.
struct Shape {
    authenticated: bool,
    write: bool,
    has_path: bool,
    has_query: bool,
    has_body: bool,
}

/// The problem statuses an operation of this shape may answer. Every extractor answers its
/// rejections as problems (`crate::extract`), the panic handler a 500, the router's fallback a
/// 404 when a path parameter is empty, and for `/v1` the key, the limiter and
/// `Idempotency-Key` theirs.
fn problem_statuses(shape: &Shape) -> Vec<&'static str> {
    // Any operation may be shed under load (`middleware::shed_load`) or find no database.
    let mut statuses = vec!["500", "503"];
    if shape.has_path {
        statuses.extend(["400", "404"]);
    }
    if shape.has_query {
        statuses.push("400");
    }
    if shape.has_body {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if shape.authenticated {
        statuses.extend(["401", "403", "429"]);
        if shape.has_query {
            statuses.push("422");
        }
        if shape.write {
            // `Idempotency-Key`: a malformed key, a reuse or a race, and the body it hashes.
            statuses.extend(["400", "409", "413"]);
        }
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

const RATE_LIMIT_HEADERS: &[(&str, &str)] = &[
    ("X-RateLimit-Limit", "The key's requests per minute."),
    ("X-RateLimit-Remaining", "How many more requests the key may make right now."),
    ("X-RateLimit-Reset", "Seconds until the allowance is full again."),
];

/// Adds what every operation of a kind shares (see the module documentation). Runs on the
/// finished document: the paths are merged in from the routes after [`ApiDoc`] is built.
pub fn apply_conventions(openapi: &mut OpenApi) {
    add_shared_components(openapi.components.get_or_insert_with(Default::default));
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            (false, item.get.as_mut()),
            (true, item.post.as_mut()),
            (true, item.put.as_mut()),
            (true, item.patch.as_mut()),
            (true, item.delete.as_mut()),
        ];
        for (write, operation) in operations {
            if let Some(operation) = operation {
                apply_to_operation(operation, path, write);
            }
        }
    }
}

/// The security scheme, headers, parameter and problem responses operations refer to.
fn add_shared_components(components: &mut utoipa::openapi::Components) {
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("hk_live_… / hk_test_…")
                .description(Some("An API key: `hk_live_` or `hk_test_` and 32 hex digits."))
                .build(),
        ),
    );
    components.headers.insert(
        "X-Request-Id".into(),
        RefOr::T(header(
            "The request's id (the caller's, if it sent a printable one of at most 128 characters).",
            String::schema(),
        )),
    );
    for (name, description) in RATE_LIMIT_HEADERS {
        components.headers.insert((*name).into(), RefOr::T(header(description, i64::schema())));
    }
    components
        .headers
        .insert("Retry-After".into(), RefOr::T(header("Seconds to wait before trying again.", i64::schema())));
    components.parameters.insert(
        "Idempotency-Key".into(),
        RefOr::T(
            Parameter::builder()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1 to 255 visible ASCII characters. The same key with the same body within 24 h returns the \
                     first response without acting again; with another body it is a 409 `idempotency_conflict`. \
                     Another value is a 400 `bad_request`.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        // What `HeaderValue::to_str` reads.
                        .pattern(Some("^[\\t -~]+$")),
                ))
                .build(),
        ),
    );
    for (status, _, description) in PROBLEMS {
        components
            .responses
            .insert(problem_name(status), RefOr::T(problem(description, matches!(*status, "429" | "503"))));
    }
}

/// The conventions of one operation: its headers, the `Idempotency-Key` of a write behind the
/// key, and the problems its shape can answer with.
fn apply_to_operation(operation: &mut Operation, path: &str, write: bool) {
    // An operation that declares a scope is behind the key; the rest are public. Each
    // handler names the scopes it needs in its own `security((BEARER = [...]))`; the
    // authentication middleware enforces exactly those (see `required_scopes`) and refuses
    // a `/v1` route that names none.
    let authenticated = operation.security.is_some();
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response.headers.insert("X-Request-Id".into(), RefOr::Ref(header_ref("X-Request-Id")));
            if authenticated {
                for (name, _) in RATE_LIMIT_HEADERS {
                    response.headers.insert((*name).into(), RefOr::Ref(header_ref(name)));
                }
            }
        }
    }
    let has_query = operation.parameters.as_ref().is_some_and(|parameters| {
        parameters.iter().any(|parameter| matches!(parameter, RefOr::T(p) if p.parameter_in == ParameterIn::Query))
    });
    let shape = Shape {
        authenticated,
        write,
        has_path: path.contains('{'),
        has_query,
        has_body: operation.request_body.is_some(),
    };
    if authenticated && write {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::Ref(Ref::new("#/components/parameters/Idempotency-Key")));
    }
    for status in problem_statuses(&shape) {
        declare_problem(operation, status);
    }
}

/// Lists the problem for `status` among the operation's responses. A status the handler
/// already declares with another body (the sandbox's OAuth errors, an HTML page) keeps it and
/// gains the problem as a second content type: both can come back.
fn declare_problem(operation: &mut Operation, status: &str) {
    match operation.responses.responses.entry(status.to_owned()) {
        Entry::Vacant(entry) => {
            entry.insert(RefOr::Ref(Ref::from_response_name(problem_name(status))));
        }
        Entry::Occupied(mut entry) => {
            let RefOr::T(response) = entry.get_mut() else { return };
            if response.content.contains_key(PROBLEM_JSON) {
                return;
            }
            let what = PROBLEMS.iter().find(|(known, ..)| *known == status).map_or("a problem", |(_, what, _)| *what);
            let declared = response.description.trim_end_matches('.');
            response.description = format!("{declared}; or, as `{PROBLEM_JSON}`, {what}.");
            response.content.insert(PROBLEM_JSON.into(), problem_content());
        }
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

fn problem_content() -> RefOr<Content> {
    RefOr::T(Content::new(Some(Ref::from_schema_name(Problem::name()))))
}

fn problem_name(status: &str) -> String {
    format!("Problem{status}")
}

fn header_ref(name: &str) -> Ref {
    Ref::new(format!("#/components/headers/{name}"))
}

fn header(description: &str, schema: RefOr<utoipa::openapi::schema::Schema>) -> Header {
    let mut header = Header::new(schema);
    header.description = Some(description.to_owned());
    header
}

fn problem(description: &str, retry_after: bool) -> ResponseDoc {
    let mut response = ResponseDoc::new(description);
    response.content.insert(PROBLEM_JSON.into(), problem_content());
    response.headers.insert("X-Request-Id".into(), RefOr::Ref(header_ref("X-Request-Id")));
    if retry_after {
        response.headers.insert("Retry-After".into(), RefOr::Ref(header_ref("Retry-After")));
        for (name, _) in RATE_LIMIT_HEADERS {
            response.headers.insert((*name).into(), RefOr::Ref(header_ref(name)));
        }
    }
    response
}

/// The scopes each `/v1` operation declares, by (method, route template), read from the
/// document: the annotation on the handler is the one place a route's scope is written.
/// Each method of a route with the scopes it declares.
type MethodScopes = Vec<(&'static str, Vec<String>)>;

/// Keyed by route template, then method, so a request's lookup borrows its strings.
static REQUIRED_SCOPES: LazyLock<HashMap<String, MethodScopes>> = LazyLock::new(|| {
    let mut scopes: HashMap<String, MethodScopes> = HashMap::new();
    for (path, item) in &DOCUMENT.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(requirements) = operation.as_ref().and_then(|operation| operation.security.as_ref()) else {
                continue;
            };
            let needed = requirements
                .iter()
                .filter_map(|requirement| serde_json::to_value(requirement).ok())
                .filter_map(|requirement| requirement.get(BEARER).cloned())
                .filter_map(|names| serde_json::from_value::<Vec<String>>(names).ok())
                .flatten()
                .collect();
            scopes.entry(path.clone()).or_default().push((method, needed));
        }
    }
    scopes
});

/// The scopes a key needs for `method` on the route `template` (as axum matched it), or `None`
/// for a route that declares none: the caller must then refuse (fail closed).
pub fn required_scopes(method: &Method, template: &str) -> Option<&'static [String]> {
    let methods = REQUIRED_SCOPES.get(template)?;
    methods.iter().find(|(declared, _)| *declared == method.as_str()).map(|(_, needed)| needed.as_slice())
}

/// The document, built once from the routes.
pub static DOCUMENT: LazyLock<OpenApi> = LazyLock::new(crate::routes::document);

static DOCUMENT_JSON: LazyLock<String> =
    LazyLock::new(|| DOCUMENT.to_pretty_json().expect("the OpenAPI document serialises"));

/// The reference page: Scalar's renderer, served by herald itself (`/docs/scalar.js`), reading
/// the document from `/v1/openapi.json`. Nothing is fetched from elsewhere: no CDN script, no
/// web fonts (`withDefaultFonts: false`), no telemetry, no request proxy, so the page works on a
/// herald without internet.
const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <title>herald API</title>
  <meta charset="utf-8"/>
  <meta name="viewport" content="width=device-width, initial-scale=1"/>
</head>
<body>
  <div id="app"></div>
  <script src="/docs/scalar.js"></script>
  <script>
    Scalar.createApiReference('#app', {
      url: '/v1/openapi.json',
      withDefaultFonts: false,
      telemetry: false,
      hideClientButton: false,
      showDeveloperTools: 'never',
    })
  </script>
</body>
</html>
"#;

/// Scalar's standalone renderer (`@scalar/api-reference`, MIT; the version is in
/// `api/assets/scalar/VERSION`, `make docs-assets` fetches another from npm).
const SCALAR_JS: &[u8] = include_bytes!("../assets/scalar/standalone.js");
/// The renderer's version, for its cache validator.
const SCALAR_VERSION: &str = include_str!("../assets/scalar/VERSION");

/// This OpenAPI document.
///
/// The OpenAPI 3.1 document of this api, generated from the code that serves it. No key.
#[utoipa::path(
    get,
    operation_id = "getOpenApiDocument",
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = DOCUMENT_JSON.as_str().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The API reference.
///
/// This document rendered as a page (Scalar, served from herald itself: the page works
/// offline). No key.
#[utoipa::path(
    get,
    operation_id = "getApiReference",
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// The reference page's renderer.
///
/// Scalar's standalone script, embedded in the binary, for `/docs`. No key.
#[utoipa::path(
    get,
    operation_id = "getApiReferenceRenderer",
    path = "/docs/scalar.js",
    tag = "operations",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String))
)]
pub async fn docs_renderer() -> Response {
    let mut response = SCALAR_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"scalar-{}\"", SCALAR_VERSION.trim())) {
        headers.insert(header::ETAG, etag);
    }
    response
}
