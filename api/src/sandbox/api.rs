//! The sandbox platform's API, for the access tokens its provider issues: the accounts a grant
//! reaches, publishing (with the failures a text asks for, `super::failures`), finding posts by
//! client reference, and a post's public page.

// utoipa's macros expand the types we name into fully qualified paths.
#![allow(unused_qualifications)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{digest, failures};
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::html::{escape, page, page_html};

/// The accounts a sandbox grant reaches.
///
/// The person who approved and two pages, for the access token in `Authorization: Bearer`.
#[utoipa::path(get, operation_id = "listSandboxAccounts", path = "/sandbox/api/accounts", tag = "sandbox", responses(
    (status = 200, description = "`{\"data\": [{\"id\", \"kind\", \"username\", \"name\"}]}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 503, description = "The sandbox cannot check the token just now: try again (a problem)", body = Object),
))]
pub(super) async fn accounts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let data = json!([
        { "id": format!("person-{login}"), "kind": "person", "username": login, "name": login },
        { "id": format!("page-{login}-1"), "kind": "page", "username": format!("{login}-news"), "name": format!("{login} News") },
        { "id": format!("page-{login}-2"), "kind": "page", "username": format!("{login}-shop"), "name": format!("{login} Shop") },
    ]);
    axum::Json(json!({ "data": data })).into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct PublishBody {
    /// One of the grant's accounts.
    account_id: String,
    text: String,
    /// Images and videos by URL, in order, as pull platforms take them: each must be a signed,
    /// unexpired herald media URL (the sandbox checks it as a platform's fetch would).
    #[serde(default)]
    media: Vec<PublishMedia>,
    /// The publisher's reference, to find the post again.
    client_ref: Option<String>,
    /// A post of the grant's this one answers (a thread's next item).
    reply_to: Option<Uuid>,
    /// A post of the grant's this one is a comment on (a first comment).
    comment_on: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct PublishMedia {
    url: String,
    alt_text: Option<String>,
}

/// The media item a signed content URL (`herald_shared::media::signing`) of this herald serves,
/// if the URL is one and is still valid: what a pull platform's fetch of it would find out.
fn signed_media_id(state: &AppState, url: &str) -> Option<Uuid> {
    let url = url::Url::parse(url).ok()?;
    let public = url::Url::parse(&state.config.public_url()).ok()?;
    if url.origin() != public.origin() {
        return None;
    }
    let id = url.path().strip_prefix(public.path().trim_end_matches('/'))?.strip_prefix("/media/")?;
    let id = Uuid::parse_str(id).ok()?;
    let pair = |name: &str| url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned());
    let expires = pair("expires")?.parse().ok()?;
    let signature = pair("signature")?;
    let now = chrono::Utc::now().timestamp();
    herald_shared::media::signing::verify(&state.media_url_key[..], id, expires, &signature, now).then_some(id)
}

/// The media of a publish, checked: `Err` is the reason for the 400 a platform answers when it
/// cannot fetch one.
fn checked_media(state: &AppState, media: &[PublishMedia]) -> Result<serde_json::Value, String> {
    let mut stored = Vec::with_capacity(media.len());
    for (index, item) in media.iter().enumerate() {
        let Some(id) = signed_media_id(state, &item.url) else {
            return Err(format!("media[{index}]: the URL is not a valid signed media URL, or it expired"));
        };
        stored.push(json!({ "media_id": id, "alt_text": item.alt_text }));
    }
    Ok(serde_json::Value::Array(stored))
}

/// Publish a sandbox post.
///
/// Publishes the text on one of the grant's accounts, or fails the way its text asks: `[fail:400]`, `[fail:401]`,
/// `[fail:429:SECONDS]`, `[fail:500]`, `[fail:timeout]`, `[fail:timeout-after-success]`,
/// `[fail:slow:MILLISECONDS]`, with `xN` to fail only the first N attempts of a `client_ref`.
#[utoipa::path(post, operation_id = "publishSandboxPost", path = "/sandbox/api/posts", tag = "sandbox", request_body = PublishBody, responses(
    (status = 201, description = "`{\"id\", \"url\"}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 400, description = "A media URL the sandbox cannot fetch (not a valid signed herald URL, or expired)", body = Object),
    (status = 403, description = "Not one of the grant's accounts", body = Object),
    (status = 429, description = "Rate limited; `Retry-After` says for how long", body = Object),
    (status = 500, description = "An injected failure", body = Object),
    (status = 503, description = "The sandbox's database failed (checking the token or storing the post); try again (a problem)"),
    (status = 504, description = "An injected timeout (`[fail:timeout]`, `[fail:timeout-after-success]`), after 300 s"),
))]
pub(super) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PublishBody>,
) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let owned = [format!("person-{login}"), format!("page-{login}-1"), format!("page-{login}-2")];
    if !owned.contains(&body.account_id) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({ "error": "not one of this grant's accounts" })))
            .into_response();
    }
    let attempt = match count_attempt(&state, body.client_ref.as_deref()).await {
        Ok(attempt) => attempt,
        Err(refusal) => return refusal,
    };
    let failure = failures::for_attempt(&body.text, attempt);
    if let Some(failure) = &failure
        && let Some(answer) = failure.before_publishing().await
    {
        return answer;
    }
    let media = match checked_media(&state, &body.media) {
        Ok(media) => media,
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response(),
    };
    if let Some(answered) = body.reply_to.or(body.comment_on) {
        let known = sqlx::query_scalar!("SELECT 1 FROM sandbox_posts WHERE id = $1 AND login = $2", answered, login)
            .fetch_optional(&state.pool)
            .await;
        match known {
            Ok(Some(_)) => {}
            Ok(None) => {
                let error = "reply_to / comment_on: no such post of this grant's";
                return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response();
            }
            Err(error) => {
                tracing::error!(%error, "the sandbox cannot read a post");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    let id = Uuid::now_v7();
    let stored = sqlx::query!(
        "INSERT INTO sandbox_posts (id, login, account_id, text, client_ref, media, reply_to, comment_on)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        login,
        body.account_id,
        body.text,
        body.client_ref,
        media,
        body.reply_to.map(|id| id.to_string()),
        body.comment_on.map(|id| id.to_string()),
    )
    .execute(&state.pool)
    .await;
    if let Err(error) = stored {
        tracing::error!(%error, "the sandbox cannot store a post");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(failure) = &failure
        && let Some(answer) = failure.after_publishing().await
    {
        return answer;
    }
    let url = format!("{}/sandbox/posts/{id}", state.config.public_url());
    (StatusCode::CREATED, axum::Json(json!({ "id": id, "url": url }))).into_response()
}

/// Counts a publish attempt of `client_ref` (1 without one), for markers that fail only the
/// first attempts; the answer to send when the sandbox's database fails.
async fn count_attempt(state: &AppState, client_ref: Option<&str>) -> Result<i32, Response> {
    let Some(client_ref) = client_ref else { return Ok(1) };
    sqlx::query_scalar!(
        "INSERT INTO sandbox_publish_attempts (client_ref, attempts) VALUES ($1, 1)
                 ON CONFLICT (client_ref) DO UPDATE
                 SET attempts = sandbox_publish_attempts.attempts + 1, updated_at = now()
                 RETURNING attempts",
        client_ref
    )
    .fetch_one(&state.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "the sandbox cannot count a publish attempt");
        unavailable_problem("The sandbox could not take the post; try again.")
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FindQuery {
    client_ref: String,
}

/// Find sandbox posts by client reference.
///
/// The grant's posts made with `client_ref`, oldest first: how a publisher checks whether an
/// unanswered publish happened.
#[utoipa::path(get, operation_id = "findSandboxPosts", path = "/sandbox/api/posts", tag = "sandbox", params(FindQuery), responses(
    (status = 200, description = "`{\"data\": [{\"id\", \"url\"}]}`", body = Object),
    (status = 401, description = "`{\"error\": \"invalid_token\"}`", body = Object),
    (status = 503, description = "The sandbox's database failed (checking the token or reading the posts); try again (a problem)"),
))]
pub(super) async fn find_posts(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FindQuery>,
) -> Response {
    let login = match grant_login(&state, &headers).await {
        Ok(login) => login,
        Err(refusal) => return refusal,
    };
    let found = sqlx::query_scalar!(
        "SELECT id FROM sandbox_posts WHERE client_ref = $1 AND login = $2 ORDER BY created_at",
        query.client_ref,
        login
    )
    .fetch_all(&state.pool)
    .await;
    match found {
        Ok(ids) => {
            let base = state.config.public_url();
            let data: Vec<_> =
                ids.iter().map(|id| json!({ "id": id, "url": format!("{base}/sandbox/posts/{id}") })).collect();
            axum::Json(json!({ "data": data })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "the sandbox cannot search its posts");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// A published sandbox post.
///
/// The post's public page, the URL a publish answers with.
#[utoipa::path(get, operation_id = "getSandboxPost", path = "/sandbox/posts/{id}", tag = "sandbox",
    params(("id" = Uuid, Path, description = "The post's id on the sandbox")),
    responses(
        (status = 200, description = "The post", content_type = "text/html", body = String),
        (status = 404, description = "No such post", content_type = "text/html", body = String),
        (status = 503, description = "The sandbox could not read the post; try again", content_type = "text/html", body = String),
    ))]
pub(super) async fn show_post(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>) -> Response {
    let found = sqlx::query!(
        "SELECT account_id, text, media, reply_to, comment_on, created_at FROM sandbox_posts WHERE id = $1",
        id
    )
    .fetch_optional(&state.pool)
    .await;
    match found {
        Ok(Some(post)) => {
            let base = state.config.public_url();
            let link = |id: &str| post_link(&base, id);
            let answers = match (&post.reply_to, &post.comment_on) {
                (Some(parent), _) => format!("<p><small>In reply to {}</small></p>", link(parent)),
                (None, Some(root)) => format!("<p><small>A comment on {}</small></p>", link(root)),
                (None, None) => String::new(),
            };
            let followers = followers_html(&state, id).await;
            let body = format!(
                "{answers}<p>{}</p>{}<p><small>{} · {}</small></p>{followers}",
                escape(&post.text),
                media_html(&state, &post.media).await,
                escape(&post.account_id),
                post.created_at.to_rfc3339()
            );
            page_html(StatusCode::OK, "A sandbox post", &body)
        }
        Ok(None) => page(StatusCode::NOT_FOUND, "No such post", "The sandbox has no post with this id."),
        Err(error) => {
            tracing::error!(%error, "the sandbox cannot read a post");
            page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The sandbox could not read the post.")
        }
    }
}

/// A link to a sandbox post's page.
fn post_link(base: &str, id: &str) -> String {
    format!("<a href=\"{base}/sandbox/posts/{0}\">{0}</a>", escape(id))
}

/// The replies to and comments on post `id`, each with its text and a link to its page (whose
/// own page shows what follows it), oldest first.
async fn followers_html(state: &AppState, id: Uuid) -> String {
    let base = state.config.public_url();
    let id = id.to_string();
    let found = sqlx::query!(
        "SELECT id, text, reply_to IS NOT NULL AS \"reply!\" FROM sandbox_posts
         WHERE reply_to = $1 OR comment_on = $1 ORDER BY created_at",
        id
    )
    .fetch_all(&state.pool)
    .await
    .unwrap_or_default();
    let list = |title: &str, replies: bool| -> String {
        let items: String = found
            .iter()
            .filter(|follower| follower.reply == replies)
            .map(|follower| {
                format!("<li>{} {}</li>", escape(&follower.text), post_link(&base, &follower.id.to_string()))
            })
            .collect();
        if items.is_empty() { String::new() } else { format!("<h2>{title}</h2><ul>{items}</ul>") }
    };
    format!("{}{}", list("Replies", true), list("Comments", false))
}

/// A post's media on its page, each at a fresh signed URL (`<img>` with its alt text, or
/// `<video>`); an item deleted from the library since shows as gone.
async fn media_html(state: &AppState, media: &serde_json::Value) -> String {
    let items: Vec<(Uuid, Option<String>)> = media
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let id = Uuid::parse_str(item.get("media_id")?.as_str()?).ok()?;
            Some((id, item.get("alt_text").and_then(|alt| alt.as_str()).map(str::to_owned)))
        })
        .collect();
    if items.is_empty() {
        return String::new();
    }
    let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
    let kinds = sqlx::query!("SELECT id, kind FROM media WHERE id = ANY($1) AND deleted_at IS NULL", &ids)
        .fetch_all(&state.pool)
        .await
        .unwrap_or_default();
    let lifetime = state.config.media.url_lifetime();
    let now = chrono::Utc::now().timestamp();
    let mut html = String::from("<div class=\"media\">");
    for (id, alt_text) in items {
        let alt = escape(alt_text.as_deref().unwrap_or(""));
        let url = herald_shared::media::signing::content_url(
            &state.config.public_url(),
            &state.media_url_key[..],
            id,
            lifetime,
            now,
        );
        let url = escape(&url);
        match kinds.iter().find(|row| row.id == id).and_then(|row| row.kind.as_deref()) {
            Some("video") => html.push_str(&format!("<video controls src=\"{url}\" title=\"{alt}\"></video>")),
            Some(_) => html.push_str(&format!("<img src=\"{url}\" alt=\"{alt}\">")),
            None => html.push_str("<p><em>(media no longer in the library)</em></p>"),
        }
    }
    html.push_str("</div>");
    html
}

/// The login behind a live access token in `Authorization: Bearer`, or the answer to send: a
/// 401 `invalid_token` for a missing, unknown, expired or revoked token, a 503 when the
/// sandbox's own database fails (which a client must take for "try again", never for a dead
/// grant: a database blip must not disconnect anyone's test accounts).
async fn grant_login(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let invalid_token = || (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_token" }))).into_response();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(invalid_token)?;
    let login = sqlx::query_scalar!(
        "SELECT g.login FROM sandbox_tokens t JOIN sandbox_grants g ON g.id = t.grant_id
         WHERE t.token_hash = $1 AND t.kind = 'access' AND t.expires_at > now() AND g.revoked_at IS NULL",
        digest(token)
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "the sandbox cannot look up a token");
        unavailable_problem("The sandbox could not check the access token; try again.")
    })?;
    login.ok_or_else(invalid_token)
}

/// A 503 problem: the sandbox's database failed, the client may try again.
fn unavailable_problem(detail: &str) -> Response {
    crate::error::ApiError::unavailable("sandbox_unavailable", detail).into_response()
}
