//! Instagram (Business Login): OAuth without PKCE, the client authenticating in the body. The
//! one-hour token the code buys is exchanged at once for a 60-day one (`ig_exchange_token` on
//! the Graph host), which refreshes itself (`ig_refresh_token`, once it is a day old): herald
//! keeps it as both the access and the refresh token. A grant reaches the professional account
//! (`GET /me?fields=user_id,username`).
//!
//! Publishing needs an image or a video (a media container), which herald's posts cannot carry
//! yet: Instagram accounts connect and stay fresh, and the posts API refuses them as targets.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::facebook::{exchange_for_long_lived, graph, long_lived_token};
use super::oauth::OAuthClient;
use super::{ClientCredentials, GrantedAccount, Platform, PlatformError, Publication, Published, TokenSet};

pub struct InstagramAdapter {
    oauth: OAuthClient,
}

impl InstagramAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body().with_comma_scopes() }
    }

    /// The Graph host the long-lived token endpoints live on, without an API version.
    fn graph_base(&self) -> String {
        let api = self.oauth.endpoints().api_url.trim_end_matches('/');
        match api.rsplit_once('/') {
            Some((base, version))
                if version.starts_with('v') && version[1..].starts_with(|c: char| c.is_ascii_digit()) =>
            {
                base.to_owned()
            }
            _ => api.to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Me {
    user_id: Option<String>,
    id: Option<String>,
    username: Option<String>,
}

#[async_trait]
impl Platform for InstagramAdapter {
    fn name(&self) -> &'static str {
        "instagram"
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn supports_pkce(&self) -> bool {
        false
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        _pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        exchange_for_long_lived(&self.oauth, &self.graph_base(), "ig_exchange_token", client, code, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        let query = [("grant_type", "ig_refresh_token"), ("access_token", refresh_token.expose_secret())];
        long_lived_token(&self.oauth, &self.graph_base(), "refresh_access_token", &query).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me?fields=user_id,username", self.oauth.endpoints().api_url);
        let me: Me =
            graph(&self.oauth, self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        let id =
            me.user_id.or(me.id).ok_or_else(|| PlatformError::Permanent("Instagram named no user id".to_owned()))?;
        Ok(vec![GrantedAccount {
            platform_user_id: id,
            kind: "person".to_owned(),
            display_name: me.username.clone(),
            username: me.username,
            token: None,
        }])
    }

    fn publishes_text(&self) -> bool {
        false
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent(
            "an Instagram post needs an image or a video, which herald cannot attach yet".to_owned(),
        ))
    }

    fn max_content_chars(&self) -> usize {
        2200
    }
}
