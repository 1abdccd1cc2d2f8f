//! Facebook Pages through the Graph API. Facebook Login without PKCE, the client
//! authenticating in the body; the short-lived user token the code buys is exchanged at once
//! for a long-lived one (`fb_exchange_token`, about 60 days, `meta`). A grant reaches the
//! Pages the user manages (`GET /me/accounts`), each with its own Page token, which does not
//! expire when it comes from a long-lived user token: each Page is an account with that token,
//! so nothing needs a refresh. Publishing text is `POST /{page-id}/feed` with `message`; one
//! photo is `POST /{page-id}/photos` with herald's signed `url` (Facebook fetches it) and
//! `alt_text_custom`; several are unpublished photos (`published: false`) attached to a feed post
//! (`attached_media`); a video is the chunked upload on the video host (`POST /{page-id}/videos`,
//! `upload_phase` `start`, `transfer` of each range Facebook asks for, streamed from the store,
//! then `finish` with the description, which publishes). The newer Resumable Upload API wants a
//! user token and a role on the app, which a Page's token is not. A look-up finds the post among
//! the Page's feed since the attempt began, by its message. Errors are Graph's (`meta`).
//!
//! A text post may be a link post ([`FacebookOptions`]: `link` on `/{page-id}/feed`, Facebook
//! draws its preview). A first comment is `POST /{object-id}/comments` with `message` on what
//! publish returned: the Page post's id for text and photos (a published photo's `post_id`, the
//! feed post of several), the video's id for a video (videos have their own comments edge). Its
//! look-up reads that object's comments, newest first, for the Page's own with that text made
//! since the attempt began.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::meta::{self, LongLivedExchange, before_publishing};
use super::oauth::OAuthClient;
use super::{
    Between, ClientCredentials, ContentRules, DefaultEndpoints, FollowUp, GrantedAccount, KindRules, LookUp,
    MediaFile, MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet,
    hourly,
};
use super::options::{OptionProblem, TargetOptions};
use crate::domain::media::MediaKind;

/// Facebook, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "facebook",
    label: "Facebook",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.facebook.com/v21.0/dialog/oauth",
        token_url: "https://graph.facebook.com/v21.0/oauth/access_token",
        api_url: "https://graph.facebook.com/v21.0",
        // Videos are uploaded to Graph's video host.
        upload_url: Some("https://graph-video.facebook.com/v21.0"),
        revoke_url: None,
        // `pages_manage_engagement`: first comments, as the Page.
        scopes: &["pages_show_list", "pages_manage_posts", "pages_read_engagement", "pages_manage_engagement"],
    },
    // Long-lived tokens of about 60 days (Page tokens do not expire at all).
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: hourly(100), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 63_206,
        publishes_text: true,
        publishes_media: true,
        // Pages: up to 10 photos or one video, not both (publishers' guides; Meta's help pages
        // differ: 4 or 10 MB images, 4 or 10 GB video).
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png", "image/gif"],
                max_bytes: 10_000_000,
                max_count: 10,
                aspect: None,
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime", "video/webm"],
                max_bytes: 10_000_000_000,
                max_count: 1,
                aspect: Some(Between::new(9.0 / 16.0, 16.0 / 9.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(1_000, 14_400_000)),
            },
            // Alt text: `alt_text_custom` has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 10,
            mixes: false,
            required: false,
        },
        chains: super::Chains::COMMENTS,
    },
    options: super::options::options_of::<FacebookOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(FacebookAdapter::new(oauth)),
};

pub struct FacebookAdapter {
    oauth: OAuthClient,
}

impl FacebookAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        meta::graph(&self.oauth, request).await
    }
}

#[derive(Deserialize)]
struct Pages {
    data: Vec<Page>,
}

#[derive(Deserialize)]
struct Page {
    id: String,
    name: Option<String>,
    username: Option<String>,
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[async_trait]
impl Platform for FacebookAdapter {
    fn spec(&self) -> &'static PlatformSpec {
        &SPEC
    }

    fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn supports_pkce(&self) -> bool {
        false
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        // Short-lived user tokens last an hour: trade it for a long-lived one at once.
        let exchange = LongLivedExchange {
            url: self.oauth.endpoints().token_url.clone(),
            grant_type: "fb_exchange_token",
            token_param: "fb_exchange_token",
            sends_client_id: true,
            renews_itself: false,
        };
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, pkce_verifier, redirect_uri).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me/accounts?fields=id,name,username,access_token", self.oauth.endpoints().api_url);
        let pages: Pages =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(pages
            .data
            .into_iter()
            .map(|page| GrantedAccount {
                platform_user_id: page.id,
                kind: "page".to_owned(),
                username: page.username,
                display_name: page.name,
                token: Some(TokenSet {
                    access_token: SecretString::from(page.access_token),
                    refresh_token: None,
                    expires_at: None,
                    scopes: tokens.scopes.clone(),
                }),
            })
            .collect())
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options: FacebookOptions = super::options::parse(publication.options)?;
        let token = tokens.access_token.expose_secret();
        let page = publication.platform_user_id;
        let media = publication.media;
        if options.link.is_some() && !media.is_empty() {
            return Err(PlatformError::Permanent("a Facebook link post carries no photos or video".to_owned()));
        }
        let id = match media {
            [] => self.feed(token, page, publication.content, options.link.as_deref(), &[]).await?,
            [video] if video.facts.kind == MediaKind::Video => return self.video(token, publication, video).await,
            [photo] => {
                let posted: PhotoPosted = self.graph(self.photo(token, page, photo, publication.content, true)).await?;
                posted.post_id.unwrap_or(posted.id)
            }
            photos => {
                let mut attached = Vec::with_capacity(photos.len());
                for photo in photos {
                    let request = self.photo(token, page, photo, "", false);
                    let uploaded: Created = self.graph(request).await.map_err(before_publishing)?;
                    attached.push(serde_json::json!({ "media_fbid": uploaded.id }));
                }
                self.feed(token, page, publication.content, None, &attached).await?
            }
        };
        let url = format!("https://www.facebook.com/{id}");
        Ok(Published::new(id, Some(url)))
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let since = (began - chrono::Duration::minutes(1)).timestamp().to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("fields", "id,message,created_time,permalink_url")
            .append_pair("since", &since)
            .append_pair("limit", "25")
            .finish();
        let url = format!("{}/{}/feed?{query}", self.oauth.endpoints().api_url, publication.platform_user_id);
        let recent: meta::Listed<meta::RecentPost> =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(meta::made_since(recent.data, began, publication.content))
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let url = format!("{}/{}/comments", self.oauth.endpoints().api_url, follow_up.root.platform_post_id);
        let body = serde_json::json!({ "message": publication.content });
        let request = self.oauth.http().post(url).bearer_auth(tokens.access_token.expose_secret()).json(&body);
        let comment: Created = self.graph(request).await?;
        Ok(Published::new(comment.id, None))
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("fields", "id,message,created_time,from")
            .append_pair("filter", "stream")
            .append_pair("order", "reverse_chronological")
            .append_pair("limit", "25")
            .finish();
        let url = format!("{}/{}/comments?{query}", self.oauth.endpoints().api_url, follow_up.root.platform_post_id);
        let comments: meta::Listed<meta::RecentPost> =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        let own = comments
            .data
            .into_iter()
            .filter(|comment| comment.from.as_ref().is_some_and(|from| from.id == publication.platform_user_id));
        Ok(meta::made_since(own.collect(), began, publication.content))
    }
}

/// What a target may say about its Facebook Page post.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = FacebookOptions)]
#[serde(default, deny_unknown_fields)]
pub struct FacebookOptions {
    /// An `http(s)` link the post shares, with Facebook's preview of it (a text post only).
    link: Option<String>,
}

impl TargetOptions for FacebookOptions {
    fn problems(&self) -> Vec<OptionProblem> {
        match &self.link {
            Some(link) if !url::Url::parse(link).is_ok_and(|url| matches!(url.scheme(), "http" | "https")) => {
                vec![OptionProblem::new("link", "must be an http(s) URL")]
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct PhotoPosted {
    id: String,
    /// The post a published photo made.
    post_id: Option<String>,
}

/// Facebook's answer to an upload phase: the byte range it wants next (`start_offset ==
/// end_offset`: it has them all), as strings.
#[derive(Deserialize)]
struct UploadRange {
    start_offset: String,
    end_offset: String,
}

#[derive(Deserialize)]
struct UploadStarted {
    video_id: String,
    upload_session_id: String,
    #[serde(flatten)]
    range: UploadRange,
}

/// The largest range herald sends in one transfer, whatever Facebook asks for (it asks for about
/// a megabyte at a time).
const MAX_TRANSFER: u64 = 16 * 1024 * 1024;

impl FacebookAdapter {
    /// `POST /{page}/feed` with `message` and a `link`, or, for several photos, the unpublished ones.
    async fn feed(
        &self,
        token: &str,
        page: &str,
        message: &str,
        link: Option<&str>,
        attached: &[serde_json::Value],
    ) -> Result<String, PlatformError> {
        let url = format!("{}/{page}/feed", self.oauth.endpoints().api_url);
        let mut body = serde_json::json!({ "message": message });
        if let Some(link) = link {
            body["link"] = serde_json::Value::from(link);
        }
        if !attached.is_empty() {
            body["attached_media"] = serde_json::Value::from(attached.to_vec());
        }
        let created: Created = self.graph(self.oauth.http().post(url).bearer_auth(token).json(&body)).await?;
        Ok(created.id)
    }

    /// `POST /{page}/photos` for `photo`, which Facebook fetches from herald's signed URL.
    fn photo(&self, token: &str, page: &str, photo: &MediaFile, message: &str, published: bool) -> RequestBuilder {
        let url = format!("{}/{page}/photos", self.oauth.endpoints().api_url);
        let mut body = serde_json::json!({ "url": photo.url, "published": published });
        if !message.is_empty() {
            body["message"] = serde_json::Value::from(message);
        }
        if let Some(alt) = &photo.alt_text {
            body["alt_text_custom"] = serde_json::Value::from(alt.as_str());
        }
        self.oauth.http().post(url).bearer_auth(token).json(&body)
    }

    /// The chunked video upload: `start`, a `transfer` of each range Facebook asks for (streamed
    /// from the store), then `finish` with the description: the call that publishes.
    async fn video(
        &self,
        token: &str,
        publication: &Publication<'_>,
        video: &MediaFile,
    ) -> Result<Published, PlatformError> {
        let endpoints = self.oauth.endpoints();
        let url = format!(
            "{}/{}/videos",
            endpoints.upload_url.as_deref().unwrap_or(&endpoints.api_url),
            publication.platform_user_id
        );
        let size = video.facts.size_bytes.to_string();
        let start = self.phase(token, &url, &[("upload_phase", "start"), ("file_size", &size)]);
        let started: UploadStarted = self.graph(start).await.map_err(before_publishing)?;
        let mut range = started.range;
        while range.start_offset != range.end_offset {
            let (from, to) = offsets(&range)?;
            let to = to.min(from + MAX_TRANSFER);
            let transfer = self.transfer(token, &url, &started.upload_session_id, publication, video, from..to).await?;
            range = self.graph(transfer).await.map_err(before_publishing)?;
        }
        let mut finish = vec![("upload_phase", "finish"), ("upload_session_id", started.upload_session_id.as_str())];
        if !publication.content.is_empty() {
            finish.push(("description", publication.content));
        }
        let _: serde_json::Value = self.graph(self.phase(token, &url, &finish)).await?;
        let url = format!("https://www.facebook.com/{}/videos/{}", publication.platform_user_id, started.video_id);
        Ok(Published::new(started.video_id, Some(url)))
    }

    /// `POST {url}` with `params` as a form.
    fn phase(&self, token: &str, url: &str, params: &[(&str, &str)]) -> RequestBuilder {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        self.oauth
            .http()
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }

    /// One `transfer`: the bytes `range` of the video as the multipart `video_file_chunk`, streamed
    /// from the store, the phase's other fields in the query.
    async fn transfer(
        &self,
        token: &str,
        url: &str,
        session: &str,
        publication: &Publication<'_>,
        video: &MediaFile,
        range: std::ops::Range<u64>,
    ) -> Result<RequestBuilder, PlatformError> {
        let (chunk, _) = publication.store.read(&video.object_key, Some(range.clone())).await.map_err(|error| {
            PlatformError::Transient(format!("reading the video from the media store failed: {error}"))
        })?;
        let start = range.start.to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("upload_phase", "transfer"), ("upload_session_id", session), ("start_offset", &start)])
            .finish();
        let boundary = format!("herald-{}", uuid::Uuid::new_v4().simple());
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"video_file_chunk\"; filename=\"chunk\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let length = head.len() as u64 + (range.end - range.start) + tail.len() as u64;
        let piece = |text: String| futures::stream::once(async move { Ok::<_, object_store::Error>(bytes::Bytes::from(text)) });
        let body = piece(head).chain(chunk).chain(piece(tail));
        Ok(self
            .oauth
            .http()
            .post(format!("{url}?{query}"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(body)))
    }
}

/// The byte range Facebook asked for, as numbers.
fn offsets(range: &UploadRange) -> Result<(u64, u64), PlatformError> {
    let parse = |offset: &str| {
        offset.parse::<u64>().map_err(|_| PlatformError::Transient(format!("Facebook asked for offset {offset:?}")))
    };
    let (from, to) = (parse(&range.start_offset)?, parse(&range.end_offset)?);
    if to < from {
        return Err(PlatformError::Transient(format!("Facebook asked for the bytes {from} to {to}")));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_link_must_be_an_http_url() {
        let check = |options| (SPEC.options.check)(&options);
        assert!(check(json!({"link": "https://ada.example/menu"})).is_empty());
        assert!(check(json!(null)).is_empty());
        assert_eq!(check(json!({"link": "javascript:alert(1)"})), [OptionProblem::new("link", "must be an http(s) URL")]);
        assert_eq!(check(json!({"link": 7}))[0].field, "link");
        assert!(check(json!({"published": false}))[0].message.contains("unknown field"));
    }
}
