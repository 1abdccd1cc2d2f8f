//! YouTube (Google OAuth 2.0): PKCE, and `access_type=offline` + `prompt=consent` so that Google
//! hands out a refresh token (it does not rotate it: refreshes answer without one, and herald
//! keeps the stored one). Access tokens last an hour. A grant reaches the user's channels
//! (`GET /channels?part=snippet&mine=true`). Google refresh tokens die when revoked, after six
//! months unused, or after seven days for apps still in "Testing".
//!
//! Publishing is the video's resumable upload (`POST {upload_url}/videos?uploadType=resumable
//! &part=snippet,status` with the video resource → the session URI in `Location`; the bytes PUT
//! to it in chunks of 8 MiB, a multiple of 256 KiB as the protocol wants, each with its
//! `Content-Range`; `308 Resume Incomplete` with `Range` says how much the session holds, and
//! the last chunk's 200/201 carries the video). A broken chunk (no answer, a 5xx) asks the
//! session where it stands (`Content-Range: bytes */TOTAL`) and resumes from the last byte it
//! acknowledged. The video exists only once its last byte is in, so a failure before the last
//! chunk is merely transient; herald keeps the session of each publish as its checkpoint
//! so that a retry resumes it, and a look-up asks it whether the upload completed.
//!
//! The snippet carries the title (the target's `title` option, else the content's first line),
//! the description (the content), tags and category; the status the privacy, the made-for-kids
//! declaration and `publishAt` for a scheduled publish (which YouTube takes only on a private
//! video: it turns public then). Shorts have no API of their own: a short vertical or square
//! video (up to three minutes) is a Short.
//!
//! A first comment is `POST /commentThreads?part=snippet` with `snippet.channelId` (the
//! channel), `snippet.videoId` (the video just published) and
//! `snippet.topLevelComment.snippet.textOriginal`, which needs the `youtube.force-ssl` scope
//! (50 quota units). A look-up for an unanswered one lists the video's threads
//! (`commentThreads?part=snippet&videoId=`) for a top-level comment by the channel with the
//! same text.
//!
//! Errors: `quotaExceeded` (403) is the API project's daily quota, which resets at midnight
//! Pacific time: rate limited until then. `uploadLimitExceeded` (400) is the channel's upload cap
//! over a rolling day ("try again in 24 hours"): rate limited for a day, not permanent, as the
//! same upload succeeds later. A 401 is a dead grant.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::oauth::OAuthClient;
use super::{
    Between, ContentRules, DefaultEndpoints, FollowUp, GrantedAccount, KindRules, LookUp, MediaFile,
    MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, hourly, http,
};
use crate::domain::media::MediaKind;
use crate::media::MediaStore;

/// YouTube, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "youtube",
    label: "YouTube",
    endpoints: DefaultEndpoints {
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        api_url: "https://www.googleapis.com/youtube/v3",
        upload_url: Some("https://www.googleapis.com/upload/youtube/v3"),
        revoke_url: Some("https://oauth2.googleapis.com/revoke"),
        // `youtube.force-ssl`: commentThreads.insert (a first comment) takes no other scope.
        scopes: &[
            "https://www.googleapis.com/auth/youtube.upload",
            "https://www.googleapis.com/auth/youtube.readonly",
            "https://www.googleapis.com/auth/youtube.force-ssl",
        ],
    },
    refresh_margin: Duration::from_secs(10 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 5000,
        publishes_text: false,
        publishes_media: true,
        // videos.insert: one video, up to 256 GB or 12 hours, whichever is less; no images.
        media: MediaRules {
            images: KindRules::NONE,
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/webm"],
                max_bytes: 256_000_000_000,
                max_count: 1,
                aspect: None,
                width: None,
                height: None,
                duration_ms: Some(Between::new(0, 12 * 60 * 60 * 1000)),
            },
            // Alt text: no alt text on videos.
            max_alt_text: None,
            max_items: 1,
            mixes: false,
            required: true,
        },
        // A first comment: a top-level comment thread on the video (commentThreads.insert).
        chains: super::Chains::COMMENTS,
    },
    options: super::options::options_of::<YouTubeOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(YouTubeAdapter::new(oauth)),
};

/// The upload session of each publish under way or unanswered is its checkpoint
/// (`Publication::checkpoints`, sealed outside the process): a retry resumes it and a look-up
/// asks it, whichever worker runs them.
pub struct YouTubeAdapter {
    oauth: OAuthClient,
}

impl YouTubeAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_authorize_params(&[("access_type", "offline"), ("prompt", "consent")]) }
    }
}

#[derive(Deserialize)]
struct Channels {
    #[serde(default)]
    items: Vec<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    id: String,
    snippet: Option<Snippet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snippet {
    title: Option<String>,
    custom_url: Option<String>,
}

#[async_trait]
impl Platform for YouTubeAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/channels?part=snippet&mine=true", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let channels: Channels = http::send_json(self.oauth.label(), request).await?;
        Ok(channels
            .items
            .into_iter()
            .map(|channel| GrantedAccount {
                platform_user_id: channel.id,
                kind: "channel".to_owned(),
                username: channel.snippet.as_ref().and_then(|snippet| snippet.custom_url.clone()),
                display_name: channel.snippet.and_then(|snippet| snippet.title),
                token: None,
            })
            .collect())
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let token = tokens.access_token.expose_secret();
        let file = the_video(publication.media)?;
        let total = size_of(file)?;
        let options: YouTubeOptions = super::options::parse(publication.options)?;
        let resource = video_resource(publication.content, &options)?;
        let (session, resume) = match remembered(publication).await? {
            Some(session) if session.total == total => (session, true),
            _ => {
                // Nothing exists before the upload completes: no answer here is merely transient.
                let uri = self.start_session(token, file, total, &resource).await.map_err(|error| match error {
                    PlatformError::Ambiguous(reason) => PlatformError::Transient(reason),
                    other => other,
                })?;
                let session = Session { uri, total };
                remember(publication, &session).await?;
                (session, false)
            }
        };
        let uploaded = self.upload(token, publication.store, file, &session, resume).await;
        match uploaded {
            // The session is kept for the retry to resume.
            Err(Broken::Resumable(error)) => Err(error),
            Err(Broken::Ended(error)) => {
                publication.checkpoints.forget(publication.reference).await?;
                Err(error)
            }
            Ok(video) => {
                // The video exists: a failure to forget only leaves a row for the prune.
                let _ = publication.checkpoints.forget(publication.reference).await;
                Ok(published(video))
            }
        }
    }

    /// Asks the publish's upload session (its checkpoint, whichever worker began it) whether
    /// the upload completed: its video, or nothing made yet (publishing again resumes the
    /// session). Without a checkpoint the upload never began a session: nothing was made.
    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(session) = remembered(publication).await? else {
            return Ok(LookUp::CannotTell);
        };
        match self.ask(tokens.access_token.expose_secret(), &session).await? {
            Step::Done(video) => {
                let _ = publication.checkpoints.forget(publication.reference).await;
                Ok(LookUp::Found(published(video)))
            }
            Step::Next(_) => Ok(LookUp::NotFound),
            Step::Gone => {
                publication.checkpoints.forget(publication.reference).await?;
                Ok(LookUp::CannotTell)
            }
        }
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let video = follow_up.comment_on(publication, SPEC.label)?;
        let body = serde_json::json!({"snippet": {
            "channelId": publication.platform_user_id,
            "videoId": video,
            "topLevelComment": {"snippet": {"textOriginal": publication.content}},
        }});
        let url = format!("{}/commentThreads?part=snippet", self.oauth.endpoints().api_url);
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let response = http::answer(self.oauth.label(), request).await?;
        if !response.status().is_success() {
            return Err(youtube_error(response).await);
        }
        let thread: CommentThread = response
            .json()
            .await
            .map_err(|_| PlatformError::Ambiguous("YouTube took the comment but sent no readable thread".to_owned()))?;
        Ok(thread.published(video))
    }

    /// The video's comment threads (most recent first, a few pages), for a top-level comment by
    /// the channel with this text.
    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        let video = follow_up.comment_on(publication, SPEC.label)?;
        let mut page: Option<String> = None;
        for _ in 0..THREAD_PAGES {
            let mut url = format!(
                "{}/commentThreads?part=snippet&videoId={}&order=time&maxResults=100&textFormat=plainText",
                self.oauth.endpoints().api_url,
                query_value(video)
            );
            if let Some(token) = &page {
                url.push_str(&format!("&pageToken={}", query_value(token)));
            }
            let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
            let response = http::answer(self.oauth.label(), request).await?;
            if !response.status().is_success() {
                return Err(youtube_error(response).await);
            }
            let threads: CommentThreads = response
                .json()
                .await
                .map_err(|error| PlatformError::Transient(format!("YouTube sent an unreadable list: {error}")))?;
            if let Some(thread) =
                threads.items.into_iter().find(|thread| thread.is(publication.platform_user_id, publication.content))
            {
                return Ok(LookUp::Found(thread.published(video)));
            }
            match threads.next_page_token {
                Some(next) => page = Some(next),
                None => return Ok(LookUp::NotFound),
            }
        }
        // More threads than herald reads: it may be further on.
        Ok(LookUp::CannotTell)
    }
}

/// How many pages of a video's comment threads a look-up reads, at most.
const THREAD_PAGES: usize = 3;

/// `value` encoded for a query string.
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Bytes per PUT: 32 × 256 KiB (every chunk but the last must be a multiple of 256 KiB).
const CHUNK: u64 = 32 * 256 * 1024;
/// How many broken chunks in a row (without the session moving on) an upload rides out.
const MOST_BROKEN: u32 = 5;
/// The pause before asking a session after a broken chunk, doubled each time.
const BROKEN_PAUSE: Duration = Duration::from_millis(100);
/// The longest title YouTube takes, in characters.
const MAX_TITLE: usize = 100;

/// A resumable upload session: its URI (which grants the upload: never logged, never in a
/// reason, sealed in its checkpoint) and the file's size.
#[derive(Clone, Serialize, Deserialize)]
struct Session {
    uri: String,
    total: u64,
}

/// Why an upload stopped: with its session still worth resuming, or with the session done.
enum Broken {
    Resumable(PlatformError),
    Ended(PlatformError),
}

/// Where an upload stands after a PUT or a status question.
enum Step {
    /// The upload is complete: the video.
    Done(Video),
    /// The session holds the bytes before this offset.
    Next(u64),
    /// The session is gone (expired, or never was).
    Gone,
}

#[derive(Deserialize)]
struct Video {
    id: String,
}

/// A YouTube target's options (the video resource's `snippet` and `status`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = YouTubeOptions)]
#[serde(deny_unknown_fields)]
pub struct YouTubeOptions {
    /// The video's title, 1 to 100 characters without `<` or `>`; without it, the content's
    /// first line.
    pub title: Option<String>,
    /// Who may watch: `public` (the default), `unlisted` or `private`. YouTube keeps uploads of
    /// API projects it has not audited private whatever this says.
    #[serde(default)]
    pub privacy: Privacy,
    /// Tags (keywords), at most 500 characters in all.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A video category id, e.g. `"22"` (People & Blogs) or `"28"` (Science & Technology);
    /// YouTube picks one without it.
    pub category_id: Option<String>,
    /// Whether the video is made for kids (the COPPA declaration); the channel's default
    /// without it.
    pub made_for_kids: Option<bool>,
    /// When the video turns public (a scheduled publish): it is uploaded private until then.
    pub publish_at: Option<DateTime<Utc>>,
}

/// A video's privacy.
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[schema(as = YouTubePrivacy)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    #[default]
    Public,
    Unlisted,
    Private,
}

/// The most characters YouTube takes in a video's tags together (a tag with a space counts its
/// quotes too).
const MAX_TAG_CHARS: usize = 500;

impl super::options::TargetOptions for YouTubeOptions {
    fn problems(&self) -> Vec<super::options::OptionProblem> {
        use super::options::OptionProblem;
        let mut problems = Vec::new();
        if let Some(title) = &self.title
            && (title.trim().is_empty() || title.chars().count() > MAX_TITLE || title.contains(['<', '>']))
        {
            problems.push(OptionProblem::new("title", format!("1 to {MAX_TITLE} characters, without < or >")));
        }
        let tag_chars: usize = self
            .tags
            .iter()
            .map(|tag| tag.chars().count() + if tag.contains(' ') { 2 } else { 0 })
            .sum::<usize>()
            + self.tags.len().saturating_sub(1);
        if tag_chars > MAX_TAG_CHARS || self.tags.iter().any(|tag| tag.trim().is_empty() || tag.contains(['<', '>'])) {
            problems.push(OptionProblem::new("tags", format!("at most {MAX_TAG_CHARS} characters in all, none blank or with < or >")));
        }
        if self.category_id.as_deref().is_some_and(|id| id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit())) {
            problems.push(OptionProblem::new("category_id", "must be a category's number, e.g. \"22\""));
        }
        problems
    }
}

/// The video resource's `snippet` and `status` for `content` and `options`.
fn video_resource(content: &str, options: &YouTubeOptions) -> Result<serde_json::Value, PlatformError> {
    let title = match &options.title {
        Some(title) if title.chars().count() > MAX_TITLE || title.contains(['<', '>']) || title.trim().is_empty() => {
            return Err(PlatformError::Permanent(format!(
                "a YouTube title takes 1 to {MAX_TITLE} characters and no < or >"
            )));
        }
        Some(title) => title.clone(),
        None => {
            let line = content.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("Untitled");
            line.chars().filter(|c| !matches!(c, '<' | '>')).take(MAX_TITLE).collect()
        }
    };
    let mut snippet = serde_json::json!({"title": title, "description": content});
    if !options.tags.is_empty() {
        snippet["tags"] = serde_json::json!(options.tags);
    }
    if let Some(category) = &options.category_id {
        snippet["categoryId"] = serde_json::json!(category);
    }
    let privacy = match (options.publish_at, options.privacy) {
        // YouTube schedules only private videos: it makes them public at `publishAt`.
        (Some(_), _) | (None, Privacy::Private) => "private",
        (None, Privacy::Public) => "public",
        (None, Privacy::Unlisted) => "unlisted",
    };
    let mut status = serde_json::json!({"privacyStatus": privacy});
    if let Some(kids) = options.made_for_kids {
        status["selfDeclaredMadeForKids"] = serde_json::json!(kids);
    }
    if let Some(at) = options.publish_at {
        status["publishAt"] = serde_json::json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    Ok(serde_json::json!({"snippet": snippet, "status": status}))
}

/// The one video a YouTube post carries.
fn the_video(media: &[MediaFile]) -> Result<&MediaFile, PlatformError> {
    match media {
        [file] if file.facts.kind == MediaKind::Video => Ok(file),
        _ => Err(PlatformError::Permanent("a YouTube post is one video".to_owned())),
    }
}

fn size_of(file: &MediaFile) -> Result<u64, PlatformError> {
    u64::try_from(file.facts.size_bytes)
        .ok()
        .filter(|size| *size > 0)
        .ok_or_else(|| PlatformError::Permanent("the video file is empty".to_owned()))
}

fn published(video: Video) -> Published {
    let url = format!("https://www.youtube.com/watch?v={}", video.id);
    Published::new(video.id, Some(url))
}

/// A comment thread as commentThreads.insert answers it and commentThreads.list lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentThread {
    id: String,
    snippet: Option<ThreadSnippet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThreadSnippet {
    top_level_comment: Option<TopLevelComment>,
}

#[derive(Deserialize)]
struct TopLevelComment {
    snippet: Option<CommentSnippet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentSnippet {
    author_channel_id: Option<AuthorChannel>,
    #[serde(default)]
    text_original: String,
}

#[derive(Deserialize)]
struct AuthorChannel {
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentThreads {
    #[serde(default)]
    items: Vec<CommentThread>,
    next_page_token: Option<String>,
}

impl CommentThread {
    /// Whether `channel` wrote this thread's top-level comment, with `text`.
    fn is(&self, channel: &str, text: &str) -> bool {
        let comment = self.snippet.as_ref().and_then(|snippet| snippet.top_level_comment.as_ref());
        comment.and_then(|comment| comment.snippet.as_ref()).is_some_and(|snippet| {
            snippet.author_channel_id.as_ref().is_some_and(|author| author.value == channel)
                && snippet.text_original == text
        })
    }

    fn published(self, video: &str) -> Published {
        let url = format!("https://www.youtube.com/watch?v={video}&lc={}", self.id);
        Published::new(self.id, Some(url))
    }
}

/// The offset after the last byte a `308`'s `Range` (`bytes=0-N`) acknowledges; none: nothing.
fn acknowledged(headers: &HeaderMap) -> Result<u64, PlatformError> {
    let Some(range) = headers.get("range") else {
        return Ok(0);
    };
    range
        .to_str()
        .ok()
        .and_then(|range| range.trim().strip_prefix("bytes=0-"))
        .and_then(|last| last.parse::<u64>().ok())
        .map(|last| last + 1)
        .ok_or_else(|| PlatformError::Transient("YouTube sent an unreadable Range".to_owned()))
}

/// The error a YouTube answer means, by the reason in its body (`error.errors[].reason`).
async fn youtube_error(response: Response) -> PlatformError {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    classify(status, &headers, &body, Utc::now())
}

fn classify(status: StatusCode, headers: &HeaderMap, body: &str, now: DateTime<Utc>) -> PlatformError {
    #[derive(Deserialize)]
    struct Answer {
        error: Body,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Reason>,
    }
    #[derive(Deserialize)]
    struct Reason {
        reason: String,
    }
    let reasons: Vec<String> = serde_json::from_str::<Answer>(body)
        .map(|answer| answer.error.errors.into_iter().map(|error| error.reason).collect())
        .unwrap_or_default();
    let excerpt: String = body.chars().take(300).collect();
    let reason = format!("YouTube answered {status}: {excerpt}");
    let has = |name: &str| reasons.iter().any(|reason| reason == name);
    if has("quotaExceeded") {
        PlatformError::RateLimited { until: next_pacific_midnight(now), reason }
    } else if has("uploadLimitExceeded") {
        PlatformError::RateLimited { until: now + chrono::Duration::hours(24), reason }
    } else if has("rateLimitExceeded") || has("userRateLimitExceeded") {
        let until = http::reset_time(headers, now).unwrap_or(now + chrono::Duration::seconds(60));
        PlatformError::RateLimited { until, reason }
    } else {
        http::classify("YouTube", status, headers, body, now)
    }
}

/// The next midnight in Pacific time (when YouTube's daily quotas reset), after `now`: UTC-8,
/// or UTC-7 from the second Sunday of March to the first Sunday of November.
fn next_pacific_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let offset_hours = |daylight: bool| if daylight { 7 } else { 8 };
    let local = now - chrono::Duration::hours(offset_hours(pacific_daylight_at(now)));
    let tomorrow = local.date_naive().succ_opt().unwrap_or(local.date_naive());
    let midnight = tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    // Midnight is never inside a change (those are at 2:00): the date alone says the offset.
    let (start, end) = daylight_dates(tomorrow.year());
    midnight + chrono::Duration::hours(offset_hours(tomorrow > start && tomorrow <= end))
}

/// Whether Pacific daylight time is in force at `at`.
fn pacific_daylight_at(at: DateTime<Utc>) -> bool {
    let (start, end) = daylight_dates(at.year());
    // 2:00 PST is 10:00 UTC; 2:00 PDT is 9:00 UTC.
    let begins = start.and_hms_opt(10, 0, 0).unwrap_or_default().and_utc();
    let ends = end.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc();
    at >= begins && at < ends
}

/// The second Sunday of March and the first Sunday of November of `year`.
fn daylight_dates(year: i32) -> (NaiveDate, NaiveDate) {
    let sunday = |month, nth| NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Sun, nth).unwrap_or_default();
    (sunday(3, 2), sunday(11, 1))
}

/// The publish's upload session, from its checkpoint (unreadable state is none).
async fn remembered(publication: &Publication<'_>) -> Result<Option<Session>, PlatformError> {
    let state = publication.checkpoints.load(publication.reference).await?;
    Ok(state.and_then(|state| serde_json::from_str(&state).ok()))
}

/// Keeps `session` as the publish's checkpoint before any byte is sent.
async fn remember(publication: &Publication<'_>, session: &Session) -> Result<(), PlatformError> {
    let state = serde_json::to_string(session).map_err(|error| PlatformError::Transient(error.to_string()))?;
    publication.checkpoints.save(publication.reference, SPEC.name, &state).await
}

impl YouTubeAdapter {

    /// Opens the upload session for `file` with the video resource; answers its URI.
    async fn start_session(
        &self,
        token: &str,
        file: &MediaFile,
        total: u64,
        resource: &serde_json::Value,
    ) -> Result<String, PlatformError> {
        let upload_url = self.oauth.endpoints().upload_url.as_deref().unwrap_or_default();
        let request = self
            .oauth
            .http()
            .post(format!("{upload_url}/videos?uploadType=resumable&part=snippet,status"))
            .bearer_auth(token)
            .header("X-Upload-Content-Length", total)
            .header("X-Upload-Content-Type", &file.facts.content_type)
            .json(resource);
        let response = http::answer(self.oauth.label(), request).await?;
        if !response.status().is_success() {
            return Err(youtube_error(response).await);
        }
        response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Transient("YouTube opened no upload session (no Location)".to_owned()))
    }

    /// Sends the file's bytes to `session` from the start, or (`resume`) from where the session
    /// stands; after a broken chunk, asks the session and goes on from its last acknowledged
    /// byte. A failure is ambiguous only while the last chunk may have landed.
    async fn upload(
        &self,
        token: &str,
        store: &MediaStore,
        file: &MediaFile,
        session: &Session,
        resume: bool,
    ) -> Result<Video, Broken> {
        let mut offset = (!resume).then_some(0);
        let mut furthest = 0;
        let mut broken = 0;
        let mut last_unanswered = false;
        loop {
            let step = match offset {
                Some(from) => self.put_chunk(token, store, file, session, from).await,
                None => self.ask(token, session).await,
            };
            match step {
                Ok(Step::Done(video)) => return Ok(video),
                Ok(Step::Next(next)) if next < session.total => {
                    if next > furthest {
                        broken = 0;
                        furthest = next;
                    }
                    last_unanswered = false;
                    offset = Some(next);
                }
                Ok(Step::Next(_)) => {
                    let reason = "YouTube holds every byte of the video but named no video";
                    return Err(Broken::Ended(PlatformError::Ambiguous(reason.into())));
                }
                Ok(Step::Gone) if last_unanswered => {
                    let reason = "the upload session ended after the last chunk was sent";
                    return Err(Broken::Ended(PlatformError::Ambiguous(reason.into())));
                }
                Ok(Step::Gone) => {
                    let reason = "the upload session expired; the upload starts again";
                    return Err(Broken::Ended(PlatformError::Transient(reason.into())));
                }
                Err(error) if error.is_transient() && broken < MOST_BROKEN => {
                    if let Some(from) = offset {
                        last_unanswered |= from + CHUNK >= session.total && matches!(error, PlatformError::Ambiguous(_));
                    }
                    tokio::time::sleep(BROKEN_PAUSE * 2u32.pow(broken)).await;
                    broken += 1;
                    offset = None;
                }
                Err(PlatformError::Transient(reason) | PlatformError::Ambiguous(reason)) if last_unanswered => {
                    return Err(Broken::Resumable(PlatformError::Ambiguous(reason)));
                }
                Err(PlatformError::Transient(reason) | PlatformError::Ambiguous(reason)) => {
                    return Err(Broken::Resumable(PlatformError::Transient(reason)));
                }
                Err(error) => return Err(Broken::Ended(error)),
            }
        }
    }

    /// PUTs the chunk of `file` from `from` to `session`.
    async fn put_chunk(
        &self,
        token: &str,
        store: &MediaStore,
        file: &MediaFile,
        session: &Session,
        from: u64,
    ) -> Result<Step, PlatformError> {
        let end = (from + CHUNK).min(session.total);
        let body = http::media_body(store, &file.object_key, from..end).await?;
        let request = self
            .oauth
            .http()
            .put(&session.uri)
            .bearer_auth(token)
            .header(CONTENT_TYPE, &file.facts.content_type)
            .header(CONTENT_LENGTH, end - from)
            .header("Content-Range", format!("bytes {from}-{}/{}", end - 1, session.total))
            .body(body);
        self.step(http::answer(self.oauth.label(), request).await?).await
    }

    /// Asks `session` how much it holds (an empty PUT with `Content-Range: bytes */TOTAL`).
    async fn ask(&self, token: &str, session: &Session) -> Result<Step, PlatformError> {
        let request = self
            .oauth
            .http()
            .put(&session.uri)
            .bearer_auth(token)
            .header(CONTENT_LENGTH, 0)
            .header("Content-Range", format!("bytes */{}", session.total));
        self.step(http::answer(self.oauth.label(), request).await?).await
    }

    /// What an answer of the session says.
    async fn step(&self, response: Response) -> Result<Step, PlatformError> {
        match response.status().as_u16() {
            200 | 201 => response
                .json::<Video>()
                .await
                .map(Step::Done)
                .map_err(|error| PlatformError::Ambiguous(format!("YouTube sent an unreadable video: {error}"))),
            308 => acknowledged(response.headers()).map(Step::Next),
            404 | 410 => Ok(Step::Gone),
            _ => Err(youtube_error(response).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_quota_resets_at_the_next_pacific_midnight() {
        // Winter: UTC-8.
        assert_eq!(next_pacific_midnight(at("2027-01-15T07:59:00Z")), at("2027-01-15T08:00:00Z"));
        assert_eq!(next_pacific_midnight(at("2027-01-15T08:00:00Z")), at("2027-01-16T08:00:00Z"));
        // Summer: UTC-7.
        assert_eq!(next_pacific_midnight(at("2027-07-01T12:00:00Z")), at("2027-07-02T07:00:00Z"));
        // The night before the spring change (14 March 2027) is still UTC-8; the next, UTC-7.
        assert_eq!(next_pacific_midnight(at("2027-03-13T12:00:00Z")), at("2027-03-14T08:00:00Z"));
        assert_eq!(next_pacific_midnight(at("2027-03-14T12:00:00Z")), at("2027-03-15T07:00:00Z"));
        // Autumn (7 November 2027): its midnight is still UTC-7, the next one UTC-8.
        assert_eq!(next_pacific_midnight(at("2027-11-06T12:00:00Z")), at("2027-11-07T07:00:00Z"));
        assert_eq!(next_pacific_midnight(at("2027-11-07T12:00:00Z")), at("2027-11-08T08:00:00Z"));
    }

    #[test]
    fn youtube_reasons_say_what_to_wait_for() {
        let now = at("2027-01-15T12:00:00Z");
        let body = |reason: &str| {
            format!(r#"{{"error": {{"code": 403, "message": "m", "errors": [{{"domain": "youtube", "reason": "{reason}"}}]}}}}"#)
        };
        let none = HeaderMap::new();
        let quota = classify(StatusCode::FORBIDDEN, &none, &body("quotaExceeded"), now);
        assert!(matches!(quota, PlatformError::RateLimited { until, .. } if until == at("2027-01-16T08:00:00Z")));
        let cap = classify(StatusCode::BAD_REQUEST, &none, &body("uploadLimitExceeded"), now);
        assert!(matches!(cap, PlatformError::RateLimited { until, .. } if until == now + chrono::Duration::hours(24)));
        let forbidden = classify(StatusCode::FORBIDDEN, &none, &body("forbidden"), now);
        assert!(matches!(forbidden, PlatformError::Permanent(_)));
        assert!(matches!(classify(StatusCode::UNAUTHORIZED, &none, "{}", now), PlatformError::AuthDead(_)));
    }

    #[test]
    fn a_title_defaults_to_the_contents_first_line_and_a_schedule_makes_it_private() {
        let options = YouTubeOptions { publish_at: Some(at("2027-02-01T09:00:00Z")), ..YouTubeOptions::default() };
        let resource = video_resource("\n  A <b>first</b> line \nmore", &options).unwrap();
        assert_eq!(resource["snippet"]["title"], "A bfirst/b line");
        assert_eq!(resource["status"], serde_json::json!({"privacyStatus": "private", "publishAt": "2027-02-01T09:00:00Z"}));
        let long = YouTubeOptions { title: Some("x".repeat(101)), ..YouTubeOptions::default() };
        assert!(matches!(video_resource("text", &long), Err(PlatformError::Permanent(_))));
    }

    #[test]
    fn options_name_each_field_youtube_would_refuse() {
        use super::super::options::TargetOptions;
        let fields = |options: YouTubeOptions| -> Vec<String> {
            options.problems().into_iter().map(|problem| problem.field).collect()
        };
        let fine = YouTubeOptions {
            title: Some("x".repeat(100)),
            // 50 tags of 3 characters and their 2 quotes, and 49 commas: 299.
            tags: vec!["a b".into(); 50],
            category_id: Some("22".into()),
            ..YouTubeOptions::default()
        };
        assert!(fields(fine).is_empty());
        let wrong = YouTubeOptions {
            title: Some("<b>bold</b>".into()),
            tags: vec!["abc".into(); 200],
            category_id: Some("People".into()),
            ..YouTubeOptions::default()
        };
        assert_eq!(fields(wrong), ["title", "tags", "category_id"]);
        let long = YouTubeOptions { title: Some("x".repeat(101)), ..YouTubeOptions::default() };
        assert_eq!(fields(long), ["title"]);
    }
}
