//! Posts: checking a new or edited post's targets, and running a post command together with the
//! publish jobs it makes due.
//!
//! Every target must be a connected account of the project within the key's reach, named once,
//! and its content must fit the platform. Every media item must be a ready item of the project's
//! library that the key may see, and each target's media must fit its platform's rules (types,
//! counts, sizes, dimensions, durations, mixing). The checks collect every problem (one per
//! field, one per broken rule), so a client learns all it has to fix from one answer.
//!
//! The checks run in the command's transaction, and the media rows they read are locked
//! `FOR SHARE`: a delete of one of them (which locks it `FOR UPDATE`, then looks for posts using
//! it) waits for the post to commit and then sees it.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ExecuteError, Executed, deliveries, execute};
use crate::domain::account::AccountStatus;
use crate::domain::api_key::Reach;
use crate::domain::content::{self, ContentRules};
use crate::domain::media::MediaKind;
use crate::domain::media_item::MediaStatus;
use crate::domain::media_rules::{Attachment, broken_rules};
use crate::domain::post::{self, MediaRef, Post, Target, ThreadItem};
use crate::events::EventMetadata;

/// The most targets one post may have.
pub const MAX_TARGETS: usize = 50;

/// The most media one list (the post's, or a target's) may name: the most any platform takes
/// (TikTok's photo posts).
pub const MAX_MEDIA: usize = 35;

/// The most items a thread may have after the post's own content (X and Bluesky clients stop
/// around 25 too).
pub const MAX_THREAD: usize = 25;

/// One target as a client asks for it.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    pub account_id: Uuid,
    /// This target's text instead of the post's.
    pub content: Option<String>,
    /// Platform options, passed to the platform's adapter.
    pub options: Value,
    /// This target's media instead of the post's (an empty list: none).
    pub media: Option<Vec<MediaRef>>,
    /// This target's thread instead of the post's (an empty list: none).
    pub thread: Option<Vec<ThreadItem>>,
    /// This target's first comment instead of the post's.
    pub first_comment: Option<String>,
}

/// What the platforms take, as the post validation asks it (the api answers from the platform
/// specs; this layer names no platform).
pub trait PlatformRules: Sync {
    /// What a post's content may be on `platform`, or why it cannot be published to.
    fn content(&self, platform: &str) -> Result<ContentRules, String>;
    /// The problems of a target's `options` for an account on `platform`, as (field under
    /// `options`, message); empty when they are fine.
    fn option_problems(&self, platform: &str, options: &Value) -> Vec<(String, String)>;
}

/// What a new or edited post says, to check against its targets.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub content: &'a str,
    /// The post's media, for every target without its own.
    pub media: &'a [MediaRef],
    /// The post's thread and first comment, for every target without its own.
    pub thread: &'a [ThreadItem],
    pub first_comment: Option<&'a str>,
}

/// One field of a request that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer-ish path of the field, e.g. `targets[0].account_id`.
    pub field: String,
    pub message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Checks a post's `external_id`: 1 to 255 characters when given.
pub fn check_external_id(external_id: Option<&str>, problems: &mut Vec<Invalid>) {
    if external_id.is_some_and(|id| id.is_empty() || id.len() > 255) {
        problems.push(Invalid::new("external_id", "must be 1 to 255 characters"));
    }
}

/// Checks `targets` of `draft` in `project_id` for a key of `reach`, in `tx`, adding every
/// problem to `problems`, and gives each a new delivery id. `rules` answers what a platform takes,
/// or why it cannot be published to.
pub async fn check_targets(
    tx: &mut PgConnection,
    project_id: Uuid,
    reach: &Reach<'_>,
    rules: &dyn PlatformRules,
    draft: Draft<'_>,
    targets: Vec<TargetRequest>,
    problems: &mut Vec<Invalid>,
) -> Result<Vec<Target>, sqlx::Error> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        problems.push(Invalid::new("targets", format!("must have 1 to {MAX_TARGETS} targets")));
    }
    let library = Library::load(tx, project_id, reach.test_only, draft, &targets).await?;
    library.check_list("media", draft.media, problems);
    check_thread_lists(&library, "thread", draft.thread, draft.first_comment, problems);
    let ids: Vec<Uuid> = targets.iter().map(|target| target.account_id).collect();
    let accounts = sqlx::query!(
        r#"SELECT id, platform, status AS "status: AccountStatus", external_id FROM accounts
           WHERE project_id = $1 AND id = ANY($2)"#,
        project_id,
        &ids
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut checked = Vec::with_capacity(targets.len());
    for (index, target) in targets.into_iter().enumerate() {
        let field = |name: &str| format!("targets[{index}].{name}");
        let reachable = accounts
            .iter()
            .find(|account| account.id == target.account_id)
            .filter(|account| reach.reaches_account(&account.platform, account.id, account.external_id.as_deref()));
        let Some(account) = reachable else {
            problems.push(Invalid::new(field("account_id"), "no such account"));
            continue;
        };
        if ids[..index].contains(&target.account_id) {
            problems.push(Invalid::new(field("account_id"), "targeted twice"));
        }
        if account.status != AccountStatus::Connected {
            let status = account.status.as_str();
            problems.push(Invalid::new(field("account_id"), format!("the account is {status}; reconnect it")));
        }
        let text = target.content.as_deref().unwrap_or(draft.content);
        let content_field = if target.content.is_some() { field("content") } else { "content".to_owned() };
        if let Some(media) = &target.media {
            library.check_list(&field("media"), media, problems);
        }
        let media = target.media.as_deref().unwrap_or(draft.media);
        if target.thread.is_some() || target.first_comment.is_some() {
            let thread = target.thread.as_deref().unwrap_or_default();
            check_thread_lists(&library, &field("thread"), thread, target.first_comment.as_deref(), problems);
        }
        let thread_field = if target.thread.is_some() { field("thread") } else { "thread".to_owned() };
        let comment_field =
            if target.first_comment.is_some() { field("first_comment") } else { "first_comment".into() };
        let thread = target.thread.as_deref().unwrap_or(draft.thread);
        let first_comment = target.first_comment.as_deref().or(draft.first_comment);
        match rules.content(&account.platform) {
            Err(reason) => problems.push(Invalid::new(field("account_id"), reason)),
            Ok(content_rules) => {
                let bare = media.is_empty();
                check_length(&account.platform, &content_rules, text, bare, content_field, problems);
                let broken = library.broken_rules(&account.platform, &content_rules, media);
                problems.extend(broken.into_iter().map(|rule| Invalid::new(field("media"), rule)));
                let chain = Chain { thread, first_comment, thread_field, comment_field };
                check_chain(&account.platform, &content_rules, &library, chain, problems);
                for (option, message) in rules.option_problems(&account.platform, &target.options) {
                    let at = if option.is_empty() { field("options") } else { field(&format!("options.{option}")) };
                    problems.push(Invalid::new(at, message));
                }
            }
        }
        checked.push(Target {
            delivery_id: Uuid::now_v7(),
            account_id: target.account_id,
            content: target.content,
            options: target.options,
            media: target.media,
            thread: target.thread,
            first_comment: target.first_comment,
        });
    }
    Ok(checked)
}

/// A target's thread and first comment, and the fields to name in problems (the target's own,
/// or the post's).
struct Chain<'a> {
    thread: &'a [ThreadItem],
    first_comment: Option<&'a str>,
    thread_field: String,
    comment_field: String,
}

/// Checks a thread's and first comment's shape where they are given (at `field`): not too long,
/// each item's media list, no blank first comment.
fn check_thread_lists(
    library: &Library,
    field: &str,
    thread: &[ThreadItem],
    first_comment: Option<&str>,
    problems: &mut Vec<Invalid>,
) {
    if thread.len() > MAX_THREAD {
        problems.push(Invalid::new(field, format!("at most {MAX_THREAD} items")));
    }
    for (index, item) in thread.iter().enumerate() {
        library.check_list(&format!("{field}[{index}].media"), &item.media, problems);
    }
    if first_comment.is_some_and(|comment| comment.trim().is_empty()) {
        let at =
            field.strip_suffix("thread").map_or_else(|| "first_comment".to_owned(), |at| format!("{at}first_comment"));
        problems.push(Invalid::new(at, "must not be blank (leave it out instead)"));
    }
}

/// Checks what follows a target's own content against its platform: a thread only where its
/// items can be replies, a first comment only where it can be a comment or a reply, and each item
/// as the platform takes a post.
fn check_chain(platform: &str, rules: &ContentRules, library: &Library, chain: Chain<'_>, problems: &mut Vec<Invalid>) {
    let Chain { thread, first_comment, thread_field, comment_field } = chain;
    if !thread.is_empty() && !rules.chains.replies {
        problems.push(Invalid::new(&thread_field, format!("herald publishes no threads on {platform}")));
    } else {
        for (index, item) in thread.iter().enumerate() {
            let at = |name: &str| format!("{thread_field}[{index}].{name}");
            check_length(platform, rules, &item.content, item.media.is_empty(), at("content"), problems);
            let broken = library.broken_rules(platform, rules, &item.media);
            problems.extend(broken.into_iter().map(|rule| Invalid::new(at("media"), rule)));
        }
    }
    if let Some(comment) = first_comment {
        if !rules.chains.first_comment() {
            problems.push(Invalid::new(comment_field, format!("herald publishes no first comments on {platform}")));
        } else if !comment.trim().is_empty() {
            check_length(platform, rules, comment, true, comment_field, problems);
        }
    }
}

/// The library items a post names, as the key may see them.
struct Library {
    items: HashMap<Uuid, LibraryItem>,
}

struct LibraryItem {
    status: MediaStatus,
    kind: Option<MediaKind>,
    content_type: Option<String>,
    size_bytes: Option<i64>,
    width: Option<i32>,
    height: Option<i32>,
    duration_ms: Option<i64>,
}

impl Library {
    /// Reads (and locks `FOR SHARE`) every item `media` and `targets` name that is the
    /// project's, not deleted, and in the key's environment (a test key sees only test media).
    async fn load(
        tx: &mut PgConnection,
        project_id: Uuid,
        test_only: bool,
        draft: Draft<'_>,
        targets: &[TargetRequest],
    ) -> Result<Self, sqlx::Error> {
        let thread_media = |thread: &[ThreadItem]| -> Vec<Uuid> {
            thread.iter().flat_map(|item| item.media.iter().map(|media| media.id)).collect()
        };
        let mut ids: Vec<Uuid> = draft.media.iter().map(|item| item.id).collect();
        ids.extend(thread_media(draft.thread));
        for target in targets {
            ids.extend(target.media.iter().flatten().map(|item| item.id));
            ids.extend(thread_media(target.thread.as_deref().unwrap_or_default()));
        }
        if ids.is_empty() {
            return Ok(Self { items: HashMap::new() });
        }
        let rows = sqlx::query!(
            r#"SELECT id, status AS "status: MediaStatus", kind AS "kind: MediaKind", content_type, size_bytes,
                      width, height, duration_ms
               FROM media
               WHERE id = ANY($1) AND project_id = $2 AND deleted_at IS NULL AND (NOT $3 OR environment = 'test')
               FOR SHARE"#,
            &ids,
            project_id,
            test_only,
        )
        .fetch_all(tx)
        .await?;
        let items = rows
            .into_iter()
            .map(|row| {
                let item = LibraryItem {
                    status: row.status,
                    kind: row.kind,
                    content_type: row.content_type,
                    size_bytes: row.size_bytes,
                    width: row.width,
                    height: row.height,
                    duration_ms: row.duration_ms,
                };
                (row.id, item)
            })
            .collect();
        Ok(Self { items })
    }

    /// Checks one list of media (at `field`): each item exists and is ready, its alt text is not
    /// blank, and the list is not too long.
    fn check_list(&self, field: &str, media: &[MediaRef], problems: &mut Vec<Invalid>) {
        if media.len() > MAX_MEDIA {
            problems.push(Invalid::new(field, format!("at most {MAX_MEDIA} items")));
        }
        for (index, item) in media.iter().enumerate() {
            let at = |name: &str| format!("{field}[{index}].{name}");
            match self.items.get(&item.id) {
                None => problems.push(Invalid::new(at("id"), "no such media")),
                Some(found) if found.status != MediaStatus::Ready => problems
                    .push(Invalid::new(at("id"), format!("the media item is {}, not ready", found.status.as_str()))),
                Some(_) => {}
            }
            if media[..index].iter().any(|earlier| earlier.id == item.id) {
                problems.push(Invalid::new(at("id"), "attached twice"));
            }
            if item.alt_text.as_deref().is_some_and(|alt| alt.trim().is_empty()) {
                problems.push(Invalid::new(at("alt_text"), "must not be blank (leave it out instead)"));
            }
        }
    }

    /// The rules of `platform` that `media` (the ready items of it; the others are named by
    /// [`Library::check_list`]) break, as sentences.
    fn broken_rules(&self, platform: &str, rules: &ContentRules, media: &[MediaRef]) -> Vec<String> {
        let attachments: Vec<Attachment<'_>> = media
            .iter()
            .filter_map(|item| {
                let found = self.items.get(&item.id).filter(|found| found.status == MediaStatus::Ready)?;
                Some(Attachment {
                    is_video: found.kind == Some(MediaKind::Video),
                    alt_text_chars: item.alt_text.as_deref().map_or(0, |alt| alt.chars().count()),
                    content_type: found.content_type.as_deref().unwrap_or_default(),
                    size_bytes: found.size_bytes.and_then(|size| u64::try_from(size).ok()).unwrap_or_default(),
                    width: found.width.and_then(|width| u32::try_from(width).ok()),
                    height: found.height.and_then(|height| u32::try_from(height).ok()),
                    duration_ms: found.duration_ms.and_then(|duration| u64::try_from(duration).ok()),
                })
            })
            .collect();
        if !rules.publishes_media && (!media.is_empty() || rules.media.required) {
            let needs = if rules.media.required { "posts need an image or a video, but " } else { "" };
            return vec![format!("{platform} {needs}herald cannot publish media there yet")];
        }
        broken_rules(platform, &rules.media, &attachments)
    }
}

/// Checks that `text` is not empty (unless media carry the post), fits the platform's length as
/// it counts it, and has no more hashtags than it takes.
fn check_length(
    platform: &str,
    rules: &ContentRules,
    text: &str,
    bare: bool,
    field: String,
    problems: &mut Vec<Invalid>,
) {
    let length = content::length(rules.counts, text);
    let (max, counted) = (rules.max_chars, content::counting_note(rules.counts));
    if bare && text.trim().is_empty() {
        problems.push(Invalid::new(field, "must not be empty"));
        return;
    }
    if length > max {
        problems.push(Invalid::new(field.clone(), format!("{length} {counted}; {platform} takes at most {max}")));
    }
    if let Some(most) = rules.max_hashtags
        && content::hashtags(text) > most
    {
        let found = content::hashtags(text);
        problems.push(Invalid::new(field, format!("{found} hashtags; {platform} takes at most {most}")));
    }
}

/// The targets `post` has now, as requests: an edit of the content alone checks them again
/// against the new text.
pub fn current_targets(post: &Post) -> Vec<TargetRequest> {
    post.deliveries
        .iter()
        .map(|delivery| TargetRequest {
            account_id: delivery.account_id,
            content: delivery.content.clone(),
            options: delivery.options.clone(),
            media: delivery.media.clone(),
            thread: delivery.thread.clone(),
            first_comment: delivery.first_comment.clone(),
        })
        .collect()
}

/// Runs `command` on post `id` and queues the publish jobs of every delivery it made due, inside
/// `tx` (the caller commits).
pub async fn execute_and_queue(
    tx: &mut PgConnection,
    id: Uuid,
    command: post::Command,
    metadata: &EventMetadata,
) -> Result<Executed<Post>, ExecuteError<post::Rejection>> {
    let executed = execute::<Post>(tx, id, command, metadata).await?;
    deliveries::queue_pending(tx, id, &executed.state, metadata).await?;
    Ok(executed)
}
