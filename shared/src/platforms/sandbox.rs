//! The client side of the `sandbox` platform: herald talking to the fake platform it serves
//! itself under `/sandbox` (see `api/src/sandbox.rs`), over HTTP like any other platform, so the
//! whole connect → exchange → refresh path runs for real in customers' tests and in ours.
//!
//! The sandbox's API, with the access token: `GET {api}/accounts` lists the person and the two
//! pages the grant reaches as `{"data": [{"id", "kind", "username", "name"}]}`;
//! `POST {api}/posts` `{"account_id", "text", "client_ref"}` publishes (201 `{"id", "url"}`);
//! `GET {api}/posts?client_ref=` finds what a publish made. A 401 means the token is dead. Its
//! posts can inject failures through markers in the text (see `api/src/sandbox.rs`).

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{GrantedAccount, LookUp, Platform, PlatformError, Publication, Published, TokenSet, http};

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
        Published { platform_post_id: post.id, url: Some(post.url) }
    }
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

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let body = serde_json::json!({
            "account_id": publication.platform_user_id,
            "text": publication.content,
            "client_ref": publication.reference,
        });
        let url = format!("{}/posts", self.oauth.endpoints().api_url);
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let created: SandboxPost = http::send_json(self.oauth.label(), request).await?;
        Ok(created.into())
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let query =
            form_urlencoded::Serializer::new(String::new()).append_pair("client_ref", publication.reference).finish();
        let url = format!("{}/posts?{query}", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let found: PostList = http::send_json(self.oauth.label(), request).await?;
        Ok(found.data.into_iter().next().map_or(LookUp::NotFound, |post| LookUp::Found(post.into())))
    }

    fn max_content_chars(&self) -> usize {
        500
    }
}
