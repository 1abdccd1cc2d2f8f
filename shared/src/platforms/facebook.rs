//! Facebook Pages through the Graph API. Facebook Login without PKCE, the client
//! authenticating in the body; the short-lived user token the code buys is exchanged at once
//! for a long-lived one (`fb_exchange_token`, about 60 days). A grant reaches the Pages the
//! user manages (`GET /me/accounts`), each with its own Page token, which does not expire when
//! it comes from a long-lived user token: each Page is an account with that token, so nothing
//! needs a refresh. Publishing is `POST /{page-id}/feed` with `message`.
//!
//! Graph errors come as `{"error": {"code", "message"}}`, mostly with status 400: code 190 is a
//! dead token (reconnect), 4, 17, 32, 613 and 80001+ are rate limits (the `X-App-Usage` family
//! names no reset time; herald waits an hour), 506 a duplicate post.

use async_trait::async_trait;
use chrono::Utc;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::oauth::OAuthClient;
use super::{ClientCredentials, GrantedAccount, Platform, PlatformError, Publication, Published, TokenSet, http};

pub struct FacebookAdapter {
    oauth: OAuthClient,
}

impl FacebookAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        graph(&self.oauth, request).await
    }
}

/// Sends a Graph request (Facebook, Instagram, Threads) and reads its answer, classifying
/// Graph's error codes.
pub(super) async fn graph<T: DeserializeOwned>(
    oauth: &OAuthClient,
    request: RequestBuilder,
) -> Result<T, PlatformError> {
    match http::send_json(oauth.label(), request).await {
        Err(PlatformError::Permanent(reason)) => Err(classify_graph(reason)),
        other => other,
    }
}

/// Instagram's and Threads' connect: the code buys a one-hour token, traded at once
/// (`{base}/access_token?grant_type={grant_type}`) for a 60-day one that renews itself.
pub(super) async fn exchange_for_long_lived(
    oauth: &OAuthClient,
    base: &str,
    grant_type: &str,
    client: &ClientCredentials,
    code: &SecretString,
    redirect_uri: &str,
) -> Result<TokenSet, PlatformError> {
    let short = oauth.exchange_code(client, code, None, redirect_uri).await?;
    let secret = client.client_secret.as_ref().map(|secret| secret.expose_secret().to_owned()).unwrap_or_default();
    let query = [
        ("grant_type", grant_type),
        ("client_secret", secret.as_str()),
        ("access_token", short.access_token.expose_secret()),
    ];
    let mut long = long_lived_token(oauth, base, "access_token", &query).await?;
    long.scopes = short.scopes;
    Ok(long)
}

/// Instagram's and Threads' long-lived tokens: `GET {base}/{path}?{query}` answers a token that
/// renews itself, so herald keeps it as both the access and the refresh token.
pub(super) async fn long_lived_token(
    oauth: &OAuthClient,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<TokenSet, PlatformError> {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    let token: LongLived = graph(oauth, oauth.http().get(format!("{base}/{path}?{query}"))).await?;
    Ok(TokenSet {
        access_token: SecretString::from(token.access_token.clone()),
        refresh_token: Some(SecretString::from(token.access_token)),
        expires_at: token.expires_in.map(|seconds| Utc::now() + chrono::Duration::seconds(seconds)),
        scopes: Vec::new(),
    })
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
pub(super) fn classify_graph(reason: String) -> PlatformError {
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

#[derive(Deserialize)]
struct LongLived {
    access_token: String,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct Pages {
    data: Vec<Page>,
}

#[derive(Deserialize)]
struct Page {
    id: String,
    name: Option<String>,
    username: Option<String>,
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[async_trait]
impl Platform for FacebookAdapter {
    fn name(&self) -> &'static str {
        "facebook"
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn supports_pkce(&self) -> bool {
        false
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let short = self.oauth.exchange_code(client, code, pkce_verifier, redirect_uri).await?;
        // Short-lived user tokens last an hour: trade it for a long-lived one at once.
        let secret = client.client_secret.as_ref().map(|secret| secret.expose_secret().to_owned()).unwrap_or_default();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "fb_exchange_token")
            .append_pair("client_id", &client.client_id)
            .append_pair("client_secret", &secret)
            .append_pair("fb_exchange_token", short.access_token.expose_secret())
            .finish();
        let url = format!("{}?{query}", self.oauth.endpoints().token_url);
        let long: LongLived = self.graph(self.oauth.http().get(url)).await?;
        Ok(TokenSet {
            access_token: SecretString::from(long.access_token),
            refresh_token: None,
            expires_at: long.expires_in.map(|seconds| Utc::now() + chrono::Duration::seconds(seconds)),
            scopes: short.scopes,
        })
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me/accounts?fields=id,name,username,access_token", self.oauth.endpoints().api_url);
        let pages: Pages =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(pages
            .data
            .into_iter()
            .map(|page| GrantedAccount {
                platform_user_id: page.id,
                kind: "page".to_owned(),
                username: page.username,
                display_name: page.name,
                token: Some(TokenSet {
                    access_token: SecretString::from(page.access_token),
                    refresh_token: None,
                    expires_at: None,
                    scopes: tokens.scopes.clone(),
                }),
            })
            .collect())
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let url = format!("{}/{}/feed", self.oauth.endpoints().api_url, publication.platform_user_id);
        let body = serde_json::json!({ "message": publication.content });
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let created: Created = self.graph(request).await?;
        let url = format!("https://www.facebook.com/{}", created.id);
        Ok(Published { platform_post_id: created.id, url: Some(url) })
    }

    fn max_content_chars(&self) -> usize {
        63_206
    }
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
}
