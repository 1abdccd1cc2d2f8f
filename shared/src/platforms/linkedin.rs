//! LinkedIn: OAuth 2.0 authorization code without PKCE (LinkedIn offers PKCE to native apps
//! only), the client authenticating in the token request's body (`client_secret_post`).
//! Access tokens last 60 days; refresh tokens exist only for approved partners, so most
//! accounts need a reconnect when the token expires (herald marks them `needs_reconnect`).
//!
//! A grant reaches the member (`GET /v2/userinfo` → `sub`) and, with `r_organization_admin`,
//! the organisations they administer (`GET /v2/organizationalEntityAcls?q=roleAssignee`); a
//! refusal there means the grant has no such scope and only the member is imported. Accounts
//! are stored by URN (`urn:li:person:…`, `urn:li:organization:…`), which is the post's author.
//! Publishing: `POST /rest/posts` with `LinkedIn-Version` and `X-Restli-Protocol-Version:
//! 2.0.0`; 201 with the post's URN in `x-restli-id`. A duplicate is a 422; a 429 names no
//! reset (the limits are daily, midnight UTC).

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

/// The API version herald speaks (`LinkedIn-Version: YYYYMM`).
const API_VERSION: &str = "202411";

/// LinkedIn, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "linkedin",
    label: "LinkedIn",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.linkedin.com/oauth/v2/authorization",
        token_url: "https://www.linkedin.com/oauth/v2/accessToken",
        api_url: "https://api.linkedin.com",
        upload_url: None,
        revoke_url: Some("https://www.linkedin.com/oauth/v2/revoke"),
        scopes: &["openid", "profile", "w_member_social"],
    },
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 3000,
        publishes_text: true,
        publishes_media: false,
        // MultiImage: 2-20 images (official); image bytes, video 500 MB, 3 s-30 min and the
        // aspect range from publishers' guides.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif"],
                max_bytes: 5_000_000,
                max_count: 20,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4"],
                max_bytes: 500_000_000,
                max_count: 1,
                aspect: Some(Between::new(1.0 / 2.4, 2.4)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(3_000, 1_800_000)),
            },
            // Alt text: the Images API's `altText`, at most 4,086 characters.
            max_alt_text: Some(4086),
            max_items: 20,
            mixes: false,
            required: false,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(LinkedInAdapter::new(oauth)),
};

pub struct LinkedInAdapter {
    oauth: OAuthClient,
}

impl LinkedInAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Acls {
    elements: Vec<Acl>,
}

#[derive(Deserialize)]
struct Acl {
    organization: String,
}

#[async_trait]
impl Platform for LinkedInAdapter {
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
        let api = &self.oauth.endpoints().api_url;
        let token = tokens.access_token.expose_secret();
        let me: UserInfo =
            http::send_json(self.oauth.label(), self.oauth.http().get(format!("{api}/v2/userinfo")).bearer_auth(token))
                .await?;
        let mut accounts = vec![GrantedAccount {
            platform_user_id: format!("urn:li:person:{}", me.sub),
            kind: "person".to_owned(),
            username: None,
            display_name: me.name,
            token: None,
        }];
        let url = format!("{api}/v2/organizationalEntityAcls?q=roleAssignee&state=APPROVED&role=ADMINISTRATOR");
        let request = self.oauth.http().get(url).bearer_auth(token).header("X-Restli-Protocol-Version", "2.0.0");
        match http::send_json::<Acls>(self.oauth.label(), request).await {
            Ok(acls) => accounts.extend(acls.elements.into_iter().map(|acl| GrantedAccount {
                platform_user_id: acl.organization,
                kind: "organization".to_owned(),
                username: None,
                display_name: None,
                token: None,
            })),
            // No organisation scope in this grant: the member alone.
            Err(PlatformError::Permanent(_)) => {}
            Err(error) => return Err(error),
        }
        Ok(accounts)
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let body = serde_json::json!({
            "author": publication.platform_user_id,
            "commentary": publication.content,
            "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        let request = self
            .oauth
            .http()
            .post(format!("{}/rest/posts", self.oauth.endpoints().api_url))
            .bearer_auth(tokens.access_token.expose_secret())
            .header("LinkedIn-Version", API_VERSION)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .json(&body);
        let response = http::send(self.oauth.label(), request).await?;
        let urn = response
            .headers()
            .get("x-restli-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Ambiguous("LinkedIn accepted the post but named no id".to_owned()))?;
        let url = format!("https://www.linkedin.com/feed/update/{urn}");
        Ok(Published { platform_post_id: urn, url: Some(url) })
    }
}
