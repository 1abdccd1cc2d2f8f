//! Social platforms, each behind one trait ([`Platform`]): the OAuth authorize URL, the code and
//! refresh grants, the accounts a grant reaches, revocation, and (with posts) publishing.
//!
//! A platform is one file: its adapter and its [`PlatformSpec`] (name, default endpoints and
//! scopes, refresh margin, publish rates, content rules, how its adapter is built), named once
//! in [`ALL`]. Adding a platform is that file and one line in that list.
//!
//! Every platform's endpoints, managed OAuth app and pace are settings with one naming scheme,
//! `HERALD_PLATFORMS__<NAME>__AUTHORIZE_URL`, `__TOKEN_URL`, `__API_URL`, `__UPLOAD_URL`,
//! `__REVOKE_URL`, `__CLIENT_ID`, `__CLIENT_SECRET`, `__SCOPES`, `__PUBLISHES_PER_HOUR` (per
//! account), `__APP_PUBLISHES_PER_HOUR` (per OAuth app), `__REFRESH_MARGIN_SECONDS`
//! ([`crate::config::PlatformSettings`]), over the spec's defaults, which point at the real
//! platform, so tests and other deployments can point any platform elsewhere ([`Platforms`]
//! resolves them). The `sandbox` platform is served by herald itself (under `/sandbox`) and
//! defaults to `HERALD_PUBLIC_URL`.
//!
//! Errors are classified once, here, into what the caller must do ([`PlatformError`]): retry
//! later, wait for a reset, ask the user to reconnect, or give up.

pub mod http;
mod meta;
pub mod oauth;
pub mod options;
pub mod registry;

/// Declares each platform's module (its file) and lists its spec in [`ALL`], in one place.
macro_rules! platforms {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every platform herald knows, in the order they are listed to people. Adding a
        /// platform is its file and one line here.
        pub const ALL: &[&PlatformSpec] = &[$(&$name::SPEC),*];
    };
}

platforms! {
    x,
    linkedin,
    facebook,
    instagram,
    threads,
    youtube,
    tiktok,
    pinterest,
    bluesky,
    mastodon,
    sandbox,
}

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use crate::config::PlatformSettings;
pub use crate::domain::content::{Chains, ContentRules, TextCount};
pub use crate::domain::media_rules::{Between, KindRules, MediaRules};
pub use crate::domain::tokens::{ClientCredentials, TokenSet};
use crate::rate_limit::Rate;
pub use registry::{Pace, Platforms, is_known, known_names, validate_settings};

/// What herald knows of a platform before any setting: each adapter's file declares its own.
pub struct PlatformSpec {
    /// The lowercase name, as written in URLs and settings.
    pub name: &'static str,
    /// The name in reasons ("X", "the sandbox").
    pub label: &'static str,
    /// Where the real platform answers (PLATFORMS.md, November 2026).
    pub endpoints: DefaultEndpoints,
    /// How long before its access token expires herald refreshes an account: a margin that
    /// fits the token's lifetime (PLATFORMS.md), wide enough to ride out a failed try.
    pub refresh_margin: std::time::Duration,
    /// How often herald publishes: under the platform's documented caps (PLATFORMS.md), so
    /// herald waits rather than being refused.
    pub publish_rates: PublishRates,
    /// What a post's content may be.
    pub content: ContentRules,
    /// The per-target options it takes (`options::options_of::<ItsOptions>()`).
    pub options: options::OptionsSpec,
    /// A managed app herald has without settings: the sandbox's own, and a nominal one for
    /// Bluesky (an app password opens a session; there are no apps).
    pub builtin_client_id: Option<&'static str>,
    /// Builds the adapter around its configured OAuth client.
    pub build: fn(oauth::OAuthClient) -> Arc<dyn Platform>,
}

/// A platform's default endpoints. One starting with `/` is herald's own, under its public URL
/// (the sandbox's).
pub struct DefaultEndpoints {
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    pub api_url: &'static str,
    pub upload_url: Option<&'static str>,
    pub revoke_url: Option<&'static str>,
    pub scopes: &'static [&'static str],
}

/// How often herald publishes on a platform, per account and per OAuth app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRates {
    pub per_account: Rate,
    pub per_app: Rate,
}

/// `limit` per `minutes` minutes: how the specs write their rates.
pub const fn per_minutes(limit: u32, minutes: u64) -> Rate {
    Rate::per(limit, std::time::Duration::from_secs(minutes * 60))
}

/// `limit` per hour: the most common window, and the one the settings use.
pub const fn hourly(limit: u32) -> Rate {
    per_minutes(limit, 60)
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

/// Splits a `__SCOPES` setting on spaces and commas.
pub fn split_scopes(scopes: &str) -> Vec<String> {
    scopes.split([' ', ',']).map(str::trim).filter(|scope| !scope.is_empty()).map(str::to_owned).collect()
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
    /// The error's kind as a metric label: `transient`, `rate_limited`, `auth_dead`,
    /// `permanent` or `ambiguous`.
    pub fn kind(&self) -> &'static str {
        match self {
            PlatformError::Transient(_) => "transient",
            PlatformError::RateLimited { .. } => "rate_limited",
            PlatformError::AuthDead(_) => "auth_dead",
            PlatformError::Permanent(_) => "permanent",
            PlatformError::Ambiguous(_) => "ambiguous",
        }
    }

    /// Worth trying again later (for calls that are safe to repeat).
    pub fn is_transient(&self) -> bool {
        matches!(self, PlatformError::Transient(_) | PlatformError::Ambiguous(_))
    }
}

/// One image or video to publish, as the library stores it.
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub id: uuid::Uuid,
    pub alt_text: Option<String>,
    /// What its bytes are (type, size, dimensions, duration), read at ingest.
    pub facts: crate::domain::media::MediaFacts,
    /// An expiring signed URL on herald's public base URL, for platforms that fetch media
    /// themselves (it redirects to a presigned URL when the store is S3).
    pub url: String,
    /// Where its bytes are in the store, for adapters that upload them: stream them with
    /// [`crate::media::MediaStore::read`], never whole.
    pub object_key: String,
}

/// What to publish, for one target.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// The account's id on the platform.
    pub platform_user_id: &'a str,
    pub content: &'a str,
    /// The target's images and videos, in order (empty for a text post).
    pub media: &'a [MediaFile],
    /// The media store the files are in.
    pub store: &'a crate::media::MediaStore,
    /// Per-target options, as the client gave them.
    pub options: &'a serde_json::Value,
    /// herald's id for this publish (the delivery and its generation): where the platform keeps
    /// a client reference or takes an idempotency key, this is it, and look-ups search by it.
    pub reference: &'a str,
    /// For a look-up: when the earlier attempt began (the delivery entered `publishing`), so a
    /// platform can tell whether its idempotency window has passed or search by time.
    pub began: Option<DateTime<Utc>>,
    /// Where the adapter keeps what a publish under way must not lose with its process (an
    /// upload session, the platform's id for an accepted publish), by `reference`.
    pub checkpoints: &'a dyn PublishCheckpoints,
}

/// A publish's checkpoint: the small state an adapter needs to resume or look up a publish that
/// a dead worker began (YouTube's upload session, TikTok's `publish_id`). Kept outside the
/// process, sealed (a session URI grants the upload), by the publication's reference; the
/// adapter forgets it once the publish has an outcome, and old ones are pruned. The worker hands
/// adapters the durable store; tests may hand an in-memory one.
#[async_trait]
pub trait PublishCheckpoints: Send + Sync + std::fmt::Debug {
    /// The state saved for `reference`, if any.
    async fn load(&self, reference: &str) -> Result<Option<String>, PlatformError>;
    /// Saves (or replaces) `state` for `reference` on `platform`.
    async fn save(&self, reference: &str, platform: &str, state: &str) -> Result<(), PlatformError>;
    /// Forgets `reference`'s state.
    async fn forget(&self, reference: &str) -> Result<(), PlatformError>;
}

/// What a publish made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    pub platform_post_id: String,
    pub url: Option<String>,
    /// What a reply to this post needs besides its id, where the platform wants more (Bluesky's
    /// record `cid`, for the strong references of a reply's root and parent). Kept with the item.
    pub thread_ref: Option<String>,
}

impl Published {
    /// A post known by its id and, where the platform gives one, its URL.
    pub fn new(platform_post_id: impl Into<String>, url: Option<String>) -> Self {
        Published { platform_post_id: platform_post_id.into(), url, thread_ref: None }
    }
}

impl<'a> FollowUp<'a> {
    /// The post a first comment goes on, where a platform chains only comments, of text alone
    /// (LinkedIn, YouTube): refuses a reply or a comment with media.
    pub fn comment_on(&self, publication: &Publication<'_>, label: &str) -> Result<&'a str, PlatformError> {
        if self.kind != FollowUpKind::Comment {
            return Err(PlatformError::Permanent(format!(
                "herald publishes no replies on {label}, only a first comment"
            )));
        }
        if !publication.media.is_empty() {
            return Err(PlatformError::Permanent(format!("a {label} comment carries text only, no media")));
        }
        Ok(&self.root.platform_post_id)
    }
}

/// How a later item of a chain (a thread's item, a first comment) attaches to what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpKind {
    /// A reply to `parent`, the item before it (a thread on X, Bluesky, Threads, Mastodon).
    Reply,
    /// A comment on `root`, the chain's first post (a first comment on Instagram, Facebook,
    /// LinkedIn, YouTube).
    Comment,
}

/// Where a later item of a chain goes: [`Platform::publish_follow_up`].
#[derive(Debug, Clone, Copy)]
pub struct FollowUp<'a> {
    pub kind: FollowUpKind,
    /// The chain's first post (what a comment is on; Bluesky's reply root).
    pub root: &'a Published,
    /// The item just before this one (what a reply answers; the root for the first reply).
    pub parent: &'a Published,
    /// This item's place in the chain: 1 for the first item after the post.
    pub index: usize,
}

/// A board an account can publish to (Pinterest): what a target's `board_id` option names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Board {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// `PUBLIC`, `PROTECTED`, `SECRET` (Pinterest's words).
    pub privacy: Option<String>,
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
    /// What herald knows of this platform (its file's `SPEC`).
    fn spec(&self) -> &'static PlatformSpec;

    /// The lowercase name, as in [`ALL`].
    fn name(&self) -> &'static str {
        self.spec().name
    }

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

    /// Publishes a later item of a chain: `publication` is the item (its content, media and the
    /// reference of this item), `follow_up` what it answers. Only called where the platform's
    /// [`Chains`] allow that kind; refused elsewhere.
    async fn publish_follow_up(
        &self,
        _tokens: &TokenSet,
        _publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let what = match follow_up.kind {
            FollowUpKind::Reply => "replies",
            FollowUpKind::Comment => "comments",
        };
        Err(PlatformError::Permanent(format!("herald publishes no {what} on {}", self.spec().label)))
    }

    /// Looks for the item an earlier [`Platform::publish_follow_up`] may have made. Most
    /// platforms cannot tell.
    async fn look_up_follow_up(
        &self,
        _tokens: &TokenSet,
        _publication: &Publication<'_>,
        _follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        Ok(LookUp::CannotTell)
    }

    /// Whether accounts here have boards to publish to ([`Platform::boards`]).
    fn has_boards(&self) -> bool {
        false
    }

    /// The boards the account can publish to, where a platform has them (Pinterest); elsewhere
    /// refused.
    async fn boards(&self, _tokens: &TokenSet) -> Result<Vec<Board>, PlatformError> {
        Err(PlatformError::Permanent(format!("{} has no boards", self.spec().label)))
    }

    /// What a post's content may be here.
    fn content_rules(&self) -> ContentRules {
        self.spec().content
    }
}
