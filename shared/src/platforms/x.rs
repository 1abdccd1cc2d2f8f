//! X (Twitter) API v2 with OAuth 2.0: authorization code with PKCE (required by X), HTTP Basic
//! client authentication for confidential clients, refresh tokens that rotate on every use
//! (`offline.access`), access tokens of two hours. A grant reaches one account, the user's own:
//! `GET /2/users/me` → `{"data": {"id", "name", "username"}}`. Publishing is
//! `POST /2/tweets {"text", "media": {"media_ids"}}` → 201 `{"data": {"id", "text"}}`; a duplicate
//! is a 403. A thread's items are replies, `reply.in_reply_to_tweet_id` the item before.
//! Options ([`XOptions`]) are `reply_settings` and `quote_tweet_id`, on the thread's first post.
//! Rate limits answer 429 with `x-rate-limit-reset` (unix seconds).
//!
//! X keeps no client reference, so a look-up reads the account's timeline since the attempt
//! began (`GET /2/users/{id}/tweets?start_time=`) and matches the text (X shortens links to
//! t.co and escapes `&<>`, so links and escapes are compared loosely) and, for a reply, the
//! post it replies to. A timeline that answered in full without a match is `NotFound`.
//!
//! Media go first, each through the v2 chunked upload on the upload URL (`api.x.com`, needing
//! the `media.write` scope): `POST /2/media/upload/initialize` (JSON: `media_type`,
//! `total_bytes`, `media_category`) → `{"data": {"id"}}`; `POST /2/media/upload/{id}/append`
//! (multipart: `segment_index` and `media`, a chunk of at most [`CHUNK`] streamed from the
//! store) for each chunk in order; `POST /2/media/upload/{id}/finalize`, whose answer may carry
//! `processing_info` (videos and GIFs): then `GET /2/media/upload?command=STATUS&media_id=`
//! until its `state` is `succeeded` (waiting the `check_after_secs` it names, at most
//! [`PROCESSING_WAIT`] in all) or `failed` (permanent, with X's reason). Alt text is
//! `POST /2/media/metadata {"id", "metadata": {"alt_text": {"text"}}}`. Uploads are safe to
//! repeat: only the tweet is the publish.
//!
//! Pay-per-use apps whose credits ran out get 402 Payment Required on any call, and a monthly
//! usage cap answers 429 `UsageCapExceeded`: both permanent with a clear reason (retrying or
//! waiting for the 15-minute window would not help).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use reqwest::multipart::{Form, Part};

use super::oauth::OAuthClient;
use super::{
    Between, ContentRules, DefaultEndpoints, FollowUp, FollowUpKind, GrantedAccount, KindRules, LookUp, MediaFile,
    MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, http, per_minutes,
};
use super::options::{OptionProblem, TargetOptions};
use crate::domain::media::MediaKind;
use crate::media::MediaStore;

/// X, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "x",
    label: "X",
    endpoints: DefaultEndpoints {
        authorize_url: "https://x.com/i/oauth2/authorize",
        token_url: "https://api.x.com/2/oauth2/token",
        api_url: "https://api.x.com",
        // The v2 media upload is on the API host.
        upload_url: Some("https://api.x.com"),
        revoke_url: Some("https://api.x.com/2/oauth2/revoke"),
        scopes: &["tweet.read", "tweet.write", "users.read", "media.write", "offline.access"],
    },
    // Access tokens of two hours.
    refresh_margin: Duration::from_secs(30 * 60),
    // 200 per 15 minutes per user; 300 per 3 hours per user and app.
    publish_rates: PublishRates { per_account: per_minutes(200, 15), per_app: per_minutes(300, 180) },
    content: ContentRules {
        counts: super::TextCount::XWeighted,
        max_hashtags: None,
        max_chars: 280,
        publishes_text: true,
        publishes_media: true,
        // docs.x.com media: 5 MB images, 4 photos or 1 video (512 MB); types, sizes in px and
        // 0.5-140 s from publishers' guides.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif", "image/webp"],
                max_bytes: 5_000_000,
                max_count: 4,
                aspect: None,
                width: Some(Between::new(4, 8192)),
                height: Some(Between::new(4, 8192)),
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 512_000_000,
                max_count: 1,
                aspect: Some(Between::new(1.0 / 3.0, 3.0)),
                width: Some(Between::new(32, 1280)),
                height: Some(Between::new(32, 1024)),
                duration_ms: Some(Between::new(500, 140_000)),
            },
            // Alt text: media metadata `alt_text`, at most 1,000 characters.
            max_alt_text: Some(1000),
            max_items: 4,
            mixes: false,
            required: false,
        },
        chains: super::Chains::REPLIES,
    },
    options: super::options::options_of::<XOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(XAdapter::new(oauth)),
};

/// An X target's options (`POST /2/tweets`), on the thread's first post.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = XOptions)]
#[serde(deny_unknown_fields)]
pub struct XOptions {
    /// Who may reply; everyone when absent.
    pub reply_settings: Option<ReplySettings>,
    /// The id of a post this one quotes.
    pub quote_tweet_id: Option<String>,
}

/// Who may reply to a post (X's `reply_settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = XReplySettings)]
#[serde(rename_all = "camelCase")]
pub enum ReplySettings {
    /// Accounts the author follows.
    Following,
    /// Accounts the post mentions.
    MentionedUsers,
    /// The author's subscribers.
    Subscribers,
    /// Verified accounts.
    Verified,
}

impl TargetOptions for XOptions {
    fn problems(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Some(id) = &self.quote_tweet_id
            && !is_post_id(id)
        {
            problems.push(OptionProblem::new("quote_tweet_id", "must be an X post id (1 to 19 digits)"));
        }
        problems
    }
}

/// Whether `id` reads as an X post id (a 64-bit snowflake in decimal).
fn is_post_id(id: &str) -> bool {
    (1..=19).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_digit())
}

pub struct XAdapter {
    oauth: OAuthClient,
}

impl XAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth }
    }
}

#[derive(Deserialize)]
struct Me {
    data: User,
}

#[derive(Deserialize)]
struct User {
    id: String,
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    data: Tweet,
}

#[derive(Deserialize)]
struct Tweet {
    id: String,
}

/// A page of the account's timeline.
#[derive(Deserialize)]
struct Timeline {
    #[serde(default)]
    data: Vec<ListedTweet>,
    meta: Option<TimelineMeta>,
}

#[derive(Deserialize)]
struct ListedTweet {
    id: String,
    text: String,
    #[serde(default)]
    referenced_tweets: Vec<Referenced>,
}

#[derive(Deserialize)]
struct Referenced {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Deserialize)]
struct TimelineMeta {
    next_token: Option<String>,
}

/// The most timeline pages one look-up reads (100 posts each).
const TIMELINE_PAGES: usize = 3;
/// How much earlier than the attempt began a look-up searches, for clocks that disagree.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(2);

/// `text` as a look-up compares it: links (X shortens them to t.co and appends one for media)
/// dropped, X's escapes of `&<>` undone, whitespace collapsed.
fn comparable(text: &str) -> String {
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    text.split_whitespace()
        .filter(|word| !(word.starts_with("http://") || word.starts_with("https://")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn published(id: String) -> Published {
    let url = format!("https://x.com/i/web/status/{id}");
    Published::new(id, Some(url))
}

#[async_trait]
impl Platform for XAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/2/users/me", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let me: Me = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: me.data.id,
            kind: "person".to_owned(),
            username: me.data.username,
            display_name: me.data.name,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options: XOptions = super::options::parse(publication.options)?;
        let mut body = self.tweet(tokens, publication).await?;
        if let Some(reply_settings) = options.reply_settings {
            body["reply_settings"] = serde_json::json!(reply_settings);
        }
        if let Some(quote_tweet_id) = &options.quote_tweet_id {
            body["quote_tweet_id"] = quote_tweet_id.as_str().into();
        }
        self.post_tweet(tokens, &body).await
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        self.find(tokens, publication, None).await
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let parent = reply_target(follow_up)?;
        let mut body = self.tweet(tokens, publication).await?;
        body["reply"] = serde_json::json!({ "in_reply_to_tweet_id": parent });
        self.post_tweet(tokens, &body).await
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        self.find(tokens, publication, Some(reply_target(follow_up)?)).await
    }
}

/// The post a follow-up replies to (X has no comments apart from replies).
fn reply_target<'a>(follow_up: &FollowUp<'a>) -> Result<&'a str, PlatformError> {
    match follow_up.kind {
        FollowUpKind::Reply => Ok(&follow_up.parent.platform_post_id),
        FollowUpKind::Comment => Err(PlatformError::Permanent("herald publishes no comments on X".to_owned())),
    }
}

impl XAdapter {
    /// The body of a post of `publication`'s text and media, the media uploaded.
    async fn tweet(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<serde_json::Value, PlatformError> {
        let mut media_ids = Vec::with_capacity(publication.media.len());
        for file in publication.media {
            media_ids.push(self.upload(tokens, publication.store, file).await?);
        }
        let mut body = serde_json::json!({ "text": publication.content });
        if !media_ids.is_empty() {
            body["media"] = serde_json::json!({ "media_ids": media_ids });
        }
        Ok(body)
    }

    /// `POST /2/tweets` of `body`.
    async fn post_tweet(&self, tokens: &TokenSet, body: &serde_json::Value) -> Result<Published, PlatformError> {
        let url = format!("{}/2/tweets", self.oauth.endpoints().api_url);
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(body);
        let created: Created = self.send_json(request).await?;
        Ok(published(created.data.id))
    }

    /// Looks in the account's timeline since the attempt began for a post of `publication`'s
    /// text (replying to `parent`, for a reply).
    async fn find(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        parent: Option<&str>,
    ) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let start = (began - CLOCK_SKEW).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let wanted = comparable(publication.content);
        let mut next: Option<String> = None;
        for _ in 0..TIMELINE_PAGES {
            let mut url = format!(
                "{}/2/users/{}/tweets?start_time={}&max_results=100&exclude=retweets&tweet.fields=created_at,referenced_tweets",
                self.oauth.endpoints().api_url,
                query_value(publication.platform_user_id),
                query_value(&start),
            );
            if let Some(token) = &next {
                url.push_str(&format!("&pagination_token={}", query_value(token)));
            }
            let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
            let page: Timeline = self.send_json(request).await?;
            let found = page.data.into_iter().find(|tweet| {
                comparable(&tweet.text) == wanted
                    && parent.is_none_or(|parent| {
                        tweet.referenced_tweets.iter().any(|referenced| referenced.kind == "replied_to" && referenced.id == parent)
                    })
            });
            if let Some(tweet) = found {
                return Ok(LookUp::Found(published(tweet.id)));
            }
            match page.meta.and_then(|meta| meta.next_token) {
                Some(token) => next = Some(token),
                None => return Ok(LookUp::NotFound),
            }
        }
        // More posts since then than herald reads: it cannot say.
        Ok(LookUp::CannotTell)
    }
}

/// The most bytes one APPEND carries (X takes up to 5 MB a segment, and at most 1,000 segments:
/// 4 MiB chunks carry the largest video X takes in 123).
pub const CHUNK: u64 = 4 * 1024 * 1024;
/// The longest herald waits for X to process one upload.
const PROCESSING_WAIT: Duration = Duration::from_secs(5 * 60);
/// Bounds on the wait X names in `check_after_secs` between two STATUS calls.
const SHORTEST_POLL: Duration = Duration::from_millis(200);
const LONGEST_POLL: Duration = Duration::from_secs(10);

/// An upload as INIT, FINALIZE and STATUS answer it.
#[derive(Deserialize)]
struct Upload {
    data: UploadData,
}

#[derive(Deserialize)]
struct UploadData {
    id: String,
    processing_info: Option<Processing>,
}

/// How far X is with processing an upload: `pending` → `in_progress` → `succeeded` | `failed`.
#[derive(Deserialize)]
struct Processing {
    state: String,
    check_after_secs: Option<u64>,
    error: Option<ProcessingError>,
}

#[derive(Deserialize)]
struct ProcessingError {
    name: Option<String>,
    message: Option<String>,
}

/// X's `media_category` for a file: what it checks the file against.
fn category(file: &MediaFile) -> &'static str {
    match (file.facts.kind, file.facts.content_type.as_str()) {
        (MediaKind::Video, _) => "tweet_video",
        (MediaKind::Image, "image/gif") => "tweet_gif",
        (MediaKind::Image, _) => "tweet_image",
    }
}

/// The byte ranges of a file of `size` bytes, in the chunks it is appended in.
fn chunks(size: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    (0..size.div_ceil(CHUNK)).map(move |index| index * CHUNK..((index + 1) * CHUNK).min(size))
}

impl XAdapter {
    /// Where the media endpoints are: the upload URL, or the API's when none is set.
    fn media_url(&self, path: &str) -> String {
        let endpoints = self.oauth.endpoints();
        format!("{}{path}", endpoints.upload_url.as_deref().unwrap_or(&endpoints.api_url))
    }

    /// Uploads `file` (INIT, an APPEND for each chunk, FINALIZE), waits until X has processed
    /// it, and sets its alt text; answers its media id.
    async fn upload(&self, tokens: &TokenSet, store: &MediaStore, file: &MediaFile) -> Result<String, PlatformError> {
        let size = u64::try_from(file.facts.size_bytes).unwrap_or_default();
        let init = serde_json::json!({
            "media_type": file.facts.content_type,
            "total_bytes": size,
            "media_category": category(file),
        });
        let request = self
            .oauth
            .http()
            .post(self.media_url("/2/media/upload/initialize"))
            .bearer_auth(tokens.access_token.expose_secret())
            .json(&init);
        let id = self.send_json::<Upload>(request).await?.data.id;
        for (index, range) in chunks(size).enumerate() {
            let length = range.end - range.start;
            let (bytes, _) = store.read(&file.object_key, Some(range)).await.map_err(|error| store_error(file, &error))?;
            let media = Part::stream_with_length(reqwest::Body::wrap_stream(bytes), length)
                .file_name("blob")
                .mime_str("application/octet-stream")
                .map_err(|error| PlatformError::Permanent(format!("an APPEND could not be built: {error}")))?;
            let form = Form::new().text("segment_index", index.to_string()).part("media", media);
            let request = self
                .oauth
                .http()
                .post(self.media_url(&format!("/2/media/upload/{id}/append")))
                .bearer_auth(tokens.access_token.expose_secret())
                .multipart(form);
            self.send(request).await?;
        }
        let request = self
            .oauth
            .http()
            .post(self.media_url(&format!("/2/media/upload/{id}/finalize")))
            .bearer_auth(tokens.access_token.expose_secret());
        let finalized: Upload = self.send_json(request).await?;
        if let Some(processing) = finalized.data.processing_info {
            self.processed(tokens, &id, processing).await?;
        }
        if let Some(alt_text) = file.alt_text.as_deref().filter(|text| !text.is_empty()) {
            let metadata = serde_json::json!({ "id": id, "metadata": { "alt_text": { "text": alt_text } } });
            let request = self
                .oauth
                .http()
                .post(self.media_url("/2/media/metadata"))
                .bearer_auth(tokens.access_token.expose_secret())
                .json(&metadata);
            self.send(request).await?;
        }
        Ok(id)
    }

    /// Waits until X has processed upload `id`, asking its STATUS when FINALIZE (then each STATUS)
    /// says to.
    async fn processed(&self, tokens: &TokenSet, id: &str, mut processing: Processing) -> Result<(), PlatformError> {
        let started = tokio::time::Instant::now();
        loop {
            match processing.state.as_str() {
                "succeeded" => return Ok(()),
                "failed" => {
                    let error = processing.error.as_ref();
                    let name = error.and_then(|error| error.name.as_deref()).unwrap_or("failed");
                    let message = error.and_then(|error| error.message.as_deref()).unwrap_or("no reason given");
                    return Err(PlatformError::Permanent(format!("X could not process media {id}: {name}: {message}")));
                }
                _ => {}
            }
            let wait = Duration::from_secs(processing.check_after_secs.unwrap_or(1)).clamp(SHORTEST_POLL, LONGEST_POLL);
            if started.elapsed() + wait > PROCESSING_WAIT {
                return Err(PlatformError::Transient(format!(
                    "X was still processing media {id} after {} s",
                    PROCESSING_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            let request = self
                .oauth
                .http()
                .get(self.media_url(&format!("/2/media/upload?command=STATUS&media_id={}", query_value(id))))
                .bearer_auth(tokens.access_token.expose_secret());
            let status: Upload = self.send_json(request).await?;
            // A STATUS without processing info has nothing left to do.
            let Some(next) = status.data.processing_info else { return Ok(()) };
            processing = next;
        }
    }

    /// Sends `request` and reads its JSON answer, with X's own refusals named.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, PlatformError> {
        http::send_json(self.oauth.label(), request).await.map_err(refusal)
    }

    /// Sends `request`, with X's own refusals named.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, PlatformError> {
        http::send(self.oauth.label(), request).await.map_err(refusal)
    }
}

/// X's refusals that the statuses alone misread: 402 Payment Required (a pay-per-use app out of
/// credits) is permanent with a reason that says so, and a 429 `UsageCapExceeded` (the monthly
/// cap of the app's plan, not the 15-minute window its reset header names) is permanent too:
/// waiting for that reset would only be refused again.
fn refusal(error: PlatformError) -> PlatformError {
    match error {
        PlatformError::Permanent(reason) if reason.starts_with("X answered 402") => PlatformError::Permanent(format!(
            "the X app's pay-per-use credits are used up: add credits in the X developer console, then retry ({reason})"
        )),
        PlatformError::RateLimited { reason, .. } if reason.contains("UsageCapExceeded") => PlatformError::Permanent(
            format!("the X app's monthly usage cap is reached: raise the plan or wait for the next month ({reason})"),
        ),
        other => other,
    }
}

fn store_error(file: &MediaFile, error: &object_store::Error) -> PlatformError {
    PlatformError::Transient(format!("reading media {} from the store failed: {error}", file.id))
}

/// `value` escaped for a URL's query.
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn a_file_is_appended_in_whole_chunks_then_the_rest() {
        let ranges: Vec<_> = chunks(2 * CHUNK + 5).collect();
        assert_eq!(ranges, [0..CHUNK, CHUNK..2 * CHUNK, 2 * CHUNK..2 * CHUNK + 5]);
        assert_eq!(chunks(CHUNK).map(|range| (range.start, range.end)).collect::<Vec<_>>(), [(0, CHUNK)]);
        assert_eq!(chunks(0).count(), 0);
    }

    #[test]
    fn spent_credits_and_a_monthly_cap_are_permanent_with_a_reason_that_says_so() {
        let now = Utc::now();
        let headers = reqwest::header::HeaderMap::new();
        let credits = http::classify(
            "X",
            StatusCode::PAYMENT_REQUIRED,
            &headers,
            r#"{"title":"CreditsDepleted","type":"https://api.twitter.com/2/problems/credits"}"#,
            now,
        );
        assert!(
            matches!(refusal(credits), PlatformError::Permanent(reason) if reason.starts_with("the X app's pay-per-use credits are used up"))
        );
        let capped = http::classify(
            "X",
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            r#"{"title":"UsageCapExceeded","period":"Monthly","type":"https://api.twitter.com/2/problems/usage-capped"}"#,
            now,
        );
        assert!(matches!(refusal(capped), PlatformError::Permanent(reason) if reason.contains("monthly usage cap")));
        let limited = http::classify("X", StatusCode::TOO_MANY_REQUESTS, &headers, "{}", now);
        assert!(matches!(refusal(limited), PlatformError::RateLimited { .. }));
    }
}
