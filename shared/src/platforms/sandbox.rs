//! The client side of the `sandbox` platform: herald talking to the fake platform it serves
//! itself under `/sandbox` (see `api/src/sandbox.rs`), over HTTP like any other platform, so the
//! whole connect → exchange → refresh path runs for real in customers' tests and in ours.
//!
//! The sandbox's API, with the access token: `GET {api}/accounts` lists the person and the two
//! pages the grant reaches as `{"data": [{"id", "kind", "username", "name"}]}`;
//! `POST {api}/posts` `{"account_id", "text", "client_ref"}` publishes (201 `{"id", "url"}`);
//! `GET {api}/posts?client_ref=` finds what a publish made. A 401 means the token is dead. Its
//! posts can inject failures through markers in the text (see `api/src/sandbox.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    ContentRules, DefaultEndpoints, FollowUp, FollowUpKind, KindRules, MediaRules, GrantedAccount, LookUp, Platform, PlatformError, PlatformSpec, Publication,
    PublishRates, Published, TokenSet, http, per_minutes,
};

/// The sandbox, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "sandbox",
    label: "the sandbox",
    // Served by herald itself, under its public URL.
    endpoints: DefaultEndpoints {
        authorize_url: "/sandbox/oauth/authorize",
        token_url: "/sandbox/oauth/token",
        api_url: "/sandbox/api",
        upload_url: None,
        revoke_url: Some("/sandbox/oauth/revoke"),
        scopes: &["profile", "publish"],
    },
    refresh_margin: Duration::from_secs(5 * 60),
    // The sandbox takes what herald's own benchmark sends.
    publish_rates: PublishRates { per_account: per_minutes(100_000, 1), per_app: per_minutes(1_000_000, 1) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 500,
        publishes_text: true,
        publishes_media: true,
        // The sandbox takes what any platform takes, so tests can attach anything herald accepts.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif", "image/webp"],
                max_bytes: 100_000_000,
                max_count: 10,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/webm"],
                max_bytes: 5_000_000_000,
                max_count: 10,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            // Alt text: as X.
            max_alt_text: Some(1000),
            max_items: 10,
            mixes: true,
            required: false,
        },
        chains: super::Chains { replies: true, comments: true },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: Some("herald-sandbox"),
    build: |oauth| Arc::new(SandboxAdapter::new(oauth)),
};

pub struct SandboxAdapter {
    oauth: OAuthClient,
}

impl SandboxAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth }
    }
}

#[derive(Deserialize)]
struct AccountList {
    data: Vec<SandboxAccount>,
}

#[derive(Deserialize)]
struct SandboxAccount {
    id: String,
    kind: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct SandboxPost {
    id: String,
    url: String,
}

#[derive(Deserialize)]
struct PostList {
    data: Vec<SandboxPost>,
}

impl From<SandboxPost> for Published {
    fn from(post: SandboxPost) -> Self {
        Published::new(post.id, Some(post.url))
    }
}

#[async_trait]
impl Platform for SandboxAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/accounts", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let list: AccountList = http::send_json(self.oauth.label(), request).await?;
        Ok(list
            .data
            .into_iter()
            .map(|account| GrantedAccount {
                platform_user_id: account.id,
                kind: account.kind,
                username: account.username,
                display_name: account.name,
                token: None,
            })
            .collect())
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        self.post(tokens, publication, None).await
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        self.post(tokens, publication, Some(follow_up)).await
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        _follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        self.look_up(tokens, publication).await
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let query =
            form_urlencoded::Serializer::new(String::new()).append_pair("client_ref", publication.reference).finish();
        let url = format!("{}/posts?{query}", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let found: PostList = http::send_json(self.oauth.label(), request).await?;
        Ok(found.data.into_iter().next().map_or(LookUp::NotFound, |post| LookUp::Found(post.into())))
    }
}

impl SandboxAdapter {
    /// `POST {api}/posts`: a post, or one that answers the item before it (`reply_to`) or
    /// comments on the chain's first post (`comment_on`).
    async fn post(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: Option<&FollowUp<'_>>,
    ) -> Result<Published, PlatformError> {
        let media: Vec<serde_json::Value> = publication
            .media
            .iter()
            .map(|file| serde_json::json!({ "url": file.url, "alt_text": file.alt_text }))
            .collect();
        let body = serde_json::json!({
            "account_id": publication.platform_user_id,
            "text": publication.content,
            "media": media,
            "client_ref": publication.reference,
        });
        let mut body = body;
        match follow_up {
            Some(FollowUp { kind: FollowUpKind::Reply, parent, .. }) => body["reply_to"] = parent.platform_post_id.clone().into(),
            Some(FollowUp { kind: FollowUpKind::Comment, root, .. }) => body["comment_on"] = root.platform_post_id.clone().into(),
            None => {}
        }
        let url = format!("{}/posts", self.oauth.endpoints().api_url);
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let created: SandboxPost = http::send_json(self.oauth.label(), request).await?;
        Ok(created.into())
    }
}
