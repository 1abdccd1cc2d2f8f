//! Pinterest (API v5): OAuth 2.0 with the client authenticating as HTTP Basic and scopes
//! separated by commas; access tokens last about 30 days and refresh tokens about a year. A
//! grant reaches the user's account (`GET /user_account`).
//!
//! A Pin needs an image and a board, which herald's posts cannot carry yet: Pinterest accounts
//! connect and stay fresh, and the posts API refuses them as targets.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{GrantedAccount, Platform, PlatformError, Publication, Published, TokenSet, http};

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
    fn name(&self) -> &'static str {
        "pinterest"
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

    fn publishes_text(&self) -> bool {
        false
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent("a Pin needs an image and a board, which herald cannot attach yet".to_owned()))
    }

    fn max_content_chars(&self) -> usize {
        500
    }
}
