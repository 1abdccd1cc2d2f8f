//! Instagram (Business Login): OAuth without PKCE, the client authenticating in the body. The
//! one-hour token the code buys is exchanged at once for a 60-day one (`ig_exchange_token` on
//! the Graph host), which refreshes itself (`ig_refresh_token`, once it is a day old): herald
//! keeps it as both the access and the refresh token. A grant reaches the professional account
//! (`GET /me?fields=user_id,username`).
//!
//! Publishing needs an image or a video (a media container), which herald's posts cannot carry
//! yet: Instagram accounts connect and stay fresh, and the posts API refuses them as targets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::meta::{self, LongLivedExchange};
use super::oauth::OAuthClient;
use super::{
    ClientCredentials, Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec,
    Publication, PublishRates, Published, TokenSet, hourly, per_minutes,
};

/// Instagram, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "instagram",
    label: "Instagram",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.instagram.com/oauth/authorize",
        token_url: "https://api.instagram.com/oauth/access_token",
        api_url: "https://graph.instagram.com",
        upload_url: None,
        revoke_url: None,
        scopes: &["instagram_business_basic", "instagram_business_content_publish"],
    },
    // Long-lived tokens of about 60 days, refreshed only after 24 h.
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: per_minutes(50, 24 * 60), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: Some(30),
        max_chars: 2200,
        publishes_text: false,
        publishes_media: false,
        // Content publishing: JPEG up to 8 MB at 4:5 to 1.91:1; Reels MP4/MOV 3 s-15 min (300 MB,
        // the lower of two published figures); carousels of up to 10, mixed.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg"],
                max_bytes: 8_000_000,
                max_count: 10,
                aspect: Some(Between::new(0.8, 1.91)),
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 300_000_000,
                max_count: 10,
                aspect: Some(Between::new(0.01, 10.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(3_000, 900_000)),
            },
            // Alt text: `alt_text` (image containers) has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 10,
            mixes: true,
            required: true,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(InstagramAdapter::new(oauth)),
};

pub struct InstagramAdapter {
    oauth: OAuthClient,
}

impl InstagramAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body().with_comma_scopes() }
    }

    /// The Graph host the long-lived token endpoints live on, without an API version.
    fn graph_base(&self) -> String {
        meta::unversioned(&self.oauth.endpoints().api_url)
    }
}

#[derive(Deserialize)]
struct Me {
    user_id: Option<String>,
    id: Option<String>,
    username: Option<String>,
}

#[async_trait]
impl Platform for InstagramAdapter {
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
        let exchange = LongLivedExchange::self_renewing(&self.graph_base(), "ig_exchange_token");
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, None, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        meta::renew(&self.oauth, &self.graph_base(), "ig_refresh_token", refresh_token).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me?fields=user_id,username", self.oauth.endpoints().api_url);
        let me: Me =
            meta::graph(&self.oauth, self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret()))
                .await?;
        let id =
            me.user_id.or(me.id).ok_or_else(|| PlatformError::Permanent("Instagram named no user id".to_owned()))?;
        Ok(vec![GrantedAccount {
            platform_user_id: id,
            kind: "person".to_owned(),
            display_name: me.username.clone(),
            username: me.username,
            token: None,
        }])
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent(
            "an Instagram post needs an image or a video, which herald cannot attach yet".to_owned(),
        ))
    }
}
