//! LinkedIn: OAuth 2.0 authorization code without PKCE (LinkedIn offers PKCE to native apps
//! only), the client authenticating in the token request's body (`client_secret_post`).
//! Access tokens last 60 days; refresh tokens exist only for approved partners, so most
//! accounts need a reconnect when the token expires (herald marks them `needs_reconnect`).
//!
//! A grant reaches the member (`GET /v2/userinfo` → `sub`) and, with `r_organization_admin`,
//! the organisations they administer (`GET /v2/organizationalEntityAcls?q=roleAssignee`); a
//! refusal there means the grant has no such scope and only the member is imported. Accounts
//! are stored by URN (`urn:li:person:…`, `urn:li:organization:…`), which is the post's author.
//! Publishing: `POST /rest/posts` with `LinkedIn-Version` and `X-Restli-Protocol-Version:
//! 2.0.0`; 201 with the post's URN in `x-restli-id`. A duplicate is a 422; a 429 names no
//! reset (the limits are daily, midnight UTC).
//!
//! Media go up first, owned by the author: images through the Images API
//! (`/rest/images?action=initializeUpload` → an upload URL and the image's URN; PUT the bytes),
//! a video through the Videos API (`initializeUpload` with `fileSizeBytes` → the parts to PUT,
//! 4 MiB each, whose ETags `finalizeUpload` takes). Each is polled (`GET /rest/images/{urn}`,
//! `/rest/videos/{urn}`) until `AVAILABLE`; `PROCESSING_FAILED` is permanent. The post then
//! carries `content.media` (one image with its `altText`, or one video with its `title`) or
//! `content.multiImage` (2-20 images). The uploads are safe to repeat; only the post is the
//! publish.
//!
//! A first comment is `POST /rest/socialActions/{post urn}/comments` with the author as `actor`
//! (the member or the organization: `w_member_social` covers a member's, an organization's needs
//! its admin's organization scope), the post as `object` and `message.text`; 201 with the
//! comment (its URN in `$URN` or `commentUrn`, its id in `x-restli-id`). A look-up for an
//! unanswered comment lists the post's comments (`GET` on the same path) for one by the author
//! with the same text; where the grant may not read comments (`r_member_social` is for select
//! partners) LinkedIn refuses and herald cannot tell.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use reqwest::Method;

use super::oauth::OAuthClient;
use super::{
    Between, ContentRules, DefaultEndpoints, FollowUp, GrantedAccount, KindRules, LookUp, MediaFile,
    MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, hourly, http,
};
use crate::domain::media::MediaKind;
use crate::media::MediaStore;

/// The API version herald speaks (`LinkedIn-Version: YYYYMM`). LinkedIn keeps a version about
/// a year: its May 2026 documentation (`li-lms-2026-05`) says 202506 is already sunset.
const API_VERSION: &str = "202605";

/// LinkedIn, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "linkedin",
    label: "LinkedIn",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.linkedin.com/oauth/v2/authorization",
        token_url: "https://www.linkedin.com/oauth/v2/accessToken",
        api_url: "https://api.linkedin.com",
        upload_url: None,
        revoke_url: Some("https://www.linkedin.com/oauth/v2/revoke"),
        scopes: &["openid", "profile", "w_member_social"],
    },
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 3000,
        publishes_text: true,
        publishes_media: true,
        // MultiImage: 2-20 images (official); image bytes, video 500 MB, 3 s-30 min and the
        // aspect range from publishers' guides. Not expressible here, so LinkedIn's own answer
        // says it: the Videos API's 75 KB minimum, and images under 36,152,320 pixels.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif"],
                max_bytes: 5_000_000,
                max_count: 20,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4"],
                max_bytes: 500_000_000,
                max_count: 1,
                aspect: Some(Between::new(1.0 / 2.4, 2.4)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(3_000, 1_800_000)),
            },
            // Alt text: the Images API's `altText`, at most 4,086 characters.
            max_alt_text: Some(4086),
            max_items: 20,
            mixes: false,
            required: false,
        },
        // A first comment through the Comments API (`socialActions/{post}/comments`).
        chains: super::Chains::COMMENTS,
    },
    options: super::options::options_of::<LinkedInOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(LinkedInAdapter::new(oauth)),
};

pub struct LinkedInAdapter {
    oauth: OAuthClient,
}

impl LinkedInAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Acls {
    elements: Vec<Acl>,
}

#[derive(Deserialize)]
struct Acl {
    organization: String,
}

/// How long LinkedIn may take to make an uploaded image or video available, and how often herald
/// asks meanwhile (the first asks come quickly: small files are ready in a moment).
const IMAGE_WAIT: Duration = Duration::from_secs(60);
const VIDEO_WAIT: Duration = Duration::from_secs(10 * 60);
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MOST: Duration = Duration::from_secs(5);

/// A LinkedIn target's options (`POST /rest/posts`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = LinkedInOptions)]
#[serde(deny_unknown_fields)]
pub struct LinkedInOptions {
    /// Who sees the post: `public` (the default), `connections` (the member's network) or
    /// `logged_in` (members signed in to LinkedIn).
    #[serde(default)]
    pub visibility: Visibility,
    /// A video post's title (`content.media.title`); not used on image or text posts.
    pub title: Option<String>,
}

/// A post's visibility.
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[schema(as = LinkedInVisibility)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Public,
    Connections,
    LoggedIn,
}

impl Visibility {
    fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "PUBLIC",
            Visibility::Connections => "CONNECTIONS",
            Visibility::LoggedIn => "LOGGED_IN",
        }
    }
}

impl super::options::TargetOptions for LinkedInOptions {
    fn problems(&self) -> Vec<super::options::OptionProblem> {
        match &self.title {
            Some(title) if title.trim().is_empty() => {
                vec![super::options::OptionProblem::new("title", "must not be blank (leave it out instead)")]
            }
            _ => Vec::new(),
        }
    }
}

/// `initializeUpload`'s answer: everything is inside `value`.
#[derive(Deserialize)]
struct Initialized<T> {
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageUpload {
    upload_url: String,
    image: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoUpload {
    video: String,
    #[serde(default)]
    upload_token: String,
    upload_instructions: Vec<UploadInstruction>,
}

/// One part of a video: the bytes `first_byte..=last_byte`, PUT to `upload_url`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadInstruction {
    upload_url: String,
    first_byte: u64,
    last_byte: u64,
}

/// An image's or a video's state (`GET /rest/images/{urn}`, `/rest/videos/{urn}`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaStatus {
    status: String,
    processing_failure_reason: Option<String>,
}

/// Whether a failure before the post is worth trying again: no answer to an upload is.
fn before_the_post(error: PlatformError) -> PlatformError {
    match error {
        PlatformError::Ambiguous(reason) => PlatformError::Transient(reason),
        other => other,
    }
}

/// `urn` as one path segment (Rest.li 2.0 wants URNs in paths encoded).
fn encoded(urn: &str) -> String {
    form_urlencoded::byte_serialize(urn.as_bytes()).collect()
}

impl LinkedInAdapter {
    /// A versioned REST request (`/rest/{path}`).
    fn rest(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.oauth
            .http()
            .request(method, format!("{}/rest/{path}", self.oauth.endpoints().api_url))
            .bearer_auth(token)
            .header("LinkedIn-Version", API_VERSION)
            .header("X-Restli-Protocol-Version", "2.0.0")
    }

    /// The post's `content` for its media, uploaded: one image or video (`media`), or 2-20
    /// images (`multiImage`); `None` for text alone.
    async fn media_content(
        &self,
        token: &str,
        publication: &Publication<'_>,
        options: &LinkedInOptions,
    ) -> Result<Option<serde_json::Value>, PlatformError> {
        let owner = publication.platform_user_id;
        match publication.media {
            [] => Ok(None),
            [file] if file.facts.kind == MediaKind::Video => {
                let urn = self.upload_video(token, owner, publication.store, file).await?;
                let mut media = serde_json::json!({"id": urn});
                if let Some(title) = &options.title {
                    media["title"] = serde_json::json!(title);
                }
                Ok(Some(serde_json::json!({"media": media})))
            }
            files if files.iter().any(|file| file.facts.kind == MediaKind::Video) => {
                Err(PlatformError::Permanent("a LinkedIn post takes one video alone, or images".to_owned()))
            }
            files => {
                let mut images = Vec::with_capacity(files.len());
                for file in files {
                    let urn = self.upload_image(token, owner, publication.store, file).await?;
                    let mut image = serde_json::json!({"id": urn});
                    if let Some(alt) = &file.alt_text {
                        image["altText"] = serde_json::json!(alt);
                    }
                    images.push(image);
                }
                Ok(Some(match <[serde_json::Value; 1]>::try_from(images) {
                    Ok([image]) => serde_json::json!({"media": image}),
                    Err(images) => serde_json::json!({"multiImage": {"images": images}}),
                }))
            }
        }
    }

    /// The Images API: initialize, PUT the bytes, wait until the image is available.
    async fn upload_image(
        &self,
        token: &str,
        owner: &str,
        store: &MediaStore,
        file: &MediaFile,
    ) -> Result<String, PlatformError> {
        let label = self.oauth.label();
        let body = serde_json::json!({"initializeUploadRequest": {"owner": owner}});
        let request = self.rest(Method::POST, "images?action=initializeUpload", token).json(&body);
        let upload: Initialized<ImageUpload> = http::send_json(label, request).await?;
        let size = size_of(file)?;
        let bytes = http::media_body(store, &file.object_key, 0..size).await?;
        let put = self
            .oauth
            .http()
            .put(&upload.value.upload_url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, &file.facts.content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(bytes);
        http::send(label, put).await?;
        self.wait_available(token, "images", &upload.value.image, IMAGE_WAIT).await?;
        Ok(upload.value.image)
    }

    /// The Videos API: initialize with the size, PUT each part LinkedIn names in order (their
    /// ETags are the part ids), finalize, wait until the video is available.
    async fn upload_video(
        &self,
        token: &str,
        owner: &str,
        store: &MediaStore,
        file: &MediaFile,
    ) -> Result<String, PlatformError> {
        let label = self.oauth.label();
        let size = size_of(file)?;
        let body = serde_json::json!({"initializeUploadRequest": {
            "owner": owner, "fileSizeBytes": size, "uploadCaptions": false, "uploadThumbnail": false,
        }});
        let request = self.rest(Method::POST, "videos?action=initializeUpload", token).json(&body);
        let upload: Initialized<VideoUpload> = http::send_json(label, request).await?;
        let upload = upload.value;
        let mut part_ids = Vec::with_capacity(upload.upload_instructions.len());
        let mut next = 0;
        for part in &upload.upload_instructions {
            if part.first_byte != next || part.last_byte < part.first_byte || part.last_byte >= size {
                return Err(PlatformError::Transient(format!(
                    "LinkedIn's upload parts do not cover the {size} bytes of the video in order"
                )));
            }
            next = part.last_byte + 1;
            let bytes = http::media_body(store, &file.object_key, part.first_byte..next).await?;
            let put = self
                .oauth
                .http()
                .put(&part.upload_url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, next - part.first_byte)
                .body(bytes);
            let answer = http::send(label, put).await?;
            let etag = answer.headers().get(reqwest::header::ETAG).and_then(|value| value.to_str().ok());
            let etag = etag.ok_or_else(|| PlatformError::Transient("LinkedIn took a video part but sent no ETag".to_owned()))?;
            part_ids.push(etag.to_owned());
        }
        if next != size {
            return Err(PlatformError::Transient(format!("LinkedIn's upload parts end before the {size} bytes of the video")));
        }
        let body = serde_json::json!({"finalizeUploadRequest": {
            "video": upload.video, "uploadToken": upload.upload_token, "uploadedPartIds": part_ids,
        }});
        http::send(label, self.rest(Method::POST, "videos?action=finalizeUpload", token).json(&body)).await?;
        self.wait_available(token, "videos", &upload.video, VIDEO_WAIT).await?;
        Ok(upload.video)
    }

    /// Asks for `urn`'s state (under `/rest/{kind}/`) until it is `AVAILABLE`, at most `most`;
    /// `PROCESSING_FAILED` is permanent, with LinkedIn's reason.
    async fn wait_available(&self, token: &str, kind: &str, urn: &str, most: Duration) -> Result<(), PlatformError> {
        let deadline = tokio::time::Instant::now() + most;
        let mut interval = POLL_FIRST;
        loop {
            let request = self.rest(Method::GET, &format!("{kind}/{}", encoded(urn)), token);
            let state: MediaStatus = http::send_json(self.oauth.label(), request).await?;
            match state.status.as_str() {
                "AVAILABLE" => return Ok(()),
                "PROCESSING_FAILED" => {
                    let reason = state.processing_failure_reason.unwrap_or_else(|| "no reason given".to_owned());
                    return Err(PlatformError::Permanent(format!("LinkedIn could not process the {kind}: {reason}")));
                }
                _ if tokio::time::Instant::now() + interval > deadline => {
                    return Err(PlatformError::Transient(format!(
                        "LinkedIn was still processing the {kind} after {} s",
                        most.as_secs()
                    )));
                }
                _ => {
                    tokio::time::sleep(interval).await;
                    interval = (interval * 2).min(POLL_MOST);
                }
            }
        }
    }
}

/// A comment as LinkedIn answers its creation or lists it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Comment {
    #[serde(rename = "$URN")]
    urn: Option<String>,
    comment_urn: Option<String>,
    id: Option<String>,
    actor: Option<String>,
    message: Option<CommentMessage>,
}

#[derive(Deserialize)]
struct CommentMessage {
    text: String,
}

#[derive(Deserialize)]
struct Comments {
    #[serde(default)]
    elements: Vec<Comment>,
}

impl Comment {
    /// The comment as herald keeps it: its URN (or, without one, its id), and its URL on the post.
    fn published(self, post: &str, header_id: Option<String>) -> Option<Published> {
        let id = self.urn.or(self.comment_urn).or(self.id).or(header_id)?;
        let url = format!("https://www.linkedin.com/feed/update/{post}?commentUrn={}", encoded(&id));
        Some(Published::new(id, Some(url)))
    }
}

/// How many of a post's comments a look-up reads.
const COMMENTS_PAGE: usize = 100;

/// The file's size, as the library read it.
fn size_of(file: &MediaFile) -> Result<u64, PlatformError> {
    u64::try_from(file.facts.size_bytes)
        .ok()
        .filter(|size| *size > 0)
        .ok_or_else(|| PlatformError::Permanent("the media file is empty".to_owned()))
}

#[async_trait]
impl Platform for LinkedInAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn supports_pkce(&self) -> bool {
        false
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let api = &self.oauth.endpoints().api_url;
        let token = tokens.access_token.expose_secret();
        let me: UserInfo =
            http::send_json(self.oauth.label(), self.oauth.http().get(format!("{api}/v2/userinfo")).bearer_auth(token))
                .await?;
        let mut accounts = vec![GrantedAccount {
            platform_user_id: format!("urn:li:person:{}", me.sub),
            kind: "person".to_owned(),
            username: None,
            display_name: me.name,
            token: None,
        }];
        let url = format!("{api}/v2/organizationalEntityAcls?q=roleAssignee&state=APPROVED&role=ADMINISTRATOR");
        let request = self.oauth.http().get(url).bearer_auth(token).header("X-Restli-Protocol-Version", "2.0.0");
        match http::send_json::<Acls>(self.oauth.label(), request).await {
            Ok(acls) => accounts.extend(acls.elements.into_iter().map(|acl| GrantedAccount {
                platform_user_id: acl.organization,
                kind: "organization".to_owned(),
                username: None,
                display_name: None,
                token: None,
            })),
            // No organisation scope in this grant: the member alone.
            Err(PlatformError::Permanent(_)) => {}
            Err(error) => return Err(error),
        }
        Ok(accounts)
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let token = tokens.access_token.expose_secret();
        let options: LinkedInOptions = super::options::parse(publication.options)?;
        // Everything before the post is safe to repeat: an upload left without an answer is
        // merely transient (the media is uploaded again), never a post that may exist.
        let content = self.media_content(token, publication, &options).await.map_err(before_the_post)?;
        let mut body = serde_json::json!({
            "author": publication.platform_user_id,
            "commentary": publication.content,
            "visibility": options.visibility.as_str(),
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        if let Some(content) = content {
            body["content"] = content;
        }
        let request = self.rest(Method::POST, "posts", token).json(&body);
        let response = http::send(self.oauth.label(), request).await?;
        let urn = response
            .headers()
            .get("x-restli-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Ambiguous("LinkedIn accepted the post but named no id".to_owned()))?;
        let url = format!("https://www.linkedin.com/feed/update/{urn}");
        Ok(Published::new(urn, Some(url)))
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let post = follow_up.comment_on(publication, SPEC.label)?;
        let body = serde_json::json!({
            "actor": publication.platform_user_id,
            "object": post,
            "message": {"text": publication.content},
        });
        let path = format!("socialActions/{}/comments", encoded(post));
        let request = self.rest(Method::POST, &path, tokens.access_token.expose_secret()).json(&body);
        let response = http::send(self.oauth.label(), request).await?;
        let header_id =
            response.headers().get("x-restli-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
        // The id may be in the header alone: an unreadable body still names the comment.
        let comment: Comment = response.json().await.unwrap_or_default();
        comment
            .published(post, header_id)
            .ok_or_else(|| PlatformError::Ambiguous("LinkedIn accepted the comment but named no id".to_owned()))
    }

    /// The post's comments, for one by this author with this text. A grant that may not read
    /// comments is refused: herald cannot tell.
    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        let post = follow_up.comment_on(publication, SPEC.label)?;
        let path = format!("socialActions/{}/comments?count={COMMENTS_PAGE}", encoded(post));
        let request = self.rest(Method::GET, &path, tokens.access_token.expose_secret());
        let comments: Comments = match http::send_json(self.oauth.label(), request).await {
            Ok(comments) => comments,
            Err(PlatformError::Permanent(_)) => return Ok(LookUp::CannotTell),
            Err(error) => return Err(error),
        };
        let full = comments.elements.len() >= COMMENTS_PAGE;
        let ours = comments.elements.into_iter().find(|comment| {
            comment.actor.as_deref() == Some(publication.platform_user_id)
                && comment.message.as_ref().is_some_and(|message| message.text == publication.content)
        });
        Ok(match ours.and_then(|comment| comment.published(post, None)) {
            Some(found) => LookUp::Found(found),
            // More comments than one page: ours may be among the rest.
            None if full => LookUp::CannotTell,
            None => LookUp::NotFound,
        })
    }
}
