//! The OpenAPI document, generated from the code.
//!
//! Every route is registered through `utoipa_axum::routes!`, so the router and the document come
//! from the same annotations and cannot name different paths. What every `/v1` operation shares
//! (the bearer key, the 401/403/429/500 problems, the `X-RateLimit-*` headers, and on writes
//! `Idempotency-Key` with its 409 and 413) is added here once by [`apply_conventions`] rather than
//! repeated on each handler, so a new route cannot forget it.
//!
//! Served as JSON at `GET /v1/openapi.json` and rendered by Scalar at `GET /docs` (the page
//! loads Scalar's script from its CDN in the browser; nothing is downloaded at build time).

// utoipa's macros expand the types we name into fully qualified paths.
#![allow(unused_qualifications)]

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
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
        (name = "sandbox", description = "The built-in fake platform, for tests; no key needed"),
        (name = "operations", description = "Liveness, readiness, metrics and this document; no key needed"),
    )
)]
pub struct ApiDoc;

/// The security scheme's name in the document.
const BEARER: &str = "api_key";

/// Problems any `/v1` operation may answer, by status.
const EDGE_PROBLEMS: &[(&str, &str)] = &[
    ("400", "The query or body could not be read (`bad_request`)."),
    ("401", "No key, another scheme, or a malformed, unknown, expired or revoked key (`unauthorized`)."),
    ("403", "The key lacks the scope the problem names, or its IP or origin rules refuse the request (`forbidden`)."),
    ("429", "Over the key's per-minute or per-day limit (`rate_limited`); `Retry-After` says when to come back."),
    ("500", "Something broke on herald's side (`internal`); quote the request id."),
];

/// What any `/v1` write may also answer.
const WRITE_PROBLEMS: &[(&str, &str)] = &[(
    "409",
    "The state changed underneath the request (`conflict`); an `Idempotency-Key` was reused with another body \
     (`idempotency_conflict`), its first request is still running (`idempotency_in_progress`) or acted without \
     its response being kept (`idempotency_response_lost`), or a retry took this request's key over \
     (`idempotency_taken_over`).",
)];

/// What any operation with a body may also answer.
const BODY_PROBLEMS: &[(&str, &str)] = &[
    ("413", "The body is over the size limit (`payload_too_large`)."),
    ("415", "The body is not `application/json` (`unsupported_media_type`)."),
];

/// Problems that depend on the operation's parameters and body.
const INPUT_PROBLEMS: &[(&str, &str)] = &[
    ("404", "Nothing here, or nothing this key may see (`not_found`)."),
    ("422", "The query or body breaks the rules (`validation_failed`); `errors` lists each field and why."),
];

const RATE_LIMIT_HEADERS: &[(&str, &str)] = &[
    ("X-RateLimit-Limit", "The key's requests per minute."),
    ("X-RateLimit-Remaining", "How many more requests the key may make right now."),
    ("X-RateLimit-Reset", "Seconds until the allowance is full again."),
];

/// Adds what every operation of a kind shares (see the module documentation). Runs on the
/// finished document: the paths are merged in from the routes after [`ApiDoc`] is built.
pub fn apply_conventions(openapi: &mut OpenApi) {
    {
        let components = openapi.components.get_or_insert_with(Default::default);
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
                        "Any string up to 255 characters. The same key with the same body within 24 h returns the first \
                         response without acting again; with another body it is a 409 `idempotency_conflict`.",
                    ))
                    .schema(Some(String::schema()))
                    .build(),
            ),
        );
        for (status, description) in
            EDGE_PROBLEMS.iter().chain(WRITE_PROBLEMS).chain(BODY_PROBLEMS).chain(INPUT_PROBLEMS)
        {
            components.responses.insert(problem_name(status), RefOr::T(problem(description, *status == "429")));
        }

        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.contains('{');
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (write, operation) in operations {
                let Some(operation) = operation else { continue };
                // An operation that declares a scope is behind the key; the rest are public.
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
                if authenticated {
                    authenticated_operation(operation, write, has_id);
                }
            }
        }
    }
}

fn authenticated_operation(operation: &mut Operation, write: bool, has_id: bool) {
    // Each handler names the scopes it needs in its own `security((BEARER = [...]))`; the
    // authentication middleware enforces exactly those (see `required_scopes`) and refuses a
    // route that names none.
    let has_query = operation.parameters.as_ref().is_some_and(|parameters| {
        parameters.iter().any(|parameter| matches!(parameter, RefOr::T(p) if p.parameter_in == ParameterIn::Query))
    });
    let has_body = operation.request_body.is_some();
    let mut statuses: Vec<&str> = EDGE_PROBLEMS.iter().map(|(status, _)| *status).collect();
    if write {
        statuses.extend(WRITE_PROBLEMS.iter().map(|(status, _)| *status));
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::Ref(Ref::new("#/components/parameters/Idempotency-Key")));
    }
    if has_body {
        statuses.extend(BODY_PROBLEMS.iter().map(|(status, _)| *status));
    }
    if has_id {
        statuses.push("404");
    }
    if has_body || has_query {
        statuses.push("422");
    }
    for status in statuses {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(problem_name(status))));
    }
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
    response.content.insert(
        "application/problem+json".into(),
        RefOr::T(Content::new(Some(Ref::from_schema_name(Problem::name())))),
    );
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

static DOCS_HTML: LazyLock<String> =
    LazyLock::new(|| utoipa_scalar::Scalar::new(DOCUMENT.clone()).title("herald API").to_html());

/// The OpenAPI document of this api.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = DOCUMENT_JSON.as_str().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The API reference, rendered from the OpenAPI document.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML.as_str())
}
