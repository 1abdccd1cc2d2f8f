//! Pinterest (API v5): OAuth 2.0 with the client authenticating as HTTP Basic and scopes
//! separated by commas; access tokens last about 30 days and refresh tokens about a year. A
//! grant reaches the user's account (`GET /user_account`).
//!
//! A Pin needs an image and a board, which herald's posts cannot carry yet: Pinterest accounts
//! connect and stay fresh, and the posts API refuses them as targets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec, Publication, PublishRates,
    Published, TokenSet, hourly, http,
};

/// Pinterest, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "pinterest",
    label: "Pinterest",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.pinterest.com/oauth/",
        token_url: "https://api.pinterest.com/v5/oauth/token",
        api_url: "https://api.pinterest.com/v5",
        upload_url: None,
        revoke_url: None,
        scopes: &["boards:read", "pins:read", "pins:write"],
    },
    refresh_margin: Duration::from_secs(3 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 500,
        publishes_text: false,
        publishes_media: false,
        // Product specs: PNG/JPEG up to 20 MB (carousels of up to 5); MP4/MOV up to 2 GB, 4 s-15 min,
        // between 1:2 and 1.91:1.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png"],
                max_bytes: 20_000_000,
                max_count: 5,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 2_000_000_000,
                max_count: 1,
                aspect: Some(Between::new(0.5, 1.91)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(4_000, 900_000)),
            },
            // Alt text: a pin's `alt_text`, at most 500 characters.
            max_alt_text: Some(500),
            max_items: 5,
            mixes: false,
            required: true,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(PinterestAdapter::new(oauth)),
};

pub struct PinterestAdapter {
    oauth: OAuthClient,
}

impl PinterestAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_comma_scopes() }
    }
}

#[derive(Deserialize)]
struct UserAccount {
    id: Option<String>,
    username: String,
}

#[async_trait]
impl Platform for PinterestAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn supports_pkce(&self) -> bool {
        false
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/user_account", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let account: UserAccount = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: account.id.unwrap_or_else(|| account.username.clone()),
            kind: "person".to_owned(),
            display_name: Some(account.username.clone()),
            username: Some(account.username),
            token: None,
        }])
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent("a Pin needs an image and a board, which herald cannot attach yet".to_owned()))
    }
}
