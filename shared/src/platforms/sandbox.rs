//! The client side of the `sandbox` platform: herald talking to the fake platform it serves
//! itself under `/sandbox` (see `api/src/sandbox.rs`), over HTTP like any other platform, so the
//! whole connect → exchange → refresh path runs for real in customers' tests and in ours.
//!
//! The sandbox's API: `GET {api}/accounts` with the access token lists the person and the two
//! pages the grant reaches as `{"data": [{"id", "kind", "username", "name"}]}`; a 401 means the
//! token is dead.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{GrantedAccount, Platform, PlatformError, TokenSet, http};

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

#[async_trait]
impl Platform for SandboxAdapter {
    fn name(&self) -> &'static str {
        "sandbox"
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
}
