//! Mastodon, on the instance the settings name (`HERALD_PLATFORMS__MASTODON__*_URL`, by default
//! mastodon.social): OAuth 2.0 with PKCE (honoured from Mastodon 4.3, ignored before), the
//! client authenticating in the body. Tokens do not expire and there is no refresh. A grant
//! reaches the user (`GET /api/v1/accounts/verify_credentials`).
//!
//! Publishing is `POST /api/v1/statuses` with `Idempotency-Key` = herald's reference for the
//! delivery: Mastodon answers a repeat with the same key (for about an hour) with the status it
//! already made. That is what the look-up after an unanswered publish does: it sends the same
//! request again, which either returns the status that was made or makes it now, once.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{GrantedAccount, LookUp, Platform, PlatformError, Publication, Published, TokenSet, http};

pub struct MastodonAdapter {
    oauth: OAuthClient,
}

impl MastodonAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }
}

#[derive(Deserialize)]
struct Account {
    id: String,
    acct: Option<String>,
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    url: Option<String>,
}

#[async_trait]
impl Platform for MastodonAdapter {
    fn name(&self) -> &'static str {
        "mastodon"
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/api/v1/accounts/verify_credentials", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let account: Account = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: account.id,
            kind: "person".to_owned(),
            username: account.acct,
            display_name: account.display_name,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let visibility = publication.options.get("visibility").and_then(|value| value.as_str()).unwrap_or("public");
        let body = serde_json::json!({ "status": publication.content, "visibility": visibility });
        let request = self
            .oauth
            .http()
            .post(format!("{}/api/v1/statuses", self.oauth.endpoints().api_url))
            .bearer_auth(tokens.access_token.expose_secret())
            .header("Idempotency-Key", publication.reference)
            .json(&body);
        let status: Status = http::send_json(self.oauth.label(), request).await?;
        Ok(Published { platform_post_id: status.id, url: status.url })
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        // The same Idempotency-Key: Mastodon returns the status an earlier try made, or makes it.
        Ok(LookUp::Found(self.publish(tokens, publication).await?))
    }

    fn max_content_chars(&self) -> usize {
        500
    }
}
