//! Pinterest (API v5): OAuth 2.0 with the client authenticating as HTTP Basic and scopes
//! separated by commas; access tokens last about 30 days and refresh tokens about a year. A
//! grant reaches the user's account (`GET /user_account`).
//!
//! A Pin is made on a board (the target's `board_id` option; [`Platform::boards`] lists them,
//! `GET /boards`) with one image, a carousel of 2-5 images, or one video. Images are pulled by
//! Pinterest from herald's signed URLs (`media_source` `image_url` / `multiple_image_urls`). A
//! video is uploaded first: registered (`POST /media`), its bytes streamed from the media store in
//! a multipart `POST` of the registration's `upload_parameters` to its `upload_url` (S3), then
//! `GET /media/{id}` polled until `succeeded` (`failed`: refused). `POST /pins` is the publish;
//! everything before it is safe to repeat. A look-up reads the board's newest Pins for one with
//! the same description made since the attempt began; not there: it cannot tell.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::oauth::OAuthClient;
use super::{
    Between, Board, ContentRules, DefaultEndpoints, GrantedAccount, KindRules, LookUp, MediaFile, MediaRules, Platform,
    PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet, hourly, http,
};
use crate::domain::media::MediaKind;

/// Pinterest, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "pinterest",
    label: "Pinterest",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.pinterest.com/oauth/",
        token_url: "https://api.pinterest.com/v5/oauth/token",
        api_url: "https://api.pinterest.com/v5",
        upload_url: None,
        revoke_url: None,
        scopes: &["boards:read", "pins:read", "pins:write"],
    },
    refresh_margin: Duration::from_secs(3 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 500,
        publishes_text: false,
        publishes_media: true,
        // Product specs: PNG/JPEG up to 20 MB (carousels of 2-5); MP4/MOV/M4V up to 2 GB, 4 s-15 min,
        // between 1:2 and 1.91:1.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png"],
                max_bytes: 20_000_000,
                max_count: 5,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/x-m4v"],
                max_bytes: 2_000_000_000,
                max_count: 1,
                aspect: Some(Between::new(0.5, 1.91)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(4_000, 900_000)),
            },
            // Alt text: a pin's `alt_text`, at most 500 characters.
            max_alt_text: Some(500),
            max_items: 5,
            mixes: false,
            required: true,
        },
        chains: super::Chains::NONE,
    },
    options: super::options::options_of::<PinterestOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(PinterestAdapter::new(oauth)),
};

pub struct PinterestAdapter {
    oauth: OAuthClient,
}

impl PinterestAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_comma_scopes() }
    }
}

#[derive(Deserialize)]
struct UserAccount {
    id: Option<String>,
    username: String,
}

#[async_trait]
impl Platform for PinterestAdapter {
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
        let url = format!("{}/user_account", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let account: UserAccount = http::send_json(self.oauth.label(), request).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: account.id.unwrap_or_else(|| account.username.clone()),
            kind: "person".to_owned(),
            display_name: Some(account.username.clone()),
            username: Some(account.username),
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options = options_of(publication.options)?;
        let board_id = board_of(&options)?;
        let media_source = self.media_source(tokens, publication, &options).await?;
        let alt_text = options.alt_text.clone().or_else(|| publication.media.iter().find_map(|file| file.alt_text.clone()));
        let mut body = serde_json::json!({
            "board_id": board_id,
            "description": publication.content,
            "media_source": media_source,
        });
        for (field, value) in [
            ("title", &options.title),
            ("link", &options.link),
            ("board_section_id", &options.board_section_id),
            ("alt_text", &alt_text),
        ] {
            if let Some(value) = value {
                body[field] = value.as_str().into();
            }
        }
        let request = self
            .oauth
            .http()
            .post(format!("{}/pins", self.oauth.endpoints().api_url))
            .bearer_auth(tokens.access_token.expose_secret())
            .json(&body);
        let pin: Pin = http::send_json(self.oauth.label(), request).await?;
        Ok(published(pin.id))
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let options = options_of(publication.options)?;
        let board: String = form_urlencoded::byte_serialize(board_of(&options)?.as_bytes()).collect();
        let url = format!("{}/boards/{board}/pins?page_size={PINS_PAGE}", self.oauth.endpoints().api_url);
        let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
        let pins: Page<ListedPin> = http::send_json(self.oauth.label(), request).await?;
        let found = pins.items.into_iter().find(|pin| {
            pin.description.as_deref() == Some(publication.content)
                && pin.created_at.as_deref().and_then(created_at).is_some_and(|at| at >= began - CLOCK_SKEW)
        });
        Ok(found.map_or(LookUp::CannotTell, |pin| LookUp::Found(published(pin.id))))
    }

    fn has_boards(&self) -> bool {
        true
    }

    async fn boards(&self, tokens: &TokenSet) -> Result<Vec<Board>, PlatformError> {
        let mut boards = Vec::new();
        let mut bookmark: Option<String> = None;
        for _ in 0..BOARD_PAGES {
            let mut url = format!("{}/boards?page_size={BOARDS_PAGE}", self.oauth.endpoints().api_url);
            if let Some(bookmark) = &bookmark {
                url.push_str("&bookmark=");
                url.extend(form_urlencoded::byte_serialize(bookmark.as_bytes()));
            }
            let request = self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret());
            let page: Page<ListedBoard> = http::send_json(self.oauth.label(), request).await?;
            boards.extend(page.items.into_iter().map(|board| Board {
                id: board.id,
                name: board.name,
                description: board.description.filter(|text| !text.is_empty()),
                privacy: board.privacy,
            }));
            bookmark = page.bookmark.filter(|bookmark| !bookmark.is_empty());
            if bookmark.is_none() {
                break;
            }
        }
        Ok(boards)
    }
}

/// The per-target options a Pin reads (`targets[].options`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = PinterestOptions)]
#[serde(default, deny_unknown_fields)]
pub struct PinterestOptions {
    /// The board to pin to (required): an id `GET /v1/accounts/{id}/boards` lists.
    board_id: Option<String>,
    board_section_id: Option<String>,
    /// At most 100 characters.
    title: Option<String>,
    /// Where the Pin leads, at most 2,048 characters.
    link: Option<String>,
    /// The Pin's alt text (else the first attachment's).
    alt_text: Option<String>,
    /// A video Pin's cover: the frame at this second (else the first).
    cover_image_key_frame_time: Option<u64>,
}

#[derive(Deserialize)]
struct Pin {
    id: String,
}

#[derive(Deserialize)]
struct ListedPin {
    id: String,
    description: Option<String>,
    /// `2020-01-01T20:10:40`, UTC without a zone.
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct ListedBoard {
    id: String,
    name: String,
    description: Option<String>,
    privacy: Option<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    bookmark: Option<String>,
}

#[derive(Deserialize)]
struct Registration {
    media_id: String,
    upload_url: String,
    #[serde(default)]
    upload_parameters: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Upload {
    status: String,
}

const TITLE_CHARS: usize = 100;
const LINK_CHARS: usize = 2048;
/// How long a publish waits for Pinterest to process an uploaded video before trying again later.
const PROCESSING_WAIT: Duration = Duration::from_secs(120);
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(4);
/// Boards per page (Pinterest's most), and how many pages are read.
const BOARDS_PAGE: u32 = 250;
const BOARD_PAGES: usize = 8;
/// The newest Pins of a board a look-up reads.
const PINS_PAGE: u32 = 50;
/// How much earlier than the attempt began (herald's clock) Pinterest's clock may date the Pin.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(5);

impl super::options::TargetOptions for PinterestOptions {
    fn problems(&self) -> Vec<super::options::OptionProblem> {
        use super::options::OptionProblem;
        let mut problems = Vec::new();
        if self.title.as_ref().is_some_and(|title| title.chars().count() > TITLE_CHARS) {
            problems.push(OptionProblem::new("title", format!("at most {TITLE_CHARS} characters")));
        }
        if self.link.as_ref().is_some_and(|link| link.chars().count() > LINK_CHARS) {
            problems.push(OptionProblem::new("link", format!("at most {LINK_CHARS} characters")));
        }
        problems
    }
}

fn options_of(options: &serde_json::Value) -> Result<PinterestOptions, PlatformError> {
    let options: PinterestOptions = super::options::parse(options)?;
    if let Some(problem) = super::options::TargetOptions::problems(&options).into_iter().next() {
        return Err(PlatformError::Permanent(format!("a Pin's {} takes {}", problem.field, problem.message)));
    }
    Ok(options)
}

/// The board to pin to: Pinterest's ids are digits.
fn board_of(options: &PinterestOptions) -> Result<&str, PlatformError> {
    match options.board_id.as_deref() {
        Some(id) if !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit()) => Ok(id),
        Some(id) => Err(PlatformError::Permanent(format!("{id:?} is not a Pinterest board id"))),
        None => Err(PlatformError::Permanent(
            "a Pin needs options.board_id: one of the account's boards (GET /v1/accounts/{id}/boards)".to_owned(),
        )),
    }
}

fn published(id: String) -> Published {
    let url = Some(format!("https://www.pinterest.com/pin/{id}/"));
    Published::new(id, url)
}

fn created_at(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|at| at.and_utc()))
}

/// Before the Pin is made an unanswered call made nothing: it is safe to try again.
fn nothing_posted(error: PlatformError) -> PlatformError {
    match error {
        PlatformError::Ambiguous(reason) => PlatformError::Transient(reason),
        other => other,
    }
}

impl PinterestAdapter {
    /// What the Pin shows: its image(s) by URL, or its video uploaded.
    async fn media_source(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        options: &PinterestOptions,
    ) -> Result<serde_json::Value, PlatformError> {
        match publication.media {
            [] => Err(PlatformError::Permanent("a Pin needs an image or a video".to_owned())),
            [video] if video.facts.kind == MediaKind::Video => {
                let media_id = self.upload_video(tokens, publication, video).await.map_err(nothing_posted)?;
                Ok(serde_json::json!({
                    "source_type": "video_id",
                    "media_id": media_id,
                    "cover_image_key_frame_time": options.cover_image_key_frame_time.unwrap_or(0),
                }))
            }
            [image] => Ok(serde_json::json!({"source_type": "image_url", "url": image.url})),
            images => {
                let items: Vec<_> = images.iter().map(|image| serde_json::json!({"url": image.url})).collect();
                Ok(serde_json::json!({"source_type": "multiple_image_urls", "items": items}))
            }
        }
    }

    /// Registers, uploads and waits for `file`; its Pinterest media id.
    async fn upload_video(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        file: &MediaFile,
    ) -> Result<String, PlatformError> {
        let api = &self.oauth.endpoints().api_url;
        let request = self
            .oauth
            .http()
            .post(format!("{api}/media"))
            .bearer_auth(tokens.access_token.expose_secret())
            .json(&serde_json::json!({"media_type": "video"}));
        let registration: Registration = http::send_json(self.oauth.label(), request).await?;
        self.send_video(&registration, publication, file).await?;
        let deadline = tokio::time::Instant::now() + PROCESSING_WAIT;
        let mut pause = POLL_FIRST;
        loop {
            let request = self
                .oauth
                .http()
                .get(format!("{api}/media/{}", registration.media_id))
                .bearer_auth(tokens.access_token.expose_secret());
            let upload: Upload = http::send_json(self.oauth.label(), request).await?;
            match upload.status.as_str() {
                "succeeded" => return Ok(registration.media_id),
                "failed" => {
                    return Err(PlatformError::Permanent(format!(
                        "Pinterest could not process the video (media {})",
                        registration.media_id
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(PlatformError::Transient(format!(
                    "Pinterest was still processing the video after {} s ({})",
                    PROCESSING_WAIT.as_secs(),
                    upload.status
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// The multipart form S3 takes: the registration's parameters, then the file, streamed from
    /// the store with its length known up front (S3 takes no chunked uploads).
    async fn send_video(
        &self,
        registration: &Registration,
        publication: &Publication<'_>,
        file: &MediaFile,
    ) -> Result<(), PlatformError> {
        let boundary = format!("herald-{}", uuid::Uuid::new_v4().simple());
        let mut head = String::new();
        for (name, value) in &registration.upload_parameters {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            head.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"video\"\r\nContent-Type: {}\r\n\r\n",
            file.facts.content_type
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let (stream, size) = publication
            .store
            .read(&file.object_key, None)
            .await
            .map_err(|error| PlatformError::Transient(format!("reading the media from the store failed: {error}")))?;
        let length = head.len() as u64 + size + tail.len() as u64;
        let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(stream)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
        let request = self
            .oauth
            .http()
            .post(&registration.upload_url)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .header("content-length", length)
            .body(reqwest::Body::wrap_stream(body));
        http::send(self.oauth.label(), request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_needs_a_board_pinterest_can_name() {
        let options = options_of(&serde_json::json!({"board_id": "549755885175", "title": "Rye"})).unwrap();
        assert_eq!(board_of(&options).unwrap(), "549755885175");
        let missing = options_of(&serde_json::Value::Null).unwrap();
        assert!(matches!(board_of(&missing), Err(PlatformError::Permanent(reason)) if reason.contains("board_id")));
        let bad = options_of(&serde_json::json!({"board_id": "../x"})).unwrap();
        assert!(board_of(&bad).is_err());
        assert!(options_of(&serde_json::json!({"title": "t".repeat(101)})).is_err());
        assert!(options_of(&serde_json::json!({"board": "1"})).is_err(), "unknown options are refused");
    }

    #[test]
    fn pin_times_are_read_with_or_without_a_zone() {
        let plain = created_at("2026-12-02T08:00:00").unwrap();
        assert_eq!(plain.to_rfc3339(), "2026-12-02T08:00:00+00:00");
        assert_eq!(created_at("2026-12-02T08:00:00.5Z").unwrap().timestamp(), plain.timestamp());
        assert!(created_at("yesterday").is_none());
    }
}
