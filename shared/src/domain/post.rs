//! A post aimed at several accounts, and its deliveries (one per target).
//!
//! Post: `draft -> pending_approval -> scheduled -> publishing -> published | partial | failed | canceled`.
//! Delivery: `pending -> queued -> publishing -> published | failed | unknown | canceled`.
//!
//! A delivery's `generation` changes whenever an edit or a retry resets it, so a publish job
//! queued for an older generation finds it changed and ends without publishing. A delivery only
//! enters `publishing` from `queued` (the compare-and-set that makes publishing at most once).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    #[default]
    Draft,
    PendingApproval,
    Scheduled,
    Publishing,
    Published,
    Partial,
    Failed,
    Canceled,
}

impl PostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PostStatus::Draft => "draft",
            PostStatus::PendingApproval => "pending_approval",
            PostStatus::Scheduled => "scheduled",
            PostStatus::Publishing => "publishing",
            PostStatus::Published => "published",
            PostStatus::Partial => "partial",
            PostStatus::Failed => "failed",
            PostStatus::Canceled => "canceled",
        }
    }
}

/// Stored as text (`deliveries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DeliveryStatus {
    #[default]
    Pending,
    Queued,
    Publishing,
    Published,
    Failed,
    Unknown,
    Canceled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Publishing => "publishing",
            DeliveryStatus::Published => "published",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::Canceled => "canceled",
        }
    }

    /// Publishing has begun (or ended): edits and cancels no longer reach it.
    pub fn started(self) -> bool {
        matches!(self, Self::Publishing | Self::Published | Self::Failed | Self::Unknown)
    }

    /// Nothing more will happen to it without an explicit retry.
    pub fn terminal(self) -> bool {
        matches!(self, Self::Published | Self::Failed | Self::Unknown | Self::Canceled)
    }
}

/// One media item of the library attached to a post or a target, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub id: Uuid,
    /// The description read to people who cannot see it, where the platform takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
}

/// One item of a thread, after the post's own content: published as a reply to the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThreadItem {
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
}

/// What follows a post's own content on a target: its thread's items, then its first comment.
/// Each is one step of the delivery, published after the one before (at index 1, 2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStep<'a> {
    Item(&'a ThreadItem),
    FirstComment(&'a str),
}

/// The steps after the post's own content, in order: index 1 is the first.
pub fn chain_steps<'a>(thread: &'a [ThreadItem], first_comment: Option<&'a str>) -> Vec<ChainStep<'a>> {
    thread.iter().map(ChainStep::Item).chain(first_comment.map(ChainStep::FirstComment)).collect()
}

/// One step of a chain as published: its index (0 is the post's own content), its id and URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedItem {
    pub index: usize,
    pub platform_post_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_url: Option<String>,
    /// What a reply to it needs besides its id (Bluesky's cid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ref: Option<String>,
}

/// One target as given at creation or edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub delivery_id: Uuid,
    pub account_id: Uuid,
    /// Per-target content; the post's content when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub options: Value,
    /// Per-target media (an empty list: none); the post's media when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Vec<MediaRef>>,
    /// Per-target thread (an empty list: none); the post's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<Vec<ThreadItem>>,
    /// Per-target first comment; the post's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_comment: Option<String>,
}

impl Target {
    /// The media this target publishes: its own, or the post's.
    pub fn media_or<'a>(&'a self, post_media: &'a [MediaRef]) -> &'a [MediaRef] {
        self.media.as_deref().unwrap_or(post_media)
    }

    /// The thread this target publishes: its own, or the post's.
    pub fn thread_or<'a>(&'a self, post_thread: &'a [ThreadItem]) -> &'a [ThreadItem] {
        self.thread.as_deref().unwrap_or(post_thread)
    }

    /// The first comment this target publishes: its own, or the post's.
    pub fn first_comment_or<'a>(&'a self, post_first_comment: Option<&'a str>) -> Option<&'a str> {
        self.first_comment.as_deref().or(post_first_comment)
    }
}

/// A failure as the platform reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    pub id: Uuid,
    pub account_id: Uuid,
    pub content: Option<String>,
    pub options: Value,
    /// Its own media; the post's when `None`.
    pub media: Option<Vec<MediaRef>>,
    /// Its own thread and first comment; the post's when `None`.
    pub thread: Option<Vec<ThreadItem>>,
    pub first_comment: Option<String>,
    pub status: DeliveryStatus,
    pub generation: i32,
    pub attempts: i32,
    pub platform_post_id: Option<String>,
    pub platform_url: Option<String>,
    /// The post's own `thread_ref` (what a reply to it needs).
    pub platform_thread_ref: Option<String>,
    /// The chain's later steps published so far (index 1, 2, ...), kept across retries so a
    /// retried delivery resumes with the next one.
    pub items: Vec<PublishedItem>,
    /// The step whose call was sent and whose outcome is not recorded: 0 for the post itself
    /// (from `queued -> publishing`), `n` for the chain's `n`-th. A rescued job looks it up.
    pub step_in_flight: Option<usize>,
    pub published_at: Option<DateTime<Utc>>,
    pub last_error: Option<DeliveryError>,
}

impl Delivery {
    /// The index of the next step to publish: 0 while the post itself is not published.
    pub fn next_step(&self) -> usize {
        if self.platform_post_id.is_none() { 0 } else { self.items.len() + 1 }
    }
}

/// The post's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Post {
    pub exists: bool,
    pub project_id: Uuid,
    pub status: PostStatus,
    pub content: String,
    /// The media of every target without its own.
    pub media: Vec<MediaRef>,
    /// The thread and first comment of every target without its own.
    pub thread: Vec<ThreadItem>,
    pub first_comment: Option<String>,
    pub external_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub requires_approval: bool,
    pub approved: bool,
    pub generation: i32,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Create {
        project_id: Uuid,
        content: String,
        media: Vec<MediaRef>,
        thread: Vec<ThreadItem>,
        first_comment: Option<String>,
        targets: Vec<Target>,
        /// None: now (or, for a draft, when it is published).
        scheduled_at: Option<DateTime<Utc>>,
        draft: bool,
        requires_approval: bool,
        external_id: Option<String>,
        now: DateTime<Utc>,
    },
    Update {
        content: Option<String>,
        media: Option<Vec<MediaRef>>,
        thread: Option<Vec<ThreadItem>>,
        /// `Some(None)` removes it.
        first_comment: Option<Option<String>>,
        targets: Option<Vec<Target>>,
        scheduled_at: Option<DateTime<Utc>>,
    },
    Approve,
    /// Publish a draft now.
    Publish {
        now: DateTime<Utc>,
    },
    Cancel,
    /// Put failed deliveries (and, with `force`, unknown ones) back in line.
    Retry {
        force: bool,
        now: DateTime<Utc>,
    },
    Queue {
        delivery_id: Uuid,
        generation: i32,
    },
    StartPublishing {
        delivery_id: Uuid,
        generation: i32,
    },
    RecordPublished {
        delivery_id: Uuid,
        platform_post_id: String,
        platform_url: Option<String>,
        at: DateTime<Utc>,
    },
    /// Step `index` of a chain is about to be sent: recorded (and committed) before the call,
    /// only when the step before it is published and nothing is in flight.
    StartStep {
        delivery_id: Uuid,
        generation: i32,
        index: usize,
    },
    /// Step `index` (0: the post itself, when a chain follows it) was published; the delivery
    /// stays `publishing` until its last step.
    RecordStepPublished {
        delivery_id: Uuid,
        index: usize,
        item: PublishedItem,
    },
    /// Step `index` was surely not published (refused for now, rate limited): it is tried again.
    RecordStepRetrying {
        delivery_id: Uuid,
        index: usize,
        error: DeliveryError,
    },
    RecordRetrying {
        delivery_id: Uuid,
        error: DeliveryError,
        retry_at: DateTime<Utc>,
    },
    RecordFailed {
        delivery_id: Uuid,
        error: DeliveryError,
    },
    RecordUnknown {
        delivery_id: Uuid,
        error: DeliveryError,
    },
    /// The delivery's publish job ended without recording an outcome (its worker died on the
    /// last attempt): one that had started (`publishing`) becomes `unknown`, one that had not
    /// (`queued`) `failed`. Only for the generation and status the caller saw, so a delivery
    /// that moved meanwhile (retried, finished) is left alone.
    RecordAbandoned {
        delivery_id: Uuid,
        generation: i32,
        status: DeliveryStatus,
        error: DeliveryError,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "post.created")]
    Created {
        project_id: Uuid,
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        media: Vec<MediaRef>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        thread: Vec<ThreadItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_comment: Option<String>,
        targets: Vec<Target>,
        scheduled_at: Option<DateTime<Utc>>,
        status: PostStatus,
        requires_approval: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
    #[serde(rename = "post.updated")]
    Updated {
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        media: Vec<MediaRef>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        thread: Vec<ThreadItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_comment: Option<String>,
        targets: Vec<Target>,
        scheduled_at: Option<DateTime<Utc>>,
        generation: i32,
    },
    #[serde(rename = "post.approved")]
    Approved { status: PostStatus },
    #[serde(rename = "post.publish_requested")]
    PublishRequested { scheduled_at: DateTime<Utc>, status: PostStatus },
    #[serde(rename = "post.canceled")]
    Canceled { delivery_ids: Vec<Uuid>, status: PostStatus },
    #[serde(rename = "post.retried")]
    Retried { delivery_ids: Vec<Uuid>, generation: i32, scheduled_at: DateTime<Utc> },
    #[serde(rename = "delivery.queued")]
    DeliveryQueued { delivery_id: Uuid, generation: i32 },
    #[serde(rename = "delivery.publishing")]
    DeliveryPublishing { delivery_id: Uuid, attempt: i32 },
    #[serde(rename = "delivery.published")]
    DeliveryPublished {
        delivery_id: Uuid,
        platform_post_id: String,
        platform_url: Option<String>,
        published_at: DateTime<Utc>,
        post_status: PostStatus,
    },
    #[serde(rename = "delivery.step_publishing")]
    DeliveryStepPublishing { delivery_id: Uuid, index: usize },
    #[serde(rename = "delivery.step_published")]
    DeliveryStepPublished { delivery_id: Uuid, item: PublishedItem },
    #[serde(rename = "delivery.step_retrying")]
    DeliveryStepRetrying { delivery_id: Uuid, index: usize, error: DeliveryError },
    #[serde(rename = "delivery.retrying")]
    DeliveryRetrying { delivery_id: Uuid, error: DeliveryError, retry_at: DateTime<Utc> },
    #[serde(rename = "delivery.failed")]
    DeliveryFailed { delivery_id: Uuid, error: DeliveryError, post_status: PostStatus },
    #[serde(rename = "delivery.unknown")]
    DeliveryUnknown { delivery_id: Uuid, error: DeliveryError, post_status: PostStatus },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Created { .. } => "post.created",
            Event::Updated { .. } => "post.updated",
            Event::Approved { .. } => "post.approved",
            Event::PublishRequested { .. } => "post.publish_requested",
            Event::Canceled { .. } => "post.canceled",
            Event::Retried { .. } => "post.retried",
            Event::DeliveryQueued { .. } => "delivery.queued",
            Event::DeliveryPublishing { .. } => "delivery.publishing",
            Event::DeliveryPublished { .. } => "delivery.published",
            Event::DeliveryStepPublishing { .. } => "delivery.step_publishing",
            Event::DeliveryStepPublished { .. } => "delivery.step_published",
            Event::DeliveryStepRetrying { .. } => "delivery.step_retrying",
            Event::DeliveryRetrying { .. } => "delivery.retrying",
            Event::DeliveryFailed { .. } => "delivery.failed",
            Event::DeliveryUnknown { .. } => "delivery.unknown",
        }
    }

    /// `post.created` is at version 2: version 1 named the text `text` and listed bare
    /// `account_ids` (with ids derived for the deliveries).
    fn schema_version(event_type: &str) -> i32 {
        if event_type == "post.created" { 2 } else { 1 }
    }

    fn upcast(event_type: &str, version: i32, mut payload: Value) -> Value {
        if event_type == "post.created"
            && version == 1
            && let Some(object) = payload.as_object_mut()
        {
            if let Some(text) = object.remove("text") {
                object.insert("content".into(), text);
            }
            if let Some(Value::Array(account_ids)) = object.remove("account_ids") {
                let targets: Vec<Value> = account_ids
                    .into_iter()
                    .filter_map(|id| id.as_str().and_then(|id| Uuid::parse_str(id).ok()))
                    .map(|account_id| {
                        let delivery_id = Uuid::new_v5(&account_id, b"v1-delivery");
                        serde_json::json!({ "delivery_id": delivery_id, "account_id": account_id })
                    })
                    .collect();
                object.insert("targets".into(), Value::Array(targets));
            }
            object.entry("requires_approval").or_insert(Value::Bool(false));
        }
        payload
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the post already exists")]
    AlreadyExists,
    #[error("the post does not exist")]
    NotFound,
    #[error("a post needs at least one target")]
    NoTargets,
    #[error("account {0} is targeted twice")]
    DuplicateTarget(Uuid),
    #[error("publishing has started for some targets: the post can no longer be edited")]
    DeliveryStarted,
    #[error("the post is {0:?}: it can no longer change")]
    Finished(PostStatus),
    #[error("the post does not need approval, or is already approved")]
    NotPendingApproval,
    #[error("only a draft can be published this way")]
    NotADraft,
    #[error("delivery {0} is not part of this post")]
    UnknownDelivery(Uuid),
    #[error("delivery is {status:?} at generation {generation}, not what the caller expected")]
    DeliveryMoved { status: DeliveryStatus, generation: i32 },
    #[error("no delivery can be retried (unknown ones need force)")]
    NothingToRetry,
}

impl Post {
    fn delivery(&self, id: Uuid) -> Result<&Delivery, Rejection> {
        self.deliveries.iter().find(|delivery| delivery.id == id).ok_or(Rejection::UnknownDelivery(id))
    }

    /// The post's status once `delivery_id` is `status`: follows from all its deliveries.
    fn status_with(&self, delivery_id: Uuid, status: DeliveryStatus) -> PostStatus {
        let statuses: Vec<DeliveryStatus> = self
            .deliveries
            .iter()
            .map(|delivery| if delivery.id == delivery_id { status } else { delivery.status })
            .collect();
        derive_status(&statuses, self.status)
    }

    fn initial_status(&self) -> PostStatus {
        if self.requires_approval && !self.approved { PostStatus::PendingApproval } else { PostStatus::Scheduled }
    }
}

/// A post's status from its deliveries' (`current` while any is still on its way).
pub fn derive_status(deliveries: &[DeliveryStatus], current: PostStatus) -> PostStatus {
    if !deliveries.iter().all(|status| status.terminal()) {
        return if deliveries.iter().any(|status| status.started()) { PostStatus::Publishing } else { current };
    }
    let published = deliveries.iter().filter(|status| **status == DeliveryStatus::Published).count();
    let canceled = deliveries.iter().filter(|status| **status == DeliveryStatus::Canceled).count();
    if canceled == deliveries.len() {
        PostStatus::Canceled
    } else if published == deliveries.len() - canceled {
        PostStatus::Published
    } else if published > 0 {
        PostStatus::Partial
    } else {
        PostStatus::Failed
    }
}

fn check_targets(targets: &[Target]) -> Result<(), Rejection> {
    if targets.is_empty() {
        return Err(Rejection::NoTargets);
    }
    for (index, target) in targets.iter().enumerate() {
        if targets[..index].iter().any(|earlier| earlier.account_id == target.account_id) {
            return Err(Rejection::DuplicateTarget(target.account_id));
        }
    }
    Ok(())
}

#[path = "post_commands.rs"]
mod commands;

impl Aggregate for Post {
    const KIND: &'static str = "post";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    /// Dispatches: each command is decided by its own method below.
    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        if !self.exists && !matches!(command, Command::Create { .. }) {
            return Err(Rejection::NotFound);
        }
        match command {
            Command::Create {
                project_id,
                content,
                media,
                thread,
                first_comment,
                targets,
                scheduled_at,
                draft,
                requires_approval,
                external_id,
                now,
            } => self.create(
                project_id,
                commands::Body { content, media, thread, first_comment, targets },
                external_id,
                commands::Start { scheduled_at, draft, requires_approval, now },
            ),
            Command::Update { content, media, thread, first_comment, targets, scheduled_at } => {
                self.update(commands::Edit { content, media, thread, first_comment, targets, scheduled_at })
            }
            Command::Approve => self.approve(),
            Command::Publish { now } => self.publish(now),
            Command::Cancel => self.cancel(),
            Command::Retry { force, now } => self.retry(force, now),
            Command::Queue { delivery_id, generation } => self.queue(delivery_id, generation),
            Command::StartPublishing { delivery_id, generation } => self.start_publishing(delivery_id, generation),
            Command::RecordPublished { delivery_id, platform_post_id, platform_url, at } => {
                self.record_published(delivery_id, platform_post_id, platform_url, at)
            }
            Command::StartStep { delivery_id, generation, index } => self.start_step(delivery_id, generation, index),
            Command::RecordStepPublished { delivery_id, index, item } => {
                self.record_step_published(delivery_id, index, item)
            }
            Command::RecordStepRetrying { delivery_id, index, error } => {
                self.record_step_retrying(delivery_id, index, error)
            }
            Command::RecordRetrying { delivery_id, error, retry_at } => {
                self.record_retrying(delivery_id, error, retry_at)
            }
            Command::RecordFailed { delivery_id, error } => self.record_failed(delivery_id, error),
            Command::RecordUnknown { delivery_id, error } => self.record_unknown(delivery_id, error),
            Command::RecordAbandoned { delivery_id, generation, status, error } => {
                self.record_abandoned(delivery_id, generation, status, error)
            }
        }
    }

    /// Events about the post as a whole change the post; the others one of its deliveries.
    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Created { .. }
            | Event::Updated { .. }
            | Event::Approved { .. }
            | Event::PublishRequested { .. }
            | Event::Canceled { .. }
            | Event::Retried { .. } => self.evolve_post(event),
            _ => self.evolve_delivery(event),
        }
        self
    }
}

impl Post {
    fn evolve_post(&mut self, event: &Event) {
        match event {
            Event::Created {
                project_id,
                content,
                media,
                thread,
                first_comment,
                targets,
                scheduled_at,
                status,
                requires_approval,
                external_id,
            } => {
                *self = Post {
                    exists: true,
                    project_id: *project_id,
                    status: *status,
                    content: content.clone(),
                    media: media.clone(),
                    thread: thread.clone(),
                    first_comment: first_comment.clone(),
                    external_id: external_id.clone(),
                    scheduled_at: *scheduled_at,
                    requires_approval: *requires_approval,
                    approved: false,
                    generation: 1,
                    deliveries: targets.iter().map(|target| new_delivery(target, 1)).collect(),
                };
            }
            Event::Updated { content, media, thread, first_comment, targets, scheduled_at, generation } => {
                self.content = content.clone();
                self.media = media.clone();
                self.thread = thread.clone();
                self.first_comment = first_comment.clone();
                self.scheduled_at = *scheduled_at;
                self.generation = *generation;
                self.deliveries = targets.iter().map(|target| new_delivery(target, *generation)).collect();
            }
            Event::Approved { status } => {
                self.approved = true;
                self.status = *status;
            }
            Event::PublishRequested { scheduled_at, status } => {
                self.scheduled_at = Some(*scheduled_at);
                self.status = *status;
            }
            Event::Canceled { delivery_ids, status } => {
                for delivery in self.deliveries.iter_mut().filter(|delivery| delivery_ids.contains(&delivery.id)) {
                    delivery.status = DeliveryStatus::Canceled;
                }
                self.status = *status;
            }
            Event::Retried { delivery_ids, generation, scheduled_at } => {
                self.generation = *generation;
                self.scheduled_at = Some(*scheduled_at);
                for delivery in self.deliveries.iter_mut().filter(|delivery| delivery_ids.contains(&delivery.id)) {
                    delivery.status = DeliveryStatus::Pending;
                    delivery.generation = *generation;
                    // A person decided: the step in doubt is sent again; published ones are kept.
                    delivery.step_in_flight = None;
                }
                self.status = PostStatus::Publishing;
            }
            _ => {}
        }
    }

    fn evolve_delivery(&mut self, event: &Event) {
        match event {
            Event::DeliveryQueued { delivery_id, .. } => {
                self.update_delivery(*delivery_id, |delivery| delivery.status = DeliveryStatus::Queued);
            }
            Event::DeliveryPublishing { delivery_id, attempt } => {
                self.update_delivery(*delivery_id, |delivery| {
                    delivery.status = DeliveryStatus::Publishing;
                    delivery.attempts = *attempt;
                    // The post itself is sent next, unless a retried chain resumes after it.
                    delivery.step_in_flight = delivery.platform_post_id.is_none().then_some(0);
                });
                self.status = PostStatus::Publishing;
            }
            Event::DeliveryPublished { delivery_id, platform_post_id, platform_url, published_at, post_status } => {
                self.update_delivery(*delivery_id, |delivery| {
                    delivery.status = DeliveryStatus::Published;
                    delivery.platform_post_id = Some(platform_post_id.clone());
                    delivery.platform_url = platform_url.clone();
                    delivery.published_at = Some(*published_at);
                    delivery.step_in_flight = None;
                });
                self.status = *post_status;
            }
            Event::DeliveryStepPublishing { delivery_id, index } => {
                self.update_delivery(*delivery_id, |delivery| delivery.step_in_flight = Some(*index));
            }
            Event::DeliveryStepPublished { delivery_id, item } => {
                self.update_delivery(*delivery_id, |delivery| {
                    delivery.step_in_flight = None;
                    if item.index == 0 {
                        delivery.platform_post_id = Some(item.platform_post_id.clone());
                        delivery.platform_url = item.platform_url.clone();
                        delivery.platform_thread_ref = item.thread_ref.clone();
                    } else {
                        delivery.items.push(item.clone());
                    }
                });
            }
            Event::DeliveryStepRetrying { delivery_id, error, .. } => {
                self.update_delivery(*delivery_id, |delivery| {
                    delivery.step_in_flight = None;
                    delivery.last_error = Some(error.clone());
                });
            }
            Event::DeliveryRetrying { delivery_id, error, .. } => {
                self.delivery_erred(*delivery_id, DeliveryStatus::Queued, error);
                self.update_delivery(*delivery_id, |delivery| delivery.step_in_flight = None);
            }
            Event::DeliveryFailed { delivery_id, error, post_status } => {
                self.delivery_erred(*delivery_id, DeliveryStatus::Failed, error);
                self.update_delivery(*delivery_id, |delivery| delivery.step_in_flight = None);
                self.status = *post_status;
            }
            Event::DeliveryUnknown { delivery_id, error, post_status } => {
                self.delivery_erred(*delivery_id, DeliveryStatus::Unknown, error);
                self.status = *post_status;
            }
            _ => {}
        }
    }

    /// A delivery's attempt met `error` and the delivery is now `status`.
    fn delivery_erred(&mut self, id: Uuid, status: DeliveryStatus, error: &DeliveryError) {
        self.update_delivery(id, |delivery| {
            delivery.status = status;
            delivery.last_error = Some(error.clone());
        });
    }

    fn update_delivery(&mut self, id: Uuid, change: impl FnOnce(&mut Delivery)) {
        if let Some(delivery) = self.deliveries.iter_mut().find(|delivery| delivery.id == id) {
            change(delivery);
        }
    }
}

fn new_delivery(target: &Target, generation: i32) -> Delivery {
    Delivery {
        id: target.delivery_id,
        account_id: target.account_id,
        content: target.content.clone(),
        options: target.options.clone(),
        media: target.media.clone(),
        thread: target.thread.clone(),
        first_comment: target.first_comment.clone(),
        generation,
        ..Delivery::default()
    }
}

#[cfg(test)]
#[path = "post_tests.rs"]
mod tests;
