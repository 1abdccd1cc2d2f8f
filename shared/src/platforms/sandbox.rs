//! The client side of the `sandbox` platform: herald talking to the fake platform it serves
//! itself under `/sandbox` (see `api/src/sandbox.rs`), over HTTP like any other platform, so the
//! whole connect → exchange → refresh path runs for real in customers' tests and in ours.
//!
//! The sandbox's API: `GET {api}/accounts` with the access token lists the person and the two
//! pages the grant reaches as `{"data": [{"id", "kind", "username", "name"}]}`; a 401 means the
//! token is dead.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ClientCredentials, Endpoints, GrantedAccount, Platform, PlatformError, TokenSet, oauth};

pub struct SandboxAdapter {
    endpoints: Endpoints,
    http: reqwest::Client,
}

impl SandboxAdapter {
    pub fn new(endpoints: Endpoints, http: reqwest::Client) -> Self {
        Self { endpoints, http }
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

    fn authorize_url(
        &self,
        client: &ClientCredentials,
        redirect_uri: &str,
        state: &str,
        pkce_verifier: Option<&SecretString>,
        scopes: &[String],
    ) -> Result<String, PlatformError> {
        let scopes = if scopes.is_empty() { self.endpoints.scopes.as_slice() } else { scopes };
        oauth::authorize_url(&self.endpoints, client, redirect_uri, state, pkce_verifier, scopes)
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        oauth::exchange_code(&self.http, &self.endpoints, client, code, pkce_verifier, redirect_uri).await
    }

    async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        oauth::refresh(&self.http, &self.endpoints, client, refresh_token).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/accounts", self.endpoints.api_url);
        let response = self
            .http
            .get(url)
            .bearer_auth(tokens.access_token.expose_secret())
            .send()
            .await
            .map_err(|error| PlatformError::Transient(format!("sandbox unreachable: {error}")))?;
        let status = response.status();
        if status.as_u16() == 401 {
            return Err(PlatformError::AuthDead("the sandbox refused the access token".to_owned()));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(PlatformError::Transient(format!("the sandbox answered {status}")));
        }
        if !status.is_success() {
            return Err(PlatformError::Permanent(format!("the sandbox answered {status}")));
        }
        let list: AccountList = response
            .json()
            .await
            .map_err(|error| PlatformError::Transient(format!("unreadable account list: {error}")))?;
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

    async fn revoke(&self, client: &ClientCredentials, token: &SecretString) -> Result<(), PlatformError> {
        let Some(url) = &self.endpoints.revoke_url else { return Ok(()) };
        let form = [("token", token.expose_secret()), ("client_id", client.client_id.as_str())];
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|error| PlatformError::Transient(format!("sandbox unreachable: {error}")))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status if status.is_server_error() => {
                Err(PlatformError::Transient(format!("the sandbox answered {status}")))
            }
            status => Err(PlatformError::Permanent(format!("the sandbox answered {status}"))),
        }
    }
}
