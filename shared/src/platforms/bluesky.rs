//! Bluesky (AT Protocol): no OAuth redirect. The user gives an app password; herald opens a
//! session with it (`com.atproto.server.createSession` → `accessJwt`, `refreshJwt`, `did`),
//! never stores the password, and keeps the session fresh with
//! `com.atproto.server.refreshSession` (the refresh token rotates). The connect flow carries
//! the identifier and password, sealed, in the session's code (see `api/src/routes/connect.rs`).
//! Publishing is `com.atproto.repo.createRecord` of an `app.bsky.feed.post`. The access token's
//! lifetime is read from its JWT `exp`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    ClientCredentials, Between, ContentRules, DefaultEndpoints, KindRules, MediaRules, GrantedAccount, Platform, PlatformError, PlatformSpec,
    Publication, PublishRates, Published, TokenSet, hourly, http,
};

/// Bluesky, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "bluesky",
    label: "Bluesky",
    // No OAuth redirect: sessions are opened with an app password against the PDS's XRPC.
    endpoints: DefaultEndpoints {
        authorize_url: "https://bsky.social",
        token_url: "https://bsky.social/xrpc/com.atproto.server.createSession",
        api_url: "https://bsky.social/xrpc",
        upload_url: None,
        revoke_url: Some("https://bsky.social/xrpc/com.atproto.server.deleteSession"),
        scopes: &[],
    },
    refresh_margin: Duration::from_secs(10 * 60),
    publish_rates: PublishRates { per_account: hourly(1_600), per_app: hourly(100_000) },
    content: ContentRules {
        counts: super::TextCount::Graphemes,
        max_hashtags: None,
        max_chars: 300,
        publishes_text: true,
        publishes_media: false,
        // Lexicons (app.bsky.embed.images / video): 4 images of up to 2,000,000 bytes, or one MP4 of
        // up to 300,000,000 bytes and 3 min; one embed, so never both.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/webp", "image/gif"],
                max_bytes: 2_000_000,
                max_count: 4,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4"],
                max_bytes: 300_000_000,
                max_count: 1,
                aspect: None,
                width: None,
                height: None,
                duration_ms: Some(Between::new(1, 180_000)),
            },
            // Alt text: the Bluesky app's limit (the lexicon sets none).
            max_alt_text: Some(2000),
            max_items: 4,
            mixes: false,
            required: false,
        },
    },
    options: super::options::options_of::<super::options::NoOptions>(),
    builtin_client_id: Some("herald"),
    build: |oauth| Arc::new(BlueskyAdapter::new(oauth)),
};

pub struct BlueskyAdapter {
    oauth: OAuthClient,
}

impl BlueskyAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth }
    }

    fn xrpc(&self, method: &str) -> String {
        format!("{}/{method}", self.oauth.endpoints().api_url)
    }
}

/// What the connect flow seals as the session's code.
#[derive(Deserialize)]
pub struct AppPassword {
    pub identifier: String,
    pub password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    access_jwt: String,
    refresh_jwt: String,
}

#[derive(Deserialize)]
struct Identity {
    did: String,
    handle: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    uri: String,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
}

/// The `exp` of a JWT, if it has one we can read (it is not verified: only its holder uses it).
fn expiry(jwt: &str) -> Option<DateTime<Utc>> {
    let payload = jwt.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()?;
    DateTime::from_timestamp(claims.exp?, 0)
}

impl From<Session> for TokenSet {
    fn from(session: Session) -> Self {
        TokenSet {
            expires_at: expiry(&session.access_jwt),
            access_token: SecretString::from(session.access_jwt),
            refresh_token: Some(SecretString::from(session.refresh_jwt)),
            scopes: Vec::new(),
        }
    }
}

#[async_trait]
impl Platform for BlueskyAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn connects_with_password(&self) -> bool {
        true
    }

    fn authorize_url(
        &self,
        _client: &ClientCredentials,
        _redirect_uri: &str,
        _state: &str,
        _pkce_verifier: Option<&SecretString>,
        _scopes: &[String],
    ) -> Result<String, PlatformError> {
        Err(PlatformError::Permanent("Bluesky connects with an app password, not a redirect".to_owned()))
    }

    async fn exchange_code(
        &self,
        _client: &ClientCredentials,
        code: &SecretString,
        _pkce_verifier: Option<&SecretString>,
        _redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let login: AppPassword = serde_json::from_str(code.expose_secret())
            .map_err(|_| PlatformError::Permanent("not an identifier and app password".to_owned()))?;
        let body = serde_json::json!({ "identifier": login.identifier, "password": login.password });
        let request = self.oauth.http().post(self.xrpc("com.atproto.server.createSession")).json(&body);
        let session: Session = http::send_json(self.oauth.label(), request).await?;
        Ok(session.into())
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        let request = self
            .oauth
            .http()
            .post(self.xrpc("com.atproto.server.refreshSession"))
            .bearer_auth(refresh_token.expose_secret());
        let session: Session = http::send_json(self.oauth.label(), request).await?;
        Ok(session.into())
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let request = self
            .oauth
            .http()
            .get(self.xrpc("com.atproto.server.getSession"))
            .bearer_auth(tokens.access_token.expose_secret());
        let identity: Identity = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: identity.did,
            kind: "person".to_owned(),
            display_name: identity.handle.clone(),
            username: identity.handle,
            token: None,
        }])
    }

    async fn revoke(&self, _client: &ClientCredentials, token: &SecretString) -> Result<(), PlatformError> {
        let request =
            self.oauth.http().post(self.xrpc("com.atproto.server.deleteSession")).bearer_auth(token.expose_secret());
        http::send(self.oauth.label(), request).await.map(drop)
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let record = serde_json::json!({
            "repo": publication.platform_user_id,
            "collection": "app.bsky.feed.post",
            "record": {
                "$type": "app.bsky.feed.post",
                "text": publication.content,
                "createdAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
        });
        let request = self
            .oauth
            .http()
            .post(self.xrpc("com.atproto.repo.createRecord"))
            .bearer_auth(tokens.access_token.expose_secret())
            .json(&record);
        let created: Record = http::send_json(self.oauth.label(), request).await?;
        // at://<did>/app.bsky.feed.post/<rkey> is shown at bsky.app/profile/<did>/post/<rkey>.
        let rkey = created.uri.rsplit('/').next().unwrap_or_default().to_owned();
        let url = format!("https://bsky.app/profile/{}/post/{rkey}", publication.platform_user_id);
        Ok(Published { platform_post_id: created.uri, url: Some(url) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_token_expires_when_its_jwt_says() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1800000000,"scope":"com.atproto.access"}"#);
        assert_eq!(expiry(&format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")), DateTime::from_timestamp(1_800_000_000, 0));
        assert_eq!(expiry("not-a-jwt"), None);
    }
}
