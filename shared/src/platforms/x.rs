//! X (Twitter) API v2 with OAuth 2.0: authorization code with PKCE (required by X), HTTP Basic
//! client authentication for confidential clients, refresh tokens that rotate on every use
//! (`offline.access`), access tokens of two hours. A grant reaches one account, the user's own:
//! `GET /2/users/me` → `{"data": {"id", "name", "username"}}`. Publishing is
//! `POST /2/tweets {"text"}` → 201 `{"data": {"id", "text"}}`; a duplicate is a 403. X cannot look
//! a post up by a client reference, so an unanswered publish ends `unknown`. Rate limits answer
//! 429 with `x-rate-limit-reset` (unix seconds).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec, Publication, PublishRates,
    Published, TokenSet, http, per_minutes,
};

/// X, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "x",
    label: "X",
    endpoints: DefaultEndpoints {
        authorize_url: "https://x.com/i/oauth2/authorize",
        token_url: "https://api.x.com/2/oauth2/token",
        api_url: "https://api.x.com",
        upload_url: None,
        revoke_url: Some("https://api.x.com/2/oauth2/revoke"),
        scopes: &["tweet.read", "tweet.write", "users.read", "offline.access"],
    },
    // Access tokens of two hours.
    refresh_margin: Duration::from_secs(30 * 60),
    // 200 per 15 minutes per user; 300 per 3 hours per user and app.
    publish_rates: PublishRates { per_account: per_minutes(200, 15), per_app: per_minutes(300, 180) },
    content: ContentRules {
        counts: super::TextCount::XWeighted,
        max_hashtags: None,
        max_chars: 280,
        publishes_text: true,
        publishes_media: false,
        // docs.x.com media: 5 MB images, 4 photos or 1 video (512 MB); types, sizes in px and
        // 0.5-140 s from publishers' guides.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif", "image/webp"],
                max_bytes: 5_000_000,
                max_count: 4,
                aspect: None,
                width: Some(Between::new(4, 8192)),
                height: Some(Between::new(4, 8192)),
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 512_000_000,
                max_count: 1,
                aspect: Some(Between::new(1.0 / 3.0, 3.0)),
                width: Some(Between::new(32, 1280)),
                height: Some(Between::new(32, 1024)),
                duration_ms: Some(Between::new(500, 140_000)),
            },
            // Alt text: media metadata `alt_text`, at most 1,000 characters.
            max_alt_text: Some(1000),
            max_items: 4,
            mixes: false,
            required: false,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(XAdapter::new(oauth)),
};

pub struct XAdapter {
    oauth: OAuthClient,
}

impl XAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth }
    }
}

#[derive(Deserialize)]
struct Me {
    data: User,
}

#[derive(Deserialize)]
struct User {
    id: String,
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    data: Tweet,
}

#[derive(Deserialize)]
struct Tweet {
    id: String,
}

#[async_trait]
impl Platform for XAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/2/users/me", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let me: Me = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: me.data.id,
            kind: "person".to_owned(),
            username: me.data.username,
            display_name: me.data.name,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let url = format!("{}/2/tweets", self.oauth.endpoints().api_url);
        let body = serde_json::json!({ "text": publication.content });
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let created: Created = http::send_json(self.oauth.label(), request).await?;
        let url = format!("https://x.com/i/web/status/{}", created.data.id);
        Ok(Published { platform_post_id: created.data.id, url: Some(url) })
    }
}
