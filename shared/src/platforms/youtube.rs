//! YouTube (Google OAuth 2.0): PKCE, and `access_type=offline` + `prompt=consent` so that Google
//! hands out a refresh token (it does not rotate it: refreshes answer without one, and herald
//! keeps the stored one). Access tokens last an hour. A grant reaches the user's channels
//! (`GET /channels?part=snippet&mine=true`). Google refresh tokens die when revoked, after six
//! months unused, or after seven days for apps still in "Testing".
//!
//! Publishing needs a video (a resumable upload), which herald's posts cannot carry yet: YouTube
//! accounts connect and stay fresh, and the posts API refuses them as targets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec, Publication, PublishRates,
    Published, TokenSet, hourly, http,
};

/// YouTube, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "youtube",
    label: "YouTube",
    endpoints: DefaultEndpoints {
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        api_url: "https://www.googleapis.com/youtube/v3",
        upload_url: Some("https://www.googleapis.com/upload/youtube/v3"),
        revoke_url: Some("https://oauth2.googleapis.com/revoke"),
        scopes: &["https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"],
    },
    refresh_margin: Duration::from_secs(10 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 5000,
        publishes_text: false,
        publishes_media: false,
        // videos.insert: one video of any container, up to 256 GB; no images.
        media: MediaRules {
            images: KindRules::NONE,
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/webm"],
                max_bytes: 256_000_000_000,
                max_count: 1,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            // Alt text: no alt text on videos.
            max_alt_text: None,
            max_items: 1,
            mixes: false,
            required: true,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(YouTubeAdapter::new(oauth)),
};

pub struct YouTubeAdapter {
    oauth: OAuthClient,
}

impl YouTubeAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_authorize_params(&[("access_type", "offline"), ("prompt", "consent")]) }
    }
}

#[derive(Deserialize)]
struct Channels {
    #[serde(default)]
    items: Vec<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    id: String,
    snippet: Option<Snippet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snippet {
    title: Option<String>,
    custom_url: Option<String>,
}

#[async_trait]
impl Platform for YouTubeAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/channels?part=snippet&mine=true", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let channels: Channels = http::send_json(self.oauth.label(), request).await?;
        Ok(channels
            .items
            .into_iter()
            .map(|channel| GrantedAccount {
                platform_user_id: channel.id,
                kind: "channel".to_owned(),
                username: channel.snippet.as_ref().and_then(|snippet| snippet.custom_url.clone()),
                display_name: channel.snippet.and_then(|snippet| snippet.title),
                token: None,
            })
            .collect())
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent("a YouTube post needs a video, which herald cannot attach yet".to_owned()))
    }
}
