//! What Meta's three platforms (Facebook, Instagram, Threads) share: the Graph API's error
//! codes, and the long-lived token exchange each connect ends with.
//!
//! The code buys a short-lived token (an hour), which is traded at once for a long-lived one
//! (about 60 days). The three differ only in where they trade and how they name the grant: see
//! [`LongLivedExchange`]. Graph errors come as `{"error": {"code", "message"}}`, mostly with
//! status 400: code 190 is a dead token (reconnect), 4, 17, 32, 613 and 80001+ are rate limits
//! (the `X-App-Usage` family names no reset time; herald waits an hour), 506 a duplicate post.

use chrono::Utc;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::oauth::OAuthClient;
use super::{ClientCredentials, PlatformError, TokenSet, http};

/// Sends a Graph request and reads its answer, classifying Graph's error codes.
pub(super) async fn graph<T: DeserializeOwned>(
    oauth: &OAuthClient,
    request: RequestBuilder,
) -> Result<T, PlatformError> {
    match http::send_json(oauth.label(), request).await {
        Err(PlatformError::Permanent(reason)) => Err(classify_graph(reason)),
        other => other,
    }
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: i64,
}

/// A refused Graph call, by its error code (the reason quotes the body).
fn classify_graph(reason: String) -> PlatformError {
    let code = reason
        .find('{')
        .and_then(|start| serde_json::from_str::<GraphErrorBody>(&reason[start..]).ok())
        .map(|body| body.error.code);
    match code {
        Some(190) => PlatformError::AuthDead(reason),
        Some(4 | 17 | 32 | 613) | Some(80_001..) => {
            PlatformError::RateLimited { until: Utc::now() + chrono::Duration::hours(1), reason }
        }
        _ => PlatformError::Permanent(reason),
    }
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

    #[test]
    fn graph_error_codes_say_what_to_do() {
        let reason = |code: i64| {
            format!(r#"Facebook answered 400 Bad Request: {{"error": {{"code": {code}, "message": "m"}}}}"#)
        };
        assert!(matches!(classify_graph(reason(190)), PlatformError::AuthDead(_)));
        assert!(matches!(classify_graph(reason(32)), PlatformError::RateLimited { .. }));
        assert!(matches!(classify_graph(reason(80_004)), PlatformError::RateLimited { .. }));
        assert!(matches!(classify_graph(reason(506)), PlatformError::Permanent(_)));
        assert!(matches!(classify_graph("no body".into()), PlatformError::Permanent(_)));
    }

    #[test]
    fn the_long_lived_endpoints_live_on_the_unversioned_host() {
        assert_eq!(unversioned("https://graph.threads.net/v1.0"), "https://graph.threads.net");
        assert_eq!(unversioned("https://graph.instagram.com/"), "https://graph.instagram.com");
        assert_eq!(unversioned("http://127.0.0.1:9/api"), "http://127.0.0.1:9/api");
    }
}
