//! Threads (Meta): OAuth without PKCE, the client authenticating in the body; the one-hour
//! token the code buys is exchanged at once for a 60-day one (`th_exchange_token`), which
//! refreshes itself (`th_refresh_token`, allowed once it is a day old): herald keeps it as both
//! the access and the refresh token, and the refresh job renews it a week before it expires.
//! A grant reaches the user (`GET /me`). Publishing is two calls: create a text container
//! (`POST /{user}/threads`, `media_type=TEXT`), then publish it (`POST /{user}/threads_publish`);
//! the permalink is read afterwards. Errors are Graph's (see `facebook::classify_graph`).

use async_trait::async_trait;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::facebook::{exchange_for_long_lived, graph, long_lived_token};
use super::oauth::OAuthClient;
use super::{ClientCredentials, GrantedAccount, Platform, PlatformError, Publication, Published, TokenSet};

pub struct ThreadsAdapter {
    oauth: OAuthClient,
}

impl ThreadsAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        graph(&self.oauth, request).await
    }

    /// Where the long-lived token endpoints live: the API's host, without its version.
    fn token_base(&self) -> String {
        self.oauth.endpoints().api_url.trim_end_matches('/').trim_end_matches("/v1.0").to_owned()
    }

    async fn long_lived(&self, path: &str, query: &[(&str, &str)]) -> Result<TokenSet, PlatformError> {
        long_lived_token(&self.oauth, &self.token_base(), path, query).await
    }
}

#[derive(Deserialize)]
struct Me {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct Permalink {
    permalink: Option<String>,
}

#[async_trait]
impl Platform for ThreadsAdapter {
    fn name(&self) -> &'static str {
        "threads"
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
        _pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        exchange_for_long_lived(&self.oauth, &self.token_base(), "th_exchange_token", client, code, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        let query = [("grant_type", "th_refresh_token"), ("access_token", refresh_token.expose_secret())];
        self.long_lived("refresh_access_token", &query).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me?fields=id,username,name", self.oauth.endpoints().api_url);
        let me: Me = self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: me.id,
            kind: "person".to_owned(),
            username: me.username,
            display_name: me.name,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let api = &self.oauth.endpoints().api_url;
        let token = tokens.access_token.expose_secret();
        let user = publication.platform_user_id;
        let container_query = form_urlencoded::Serializer::new(String::new())
            .append_pair("media_type", "TEXT")
            .append_pair("text", publication.content)
            .finish();
        let container: Id = self
            .graph(self.oauth.http().post(format!("{api}/{user}/threads?{container_query}")).bearer_auth(token))
            .await?;
        let publish_query =
            form_urlencoded::Serializer::new(String::new()).append_pair("creation_id", &container.id).finish();
        let published: Id = self
            .graph(self.oauth.http().post(format!("{api}/{user}/threads_publish?{publish_query}")).bearer_auth(token))
            .await?;
        // The permalink is a courtesy: the post exists whether or not it can be read back.
        let permalink = self
            .graph::<Permalink>(
                self.oauth.http().get(format!("{api}/{}?fields=permalink", published.id)).bearer_auth(token),
            )
            .await
            .ok()
            .and_then(|found| found.permalink);
        Ok(Published { platform_post_id: published.id, url: permalink })
    }

    fn max_content_chars(&self) -> usize {
        500
    }
}
