//! Bluesky (AT Protocol): no OAuth redirect. The user gives an app password; herald opens a
//! session with it (`com.atproto.server.createSession` → `accessJwt`, `refreshJwt`, `did`),
//! never stores the password, and keeps the session fresh with
//! `com.atproto.server.refreshSession` (the refresh token rotates). The connect flow carries
//! the identifier and password, sealed, in the session's code (see `api/src/routes/connect.rs`).
//! Publishing is `com.atproto.repo.createRecord` of an `app.bsky.feed.post`. The access token's
//! lifetime is read from its JWT `exp`.
//!
//! Images are uploaded first, each with `com.atproto.repo.uploadBlob` (the bytes streamed from
//! the store as the body, `Content-Type` their type), and the post embeds the blobs it answers
//! in an `app.bsky.embed.images` (up to four, each with its `alt`, required, and `aspectRatio`).
//! A video goes through Bluesky's video service (the upload URL, `video.bsky.app`), as its
//! documentation recommends for apps: a service token from the PDS
//! (`com.atproto.server.getServiceAuth`, audience the account's PDS as `did:web`, bound to
//! `com.atproto.repo.uploadBlob`), `app.bsky.video.uploadVideo?did=&name=` with the bytes, then
//! `app.bsky.video.getJobStatus?jobId=` until the job has a blob (the service stored the
//! processed video on the PDS) or failed; the post embeds it in an `app.bsky.embed.video`. A
//! video uploaded with `uploadBlob` instead would only be processed once the post is out, so the
//! post would show without its video for a while. Uploads are safe to repeat; only the record
//! is the publish.
//!
//! The record carries what the app would otherwise not show: facets for the text's links,
//! mentions (the handle resolved with `com.atproto.identity.resolveHandle`) and tags
//! ([`richtext`]), the languages of the target's options (`langs`), and, for a post without
//! media that has a link, a link card ([`card`], an `app.bsky.embed.external`). A thread's items
//! are replies: `reply.root` and `reply.parent` are strong references (`uri`, `cid`) to the
//! chain's first post and the item before, so each publish keeps its record's `cid` as the
//! [`Published::thread_ref`]. Records may carry fields their lexicon does not name (the atproto
//! data model keeps them, and app views ignore them), so each record keeps herald's reference
//! for it in [`REFERENCE_FIELD`], and a look-up reads the account's recent posts
//! (`com.atproto.repo.listRecords`) for it.

mod card;
mod richtext;

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
    Between, ClientCredentials, ContentRules, DefaultEndpoints, FollowUp, FollowUpKind, GrantedAccount, KindRules, LookUp,
    MediaFile, MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, hourly,
    http,
};
use super::options::{OptionProblem, TargetOptions};
use crate::domain::media::MediaKind;
use crate::media::MediaStore;

/// Bluesky, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "bluesky",
    label: "Bluesky",
    // No OAuth redirect: sessions are opened with an app password against the PDS's XRPC.
    endpoints: DefaultEndpoints {
        authorize_url: "https://bsky.social",
        token_url: "https://bsky.social/xrpc/com.atproto.server.createSession",
        api_url: "https://bsky.social/xrpc",
        // The video service's XRPC.
        upload_url: Some("https://video.bsky.app/xrpc"),
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
        publishes_media: true,
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
        chains: super::Chains::REPLIES,
    },
    options: super::options::options_of::<BlueskyOptions>(),
    builtin_client_id: Some("herald"),
    build: |oauth| Arc::new(BlueskyAdapter::new(oauth)),
};

/// A Bluesky target's options (the `app.bsky.feed.post` record).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = BlueskyOptions)]
#[serde(deny_unknown_fields)]
pub struct BlueskyOptions {
    /// The languages of the text (the record's `langs`), BCP-47 tags, at most 3.
    pub languages: Option<Vec<String>>,
    /// The first post's link card, as given (no page is fetched); otherwise herald reads the
    /// page of the text's first link when the post has no media.
    pub link_card: Option<LinkCard>,
    /// No link card, even when the text has a link.
    #[serde(default)]
    pub no_link_card: bool,
}

/// A link card as a target gives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = BlueskyLinkCard)]
#[serde(deny_unknown_fields)]
pub struct LinkCard {
    pub url: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
}

/// The most languages a record names (the lexicon's `langs` has `maxLength: 3`).
const MAX_LANGUAGES: usize = 3;

/// Whether `tag` reads as a BCP-47 language tag: a primary language of 2 or 3 letters (or
/// `i`/`x` for grandfathered and private-use tags), then subtags of 1 to 8 letters or digits.
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    let primary_ok = (primary.len() == 2 || primary.len() == 3 || primary == "i" || primary == "x")
        && primary.bytes().all(|byte| byte.is_ascii_alphabetic());
    primary_ok && subtags.all(|subtag| (1..=8).contains(&subtag.len()) && subtag.bytes().all(|byte| byte.is_ascii_alphanumeric()))
}

impl TargetOptions for BlueskyOptions {
    fn problems(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Some(languages) = &self.languages {
            if languages.len() > MAX_LANGUAGES {
                problems.push(OptionProblem::new("languages", format!("at most {MAX_LANGUAGES} languages")));
            }
            for (index, language) in languages.iter().enumerate() {
                if !is_language_tag(language) {
                    problems.push(OptionProblem::new(
                        format!("languages[{index}]"),
                        "must be a BCP-47 language tag, e.g. \"en\" or \"pt-BR\"",
                    ));
                }
            }
        }
        if let Some(card) = &self.link_card {
            if self.no_link_card {
                problems.push(OptionProblem::new("no_link_card", "cannot be true when a link_card is given"));
            }
            if !url::Url::parse(&card.url).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host()) {
                problems.push(OptionProblem::new("link_card.url", "must be an http or https URL"));
            }
            if card.title.trim().is_empty() {
                problems.push(OptionProblem::new("link_card.title", "must not be empty"));
            }
        }
        problems
    }
}

/// The field of a post record that keeps herald's reference for it (found again by look-ups).
pub const REFERENCE_FIELD: &str = "heraldReference";
/// The most pages of recent posts one look-up reads (100 records each).
const RECORD_PAGES: usize = 3;
/// How much earlier than the attempt began a look-up searches, for clocks that disagree.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(2);

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
    cid: String,
}

/// A page of `com.atproto.repo.listRecords`.
#[derive(Deserialize)]
struct Records {
    #[serde(default)]
    records: Vec<Listed>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    uri: String,
    cid: String,
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct Resolved {
    did: String,
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
        self.create(tokens, publication, None).await
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        self.find(tokens, publication).await
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        if follow_up.kind != FollowUpKind::Reply {
            return Err(PlatformError::Permanent("herald publishes no comments on Bluesky".to_owned()));
        }
        let reply = serde_json::json!({
            "root": strong_ref(follow_up.root)?,
            "parent": strong_ref(follow_up.parent)?,
        });
        self.create(tokens, publication, Some(reply)).await
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        _follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        // Each item has its own reference.
        self.find(tokens, publication).await
    }
}

/// The strong reference (`uri`, `cid`) a reply needs of `post`.
fn strong_ref(post: &Published) -> Result<serde_json::Value, PlatformError> {
    let cid = post.thread_ref.as_deref().ok_or_else(|| {
        PlatformError::Permanent(format!("the Bluesky post {} a reply answers has no cid kept", post.platform_post_id))
    })?;
    Ok(serde_json::json!({ "uri": post.platform_post_id, "cid": cid }))
}

/// What a created record is: its `at://` URI, shown at `bsky.app/profile/<did>/post/<rkey>`, and
/// its `cid` for replies to it.
fn published(did: &str, uri: String, cid: String) -> Published {
    let rkey = uri.rsplit('/').next().unwrap_or_default().to_owned();
    let url = format!("https://bsky.app/profile/{did}/post/{rkey}");
    Published { platform_post_id: uri, url: Some(url), thread_ref: Some(cid) }
}

impl BlueskyAdapter {
    /// Creates the post record of `publication` (a reply when `reply` is given).
    async fn create(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        reply: Option<serde_json::Value>,
    ) -> Result<Published, PlatformError> {
        let options: BlueskyOptions = super::options::parse(publication.options)?;
        let mut record = serde_json::json!({
            "$type": "app.bsky.feed.post",
            "text": publication.content,
            "createdAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            REFERENCE_FIELD: publication.reference,
        });
        let facets = self.facets(publication.content).await;
        if !facets.is_empty() {
            record["facets"] = serde_json::Value::Array(facets);
        }
        if let Some(languages) = &options.languages
            && !languages.is_empty()
        {
            record["langs"] = serde_json::json!(languages);
        }
        if let Some(reply) = reply.clone() {
            record["reply"] = reply;
        }
        if let Some(embed) = self.embed(tokens, publication).await? {
            record["embed"] = embed;
        } else if let Some(embed) = self.link_card(tokens, publication, &options, reply.is_none()).await {
            record["embed"] = embed;
        }
        let body = serde_json::json!({
            "repo": publication.platform_user_id,
            "collection": "app.bsky.feed.post",
            "record": record,
        });
        let request = self
            .oauth
            .http()
            .post(self.xrpc("com.atproto.repo.createRecord"))
            .bearer_auth(tokens.access_token.expose_secret())
            .json(&body);
        let created: Record = http::send_json(self.oauth.label(), request).await?;
        Ok(published(publication.platform_user_id, created.uri, created.cid))
    }

    /// The facets of `text`: its links, tags, and the mentions whose handles resolve.
    async fn facets(&self, text: &str) -> Vec<serde_json::Value> {
        let mut facets = Vec::new();
        for span in richtext::spans(text) {
            let did = match &span.kind {
                richtext::SpanKind::Mention(handle) => self.resolve(handle).await,
                _ => None,
            };
            facets.extend(richtext::facet(&span, did.as_deref()));
        }
        facets
    }

    /// The DID of `handle`, when it resolves (any failure: it does not, and gets no facet).
    async fn resolve(&self, handle: &str) -> Option<String> {
        let url = format!("{}?handle={}", self.xrpc("com.atproto.identity.resolveHandle"), query_value(handle));
        let request = self.oauth.http().get(url);
        let resolved: Resolved = http::send_json(self.oauth.label(), request).await.ok()?;
        resolved.did.starts_with("did:").then_some(resolved.did)
    }

    /// The link card of a post without media: the one the options give (on the first post), else
    /// one read from the page of the text's first link; `None` when off or nothing came of it.
    async fn link_card(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        options: &BlueskyOptions,
        first: bool,
    ) -> Option<serde_json::Value> {
        if options.no_link_card {
            return None;
        }
        if let Some(card) = options.link_card.as_ref().filter(|_| first) {
            return Some(external(&card.url, &card.title, &card.description, None));
        }
        let link = richtext::spans(publication.content).into_iter().find_map(|span| match span.kind {
            richtext::SpanKind::Link(link) => Some(link),
            _ => None,
        })?;
        let client = self.oauth.outbound()?;
        let facts = match card::page_facts(client, &link).await {
            Ok(facts) => facts,
            Err(error) => {
                tracing::info!(code = error.code(), "no Bluesky link card: the page could not be read: {error}");
                return None;
            }
        };
        let mut thumb = None;
        if let Some(image) = &facts.image {
            match card::thumb(client, image).await {
                Ok(image) => match self.upload_bytes(tokens, image).await {
                    Ok(blob) => thumb = Some(blob),
                    Err(error) => tracing::info!("a Bluesky link card without its image: the upload failed: {error}"),
                },
                Err(error) => tracing::info!(code = error.code(), "a Bluesky link card without its image: {error}"),
            }
        }
        let title = facts.title.unwrap_or_default();
        Some(external(&link, &title, facts.description.as_deref().unwrap_or_default(), thumb))
    }

    /// `com.atproto.repo.uploadBlob` of a card image; answers the blob.
    async fn upload_bytes(&self, tokens: &TokenSet, image: card::Thumb) -> Result<serde_json::Value, PlatformError> {
        let request = self
            .oauth
            .http()
            .post(self.xrpc("com.atproto.repo.uploadBlob"))
            .bearer_auth(tokens.access_token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, image.content_type)
            .body(image.bytes);
        let uploaded: Uploaded = http::send_json(self.oauth.label(), request).await?;
        Ok(uploaded.blob)
    }

    /// Looks through the account's recent posts for the record of `publication`'s reference,
    /// back to a little before the attempt began.
    async fn find(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let since = began - CLOCK_SKEW;
        let mut cursor: Option<String> = None;
        for _ in 0..RECORD_PAGES {
            let mut url = format!(
                "{}?repo={}&collection=app.bsky.feed.post&limit=100",
                self.xrpc("com.atproto.repo.listRecords"),
                query_value(publication.platform_user_id)
            );
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={}", query_value(cursor)));
            }
            let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
            let page: Records = http::send_json(self.oauth.label(), request).await?;
            let mut passed = false;
            for listed in page.records {
                if listed.value.get(REFERENCE_FIELD).and_then(serde_json::Value::as_str) == Some(publication.reference) {
                    return Ok(LookUp::Found(published(publication.platform_user_id, listed.uri, listed.cid)));
                }
                let created = listed.value.get("createdAt").and_then(serde_json::Value::as_str);
                // Newest first: a record made before the attempt began ends the search.
                if created.and_then(|at| DateTime::parse_from_rfc3339(at).ok()).is_some_and(|at| at < since) {
                    passed = true;
                }
            }
            match page.cursor {
                Some(next) if !passed => cursor = Some(next),
                _ => return Ok(LookUp::NotFound),
            }
        }
        Ok(LookUp::CannotTell)
    }
}

/// An `app.bsky.embed.external` of a link.
fn external(uri: &str, title: &str, description: &str, thumb: Option<serde_json::Value>) -> serde_json::Value {
    let mut external = serde_json::json!({ "uri": uri, "title": title, "description": description });
    if let Some(thumb) = thumb {
        external["thumb"] = thumb;
    }
    serde_json::json!({ "$type": "app.bsky.embed.external", "external": external })
}

/// The longest herald waits for the video service to process one video.
const PROCESSING_WAIT: Duration = Duration::from_secs(5 * 60);
/// The first wait before asking for a video job's status; each next one doubles, up to
/// [`LAST_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(500);
const LAST_POLL: Duration = Duration::from_secs(5);
/// How long the service token for a video upload lives (the documentation's 30 minutes).
const SERVICE_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(30);
/// Files up to this size are sent within the client's timeout; a larger one gets a minute plus
/// a second per megabyte (a megabyte a second is the slowest link herald plans for).
const UPLOAD_AT_CLIENT_TIMEOUT: u64 = 8 * 1024 * 1024;

/// A blob as `uploadBlob` and the video service answer it; embedded in the record as it came.
#[derive(Deserialize)]
struct Uploaded {
    blob: serde_json::Value,
}

/// What `getSession` says of the account's DID document: where its PDS is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDocument {
    did_doc: Option<DidDocument>,
}

#[derive(Deserialize)]
struct DidDocument {
    #[serde(default)]
    service: Vec<DidService>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DidService {
    id: String,
    service_endpoint: String,
}

#[derive(Deserialize)]
struct ServiceToken {
    token: String,
}

/// A video processing job, as `getJobStatus` answers it (`{"jobStatus": ...}`, its lexicon's
/// shape) and as `uploadVideo` does: its lexicon says the same, while the documentation's code
/// and Bluesky's app read the job's fields from the top of the answer. Either is taken.
#[derive(Deserialize)]
#[serde(untagged)]
enum JobAnswer {
    #[serde(rename_all = "camelCase")]
    Wrapped {
        job_status: JobStatus,
    },
    Bare(JobStatus),
}

impl JobAnswer {
    fn status(self) -> JobStatus {
        match self {
            JobAnswer::Wrapped { job_status } | JobAnswer::Bare(job_status) => job_status,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStatus {
    job_id: String,
    state: String,
    blob: Option<serde_json::Value>,
    error: Option<String>,
    message: Option<String>,
}

/// `file`'s `aspectRatio`, when its dimensions are known.
fn aspect_ratio(file: &MediaFile) -> Option<serde_json::Value> {
    let (width, height) = (file.facts.width?, file.facts.height?);
    (width > 0 && height > 0).then(|| serde_json::json!({ "width": width, "height": height }))
}

/// The timeout for uploading a file of `size` bytes in one request, when the client's is too
/// short for it.
fn upload_timeout(size: u64) -> Option<Duration> {
    (size > UPLOAD_AT_CLIENT_TIMEOUT).then(|| Duration::from_secs(60 + size / 1_000_000))
}

/// The `did:web` of the host `url` is on (a port is written `%3A`, as `did:web` wants).
fn did_web(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("did:web:{host}%3A{port}"),
        None => format!("did:web:{host}"),
    })
}

/// `value` escaped for a URL's query.
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `file`'s whole bytes as a streamed body, with its size.
async fn body_of(store: &MediaStore, file: &MediaFile) -> Result<(reqwest::Body, u64), PlatformError> {
    let (bytes, size) = store.read(&file.object_key, None).await.map_err(|error| {
        PlatformError::Transient(format!("reading media {} from the store failed: {error}", file.id))
    })?;
    Ok((reqwest::Body::wrap_stream(bytes), size))
}

impl BlueskyAdapter {
    /// The post's embed for its media: their images, or its video; `None` without media.
    async fn embed(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
    ) -> Result<Option<serde_json::Value>, PlatformError> {
        let Some(first) = publication.media.first() else { return Ok(None) };
        if first.facts.kind == MediaKind::Video {
            let blob = self.upload_video(tokens, publication.store, publication.platform_user_id, first).await?;
            let mut embed = serde_json::json!({ "$type": "app.bsky.embed.video", "video": blob });
            if let Some(alt_text) = first.alt_text.as_deref().filter(|text| !text.is_empty()) {
                embed["alt"] = serde_json::json!(alt_text);
            }
            if let Some(ratio) = aspect_ratio(first) {
                embed["aspectRatio"] = ratio;
            }
            return Ok(Some(embed));
        }
        let mut images = Vec::with_capacity(publication.media.len());
        for file in publication.media {
            let blob = self.upload_blob(tokens, publication.store, file).await?;
            // `alt` is required; an image without alt text has an empty one.
            let mut image = serde_json::json!({ "image": blob, "alt": file.alt_text.as_deref().unwrap_or("") });
            if let Some(ratio) = aspect_ratio(file) {
                image["aspectRatio"] = ratio;
            }
            images.push(image);
        }
        Ok(Some(serde_json::json!({ "$type": "app.bsky.embed.images", "images": images })))
    }

    /// `com.atproto.repo.uploadBlob` of `file`'s bytes; answers the blob.
    async fn upload_blob(
        &self,
        tokens: &TokenSet,
        store: &MediaStore,
        file: &MediaFile,
    ) -> Result<serde_json::Value, PlatformError> {
        let (body, size) = body_of(store, file).await?;
        let mut request = self
            .oauth
            .http()
            .post(self.xrpc("com.atproto.repo.uploadBlob"))
            .bearer_auth(tokens.access_token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, &file.facts.content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        if let Some(timeout) = upload_timeout(size) {
            request = request.timeout(timeout);
        }
        let uploaded: Uploaded = http::send_json(self.oauth.label(), request).await?;
        Ok(uploaded.blob)
    }

    /// Where the video service answers: the upload URL.
    fn video_xrpc(&self, method: &str) -> Result<String, PlatformError> {
        let base = self.oauth.endpoints().upload_url.as_deref().ok_or_else(|| {
            PlatformError::Permanent("Bluesky videos need the video service (HERALD_PLATFORMS__BLUESKY__UPLOAD_URL)".into())
        })?;
        Ok(format!("{base}/{method}"))
    }

    /// The video service processes `file` and stores it on the account's PDS; answers the blob.
    async fn upload_video(
        &self,
        tokens: &TokenSet,
        store: &MediaStore,
        did: &str,
        file: &MediaFile,
    ) -> Result<serde_json::Value, PlatformError> {
        let token = self.service_token(tokens).await?;
        let url = format!(
            "{}?did={}&name={}",
            self.video_xrpc("app.bsky.video.uploadVideo")?,
            query_value(did),
            query_value(&format!("{}.mp4", file.id))
        );
        let (body, size) = body_of(store, file).await?;
        let mut request = self
            .oauth
            .http()
            .post(url)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, &file.facts.content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        if let Some(timeout) = upload_timeout(size) {
            request = request.timeout(timeout);
        }
        let job: JobAnswer = http::send_json(self.oauth.label(), request).await?;
        self.processed_video(job.status()).await
    }

    /// A service token for the video service to store a blob on the account's PDS with.
    async fn service_token(&self, tokens: &TokenSet) -> Result<String, PlatformError> {
        let request = self
            .oauth
            .http()
            .get(self.xrpc("com.atproto.server.getSession"))
            .bearer_auth(tokens.access_token.expose_secret());
        let session: SessionDocument = http::send_json(self.oauth.label(), request).await?;
        // The PDS the DID document names; the one herald talks to when it names none.
        let pds = session
            .did_doc
            .and_then(|document| document.service.into_iter().find(|service| service.id.ends_with("#atproto_pds")))
            .map_or_else(|| self.oauth.endpoints().api_url.clone(), |service| service.service_endpoint);
        let audience = did_web(&pds)
            .ok_or_else(|| PlatformError::Permanent(format!("Bluesky named a PDS herald cannot read: {pds}")))?;
        let expires = (Utc::now() + SERVICE_TOKEN_LIFETIME).timestamp();
        let url = format!(
            "{}?aud={}&lxm=com.atproto.repo.uploadBlob&exp={expires}",
            self.xrpc("com.atproto.server.getServiceAuth"),
            query_value(&audience)
        );
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let token: ServiceToken = http::send_json(self.oauth.label(), request).await?;
        Ok(token.token)
    }

    /// Asks for the video job's status until it has a blob (also when it "failed" because the
    /// same video was processed before: it then answers that one's blob) or failed without one.
    async fn processed_video(&self, mut job: JobStatus) -> Result<serde_json::Value, PlatformError> {
        let started = tokio::time::Instant::now();
        let mut interval = FIRST_POLL;
        loop {
            if let Some(blob) = job.blob {
                return Ok(blob);
            }
            if job.state == "JOB_STATE_FAILED" {
                let reason = job.message.or(job.error).unwrap_or_else(|| "no reason given".into());
                return Err(PlatformError::Permanent(format!("Bluesky's video service could not process the video: {reason}")));
            }
            if started.elapsed() + interval > PROCESSING_WAIT {
                return Err(PlatformError::Transient(format!(
                    "Bluesky's video service was still processing job {} after {} s",
                    job.job_id,
                    PROCESSING_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(LAST_POLL);
            let url = format!("{}?jobId={}", self.video_xrpc("app.bsky.video.getJobStatus")?, query_value(&job.job_id));
            let answer: JobAnswer = http::send_json(self.oauth.label(), self.oauth.http().get(url)).await?;
            job = answer.status();
        }
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

    #[test]
    fn the_service_token_is_for_the_pds_as_a_did_web() {
        assert_eq!(did_web("https://morel.us-east.host.bsky.network").as_deref(), Some("did:web:morel.us-east.host.bsky.network"));
        assert_eq!(did_web("http://127.0.0.1:8080/xrpc").as_deref(), Some("did:web:127.0.0.1%3A8080"));
        assert_eq!(did_web("not a url"), None);
    }
}
