//! Facebook Pages through the Graph API. Facebook Login without PKCE, the client
//! authenticating in the body; the short-lived user token the code buys is exchanged at once
//! for a long-lived one (`fb_exchange_token`, about 60 days, `meta`). A grant reaches the
//! Pages the user manages (`GET /me/accounts`), each with its own Page token, which does not
//! expire when it comes from a long-lived user token: each Page is an account with that token,
//! so nothing needs a refresh. Publishing is `POST /{page-id}/feed` with `message`. Errors are
//! Graph's (`meta`).

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
    Publication, PublishRates, Published, TokenSet, hourly,
};

/// Facebook, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "facebook",
    label: "Facebook",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.facebook.com/v21.0/dialog/oauth",
        token_url: "https://graph.facebook.com/v21.0/oauth/access_token",
        api_url: "https://graph.facebook.com/v21.0",
        upload_url: None,
        revoke_url: None,
        scopes: &["pages_show_list", "pages_manage_posts", "pages_read_engagement"],
    },
    // Long-lived tokens of about 60 days (Page tokens do not expire at all).
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 63_206,
        publishes_text: true,
        publishes_media: false,
        // Pages: up to 10 photos or one video, not both (publishers' guides; Meta's help pages
        // differ: 4 or 10 MB images, 4 or 10 GB video).
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif"],
                max_bytes: 10_000_000,
                max_count: 10,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/webm"],
                max_bytes: 10_000_000_000,
                max_count: 1,
                aspect: Some(Between::new(9.0 / 16.0, 16.0 / 9.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(1_000, 14_400_000)),
            },
            // Alt text: `alt_text_custom` has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 10,
            mixes: false,
            required: false,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(FacebookAdapter::new(oauth)),
};

pub struct FacebookAdapter {
    oauth: OAuthClient,
}

impl FacebookAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        meta::graph(&self.oauth, request).await
    }
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
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        // Short-lived user tokens last an hour: trade it for a long-lived one at once.
        let exchange = LongLivedExchange {
            url: self.oauth.endpoints().token_url.clone(),
            grant_type: "fb_exchange_token",
            token_param: "fb_exchange_token",
            sends_client_id: true,
            renews_itself: false,
        };
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, pkce_verifier, redirect_uri).await
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
}
