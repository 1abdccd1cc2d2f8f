//! Threads (Meta): OAuth without PKCE, the client authenticating in the body; the one-hour
//! token the code buys is exchanged at once for a 60-day one (`th_exchange_token`), which
//! refreshes itself (`th_refresh_token`, allowed once it is a day old): herald keeps it as both
//! the access and the refresh token, and the refresh job renews it a week before it expires.
//! A grant reaches the user (`GET /me`). Publishing is two calls: create a text container
//! (`POST /{user}/threads`, `media_type=TEXT`), then publish it (`POST /{user}/threads_publish`);
//! the permalink is read afterwards. Media are containers pulled from herald's signed URLs
//! (`IMAGE` with `image_url`, `VIDEO` with `video_url`, each with its `alt_text`; several are
//! children, `is_carousel_item`, of a `CAROUSEL`), checked (`status`) until `FINISHED` before
//! the publish (an `ERROR` is permanent, with its `error_message`). A publish that gets no
//! answer is settled by its container's status (`meta::publish_container`: `FINISHED` is
//! published again, which cannot post twice). A look-up finds the post among the account's
//! threads made since the attempt began, by its text. Errors are Graph's (`meta`).
//!
//! A thread's later items are replies: each item's container carries `reply_to_id`, the item
//! before it, and is published the same way (media and all). A look-up for one reads the
//! account's replies (`GET /{user}/replies`) for one to that item, with its text, made since the
//! attempt began. The target's options ([`ThreadsOptions`]): `reply_control` on every item of
//! the chain, a `topic_tag` and a `link_attachment` (a text post only) on the post itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::meta::{self, CONTAINER_PACING, ContainerState, LongLivedExchange, before_publishing};
use super::oauth::OAuthClient;
use super::{
    Between, ClientCredentials, ContentRules, DefaultEndpoints, FollowUp, FollowUpKind, GrantedAccount, KindRules,
    LookUp, MediaFile, MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published,
    TokenSet, hourly, per_minutes,
};
use super::options::{OptionProblem, TargetOptions};
use crate::domain::media::MediaKind;

/// Threads, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "threads",
    label: "Threads",
    endpoints: DefaultEndpoints {
        authorize_url: "https://threads.net/oauth/authorize",
        token_url: "https://graph.threads.net/oauth/access_token",
        api_url: "https://graph.threads.net/v1.0",
        upload_url: None,
        revoke_url: None,
        // `threads_manage_replies`: who may reply (`reply_control`) and the replies of a thread.
        scopes: &["threads_basic", "threads_content_publish", "threads_manage_replies"],
    },
    // Long-lived tokens of about 60 days, refreshed only after 24 h.
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: per_minutes(250, 24 * 60), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: None,
        max_chars: 500,
        publishes_text: true,
        publishes_media: true,
        // Threads media specifications: JPEG/PNG up to 8 MB, aspect up to 10:1; MP4/MOV up to 1 GB
        // and 5 min; carousels of up to 20, mixed.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg", "image/png"],
                max_bytes: 8_000_000,
                max_count: 20,
                aspect: Some(Between::new(0.1, 10.0)),
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 1_000_000_000,
                max_count: 20,
                aspect: Some(Between::new(0.01, 10.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(1, 300_000)),
            },
            // Alt text: `alt_text` on media containers has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 20,
            mixes: true,
            required: false,
        },
        chains: super::Chains::REPLIES,
    },
    options: super::options::options_of::<ThreadsOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(ThreadsAdapter::new(oauth)),
};

pub struct ThreadsAdapter {
    oauth: OAuthClient,
}

impl ThreadsAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body() }
    }

    async fn graph<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlatformError> {
        meta::graph(&self.oauth, request).await
    }

    /// Where the long-lived token endpoints live: the API's host, without its version.
    fn token_base(&self) -> String {
        meta::unversioned(&self.oauth.endpoints().api_url)
    }
}

#[derive(Deserialize)]
struct Me {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct Permalink {
    permalink: Option<String>,
}

#[async_trait]
impl Platform for ThreadsAdapter {
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
        _pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let exchange = LongLivedExchange::self_renewing(&self.token_base(), "th_exchange_token");
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, None, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        meta::renew(&self.oauth, &self.token_base(), "th_refresh_token", refresh_token).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me?fields=id,username,name", self.oauth.endpoints().api_url);
        let me: Me = self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(vec![GrantedAccount {
            platform_user_id: me.id,
            kind: "person".to_owned(),
            username: me.username,
            display_name: me.name,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options: ThreadsOptions = super::options::parse(publication.options)?;
        if options.link_attachment.is_some() && !publication.media.is_empty() {
            return Err(PlatformError::Permanent("a Threads link attachment goes on a text post only".to_owned()));
        }
        let mut extra = options.for_every_item();
        extra.extend(options.topic_tag.as_deref().map(|tag| ("topic_tag", tag)));
        extra.extend(options.link_attachment.as_deref().map(|link| ("link_attachment", link)));
        self.publish_with(tokens, publication, &extra).await
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        let options: ThreadsOptions = super::options::parse(publication.options)?;
        let mut extra = options.for_every_item();
        extra.push(("reply_to_id", replied_to(follow_up)));
        self.publish_with(tokens, publication, &extra).await
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let parent = replied_to(follow_up);
        let since = (began - chrono::Duration::minutes(1)).timestamp().to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("fields", "id,text,timestamp,permalink,replied_to")
            .append_pair("since", &since)
            .append_pair("limit", "25")
            .finish();
        let url = format!("{}/{}/replies?{query}", self.oauth.endpoints().api_url, publication.platform_user_id);
        let replies: meta::Listed<meta::RecentPost> =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        let to_parent =
            replies.data.into_iter().filter(|reply| reply.replied_to.as_ref().is_some_and(|to| to.id == parent));
        Ok(meta::made_since(to_parent.collect(), began, publication.content))
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let since = (began - chrono::Duration::minutes(1)).timestamp().to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("fields", "id,text,timestamp,permalink")
            .append_pair("since", &since)
            .append_pair("limit", "25")
            .finish();
        let url = format!("{}/{}/threads?{query}", self.oauth.endpoints().api_url, publication.platform_user_id);
        let recent: meta::Listed<meta::RecentPost> =
            self.graph(self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret())).await?;
        Ok(meta::made_since(recent.data, began, publication.content))
    }
}

#[derive(Deserialize)]
struct ContainerStatus {
    status: String,
    error_message: Option<String>,
}

/// The post a follow-up answers: the item before it (a comment, which Threads does not have
/// beside replies, would answer the thread's first post).
fn replied_to<'a>(follow_up: &FollowUp<'a>) -> &'a str {
    match follow_up.kind {
        FollowUpKind::Reply => &follow_up.parent.platform_post_id,
        FollowUpKind::Comment => &follow_up.root.platform_post_id,
    }
}

impl ThreadsAdapter {
    /// Makes the item's container (with `extra` parameters on it, not on carousel children) and
    /// publishes it; the permalink is read afterwards.
    async fn publish_with(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        extra: &[(&str, &str)],
    ) -> Result<Published, PlatformError> {
        let api = &self.oauth.endpoints().api_url;
        let token = tokens.access_token.expose_secret();
        let user = publication.platform_user_id;
        let container = self.container(token, publication, extra).await.map_err(before_publishing)?;
        let publish_query =
            form_urlencoded::Serializer::new(String::new()).append_pair("creation_id", &container).finish();
        let publish_url = format!("{api}/{user}/threads_publish?{publish_query}");
        let publish = || async {
            let published: Id = self.graph(self.oauth.http().post(&publish_url).bearer_auth(token)).await?;
            Ok(published.id)
        };
        let id = meta::publish_container("Threads", publish, || self.status(token, &container)).await?;
        // The permalink is a courtesy: the post exists whether or not it can be read back.
        let permalink = self
            .graph::<Permalink>(self.oauth.http().get(format!("{api}/{id}?fields=permalink")).bearer_auth(token))
            .await
            .ok()
            .and_then(|found| found.permalink);
        Ok(Published::new(id, permalink))
    }

    /// `POST {user}/threads` with `params` in the query, as Meta documents it: the container's id.
    async fn create(&self, token: &str, user: &str, params: &[(&str, &str)]) -> Result<String, PlatformError> {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let url = format!("{}/{user}/threads?{query}", self.oauth.endpoints().api_url);
        let created: Id = self.graph(self.oauth.http().post(url).bearer_auth(token)).await?;
        Ok(created.id)
    }

    /// The post's container, ready to publish: text alone, one image or video, or a carousel of
    /// children made (and ready) first.
    async fn container(
        &self,
        token: &str,
        publication: &Publication<'_>,
        extra: &[(&str, &str)],
    ) -> Result<String, PlatformError> {
        let user = publication.platform_user_id;
        let text = publication.content;
        match publication.media {
            [] => {
                let mut params = vec![("media_type", "TEXT"), ("text", text)];
                params.extend_from_slice(extra);
                self.create(token, user, &params).await
            }
            [one] => {
                let mut params = item_params(one);
                params.extend(Some(("text", text)).filter(|_| !text.is_empty()));
                params.extend_from_slice(extra);
                let id = self.create(token, user, &params).await?;
                self.wait_until_ready(token, &id).await?;
                Ok(id)
            }
            several => {
                let mut children = Vec::with_capacity(several.len());
                for item in several {
                    let mut params = item_params(item);
                    params.push(("is_carousel_item", "true"));
                    let id = self.create(token, user, &params).await?;
                    self.wait_until_ready(token, &id).await?;
                    children.push(id);
                }
                let children = children.join(",");
                let mut params = vec![("media_type", "CAROUSEL"), ("children", children.as_str())];
                params.extend(Some(("text", text)).filter(|_| !text.is_empty()));
                params.extend_from_slice(extra);
                let id = self.create(token, user, &params).await?;
                self.wait_until_ready(token, &id).await?;
                Ok(id)
            }
        }
    }

    async fn wait_until_ready(&self, token: &str, container: &str) -> Result<(), PlatformError> {
        meta::wait_until_ready("Threads", CONTAINER_PACING, || self.status(token, container)).await
    }

    async fn status(&self, token: &str, container: &str) -> Result<ContainerState, PlatformError> {
        let url = format!("{}/{container}?fields=status,error_message", self.oauth.endpoints().api_url);
        let status: ContainerStatus = self.graph(self.oauth.http().get(&url).bearer_auth(token)).await?;
        Ok(ContainerState::from_status(&status.status, status.error_message))
    }
}

/// An image's or a video's container parameters: its type, herald's signed URL, its alt text.
fn item_params(item: &MediaFile) -> Vec<(&'static str, &str)> {
    let mut params = match item.facts.kind {
        MediaKind::Image => vec![("media_type", "IMAGE"), ("image_url", item.url.as_str())],
        MediaKind::Video => vec![("media_type", "VIDEO"), ("video_url", item.url.as_str())],
    };
    params.extend(item.alt_text.as_deref().map(|alt| ("alt_text", alt)));
    params
}

/// What a target may say about its Threads post.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadsOptions)]
#[serde(default, deny_unknown_fields)]
pub struct ThreadsOptions {
    /// Who may reply to the post and to each item of its thread; Threads' default (`everyone`)
    /// when absent.
    reply_control: Option<ReplyControl>,
    /// The post's topic: 1 to 50 characters, without `.` or `&`.
    topic_tag: Option<String>,
    /// An `http(s)` link shown as the post's preview card (a text post only).
    link_attachment: Option<String>,
}

/// Who may reply (Threads' `reply_control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadsReplyControl)]
#[serde(rename_all = "snake_case")]
pub enum ReplyControl {
    Everyone,
    AccountsYouFollow,
    MentionedOnly,
    ParentPostAuthorOnly,
    FollowersOnly,
}

impl ReplyControl {
    fn as_str(self) -> &'static str {
        match self {
            ReplyControl::Everyone => "everyone",
            ReplyControl::AccountsYouFollow => "accounts_you_follow",
            ReplyControl::MentionedOnly => "mentioned_only",
            ReplyControl::ParentPostAuthorOnly => "parent_post_author_only",
            ReplyControl::FollowersOnly => "followers_only",
        }
    }
}

impl ThreadsOptions {
    /// The parameters every item of the chain carries.
    fn for_every_item(&self) -> Vec<(&'static str, &'static str)> {
        self.reply_control.map(|control| ("reply_control", control.as_str())).into_iter().collect()
    }
}

impl TargetOptions for ThreadsOptions {
    fn problems(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Some(tag) = &self.topic_tag
            && (!(1..=50).contains(&tag.chars().count()) || tag.contains(['.', '&']))
        {
            problems.push(OptionProblem::new("topic_tag", "1 to 50 characters, without \".\" or \"&\""));
        }
        if let Some(link) = &self.link_attachment
            && !url::Url::parse(link).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            problems.push(OptionProblem::new("link_attachment", "must be an http(s) URL"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(options: serde_json::Value) -> Vec<OptionProblem> {
        (SPEC.options.check)(&options)
    }

    #[test]
    fn threads_options_are_checked_field_by_field() {
        assert!(problems(json!({"reply_control": "followers_only", "topic_tag": "Baking", "link_attachment": "https://ada.example/bread"})).is_empty());
        assert_eq!(problems(json!({"reply_control": "friends"}))[0].field, "reply_control");
        for tag in ["", "a.b", "salt & pepper", &"x".repeat(51)] {
            assert_eq!(problems(json!({ "topic_tag": tag }))[0].field, "topic_tag", "{tag:?}");
        }
        assert_eq!(problems(json!({"link_attachment": "ftp://ada.example"}))[0].field, "link_attachment");
        assert_eq!(problems(json!({"link_attachment": "not a url"}))[0].field, "link_attachment");
        assert!(problems(json!({"colour": "red"}))[0].message.contains("unknown field"));
        let options: ThreadsOptions = super::super::options::parse(&json!({"reply_control": "mentioned_only"})).unwrap();
        assert_eq!(options.for_every_item(), [("reply_control", "mentioned_only")]);
    }
}
