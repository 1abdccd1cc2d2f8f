//! Social platforms, each behind one trait ([`Platform`]): the OAuth authorize URL, the code and
//! refresh grants, the accounts a grant reaches, revocation, and (with posts) publishing.
//!
//! Every platform's endpoints and managed OAuth app are settings with one naming scheme,
//! `HERALD_PLATFORMS__<NAME>__AUTHORIZE_URL`, `__TOKEN_URL`, `__API_URL`, `__UPLOAD_URL`,
//! `__REVOKE_URL`, `__CLIENT_ID`, `__CLIENT_SECRET`, `__SCOPES` ([`PlatformSettings`]), over
//! defaults that point at the real platform ([`defaults`]), so tests and other deployments can
//! point any platform elsewhere. The `sandbox` platform is served by herald itself (under
//! `/sandbox`) and defaults to `HERALD_PUBLIC_URL`.
//!
//! Errors are classified once, here, into what the caller must do ([`PlatformError`]): retry
//! later, wait for a reset, ask the user to reconnect, or give up.

pub mod bluesky;
pub mod facebook;
pub mod http;
pub mod instagram;
pub mod linkedin;
pub mod mastodon;
pub mod oauth;
pub mod pinterest;
pub mod sandbox;
pub mod threads;
pub mod tiktok;
pub mod x;
pub mod youtube;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::Config;

/// Every platform herald knows, as written in URLs and settings (lowercase).
pub const NAMES: &[&str] = &[
    "x",
    "linkedin",
    "facebook",
    "instagram",
    "threads",
    "youtube",
    "tiktok",
    "pinterest",
    "bluesky",
    "mastodon",
    "sandbox",
];

/// One platform's endpoints and managed app, as configured. Unset fields take [`defaults`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformSettings {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub api_url: Option<String>,
    pub upload_url: Option<String>,
    pub revoke_url: Option<String>,
    /// The managed app's client id: what a connect without `app_id` uses.
    pub client_id: Option<String>,
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    /// Space- or comma-separated scopes asked for by default.
    pub scopes: Option<String>,
    /// The sandbox only (`HERALD_PLATFORMS__SANDBOX__ENABLED`, default true): `false` stops
    /// serving `/sandbox` and refuses to connect or publish to sandbox accounts.
    pub enabled: Option<bool>,
}

/// A platform's endpoints, settings over defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize_url: String,
    pub token_url: String,
    pub api_url: String,
    pub upload_url: Option<String>,
    pub revoke_url: Option<String>,
    pub scopes: Vec<String>,
}

/// The real platforms' endpoints (PLATFORMS.md, November 2026); `public_url` is herald's own, for
/// the sandbox. Returns `None` for an unknown name.
pub fn defaults(name: &str, public_url: &str) -> Option<Endpoints> {
    let endpoints = |authorize: &str, token: &str, api: &str, revoke: Option<&str>, scopes: &[&str]| Endpoints {
        authorize_url: authorize.to_owned(),
        token_url: token.to_owned(),
        api_url: api.to_owned(),
        upload_url: None,
        revoke_url: revoke.map(str::to_owned),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
    };
    let base = public_url.trim_end_matches('/');
    Some(match name {
        "x" => endpoints(
            "https://x.com/i/oauth2/authorize",
            "https://api.x.com/2/oauth2/token",
            "https://api.x.com",
            Some("https://api.x.com/2/oauth2/revoke"),
            &["tweet.read", "tweet.write", "users.read", "offline.access"],
        ),
        "linkedin" => endpoints(
            "https://www.linkedin.com/oauth/v2/authorization",
            "https://www.linkedin.com/oauth/v2/accessToken",
            "https://api.linkedin.com",
            Some("https://www.linkedin.com/oauth/v2/revoke"),
            &["openid", "profile", "w_member_social"],
        ),
        "facebook" => endpoints(
            "https://www.facebook.com/v21.0/dialog/oauth",
            "https://graph.facebook.com/v21.0/oauth/access_token",
            "https://graph.facebook.com/v21.0",
            None,
            &["pages_show_list", "pages_manage_posts", "pages_read_engagement"],
        ),
        "instagram" => endpoints(
            "https://www.instagram.com/oauth/authorize",
            "https://api.instagram.com/oauth/access_token",
            "https://graph.instagram.com",
            None,
            &["instagram_business_basic", "instagram_business_content_publish"],
        ),
        "threads" => endpoints(
            "https://threads.net/oauth/authorize",
            "https://graph.threads.net/oauth/access_token",
            "https://graph.threads.net/v1.0",
            None,
            &["threads_basic", "threads_content_publish"],
        ),
        "youtube" => Endpoints {
            upload_url: Some("https://www.googleapis.com/upload/youtube/v3".to_owned()),
            ..endpoints(
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
                "https://www.googleapis.com/youtube/v3",
                Some("https://oauth2.googleapis.com/revoke"),
                &["https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"],
            )
        },
        "tiktok" => endpoints(
            "https://www.tiktok.com/v2/auth/authorize/",
            "https://open.tiktokapis.com/v2/oauth/token/",
            "https://open.tiktokapis.com",
            Some("https://open.tiktokapis.com/v2/oauth/revoke/"),
            &["user.info.basic", "video.publish"],
        ),
        "pinterest" => endpoints(
            "https://www.pinterest.com/oauth/",
            "https://api.pinterest.com/v5/oauth/token",
            "https://api.pinterest.com/v5",
            None,
            &["boards:read", "pins:read", "pins:write"],
        ),
        // No OAuth redirect: sessions are opened with an app password against the PDS's XRPC.
        "bluesky" => endpoints(
            "https://bsky.social",
            "https://bsky.social/xrpc/com.atproto.server.createSession",
            "https://bsky.social/xrpc",
            Some("https://bsky.social/xrpc/com.atproto.server.deleteSession"),
            &[],
        ),
        "mastodon" => endpoints(
            "https://mastodon.social/oauth/authorize",
            "https://mastodon.social/oauth/token",
            "https://mastodon.social",
            Some("https://mastodon.social/oauth/revoke"),
            &["read", "write"],
        ),
        "sandbox" => endpoints(
            &format!("{base}/sandbox/oauth/authorize"),
            &format!("{base}/sandbox/oauth/token"),
            &format!("{base}/sandbox/api"),
            Some(&format!("{base}/sandbox/oauth/revoke")),
            &["profile", "publish"],
        ),
        _ => return None,
    })
}

/// How long before its access token expires herald refreshes an account on `platform`: a
/// margin that fits the token's lifetime (PLATFORMS.md), wide enough to ride out a failed try.
pub fn refresh_margin(platform: &str) -> chrono::Duration {
    match platform {
        "x" | "tiktok" => chrono::Duration::minutes(30),
        "youtube" | "bluesky" => chrono::Duration::minutes(10),
        "sandbox" => chrono::Duration::minutes(5),
        "pinterest" => chrono::Duration::days(3),
        // Long-lived tokens of about 60 days (Instagram and Threads refresh only after 24 h).
        _ => chrono::Duration::days(7),
    }
}

/// How often herald publishes, per account and per OAuth app, on `platform`: under the
/// platform's documented caps (PLATFORMS.md) so herald waits rather than being refused.
pub fn publish_rates(platform: &str) -> (crate::rate_limit::Rate, crate::rate_limit::Rate) {
    use std::time::Duration;

    use crate::rate_limit::Rate;
    let minutes = |n: u64| Duration::from_secs(n * 60);
    match platform {
        // 200 per 15 minutes per user; 300 per 3 hours per user and app.
        "x" => (Rate::per(200, minutes(15)), Rate::per(300, minutes(180))),
        "instagram" => (Rate::per(50, minutes(24 * 60)), Rate::per(10_000, minutes(60))),
        "threads" => (Rate::per(250, minutes(24 * 60)), Rate::per(10_000, minutes(60))),
        "tiktok" => (Rate::per(6, minutes(1)), Rate::per(600, minutes(1))),
        "mastodon" => (Rate::per(300, minutes(5)), Rate::per(10_000, minutes(5))),
        "bluesky" => (Rate::per(1_600, minutes(60)), Rate::per(100_000, minutes(60))),
        // The sandbox takes what herald's own benchmark sends.
        "sandbox" => (Rate::per(100_000, minutes(1)), Rate::per(1_000_000, minutes(1))),
        _ => (Rate::per(100, minutes(60)), Rate::per(10_000, minutes(60))),
    }
}

/// Splits a `__SCOPES` setting on spaces and commas.
pub fn split_scopes(scopes: &str) -> Vec<String> {
    scopes.split([' ', ',']).map(str::trim).filter(|scope| !scope.is_empty()).map(str::to_owned).collect()
}

/// The OAuth client a connect or refresh uses: a managed app from settings, or a project's own.
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// What a code or refresh grant returned. Never logged: `Debug` shows only the expiry.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// `None` when the platform did not send one: the stored one, if any, stays.
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// One account a grant reaches: the person, and the pages, organisations or channels they
/// manage.
#[derive(Debug, Clone)]
pub struct GrantedAccount {
    pub platform_user_id: String,
    /// `person`, `page`, `organization`, `channel` ...
    pub kind: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// A token of the account's own (Facebook pages); `None`: the grant's.
    pub token: Option<TokenSet>,
}

/// A platform call that failed, classified by what to do about it. The message is the
/// platform's reason, never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Network, timeout, 5xx: try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// Rate limited until the time the platform named.
    #[error("rate limited until {until}: {reason}")]
    RateLimited { until: DateTime<Utc>, reason: String },
    /// The grant is dead (`invalid_grant`, a revoked token): the user must reconnect.
    #[error("authorization is no longer valid: {0}")]
    AuthDead(String),
    /// The request itself is wrong: retrying will not help.
    #[error("refused: {0}")]
    Permanent(String),
    /// No answer after the request was sent (a timeout, a dropped connection): it may have
    /// taken effect. A publish must be looked up before it is tried again; anything else may
    /// treat this as transient.
    #[error("no answer, the request may have taken effect: {0}")]
    Ambiguous(String),
}

impl PlatformError {
    /// Worth trying again later (for calls that are safe to repeat).
    pub fn is_transient(&self) -> bool {
        matches!(self, PlatformError::Transient(_) | PlatformError::Ambiguous(_))
    }
}

/// What to publish, for one target.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// The account's id on the platform.
    pub platform_user_id: &'a str,
    pub content: &'a str,
    /// Per-target options, as the client gave them.
    pub options: &'a serde_json::Value,
    /// herald's id for this publish (the delivery and its generation): where the platform keeps
    /// a client reference or takes an idempotency key, this is it, and look-ups search by it.
    pub reference: &'a str,
    /// For a look-up: when the earlier attempt began (the delivery entered `publishing`), so a
    /// platform can tell whether its idempotency window has passed or search by time.
    pub began: Option<DateTime<Utc>>,
}

/// What a publish made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub platform_post_id: String,
    pub url: Option<String>,
}

/// What a look-up for an earlier publish found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookUp {
    Found(Published),
    /// The platform says it has no such post: publishing again is safe.
    NotFound,
    /// The platform cannot say.
    CannotTell,
}

/// One social platform. Most speak standard OAuth 2.0 for the grants: they hand over their
/// [`oauth::OAuthClient`] and get authorize, exchange, refresh and revoke from it; a platform
/// that differs (Bluesky's app passwords, Meta's long-lived token exchange) overrides those.
#[async_trait]
pub trait Platform: Send + Sync {
    /// The lowercase name, as in [`NAMES`].
    fn name(&self) -> &'static str;

    /// The platform's OAuth endpoints and HTTP client.
    fn oauth(&self) -> &oauth::OAuthClient;

    /// Whether the authorization-code grant takes PKCE (S256).
    fn supports_pkce(&self) -> bool {
        true
    }

    /// The user gives an identifier and an app password instead of a redirect (Bluesky): the
    /// connect carries them, sealed, as the session's code, and [`Platform::exchange_code`]
    /// opens a session with them.
    fn connects_with_password(&self) -> bool {
        false
    }

    /// The page to send the user to, with the S256 challenge of `pkce_verifier` when the
    /// platform takes PKCE. No `scopes`: the platform's configured defaults.
    fn authorize_url(
        &self,
        client: &ClientCredentials,
        redirect_uri: &str,
        state: &str,
        pkce_verifier: Option<&SecretString>,
        scopes: &[String],
    ) -> Result<String, PlatformError> {
        self.oauth().authorize_url(client, redirect_uri, state, pkce_verifier, scopes)
    }

    /// Exchanges an authorization code.
    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.oauth().exchange_code(client, code, pkce_verifier, redirect_uri).await
    }

    /// Uses a refresh token. Platforms that rotate return a new one; the old one is then dead.
    async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        self.oauth().refresh(client, refresh_token).await
    }

    /// Every account the grant reaches.
    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError>;

    /// Revokes the grant on the platform, where it allows that.
    async fn revoke(&self, client: &ClientCredentials, token: &SecretString) -> Result<(), PlatformError> {
        self.oauth().revoke(client, token).await
    }

    /// Publishes `publication` with the account's tokens.
    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError>;

    /// Looks for the post an earlier publish of `publication` may have made (after a worker
    /// died or a call timed out). Most platforms cannot tell.
    async fn look_up(&self, _tokens: &TokenSet, _publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        Ok(LookUp::CannotTell)
    }

    /// The most characters a post may have here.
    fn max_content_chars(&self) -> usize;

    /// What a post may hold here, for the checks of a new post.
    fn content_rules(&self) -> crate::domain::content::ContentRules {
        crate::domain::content::ContentRules {
            max_chars: self.max_content_chars(),
            publishes_text: self.publishes_text(),
        }
    }

    /// Whether a post of text alone can be published here. YouTube, Pinterest, Instagram and
    /// TikTok need an image or a video, which herald's posts cannot carry yet: their accounts
    /// connect and stay fresh, and the posts API refuses them as targets.
    fn publishes_text(&self) -> bool {
        true
    }
}

/// The platforms with an adapter, by name, with their settings resolved.
#[derive(Clone)]
pub struct Platforms {
    adapters: BTreeMap<&'static str, Arc<dyn Platform>>,
    managed: BTreeMap<String, ClientCredentials>,
    /// Platforms the operator turned off (only the sandbox can be): no adapter, no managed app.
    disabled: Vec<&'static str>,
}

impl std::fmt::Debug for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platforms").field("adapters", &self.adapters.keys().collect::<Vec<_>>()).finish()
    }
}

impl Platforms {
    /// Every adapter, configured from `config`.
    pub fn from_config(config: &Config) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.platform_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mut adapters: BTreeMap<&'static str, Arc<dyn Platform>> = BTreeMap::new();
        let mut managed = BTreeMap::new();
        let mut disabled = Vec::new();
        for name in NAMES {
            if *name == "sandbox" && !config.sandbox_enabled() {
                disabled.push(*name);
                continue;
            }
            let Some(endpoints) = config.platform_endpoints(name) else { continue };
            let settings = config.platforms.get(*name).cloned().unwrap_or_default();
            // The sandbox's managed app is built in; Bluesky has no apps (an app password opens a
            // session), so it gets a nominal one.
            let builtin = match *name {
                "sandbox" => Some("herald-sandbox".to_owned()),
                "bluesky" => Some("herald".to_owned()),
                _ => None,
            };
            let client_id = settings.client_id.clone().or(builtin);
            if let Some(client_id) = client_id {
                managed
                    .insert((*name).to_owned(), ClientCredentials { client_id, client_secret: settings.client_secret });
            }
            let adapter: Option<Arc<dyn Platform>> = match *name {
                "sandbox" => Some(Arc::new(sandbox::SandboxAdapter::new(oauth::OAuthClient::new(
                    "the sandbox",
                    endpoints,
                    http.clone(),
                )))),
                "x" => Some(Arc::new(x::XAdapter::new(oauth::OAuthClient::new("X", endpoints, http.clone())))),
                "bluesky" => Some(Arc::new(bluesky::BlueskyAdapter::new(oauth::OAuthClient::new(
                    "Bluesky",
                    endpoints,
                    http.clone(),
                )))),
                "facebook" => {
                    let oauth = oauth::OAuthClient::new("Facebook", endpoints, http.clone());
                    Some(Arc::new(facebook::FacebookAdapter::new(oauth)))
                }
                "instagram" => {
                    let oauth = oauth::OAuthClient::new("Instagram", endpoints, http.clone());
                    Some(Arc::new(instagram::InstagramAdapter::new(oauth)))
                }
                "tiktok" => Some(Arc::new(tiktok::TikTokAdapter::new(oauth::OAuthClient::new(
                    "TikTok",
                    endpoints,
                    http.clone(),
                )))),
                "youtube" => {
                    let oauth = oauth::OAuthClient::new("YouTube", endpoints, http.clone());
                    Some(Arc::new(youtube::YouTubeAdapter::new(oauth)))
                }
                "pinterest" => {
                    let oauth = oauth::OAuthClient::new("Pinterest", endpoints, http.clone());
                    Some(Arc::new(pinterest::PinterestAdapter::new(oauth)))
                }
                "mastodon" => {
                    let oauth = oauth::OAuthClient::new("Mastodon", endpoints, http.clone());
                    Some(Arc::new(mastodon::MastodonAdapter::new(oauth)))
                }
                "threads" => {
                    let oauth = oauth::OAuthClient::new("Threads", endpoints, http.clone());
                    Some(Arc::new(threads::ThreadsAdapter::new(oauth)))
                }
                "linkedin" => {
                    let oauth = oauth::OAuthClient::new("LinkedIn", endpoints, http.clone());
                    Some(Arc::new(linkedin::LinkedInAdapter::new(oauth)))
                }
                _ => None,
            };
            if let Some(adapter) = adapter {
                adapters.insert(name, adapter);
            }
        }
        Self { adapters, managed, disabled }
    }

    /// The adapter for `name`, if herald has one yet (and the platform is not turned off).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Platform>> {
        self.adapters.get(name).cloned()
    }

    /// Whether the operator turned `name` off (`HERALD_PLATFORMS__SANDBOX__ENABLED=false`).
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.contains(&name)
    }

    /// Why `name` cannot be used for `what` ("connect", "publish to"), when [`Platforms::get`]
    /// has no adapter for it.
    pub fn unavailable(&self, name: &str, what: &str) -> String {
        if self.is_disabled(name) {
            format!(
                "the {name} platform is turned off on this herald (HERALD_PLATFORMS__{}__ENABLED=false)",
                name.to_uppercase()
            )
        } else {
            format!("herald cannot {what} {name} accounts yet")
        }
    }

    /// The managed app for `name`, if the operator configured one (the sandbox always has one).
    pub fn managed_app(&self, name: &str) -> Option<&ClientCredentials> {
        self.managed.get(name)
    }

    /// The OAuth client a connect or refresh of `project_id` on `platform` uses: the project's
    /// own app `app_id`, or the platform's managed one.
    pub async fn client_for(
        &self,
        tx: &mut sqlx::PgConnection,
        keyring: &crate::crypto::Keyring,
        project_id: uuid::Uuid,
        platform: &str,
        app_id: Option<uuid::Uuid>,
    ) -> Result<ClientCredentials, ClientError> {
        let Some(app_id) = app_id else {
            return self.managed_app(platform).cloned().ok_or(ClientError::NoManagedApp);
        };
        let client_id = sqlx::query_scalar!(
            "SELECT client_id FROM oauth_apps WHERE id = $1 AND project_id = $2 AND platform = $3 AND deleted_at IS NULL",
            app_id,
            project_id,
            platform
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(crate::credentials::CredentialError::from)?
        .ok_or(ClientError::NoSuchApp)?;
        let client_secret = crate::credentials::load_app_secret(tx, keyring, app_id).await?;
        Ok(ClientCredentials { client_id, client_secret })
    }
}

/// Why no OAuth client could be found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no managed app is configured for this platform")]
    NoManagedApp,
    #[error("the project has no app with this id on this platform")]
    NoSuchApp,
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_has_defaults_and_settings_override_them() {
        for name in NAMES {
            assert!(defaults(name, "http://127.0.0.1:8080").is_some(), "{name}");
        }
        assert!(defaults("myspace", "http://h").is_none());
        let mut config = Config::default();
        config.platforms.insert(
            "x".into(),
            PlatformSettings { token_url: Some("http://127.0.0.1:9/token".into()), ..PlatformSettings::default() },
        );
        let x = config.platform_endpoints("x").unwrap();
        assert_eq!(x.token_url, "http://127.0.0.1:9/token");
        assert_eq!(x.authorize_url, "https://x.com/i/oauth2/authorize");
        assert_eq!(split_scopes("a b,c ,, d"), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn token_sets_never_print_their_tokens() {
        let tokens = TokenSet {
            access_token: SecretString::from("at-secret"),
            refresh_token: Some(SecretString::from("rt-secret")),
            expires_at: None,
            scopes: vec![],
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
