//! Instagram (Business Login): OAuth without PKCE, the client authenticating in the body. The
//! one-hour token the code buys is exchanged at once for a 60-day one (`ig_exchange_token` on
//! the Graph host), which refreshes itself (`ig_refresh_token`, once it is a day old): herald
//! keeps it as both the access and the refresh token. A grant reaches the professional account
//! (`GET /me?fields=user_id,username`).
//!
//! Publishing is a media container pulled from herald's signed URL (`POST /{user}/media`: an
//! `image_url`, or a `video_url` as `REELS`; several media are children, `is_carousel_item`, of a
//! `CAROUSEL`; the `story` placement is `STORIES`), checked (`status_code`) until `FINISHED`, then
//! `POST /{user}/media_publish` with its `creation_id`: the one call that publishes. Before
//! anything, the account's `content_publishing_limit` is read: an account at its cap waits.
//! A look-up finds the post among the account's recent media by its caption and time. Graph's
//! 4/2207051 ("we restrict certain activity") after `media_publish` may come although the post
//! went live: it is an unknown outcome. A publish without an answer is settled by its container's
//! status (`meta::publish_container`): `FINISHED` is published again (a container is published
//! once, so that cannot post twice), `ERROR` is refused with its reason, `PUBLISHED` looked up.
//!
//! A first comment is `POST /{ig-media-id}/comments` with `message`, on the published media (a
//! story takes none); its look-up reads the media's comments for the account's own with that
//! text made since the attempt began.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::meta::{self, CONTAINER_PACING, ContainerState, LongLivedExchange, before_publishing};
use super::oauth::OAuthClient;
use super::{
    Between, ClientCredentials, ContentRules, DefaultEndpoints, FollowUp, GrantedAccount, KindRules, LookUp,
    MediaFile, MediaRules, Platform, PlatformError, PlatformSpec, Publication, PublishRates, Published, TokenSet,
    hourly, per_minutes,
};
use crate::domain::media::MediaKind;

/// Instagram, as herald knows it before any setting.
pub const SPEC: PlatformSpec = PlatformSpec {
    name: "instagram",
    label: "Instagram",
    endpoints: DefaultEndpoints {
        authorize_url: "https://www.instagram.com/oauth/authorize",
        token_url: "https://api.instagram.com/oauth/access_token",
        api_url: "https://graph.instagram.com",
        upload_url: None,
        revoke_url: None,
        // `instagram_business_manage_comments`: first comments.
        scopes: &["instagram_business_basic", "instagram_business_content_publish", "instagram_business_manage_comments"],
    },
    // Long-lived tokens of about 60 days, refreshed only after 24 h.
    refresh_margin: Duration::from_secs(7 * 24 * 60 * 60),
    publish_rates: PublishRates { per_account: per_minutes(50, 24 * 60), per_app: hourly(10_000) },
    content: ContentRules {
        counts: super::TextCount::Characters,
        max_hashtags: Some(30),
        max_chars: 2200,
        publishes_text: false,
        publishes_media: true,
        // Content publishing: JPEG up to 8 MB at 4:5 to 1.91:1; Reels MP4/MOV 3 s-15 min (300 MB,
        // the lower of two published figures); carousels of up to 10, mixed.
        media: MediaRules {
            images: KindRules {
                types: &["image/jpeg"],
                max_bytes: 8_000_000,
                max_count: 10,
                aspect: Some(Between::new(0.8, 1.91)),
                width: None,
                height: None,
                duration_ms: None,
            },
            videos: KindRules {
                types: &["video/mp4", "video/quicktime"],
                max_bytes: 300_000_000,
                max_count: 10,
                aspect: Some(Between::new(0.01, 10.0)),
                width: None,
                height: None,
                duration_ms: Some(Between::new(3_000, 900_000)),
            },
            // Alt text: `alt_text` (image containers) has no documented limit: herald keeps it to 1,000.
            max_alt_text: Some(1000),
            max_items: 10,
            mixes: true,
            required: true,
        },
        chains: super::Chains::COMMENTS,
    },
    options: super::options::options_of::<InstagramOptions>(),
    builtin_client_id: None,
    build: |oauth| Arc::new(InstagramAdapter::new(oauth)),
};

pub struct InstagramAdapter {
    oauth: OAuthClient,
}

impl InstagramAdapter {
    pub fn new(oauth: OAuthClient) -> Self {
        Self { oauth: oauth.with_secret_in_body().with_comma_scopes() }
    }

    /// The Graph host the long-lived token endpoints live on, without an API version.
    fn graph_base(&self) -> String {
        meta::unversioned(&self.oauth.endpoints().api_url)
    }
}

#[derive(Deserialize)]
struct Me {
    user_id: Option<String>,
    id: Option<String>,
    username: Option<String>,
}

#[async_trait]
impl Platform for InstagramAdapter {
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
        let exchange = LongLivedExchange::self_renewing(&self.graph_base(), "ig_exchange_token");
        meta::exchange_for_long_lived(&self.oauth, &exchange, client, code, None, redirect_uri).await
    }

    async fn refresh(
        &self,
        _client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        meta::renew(&self.oauth, &self.graph_base(), "ig_refresh_token", refresh_token).await
    }

    async fn accounts(&self, tokens: &TokenSet) -> Result<Vec<GrantedAccount>, PlatformError> {
        let url = format!("{}/me?fields=user_id,username", self.oauth.endpoints().api_url);
        let me: Me =
            meta::graph(&self.oauth, self.oauth.http().get(url).bearer_auth(tokens.access_token.expose_secret()))
                .await?;
        let id =
            me.user_id.or(me.id).ok_or_else(|| PlatformError::Permanent("Instagram named no user id".to_owned()))?;
        Ok(vec![GrantedAccount {
            platform_user_id: id,
            kind: "person".to_owned(),
            display_name: me.username.clone(),
            username: me.username,
            token: None,
        }])
    }

    async fn publish(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<Published, PlatformError> {
        let options = InstagramOptions::of(publication.options)?;
        let shape = Shape::of(options.placement, publication.media)?;
        let token = tokens.access_token.expose_secret();
        self.within_publishing_limit(token, publication.platform_user_id).await.map_err(before_publishing)?;
        let container = self.container(token, publication, &shape).await.map_err(before_publishing)?;
        let media_id = self.media_publish(token, publication.platform_user_id, &container).await?;
        // The permalink is a courtesy: the post exists whether or not it can be read back.
        let url = self
            .get::<Permalink>(token, &format!("{media_id}?fields=permalink"))
            .await
            .ok()
            .and_then(|found| found.permalink);
        Ok(Published::new(media_id, url))
    }

    async fn look_up(&self, tokens: &TokenSet, publication: &Publication<'_>) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let path = format!(
            "{}/media?fields=id,caption,timestamp,permalink&limit={RECENT_MEDIA}",
            publication.platform_user_id
        );
        let recent: meta::Listed<meta::RecentPost> = self.get(tokens.access_token.expose_secret(), &path).await?;
        let caption = match InstagramOptions::of(publication.options)?.placement {
            Placement::Story => "",
            _ => publication.content,
        };
        Ok(meta::made_since(recent.data, began, caption))
    }

    async fn publish_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<Published, PlatformError> {
        if InstagramOptions::of(publication.options)?.placement == Placement::Story {
            return Err(PlatformError::Permanent("an Instagram story takes no comments".to_owned()));
        }
        let token = tokens.access_token.expose_secret();
        let path = format!("{}/comments", follow_up.root.platform_post_id);
        let comment: Id = meta::graph(&self.oauth, self.post(token, &path, &[("message", publication.content)])).await?;
        Ok(Published::new(comment.id, None))
    }

    async fn look_up_follow_up(
        &self,
        tokens: &TokenSet,
        publication: &Publication<'_>,
        follow_up: &FollowUp<'_>,
    ) -> Result<LookUp, PlatformError> {
        let Some(began) = publication.began else { return Ok(LookUp::CannotTell) };
        let path = format!("{}/comments?fields=id,text,timestamp,from&limit=50", follow_up.root.platform_post_id);
        let comments: meta::Listed<meta::RecentPost> = self.get(tokens.access_token.expose_secret(), &path).await?;
        let own = comments
            .data
            .into_iter()
            .filter(|comment| comment.from.as_ref().is_some_and(|from| from.id == publication.platform_user_id));
        Ok(meta::made_since(own.collect(), began, publication.content))
    }
}

/// How many of the account's latest media a look-up reads.
const RECENT_MEDIA: u32 = 25;

/// What a target may say about its Instagram post.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = InstagramOptions)]
#[serde(default, deny_unknown_fields)]
pub struct InstagramOptions {
    /// `feed` (default), `reel` or `story`.
    placement: Placement,
}

impl super::options::TargetOptions for InstagramOptions {}

impl InstagramOptions {
    fn of(options: &serde_json::Value) -> Result<Self, PlatformError> {
        super::options::parse(options)
    }
}

/// Where the post appears: the feed (an image, a reel for one video, a carousel for several), a
/// reel (one video), or a story (one image or video, without a caption).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = InstagramPlacement)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    #[default]
    Feed,
    Reel,
    Story,
}

/// The containers a post is made of.
#[derive(Debug)]
enum Shape<'a> {
    Image(&'a MediaFile),
    Reel(&'a MediaFile),
    Story(&'a MediaFile),
    Carousel(&'a [MediaFile]),
}

impl<'a> Shape<'a> {
    fn of(placement: Placement, media: &'a [MediaFile]) -> Result<Self, PlatformError> {
        let refuse = |why: &str| Err(PlatformError::Permanent(why.to_owned()));
        match (placement, media) {
            (_, []) => refuse("an Instagram post needs an image or a video"),
            (Placement::Feed, [one]) if one.facts.kind == MediaKind::Image => Ok(Shape::Image(one)),
            (Placement::Feed | Placement::Reel, [one]) if one.facts.kind == MediaKind::Video => Ok(Shape::Reel(one)),
            (Placement::Reel, _) => refuse("an Instagram reel is one video"),
            (Placement::Story, [one]) => Ok(Shape::Story(one)),
            (Placement::Story, _) => refuse("an Instagram story is one image or one video"),
            (Placement::Feed, several) => Ok(Shape::Carousel(several)),
        }
    }
}

#[derive(Deserialize)]
struct Permalink {
    permalink: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct ContainerStatus {
    status_code: String,
    /// For an `ERROR`, the error's subcode and reason.
    status: Option<String>,
}

#[derive(Deserialize)]
struct PublishingLimit {
    quota_usage: Option<u64>,
    config: Option<QuotaConfig>,
}

#[derive(Deserialize)]
struct QuotaConfig {
    quota_total: Option<u64>,
    quota_duration: Option<i64>,
}

impl InstagramAdapter {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.oauth.endpoints().api_url)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, PlatformError> {
        meta::graph(&self.oauth, self.oauth.http().get(self.url(path)).bearer_auth(token)).await
    }

    /// `POST {path}` with `params` in the query, as Meta documents it.
    fn post(&self, token: &str, path: &str, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        self.oauth.http().post(format!("{}?{query}", self.url(path))).bearer_auth(token)
    }

    /// Refuses (until a day has passed) when the account has used its API-published posts of the
    /// last 24 hours.
    async fn within_publishing_limit(&self, token: &str, user: &str) -> Result<(), PlatformError> {
        let path = format!("{user}/content_publishing_limit?fields=quota_usage,config");
        let limits: meta::Listed<PublishingLimit> = self.get(token, &path).await?;
        let Some(limit) = limits.data.into_iter().next() else { return Ok(()) };
        let total = limit.config.as_ref().and_then(|config| config.quota_total);
        if let (Some(used), Some(total)) = (limit.quota_usage, total)
            && used >= total
        {
            let window = limit.config.and_then(|config| config.quota_duration).unwrap_or(86_400);
            return Err(PlatformError::RateLimited {
                until: chrono::Utc::now() + chrono::Duration::seconds(window),
                reason: format!("the Instagram account published {used} of its {total} posts of the last 24 hours"),
            });
        }
        Ok(())
    }

    /// Makes the post's container (its children first, for a carousel) and waits until it is ready.
    async fn container(&self, token: &str, publication: &Publication<'_>, shape: &Shape<'_>) -> Result<String, PlatformError> {
        let user = publication.platform_user_id;
        // No caption at all rather than an empty one.
        let caption = Some(("caption", publication.content)).filter(|_| !publication.content.is_empty());
        let media = format!("{user}/media");
        let id = match shape {
            Shape::Image(image) => {
                let mut params = vec![("image_url", image.url.as_str())];
                params.extend(caption);
                params.extend(image.alt_text.as_deref().map(|alt| ("alt_text", alt)));
                self.create(token, &media, &params).await?
            }
            Shape::Reel(video) => {
                let mut params = vec![("media_type", "REELS"), ("video_url", video.url.as_str()), ("share_to_feed", "true")];
                params.extend(caption);
                self.create(token, &media, &params).await?
            }
            Shape::Story(item) => {
                let source = if item.facts.kind == MediaKind::Video { "video_url" } else { "image_url" };
                self.create(token, &media, &[("media_type", "STORIES"), (source, item.url.as_str())]).await?
            }
            Shape::Carousel(items) => {
                let mut children = Vec::with_capacity(items.len());
                for item in *items {
                    children.push(self.carousel_item(token, &media, item).await?);
                }
                let children = children.join(",");
                let mut params = vec![("media_type", "CAROUSEL"), ("children", children.as_str())];
                params.extend(caption);
                self.create(token, &media, &params).await?
            }
        };
        self.wait_until_ready(token, &id).await?;
        Ok(id)
    }

    /// One item of a carousel, ready to be a child.
    async fn carousel_item(&self, token: &str, media: &str, item: &MediaFile) -> Result<String, PlatformError> {
        let mut params = vec![("is_carousel_item", "true")];
        if item.facts.kind == MediaKind::Video {
            params.extend([("media_type", "VIDEO"), ("video_url", item.url.as_str())]);
        } else {
            params.push(("image_url", item.url.as_str()));
            params.extend(item.alt_text.as_deref().map(|alt| ("alt_text", alt)));
        }
        let id = self.create(token, media, &params).await?;
        self.wait_until_ready(token, &id).await?;
        Ok(id)
    }

    async fn create(&self, token: &str, path: &str, params: &[(&str, &str)]) -> Result<String, PlatformError> {
        let created: Id = meta::graph(&self.oauth, self.post(token, path, params)).await?;
        Ok(created.id)
    }

    async fn wait_until_ready(&self, token: &str, container: &str) -> Result<(), PlatformError> {
        meta::wait_until_ready("Instagram", CONTAINER_PACING, || self.status(token, container)).await
    }

    async fn status(&self, token: &str, container: &str) -> Result<ContainerState, PlatformError> {
        let status: ContainerStatus = self.get(token, &format!("{container}?fields=status_code,status")).await?;
        Ok(ContainerState::from_status(&status.status_code, status.status))
    }

    /// The publish itself, settled by the container's status when it gets no answer. Graph's
    /// 4/2207051 may come although the post went live: unknown too.
    async fn media_publish(&self, token: &str, user: &str, container: &str) -> Result<String, PlatformError> {
        let publish = || async {
            let request = self.post(token, &format!("{user}/media_publish"), &[("creation_id", container)]);
            match meta::graph_call::<Id>(&self.oauth, request).await {
                Ok(published) => Ok(published.id),
                Err(failure) if failure.code == Some(4) && failure.subcode == Some(2_207_051) => {
                    Err(PlatformError::Ambiguous(format!("Instagram restricted the publish, which may have gone live: {}", failure.error)))
                }
                Err(failure) => Err(failure.error),
            }
        };
        meta::publish_container("Instagram", publish, || self.status(token, container)).await
    }
}
