//! TikTok (Login Kit v2). Its OAuth differs from the standard in names: the client is
//! `client_key`, sent in the body of every token request, and scopes are joined with commas,
//! so this adapter builds its own requests instead of using the `oauth2` crate. PKCE is used.
//! Access tokens last about a day; refresh tokens about a year and rotate on every use. A grant
//! reaches the user (`GET /v2/user/info/`, keyed by `open_id`).
//!
//! Publishing needs a video, which herald's posts cannot carry yet: TikTok accounts connect and
//! stay fresh, and the posts API refuses them as targets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::oauth::OAuthClient;
use super::{
    ClientCredentials, Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec,
    Publication, PublishRates, Published, TokenSet, http, per_minutes,
};

/// TikTok, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "tiktok",
    label: "TikTok",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.tiktok.com/v2/auth/authorize/",
        token_url: "https://open.tiktokapis.com/v2/oauth/token/",
        api_url: "https://open.tiktokapis.com",
        upload_url: None,
        revoke_url: Some("https://open.tiktokapis.com/v2/oauth/revoke/"),
        scopes: &["user.info.basic", "video.publish"],
    },
    refresh_margin: Duration::from_secs(30 * 60),
    publish_rates: PublishRates { per_account: per_minutes(6, 1), per_app: per_minutes(600, 1) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 2200,
        publishes_text: false,
        publishes_media: false,
        // Content Posting API: one video (MP4/WebM/MOV, 3 s-10 min, 360-4096 px, 4 GB) or up to 35
        // photos (JPEG/WebP, 20 MB), never both.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/webp"],
                max_bytes: 20_000_000,
                max_count: 35,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/webm", "video/quicktime"],
                max_bytes: 4_000_000_000,
                max_count: 1,
                aspect: None,
                width: Some(Between::new(360, 4096)),
                height: Some(Between::new(360, 4096)),
                duration_ms: Some(Between::new(3_000, 600_000)),
            },
            // Alt text: no alt text on TikTok posts.
            max_alt_text: None,
            max_items: 35,
            mixes: false,
            required: true,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(TikTokAdapter::new(oauth)),
};

pub struct TikTokAdapter {
    oauth: OAuthClient,
}

impl TikTokAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth }
    }

    /// A token request: `client_key` and `client_secret` in the form, with `fields`.
    async fn token_request(
        &self,
        client: &ClientCredentials,
        fields: &[(&str, &str)],
    ) -> Result<TokenSet, PlatformError> {
        let secret = client.client_secret.as_ref().map(|secret| secret.expose_secret().to_owned()).unwrap_or_default();
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("client_key", &client.client_id).append_pair("client_secret", &secret);
            form.extend_pairs(fields);
            form.finish()
        };
        let request = self
            .oauth
            .http()
            .post(&self.oauth.endpoints().token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let answer: TokenAnswer = http::send_json(self.oauth.label(), request).await.map_err(|error| match error {
            // TikTok names a dead grant in the body of a 400.
            PlatformError::Permanent(reason) if reason.contains("invalid_grant") => PlatformError::AuthDead(reason),
            other => other,
        })?;
        match answer {
            TokenAnswer::Tokens { access_token, refresh_token, expires_in, scope } => Ok(TokenSet {
                access_token: SecretString::from(access_token),
                refresh_token: refresh_token.map(SecretString::from),
                expires_at: expires_in.map(|seconds| Utc::now() + chrono::Duration::seconds(seconds)),
                scopes: scope.map(|scope| scope.split(',').map(str::to_owned).collect()).unwrap_or_default(),
            }),
            // Some refusals come back as 200 with an error body.
            TokenAnswer::Refused { error, error_description } => {
                let reason = format!("TikTok refused: {error}: {}", error_description.unwrap_or_default());
                Err(if error == "invalid_grant" {
                    PlatformError::AuthDead(reason)
                } else {
                    PlatformError::Permanent(reason)
                })
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenAnswer {
    Tokens { access_token: String, refresh_token: Option<String>, expires_in: Option<i64>, scope: Option<String> },
    Refused { error: String, error_description: Option<String> },
}

#[derive(Deserialize)]
struct UserInfo {
    data: UserData,
}

#[derive(Deserialize)]
struct UserData {
    user: User,
}

#[derive(Deserialize)]
struct User {
    open_id: String,
    display_name: Option<String>,
}

#[async_trait]
impl Platform for TikTokAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn authorize_url(
        &self,
        client: &ClientCredentials,
        redirect_uri: &str,
        state: &str,
        pkce_verifier: Option<&SecretString>,
        scopes: &[String],
    ) -> Result<String, PlatformError> {
        let scopes = if scopes.is_empty() { self.oauth.endpoints().scopes.join(",") } else { scopes.join(",") };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("client_key", &client.client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", &scopes)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        if let Some(verifier) = pkce_verifier {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()));
            query.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
        }
        Ok(format!("{}?{}", self.oauth.endpoints().authorize_url, query.finish()))
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let mut fields =
            vec![("grant_type", "authorization_code"), ("code", code.expose_secret()), ("redirect_uri", redirect_uri)];
        if let Some(verifier) = pkce_verifier {
            fields.push(("code_verifier", verifier.expose_secret()));
        }
        self.token_request(client, &fields).await
    }

    async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        self.token_request(client, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())])
            .await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/v2/user/info/?fields=open_id,display_name", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let info: UserInfo = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: info.data.user.open_id,
            kind: "person".to_owned(),
            username: None,
            display_name: info.data.user.display_name,
            token: None,
        }])
    }

    async fn revoke(&self, client: &ClientCredentials, token: &SecretString) -> Result<(), PlatformError> {
        let Some(url) = &self.oauth.endpoints().revoke_url else { return Ok(()) };
        let secret = client.client_secret.as_ref().map(|secret| secret.expose_secret().to_owned()).unwrap_or_default();
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_key", &client.client_id)
            .append_pair("client_secret", &secret)
            .append_pair("token", token.expose_secret())
            .finish();
        let request =
            self.oauth.http().post(url).header("content-type", "application/x-www-form-urlencoded").body(form);
        http::send(self.oauth.label(), request).await.map(drop)
    }

    async fn publish(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<Published, PlatformError> {
        Err(PlatformError::Permanent("a TikTok post needs a video, which herald cannot attach yet".to_owned()))
    }
}
