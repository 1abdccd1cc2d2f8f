//! TikTok (Login Kit v2). Its OAuth differs from the standard in names: the client is
//! `client_key`, sent in the body of every token request, and scopes are joined with commas,
//! so this adapter builds its own requests instead of using the `oauth2` crate. PKCE is used.
//! Access tokens last about a day; refresh tokens about a year and rotate on every use. A grant
//! reaches the user (`GET /v2/user/info/`, keyed by `open_id`).
//!
//! Publishing is the Content Posting API's direct post. `creator_info/query` comes first: the
//! target's `privacy_level` option must be one the creator offers, a video may not outlast the
//! creator's `max_video_post_duration_sec`, and settings the creator turned off stay off. A video
//! is then initialized (`video/init/`) and either uploaded by herald (`FILE_UPLOAD`, the default:
//! chunks of [`CHUNK_BYTES`] streamed from the media store, `PUT` with `Content-Range` to the
//! `upload_url`) or pulled by TikTok from herald's signed URL (`PULL_FROM_URL`, the option
//! `video_source`; TikTok only pulls from a domain verified for the app, so herald's public URL
//! must be). Photos (up to 35) are always pulled (`content/init/`, `media_type` `PHOTO`): TikTok
//! takes no photo uploads. Then `status/fetch/` is polled until `PUBLISH_COMPLETE` (the public
//! post id, or the `publish_id` for a private post, which has none) or `FAILED` (refused, with
//! TikTok's `fail_reason`).
//!
//! What is the publish: for `FILE_UPLOAD` the last chunk (an initialized upload without its bytes
//! posts nothing), for a pull the `init` itself. Anything unanswered before that is safe to try
//! again. TikTok takes no client reference, so a look-up follows the `publish_id` kept as the
//! publish's checkpoint (`Publication::checkpoints`, sealed outside the process, from `init` on),
//! whichever worker began it. Moderation can take hours: a publish that is still processing after
//! [`PROCESSING_WAIT`] ends unanswered, and the look-up that follows polls again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::oauth::OAuthClient;
use super::{
    Between, ClientCredentials, ContentRules, DefaultEndpoints, GrantedAccount, KindRules, LookUp, MediaFile, MediaRules,
    Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, http, per_minutes,
};
use crate::domain::media::MediaKind;
use crate::media::MediaStore;

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
        publishes_media: true,
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
        chains: super::Chains::NONE,
    },
    options: super::options::options_of::<TikTokOptions>(),
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

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options = options_of(publication.options)?;
        if publication.media.is_empty() {
            return Err(PlatformError::Permanent("a TikTok post needs a video or photos".to_owned()));
        }
        let creator = self.creator_info(tokens).await?;
        let video = publication.media.iter().find(|file| file.facts.kind == MediaKind::Video);
        let pending = match video {
            Some(file) => self.publish_video(tokens, publication, file, &options, &creator).await?,
            None => self.publish_photos(tokens, publication, &options, &creator).await?,
        };
        match self.follow(tokens, &pending).await {
            Followed::Done(published) => {
                // The post exists: a failure to forget only leaves a row for the prune.
                let _ = publication.checkpoints.forget(publication.reference).await;
                Ok(published)
            }
            Followed::Failed(error) => {
                publication.checkpoints.forget(publication.reference).await?;
                Err(error)
            }
            Followed::Unfinished(reason) => Err(PlatformError::Ambiguous(reason)),
        }
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(pending) = remembered(publication).await? else { return Ok(LookUp::CannotTell) };
        match self.follow(tokens, &pending).await {
            Followed::Done(published) => {
                let _ = publication.checkpoints.forget(publication.reference).await;
                Ok(LookUp::Found(published))
            }
            // TikTok made no post: publishing again is safe (and says why if it fails again).
            Followed::Failed(_) => {
                publication.checkpoints.forget(publication.reference).await?;
                Ok(LookUp::NotFound)
            }
            Followed::Unfinished(reason) => Err(PlatformError::Ambiguous(reason)),
        }
    }
}

/// The target's options; anything TikTok does not take is refused.
fn options_of(options: &serde_json::Value) -> Result<TikTokOptions, PlatformError> {
    super::options::parse(options)
}

// ---------------------------------------------------------------------------------------------
// Publishing (Content Posting API, direct post).

/// The per-target options a TikTok post reads (`targets[].options`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = TikTokOptions)]
#[serde(default, deny_unknown_fields)]
pub struct TikTokOptions {
    /// One of the creator's `privacy_level_options` (`PUBLIC_TO_EVERYONE`, `SELF_ONLY`, ...).
    privacy_level: Option<String>,
    disable_duet: bool,
    disable_stitch: bool,
    disable_comment: bool,
    /// A paid partnership promoting another brand.
    brand_content_toggle: bool,
    /// Promoting the creator's own business.
    brand_organic_toggle: bool,
    /// The video frame used as its cover.
    video_cover_timestamp_ms: Option<u64>,
    /// A photo post's title (at most 90 characters); the post's content is its description.
    title: Option<String>,
    /// How TikTok gets a video: `FILE_UPLOAD` (herald sends the bytes; the default) or
    /// `PULL_FROM_URL` (TikTok fetches herald's signed URL, whose domain must be verified in
    /// the TikTok app's settings).
    video_source: Option<VideoSource>,
}

impl super::options::TargetOptions for TikTokOptions {
    fn problems(&self) -> Vec<super::options::OptionProblem> {
        match &self.title {
            Some(title) if title.chars().count() > 90 => {
                vec![super::options::OptionProblem::new("title", "at most 90 characters")]
            }
            _ => Vec::new(),
        }
    }
}

/// How TikTok gets a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TikTokVideoSource)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VideoSource {
    FileUpload,
    PullFromUrl,
}

/// What every Content Posting answer carries: `data`, and `error` whose `code` is `ok` on success.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct CreatorInfo {
    #[serde(default)]
    creator_username: Option<String>,
    #[serde(default)]
    privacy_level_options: Vec<String>,
    #[serde(default)]
    comment_disabled: bool,
    #[serde(default)]
    duet_disabled: bool,
    #[serde(default)]
    stitch_disabled: bool,
    #[serde(default)]
    max_video_post_duration_sec: Option<u64>,
}

#[derive(Deserialize)]
struct Initialized {
    publish_id: String,
    #[serde(default)]
    upload_url: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    status: String,
    #[serde(default)]
    fail_reason: Option<String>,
    /// Numbers in TikTok's answers; read as whatever they come as.
    #[serde(default)]
    publicaly_available_post_id: Vec<serde_json::Value>,
}

/// A publish TikTok accepted and is still working on, kept as its checkpoint so a look-up by any
/// worker can follow it by its `publish_id` (TikTok has no client reference to search by).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    publish_id: String,
    username: Option<String>,
    photo: bool,
}

/// Chunks of a FILE_UPLOAD: TikTok takes 5-64 MB each (the last up to 128 MB), at most 1,000,
/// and a video under 5 MB whole. 6 MiB keeps a 4 GB video at 682 chunks.
const CHUNK_BYTES: u64 = 6 * 1024 * 1024;
/// How long a publish follows TikTok's processing before leaving it to a look-up: 512 MB take
/// under half a minute, 1 GB about one, moderation usually under one.
const PROCESSING_WAIT: Duration = Duration::from_secs(120);
/// The first pause between status polls, doubling up to [`POLL_MAX`] (status/fetch allows 30
/// requests a minute per token).
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(4);
/// A photo post's title, in characters.
const PHOTO_TITLE_CHARS: usize = 90;

/// `size` bytes as TikTok's chunks: `(chunk_size, total_chunk_count)`. Under two chunks' worth
/// it is one chunk of everything; otherwise the last chunk takes the remainder.
fn chunking(size: u64) -> (u64, u64) {
    if size < 2 * CHUNK_BYTES { (size, 1) } else { (CHUNK_BYTES, size / CHUNK_BYTES) }
}

/// The byte ranges of the chunks, in order.
fn chunk_ranges(size: u64) -> Vec<std::ops::Range<u64>> {
    let (chunk, count) = chunking(size);
    (0..count).map(|index| index * chunk..if index + 1 == count { size } else { (index + 1) * chunk }).collect()
}

/// A clear reason for the Content Posting error codes a person can act on.
fn explained(code: &str) -> Option<&'static str> {
    Some(match code {
        "spam_risk_too_many_posts" => "the creator has reached TikTok's daily cap on posts made through apps",
        "spam_risk_user_banned_from_posting" => "TikTok has banned the creator from posting",
        "spam_risk_too_many_pending_share" => "the creator has too many posts waiting in their TikTok inbox",
        "reached_active_user_cap" => "this TikTok app has reached its cap on creators posting in 24 hours",
        "unaudited_client_can_only_post_to_private_accounts" => {
            "this TikTok app is not audited: it may only post SELF_ONLY to private accounts"
        }
        "privacy_level_option_mismatch" => "the privacy level is not one the creator offers",
        "url_ownership_unverified" => "the media URL's domain is not verified for this TikTok app",
        "file_format_check_failed" | "duration_check_failed" | "frame_rate_check_failed"
        | "picture_size_check_failed" | "video_pull_failed" | "photo_pull_failed" => {
            "TikTok could not take the media"
        }
        _ => return None,
    })
}

/// The error a Content Posting error code means.
fn classify_code(code: &str, message: &str) -> PlatformError {
    let reason = match explained(code) {
        Some(explanation) => format!("TikTok refused: {explanation} ({code}: {message})"),
        None => format!("TikTok refused: {code}: {message}"),
    };
    match code {
        "access_token_invalid" | "scope_not_authorized" | "scope_permission_missed" => PlatformError::AuthDead(reason),
        "rate_limit_exceeded" => {
            PlatformError::RateLimited { until: Utc::now() + chrono::Duration::seconds(60), reason }
        }
        "internal_error" => PlatformError::Transient(reason),
        _ => PlatformError::Permanent(reason),
    }
}

/// An error answer's body names its code: classify by it where the status alone says less.
fn refine(error: PlatformError) -> PlatformError {
    let body_code = |reason: &str| {
        let body = reason.split_once(": ").map_or(reason, |(_, body)| body);
        let start = body.find('{')?;
        let envelope: serde_json::Value = serde_json::from_str(&body[start..]).ok()?;
        let code = envelope["error"]["code"].as_str()?.to_owned();
        Some((code, envelope["error"]["message"].as_str().unwrap_or_default().to_owned()))
    };
    match &error {
        PlatformError::Permanent(reason) | PlatformError::AuthDead(reason) => match body_code(reason) {
            Some((code, message)) if code != "ok" => classify_code(&code, &message),
            _ => error,
        },
        _ => error,
    }
}

/// Before anything is posted an unanswered call made nothing: it is safe to try again.
fn nothing_posted(error: PlatformError) -> PlatformError {
    match error {
        PlatformError::Ambiguous(reason) => PlatformError::Transient(reason),
        other => other,
    }
}

impl TikTokAdapter {
    /// POSTs `body` to the Content Posting `path` and reads its `data`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        tokens: &TokenSet,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, PlatformError> {
        let request = self
            .oauth
            .http()
            .post(format!("{}{path}", self.oauth.endpoints().api_url))
            .bearer_auth(tokens.access_token.expose_secret())
            .header("content-type", "application/json; charset=UTF-8")
            .body(body.to_string());
        let envelope: Envelope<T> = http::send_json(self.oauth.label(), request).await.map_err(refine)?;
        if let Some(error) = envelope.error.filter(|error| error.code != "ok") {
            return Err(classify_code(&error.code, &error.message));
        }
        envelope.data.ok_or_else(|| PlatformError::Transient(format!("TikTok answered {path} without data")))
    }

    async fn creator_info(&self, tokens: &TokenSet) -> Result<CreatorInfo, PlatformError> {
        self.call(tokens, "/v2/post/publish/creator_info/query/", &serde_json::json!({})).await.map_err(nothing_posted)
    }

    /// Sends the video's bytes to `upload_url`, chunk by chunk, streamed from the store. Only
    /// the last chunk completes the upload (and so the post).
    async fn upload_chunks(&self, file: &MediaFile, store: &MediaStore, upload_url: &str) -> Result<(), PlatformError> {
        let size = file_size(file)?;
        let ranges = chunk_ranges(size);
        let last = ranges.len() - 1;
        for (index, range) in ranges.into_iter().enumerate() {
            let content_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            let length = range.end - range.start;
            let body = stream_range(store, &file.object_key, range).await?;
            let request = self
                .oauth
                .http()
                .put(upload_url)
                .header("content-type", &file.facts.content_type)
                .header("content-length", length)
                .header("content-range", content_range)
                .body(body);
            let sent = http::send(self.oauth.label(), request).await.map_err(refine);
            match sent {
                Ok(_) => {}
                Err(error) if index < last => return Err(nothing_posted(error)),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The post's settings, checked against what the creator offers.
    fn post_info(&self, options: &TikTokOptions, creator: &CreatorInfo) -> Result<serde_json::Value, PlatformError> {
        let offered = creator.privacy_level_options.join(", ");
        let Some(privacy) = &options.privacy_level else {
            return Err(PlatformError::Permanent(format!(
                "a TikTok post needs options.privacy_level, one of the creator's: {offered}"
            )));
        };
        if !creator.privacy_level_options.iter().any(|level| level == privacy) {
            return Err(PlatformError::Permanent(format!(
                "privacy level {privacy} is not one the TikTok creator offers: {offered}"
            )));
        }
        Ok(serde_json::json!({
            "privacy_level": privacy,
            // A setting the creator turned off in TikTok stays off.
            "disable_comment": options.disable_comment || creator.comment_disabled,
            "brand_content_toggle": options.brand_content_toggle,
            "brand_organic_toggle": options.brand_organic_toggle,
        }))
    }

    async fn publish_video(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        file: &MediaFile,
        options: &TikTokOptions,
        creator: &CreatorInfo,
    ) -> Result<Pending, PlatformError> {
        if let (Some(max), Some(duration)) = (creator.max_video_post_duration_sec, file.facts.duration_ms)
            && u64::try_from(duration).unwrap_or(0) > max * 1000
        {
            let seconds = (duration + 999) / 1000;
            let reason = format!("the video lasts {seconds} s; this TikTok creator may post at most {max} s");
            return Err(PlatformError::Permanent(reason));
        }
        let mut post_info = self.post_info(options, creator)?;
        post_info["title"] = publication.content.into();
        post_info["disable_duet"] = (options.disable_duet || creator.duet_disabled).into();
        post_info["disable_stitch"] = (options.disable_stitch || creator.stitch_disabled).into();
        if let Some(at) = options.video_cover_timestamp_ms {
            post_info["video_cover_timestamp_ms"] = at.into();
        }
        let path = "/v2/post/publish/video/init/";
        if options.video_source == Some(VideoSource::PullFromUrl) {
            let source = serde_json::json!({"source": "PULL_FROM_URL", "video_url": file.url});
            let body = serde_json::json!({"post_info": post_info, "source_info": source});
            // TikTok fetches it at once: this is the publish.
            let initialized: Initialized = self.call(tokens, path, &body).await?;
            return self.accepted(publication, creator, initialized.publish_id, false).await;
        }
        let size = file_size(file)?;
        let (chunk_size, total_chunk_count) = chunking(size);
        let source = serde_json::json!({
            "source": "FILE_UPLOAD", "video_size": size, "chunk_size": chunk_size, "total_chunk_count": total_chunk_count,
        });
        let body = serde_json::json!({"post_info": post_info, "source_info": source});
        // Without its bytes an initialized upload posts nothing (and expires).
        let initialized: Initialized = self.call(tokens, path, &body).await.map_err(nothing_posted)?;
        let Some(upload_url) = initialized.upload_url else {
            return Err(PlatformError::Transient("TikTok initialized an upload without an upload_url".to_owned()));
        };
        let pending = self.accepted(publication, creator, initialized.publish_id, false).await?;
        self.upload_chunks(file, publication.store, &upload_url).await?;
        Ok(pending)
    }

    async fn publish_photos(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        options: &TikTokOptions,
        creator: &CreatorInfo,
    ) -> Result<Pending, PlatformError> {
        let mut post_info = self.post_info(options, creator)?;
        post_info["description"] = publication.content.into();
        let title: String = options.title.as_deref().unwrap_or_default().chars().take(PHOTO_TITLE_CHARS).collect();
        post_info["title"] = title.into();
        let images: Vec<&str> = publication.media.iter().map(|file| file.url.as_str()).collect();
        let body = serde_json::json!({
            "post_info": post_info,
            "source_info": {"source": "PULL_FROM_URL", "photo_cover_index": 0, "photo_images": images},
            "post_mode": "DIRECT_POST",
            "media_type": "PHOTO",
        });
        let initialized: Initialized = self.call(tokens, "/v2/post/publish/content/init/", &body).await?;
        self.accepted(publication, creator, initialized.publish_id, true).await
    }

    /// TikTok took the publish as `publish_id`: kept as the checkpoint for a look-up from here on.
    async fn accepted(
        &self,
        publication: &Publication<'_>,
        creator: &CreatorInfo,
        publish_id: String,
        photo: bool,
    ) -> Result<Pending, PlatformError> {
        let pending = Pending { publish_id, username: creator.creator_username.clone(), photo };
        let state = serde_json::to_string(&pending).map_err(|error| PlatformError::Transient(error.to_string()))?;
        // TikTok already has the publish: a checkpoint that cannot be kept makes it unanswered
        // (looked up, never repeated blindly).
        publication
            .checkpoints
            .save(publication.reference, SPEC.name, &state)
            .await
            .map_err(|error| PlatformError::Ambiguous(format!("TikTok took the publish, but {error}")))?;
        Ok(pending)
    }

    /// Follows `pending` until TikTok finishes it, for at most [`PROCESSING_WAIT`].
    async fn follow(&self, tokens: &TokenSet, pending: &Pending) -> Followed {
        let deadline = tokio::time::Instant::now() + PROCESSING_WAIT;
        let mut pause = POLL_FIRST;
        loop {
            let body = serde_json::json!({"publish_id": pending.publish_id});
            let last = match self.call::<Status>(tokens, "/v2/post/publish/status/fetch/", &body).await {
                Ok(status) if status.status == "PUBLISH_COMPLETE" => return Followed::Done(published(pending, &status)),
                Ok(status) if status.status == "FAILED" => {
                    let reason = status.fail_reason.unwrap_or_else(|| "no reason given".to_owned());
                    let explanation = explained(&reason).map(|text| format!("{text}: ")).unwrap_or_default();
                    let reason = format!("TikTok failed the post: {explanation}{reason}");
                    return Followed::Failed(PlatformError::Permanent(reason));
                }
                Ok(status) => status.status,
                // A poll that got no answer, a hiccup or a pause: the post goes on regardless.
                Err(error @ (PlatformError::Transient(_) | PlatformError::Ambiguous(_) | PlatformError::RateLimited { .. })) => {
                    error.to_string()
                }
                Err(error) => {
                    return Followed::Unfinished(format!("TikTok publish {}: its status is unknown: {error}", pending.publish_id));
                }
            };
            if tokio::time::Instant::now() + pause > deadline {
                return Followed::Unfinished(format!(
                    "TikTok publish {} has not finished ({last})",
                    pending.publish_id
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

}

/// The publish TikTok accepted for this publication, from its checkpoint (unreadable state is
/// none).
async fn remembered(publication: &Publication<'_>) -> Result<Option<Pending>, PlatformError> {
    let state = publication.checkpoints.load(publication.reference).await?;
    Ok(state.and_then(|state| serde_json::from_str(&state).ok()))
}

/// How following a publish ended.
enum Followed {
    Done(Published),
    /// TikTok made no post: why (permanent).
    Failed(PlatformError),
    /// Still processing, or its status could not be read.
    Unfinished(String),
}

/// The post TikTok made: its public id (a private post has none: then its `publish_id`) and URL.
fn published(pending: &Pending, status: &Status) -> Published {
    let public = status.publicaly_available_post_id.first().map(|id| match id {
        serde_json::Value::String(id) => id.clone(),
        other => other.to_string(),
    });
    match public {
        Some(id) => {
            let kind = if pending.photo { "photo" } else { "video" };
            let url = pending.username.as_ref().map(|username| format!("https://www.tiktok.com/@{username}/{kind}/{id}"));
            Published::new(id, url)
        }
        None => Published::new(pending.publish_id.clone(), None),
    }
}

fn file_size(file: &MediaFile) -> Result<u64, PlatformError> {
    u64::try_from(file.facts.size_bytes)
        .ok()
        .filter(|size| *size > 0)
        .ok_or_else(|| PlatformError::Permanent(format!("media item {} has no bytes", file.id)))
}

/// The bytes `range` of `key`, as a streamed request body (never whole in memory).
pub(super) async fn stream_range(
    store: &MediaStore,
    key: &str,
    range: std::ops::Range<u64>,
) -> Result<reqwest::Body, PlatformError> {
    let (stream, _) = store
        .read(key, Some(range))
        .await
        .map_err(|error| PlatformError::Transient(format!("reading the media from the store failed: {error}")))?;
    Ok(reqwest::Body::wrap_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_tiktoks_rules() {
        // Under two chunks' worth: one chunk of everything (TikTok wants under 5 MB whole).
        assert_eq!(chunking(1_000), (1_000, 1));
        assert_eq!(chunk_ranges(1_000), vec![std::ops::Range { start: 0, end: 1_000 }]);
        assert_eq!(chunking(2 * CHUNK_BYTES - 1), (2 * CHUNK_BYTES - 1, 1));
        // Then chunks of CHUNK_BYTES, the remainder riding on the last (count rounded down).
        let size = 3 * CHUNK_BYTES + 17;
        assert_eq!(chunking(size), (CHUNK_BYTES, 3));
        assert_eq!(chunk_ranges(size), [0..CHUNK_BYTES, CHUNK_BYTES..2 * CHUNK_BYTES, 2 * CHUNK_BYTES..size]);
        // A 4 GB video stays within 1,000 chunks, each 5-64 MB, the last at most 128 MB.
        let (chunk, count) = chunking(4_000_000_000);
        assert!(count <= 1000 && (5_000_000..=64_000_000).contains(&chunk));
        let last = chunk_ranges(4_000_000_000).pop().unwrap();
        assert!(last.end - last.start <= 128_000_000);
    }

    #[test]
    fn error_codes_in_bodies_say_what_to_do() {
        let body = r#"TikTok answered 403 Forbidden: {"error":{"code":"spam_risk_too_many_posts","message":"x","log_id":"1"}}"#;
        let refined = refine(PlatformError::Permanent(body.to_owned()));
        assert!(
            matches!(&refined, PlatformError::Permanent(reason) if reason.contains("daily cap") && reason.contains("spam_risk_too_many_posts")),
            "{refined:?}"
        );
        let scope = r#"TikTok answered 403 Forbidden: {"error":{"code":"scope_not_authorized","message":"no"}}"#;
        assert!(matches!(refine(PlatformError::Permanent(scope.to_owned())), PlatformError::AuthDead(_)));
        assert!(matches!(classify_code("rate_limit_exceeded", ""), PlatformError::RateLimited { .. }));
        assert!(matches!(classify_code("reached_active_user_cap", ""), PlatformError::Permanent(_)));
        assert!(matches!(nothing_posted(PlatformError::Ambiguous("t".into())), PlatformError::Transient(_)));
    }

    #[test]
    fn options_are_tiktoks_own() {
        let options = options_of(&serde_json::json!({"privacy_level": "SELF_ONLY", "video_source": "PULL_FROM_URL"}));
        let options = options.unwrap();
        assert_eq!(options.video_source, Some(VideoSource::PullFromUrl));
        assert!(matches!(options_of(&serde_json::json!({"privacy": "x"})), Err(PlatformError::Permanent(_))));
        assert!(options_of(&serde_json::Value::Null).unwrap().privacy_level.is_none());
    }
}
