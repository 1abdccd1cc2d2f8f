//! X (Twitter) API v2 with OAuth 2.0: authorization code with PKCE (required by X), HTTP Basic
//! client authentication for confidential clients, refresh tokens that rotate on every use
//! (`offline.access`), access tokens of two hours. A grant reaches one account, the user's own:
//! `GET /2/users/me` → `{"data": {"id", "name", "username"}}`. Rate limits answer 429 with
//! `x-rate-limit-reset` (unix seconds).

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{GrantedAccount, Platform, PlatformError, TokenSet, http};

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

#[async_trait]
impl Platform for XAdapter {
    fn name(&self) -> &'static str {
        "x"
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
}
