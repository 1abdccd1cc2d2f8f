//! What Meta's three platforms (Facebook, Instagram, Threads) share: the Graph API's error
//! codes, and the long-lived token exchange each connect ends with.
//!
//! The code buys a short-lived token (an hour), which is traded at once for a long-lived one
//! (about 60 days). The three differ only in where they trade and how they name the grant: see
//! [`LongLivedExchange`]. Graph errors come as `{"error": {"code", "message"}}`, mostly with
//! status 400: code 190 is a dead token (reconnect), 4, 17, 32, 613 and 80001+ are rate limits
//! (the `X-App-Usage` family names no reset time; herald waits an hour), 10 and 200-299 a
//! permission the grant lacks (refused, saying so: the account still publishes what it may),
//! 506 a duplicate post;
//! Instagram's 9/2207042 is its daily publishing cap (herald waits a day), 9007/2207027 media not
//! ready yet, -1 and -2 its server errors and download timeouts (transient), and anything the body
//! marks `is_transient`. The error is read from the whole body, so the codes are kept for adapters
//! that know what one means for their call (Instagram's 4/2207051 after `media_publish`).
//!
//! Also shared: media containers (Instagram, Threads) and the wait until one is ready, and the
//! look-up of a post among an account's recent ones.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::oauth::OAuthClient;
use super::{ClientCredentials, LookUp, PlatformError, Published, TokenSet, http};

/// Sends a Graph request and reads its answer, classifying Graph's error codes.
pub(super) async fn graph<T: DeserializeOwned>(
    oauth: &OAuthClient,
    request: RequestBuilder,
) -> Result<T, PlatformError> {
    graph_call(oauth, request).await.map_err(|failure| failure.error)
}

/// A refused or unanswered Graph call: what to do about it, and Graph's own codes when the body
/// named them (an adapter may know better what a code means for its call).
#[derive(Debug)]
pub(super) struct GraphFailure {
    pub error: PlatformError,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
}

/// [`graph`], keeping Graph's error code and subcode.
pub(super) async fn graph_call<T: DeserializeOwned>(
    oauth: &OAuthClient,
    request: RequestBuilder,
) -> Result<T, GraphFailure> {
    let unclassified = |error| GraphFailure { error, code: None, subcode: None };
    let response = http::answer(oauth.label(), request).await.map_err(unclassified)?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(|error| {
            unclassified(PlatformError::Transient(format!("{} sent an unreadable answer: {error}", oauth.label())))
        });
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    let fallback = http::classify(oauth.label(), status, &headers, &body, Utc::now());
    Err(classify_graph(fallback, &body))
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: i64,
    error_subcode: Option<i64>,
    is_transient: Option<bool>,
}

/// A refused Graph call, by its error code: `fallback` is what its status alone means.
fn classify_graph(fallback: PlatformError, body: &str) -> GraphFailure {
    let Ok(GraphErrorBody { error }) = serde_json::from_str::<GraphErrorBody>(body) else {
        return GraphFailure { error: fallback, code: None, subcode: None };
    };
    let reason = match &fallback {
        PlatformError::Transient(reason)
        | PlatformError::AuthDead(reason)
        | PlatformError::Permanent(reason)
        | PlatformError::Ambiguous(reason)
        | PlatformError::RateLimited { reason, .. } => reason.clone(),
    };
    let wait = |hours| PlatformError::RateLimited {
        until: Utc::now() + chrono::Duration::hours(hours),
        reason: reason.clone(),
    };
    let classified = match (error.code, error.error_subcode) {
        (190 | 102, _) => PlatformError::AuthDead(reason),
        // Instagram's cap of API-published posts in a rolling 24 hours.
        (9, Some(2_207_042)) => wait(24),
        (4 | 17 | 32 | 613, _) | (80_001.., _) => wait(1),
        // A permission the grant lacks (a comment without `*_manage_comments`, say): reconnecting
        // with it helps, retrying does not; the account's other publishing is unaffected.
        (10 | 200..=299, _) => PlatformError::Permanent(format!(
            "the connection lacks a permission this needs (reconnect the account granting it): {reason}"
        )),
        // The media is not ready yet (9007 / 2207027); Instagram's server errors and download
        // timeouts (-1, -2); Graph's unknown error and service unavailable (1, 2).
        (9007 | -2 | -1 | 1 | 2, _) | (_, Some(2_207_027)) => PlatformError::Transient(reason),
        _ if error.is_transient == Some(true) => PlatformError::Transient(reason),
        _ => fallback,
    };
    GraphFailure { error: classified, code: Some(error.code), subcode: error.error_subcode }
}

/// A call that comes before the one that publishes (an upload, a container, a status check): safe
/// to repeat, so no answer is only a passing failure.
pub(super) fn before_publishing(error: PlatformError) -> PlatformError {
    match error {
        PlatformError::Ambiguous(reason) => PlatformError::Transient(reason),
        other => other,
    }
}

/// Where a media container (Instagram, Threads) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ContainerState {
    InProgress,
    /// Ready to publish.
    Ready,
    /// Already published (a container is published once).
    Published,
    /// The platform could not use the media: the reason it gave.
    Failed(String),
    /// Not published within its 24 hours.
    Expired,
}

impl ContainerState {
    /// From a container's status (`status_code` on Instagram, `status` on Threads) and the reason
    /// the platform gave for an `ERROR`.
    pub fn from_status(status: &str, reason: Option<String>) -> Self {
        match status {
            "FINISHED" => ContainerState::Ready,
            "PUBLISHED" => ContainerState::Published,
            "ERROR" => ContainerState::Failed(reason.unwrap_or_else(|| "no reason given".to_owned())),
            "EXPIRED" => ContainerState::Expired,
            _ => ContainerState::InProgress,
        }
    }
}

/// How often a processing wait checks, and for how long: the first check after `first`, each
/// later one twice as late up to `longest`, giving up after `total`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    pub first: Duration,
    pub longest: Duration,
    pub total: Duration,
}

/// Meta asks for container checks at most once a minute for five minutes: herald starts sooner
/// (images are usually ready at once) and backs off to a check every 10 s, for the same five
/// minutes in all.
pub(super) const CONTAINER_PACING: Pacing =
    Pacing { first: Duration::from_millis(250), longest: Duration::from_secs(10), total: Duration::from_secs(300) };

/// Checks a container with `check` until it is ready, within `pacing`. A container the platform
/// could not use is permanent (with its reason); one still processing at the end, or expired, is
/// transient (the next attempt makes a new one).
pub(super) async fn wait_until_ready<F, Fut>(label: &str, pacing: Pacing, mut check: F) -> Result<(), PlatformError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ContainerState, PlatformError>>,
{
    let started = tokio::time::Instant::now();
    let mut interval = pacing.first;
    loop {
        match check().await.map_err(before_publishing)? {
            ContainerState::Ready | ContainerState::Published => return Ok(()),
            ContainerState::Failed(reason) => {
                return Err(PlatformError::Permanent(format!("{label} could not use the media: {reason}")));
            }
            ContainerState::Expired => {
                return Err(PlatformError::Transient(format!("the {label} media container expired")));
            }
            ContainerState::InProgress => {}
        }
        if started.elapsed() + interval > pacing.total {
            return Err(PlatformError::Transient(format!(
                "{label} was still processing the media after {} s",
                pacing.total.as_secs()
            )));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(pacing.longest);
    }
}

/// Publishes a container with `publish` (`media_publish`, `threads_publish`). When that call gets
/// no answer, the container's status (`check`) settles what happened: Meta publishes a container
/// once, so one still `FINISHED` was not published and is published again (a repeat cannot post
/// twice); `PUBLISHED` went live (still unknown here: the caller's look-up finds the post); `ERROR`
/// and `EXPIRED` never will. A status that cannot be read leaves the outcome unknown.
pub(super) async fn publish_container<P, PF, C, CF>(label: &str, publish: P, check: C) -> Result<String, PlatformError>
where
    P: Fn() -> PF,
    PF: Future<Output = Result<String, PlatformError>>,
    C: FnOnce() -> CF,
    CF: Future<Output = Result<ContainerState, PlatformError>>,
{
    let unanswered = match publish().await {
        Err(PlatformError::Ambiguous(reason)) => reason,
        other => return other,
    };
    match check().await {
        Ok(ContainerState::Ready) => publish().await,
        Ok(ContainerState::Published) => {
            Err(PlatformError::Ambiguous(format!("{unanswered} (the {label} container is published)")))
        }
        Ok(ContainerState::Failed(reason)) => {
            Err(PlatformError::Permanent(format!("{label} could not use the media: {reason}")))
        }
        Ok(ContainerState::Expired) => {
            Err(PlatformError::Transient(format!("{unanswered} (the {label} container expired unpublished)")))
        }
        Ok(ContainerState::InProgress) | Err(_) => Err(PlatformError::Ambiguous(unanswered)),
    }
}

/// A post as an account's recent posts list it, for a look-up.
#[derive(Debug, Deserialize)]
pub(super) struct RecentPost {
    pub id: String,
    /// Instagram's `caption`, Threads' `text`, Facebook's `message`.
    #[serde(alias = "caption", alias = "message")]
    pub text: Option<String>,
    /// Graph's time, `2026-11-02T08:00:00+0000` (Facebook's `created_time`).
    #[serde(alias = "created_time")]
    pub timestamp: Option<String>,
    #[serde(alias = "permalink_url")]
    pub permalink: Option<String>,
    /// Who wrote it (comments: Instagram's and Facebook's `from`).
    pub from: Option<GraphRef>,
    /// What it answers (Threads' replies: `replied_to`).
    pub replied_to: Option<GraphRef>,
}

/// Another Graph object, by its id.
#[derive(Debug, Deserialize)]
pub(super) struct GraphRef {
    pub id: String,
}

/// A page of Graph results.
#[derive(Debug, Deserialize)]
pub(super) struct Listed<T> {
    pub data: Vec<T>,
}

/// How much earlier than the attempt began (herald's clock) the platform's clock may date a post.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// The post an attempt that began at `began` made with `text`, among an account's recent `posts`:
/// found when exactly one post made since then carries that text; otherwise herald cannot tell
/// (none yet is no proof: the platform's list may lag).
pub(super) fn made_since(posts: Vec<RecentPost>, began: DateTime<Utc>, text: &str) -> LookUp {
    let wanted = folded(text);
    let mut found: Vec<RecentPost> = posts
        .into_iter()
        .filter(|post| post.timestamp.as_deref().and_then(graph_time).is_some_and(|at| at >= began - CLOCK_SKEW))
        .filter(|post| folded(post.text.as_deref().unwrap_or_default()) == wanted)
        .collect();
    match (found.pop(), found.is_empty()) {
        (Some(post), true) => LookUp::Found(Published::new(post.id, post.permalink)),
        _ => LookUp::CannotTell,
    }
}

/// Graph's times (`+0000` offsets, without a colon), or RFC 3339.
pub(super) fn graph_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Whitespace folded to single spaces, ends trimmed.
fn folded(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How one Meta platform trades a short-lived token for a long-lived one.
pub(super) struct LongLivedExchange {
    /// Where: Facebook's token endpoint, or `{graph host}/access_token` (Instagram, Threads).
    pub url: String,
    /// `fb_exchange_token`, `ig_exchange_token`, `th_exchange_token`.
    pub grant_type: &'static str,
    /// The parameter carrying the short-lived token: Facebook's `fb_exchange_token`, else
    /// `access_token`.
    pub token_param: &'static str,
    /// Facebook also wants the client id.
    pub sends_client_id: bool,
    /// The long-lived token renews itself (Instagram, Threads): herald keeps it as the refresh
    /// token too. Facebook's does not (its Page tokens never expire).
    pub renews_itself: bool,
}

impl LongLivedExchange {
    /// Instagram's and Threads' exchange: `{base}/access_token`, for a token that renews itself.
    pub fn self_renewing(base: &str, grant_type: &'static str) -> Self {
        Self {
            url: format!("{base}/access_token"),
            grant_type,
            token_param: "access_token",
            sends_client_id: false,
            renews_itself: true,
        }
    }
}

/// Instagram's and Threads' refresh: `{base}/refresh_access_token` renews a long-lived token
/// (once it is a day old) with itself; `grant_type` is `ig_refresh_token` or `th_refresh_token`.
pub(super) async fn renew(
    oauth: &OAuthClient,
    base: &str,
    grant_type: &str,
    token: &SecretString,
) -> Result<TokenSet, PlatformError> {
    let query = [("grant_type", grant_type), ("access_token", token.expose_secret())];
    long_lived_token(oauth, &format!("{base}/refresh_access_token"), &query, true).await
}

/// A connect's exchange: the code for a short-lived token, that one for a long-lived one. The
/// scopes are the short-lived grant's (the exchange does not repeat them).
pub(super) async fn exchange_for_long_lived(
    oauth: &OAuthClient,
    exchange: &LongLivedExchange,
    client: &ClientCredentials,
    code: &SecretString,
    pkce_verifier: Option<&SecretString>,
    redirect_uri: &str,
) -> Result<TokenSet, PlatformError> {
    let short = oauth.exchange_code(client, code, pkce_verifier, redirect_uri).await?;
    let secret = client.client_secret.as_ref().map(|secret| secret.expose_secret().to_owned()).unwrap_or_default();
    let mut query = vec![("grant_type", exchange.grant_type)];
    if exchange.sends_client_id {
        query.push(("client_id", client.client_id.as_str()));
    }
    query.push(("client_secret", secret.as_str()));
    query.push((exchange.token_param, short.access_token.expose_secret()));
    let mut long = long_lived_token(oauth, &exchange.url, &query, exchange.renews_itself).await?;
    long.scopes = short.scopes;
    Ok(long)
}

/// `GET {url}?{query}`, answered by a long-lived token; one that `renews_itself` is kept as
/// both the access and the refresh token (Instagram's and Threads' refresh is the same call).
pub(super) async fn long_lived_token(
    oauth: &OAuthClient,
    url: &str,
    query: &[(&str, &str)],
    renews_itself: bool,
) -> Result<TokenSet, PlatformError> {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    let token: LongLived = graph(oauth, oauth.http().get(format!("{url}?{query}"))).await?;
    Ok(TokenSet {
        refresh_token: renews_itself.then(|| SecretString::from(token.access_token.clone())),
        access_token: SecretString::from(token.access_token),
        expires_at: token.expires_in.map(|seconds| Utc::now() + chrono::Duration::seconds(seconds)),
        scopes: Vec::new(),
    })
}

/// The Graph host of `api_url` without its API version (`https://graph.threads.net/v1.0` →
/// `https://graph.threads.net`): where Instagram's and Threads' long-lived token endpoints live.
pub(super) fn unversioned(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    match api.rsplit_once('/') {
        Some((base, version)) if version.starts_with('v') && version[1..].starts_with(|c: char| c.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => api.to_owned(),
    }
}

#[derive(Deserialize)]
struct LongLived {
    access_token: String,
    expires_in: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(body: &str) -> PlatformError {
        classify_graph(PlatformError::Permanent("Facebook answered 400 Bad Request".into()), body).error
    }

    #[test]
    fn graph_error_codes_say_what_to_do() {
        let body = |code: i64, subcode: &str| {
            format!(
                r#"{{"error": {{"message": "m", "type": "OAuthException", "code": {code}{subcode}, "fbtrace_id": "A1"}}}}"#
            )
        };
        assert!(matches!(classified(&body(190, "")), PlatformError::AuthDead(_)));
        assert!(matches!(classified(&body(32, "")), PlatformError::RateLimited { .. }));
        assert!(matches!(classified(&body(80_004, "")), PlatformError::RateLimited { .. }));
        assert!(matches!(classified(&body(506, "")), PlatformError::Permanent(_)));
        for limited in [4, 17, 613] {
            assert!(matches!(classified(&body(limited, "")), PlatformError::RateLimited { .. }), "{limited}");
        }
        assert!(matches!(classified(&body(102, "")), PlatformError::AuthDead(_)));
        for permission in [10, 200, 299] {
            let refused = classified(&body(permission, ""));
            assert!(
                matches!(&refused, PlatformError::Permanent(reason) if reason.contains("lacks a permission")),
                "{permission}: {refused:?}"
            );
        }
        assert!(matches!(classified("no body"), PlatformError::Permanent(_)));
        assert!(matches!(classified(&body(9007, r#", "error_subcode": 2207027"#)), PlatformError::Transient(_)));
        assert!(matches!(classified(&body(-1, r#", "error_subcode": 2207001"#)), PlatformError::Transient(_)));
        let capped = classified(&body(9, r#", "error_subcode": 2207042"#));
        assert!(
            matches!(capped, PlatformError::RateLimited { until, .. } if until > Utc::now() + chrono::Duration::hours(23))
        );
        let transient = r#"{"error": {"message": "m", "code": 100, "is_transient": true}}"#;
        assert!(matches!(classified(transient), PlatformError::Transient(_)));
        let kept = classify_graph(PlatformError::Permanent("r".into()), &body(4, r#", "error_subcode": 2207051"#));
        assert_eq!((kept.code, kept.subcode), (Some(4), Some(2_207_051)));
    }

    #[test]
    fn a_post_is_found_only_when_one_made_since_the_attempt_carries_its_text() {
        let began = graph_time("2026-11-02T08:00:00+0000").unwrap();
        let post = |id: &str, text: Option<&str>, at: &str| RecentPost {
            id: id.into(),
            text: text.map(str::to_owned),
            timestamp: Some(at.into()),
            permalink: Some(format!("https://example.com/{id}")),
            from: None,
            replied_to: None,
        };
        let found = made_since(
            vec![
                post("1", Some("hello  world"), "2026-11-02T08:00:03+0000"),
                post("0", Some("hello world"), "2026-11-01T08:00:00+0000"),
            ],
            began,
            "hello world",
        );
        assert_eq!(found, LookUp::Found(Published::new("1", Some("https://example.com/1".into()))));
        let two = vec![post("1", None, "2026-11-02T08:00:03+0000"), post("2", Some(""), "2026-11-02T08:01:00+0000")];
        assert_eq!(made_since(two, began, ""), LookUp::CannotTell, "two candidates: cannot tell which");
        assert_eq!(made_since(vec![post("0", Some("x"), "2026-11-01T08:00:00+0000")], began, "x"), LookUp::CannotTell);
    }

    #[tokio::test]
    async fn a_container_wait_is_bounded_and_names_the_platforms_reason() {
        let pacing = Pacing {
            first: Duration::from_millis(1),
            longest: Duration::from_millis(4),
            total: Duration::from_millis(50),
        };
        let mut checks = 0;
        let ready = wait_until_ready("Instagram", pacing, || {
            checks += 1;
            let state = if checks < 3 { ContainerState::InProgress } else { ContainerState::Ready };
            async move { Ok(state) }
        })
        .await;
        assert_eq!((ready, checks), (Ok(()), 3));
        let failed = wait_until_ready("Instagram", pacing, || async {
            Ok(ContainerState::from_status("ERROR", Some("Error: 2207026".into())))
        })
        .await;
        assert_eq!(failed, Err(PlatformError::Permanent("Instagram could not use the media: Error: 2207026".into())));
        let slow = wait_until_ready("Threads", pacing, || async { Ok(ContainerState::InProgress) }).await;
        assert!(matches!(slow, Err(PlatformError::Transient(reason)) if reason.contains("still processing")));
        let unanswered =
            wait_until_ready("Threads", pacing, || async { Err(PlatformError::Ambiguous("timeout".into())) }).await;
        assert_eq!(unanswered, Err(PlatformError::Transient("timeout".into())), "a status check is safe to repeat");
    }

    #[test]
    fn the_long_lived_endpoints_live_on_the_unversioned_host() {
        assert_eq!(unversioned("https://graph.threads.net/v1.0"), "https://graph.threads.net");
        assert_eq!(unversioned("https://graph.instagram.com/"), "https://graph.instagram.com");
        assert_eq!(unversioned("http://127.0.0.1:9/api"), "http://127.0.0.1:9/api");
    }
}
