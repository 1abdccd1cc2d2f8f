//! Threads (Meta): OAuth without PKCE, the client authenticating in the body; the one-hour
//! token the code buys is exchanged at once for a 60-day one (`th_exchange_token`), which
//! refreshes itself (`th_refresh_token`, allowed once it is a day old): herald keeps it as both
//! the access and the refresh token, and the refresh job renews it a week before it expires.
//! A grant reaches the user (`GET /me`). Publishing is two calls: create a text container
//! (`POST /{user}/threads`, `media_type=TEXT`), then publish it (`POST /{user}/threads_publish`);
//! the permalink is read afterwards. Errors are Graph's (`meta`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::meta::{self, LongLivedExchange};
use super::oauth::OAuthClient;
use super::{
    ClientCredentials, Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec,
    Publication, PublishRates, Published, TokenSet, hourly, per_minutes,
};

/// Threads, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "threads",
    label: "Threads",
    endpoints: DefaultEndpoints {
        authorize_url: "https://threads.net/oauth/authorize",
        token_url: "https://graph.threads.net/oauth/access_token",
        api_url: "https://graph.threads.net/v1.0",
        upload_url: None,
        revoke_url: None,
        scopes: &["threads_basic", "threads_content_publish"],
    },
    // Long-lived tokens of about 60 days, refreshed only after 24 h.
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: per_minutes(250, 24 * 60), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 500,
        publishes_text: true,
        publishes_media: false,
        // Threads media specifications: JPEG/PNG up to 8 MB, aspect up to 10:1; MP4/MOV up to 1 GB
        // and 5 min; carousels of up to 20, mixed.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png"],
                max_bytes: 8_000_000,
                max_count: 20,
                aspect: Some(Between::new(0.1, 10.0)),
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 1_000_000_000,
                max_count: 20,
                aspect: Some(Between::new(0.01, 10.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(1, 300_000)),
            },
            // Alt text: `alt_text` on media containers has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 20,
            mixes: true,
            required: false,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(ThreadsAdapter::new(oauth)),
};

pub struct ThreadsAdapter {
    oauth: OAuthClient,
}

impl ThreadsAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        meta::graph(&self.oauth, request).await
    }

    /// Where the long-lived token endpoints live: the API's host, without its version.
    fn token_base(&self) -> String {
        meta::unversioned(&self.oauth.endpoints().api_url)
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
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
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
        let exchange = LongLivedExchange::self_renewing(&self.token_base(), "th_exchange_token");
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, None, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        meta::renew(&self.oauth, &self.token_base(), "th_refresh_token", refresh_token).await
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
}
