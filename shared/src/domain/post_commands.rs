//! The post aggregate's decisions, one method per command: what each needs of the state and
//! the events it makes (`Post::decide` only dispatches).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Delivery, DeliveryError, DeliveryStatus, Event, Post, PostStatus, PublishedItem, Rejection, Target, ThreadItem,
    check_targets, derive_status,
};

/// What a new post says and where: its text, its media and its targets.
pub(super) struct Body {
    pub(super) content: String,
    pub(super) media: Vec<super::MediaRef>,
    pub(super) thread: Vec<ThreadItem>,
    pub(super) first_comment: Option<String>,
    pub(super) targets: Vec<Target>,
}

/// What an edit changes (`None`: kept as it is).
pub(super) struct Edit {
    pub(super) content: Option<String>,
    pub(super) media: Option<Vec<super::MediaRef>>,
    pub(super) thread: Option<Vec<ThreadItem>>,
    pub(super) first_comment: Option<Option<String>>,
    pub(super) targets: Option<Vec<Target>>,
    pub(super) scheduled_at: Option<DateTime<Utc>>,
}

/// How a new post starts: its status and due time follow from these.
pub(super) struct Start {
    pub(super) scheduled_at: Option<DateTime<Utc>>,
    pub(super) draft: bool,
    pub(super) requires_approval: bool,
    pub(super) now: DateTime<Utc>,
}

impl Start {
    /// A draft waits (keeping its planned time, if any); otherwise the post waits for approval
    /// or is scheduled, due at its time or now.
    fn status_and_due_time(&self) -> (PostStatus, Option<DateTime<Utc>>) {
        if self.draft {
            return (PostStatus::Draft, self.scheduled_at);
        }
        let status = if self.requires_approval { PostStatus::PendingApproval } else { PostStatus::Scheduled };
        (status, Some(self.scheduled_at.unwrap_or(self.now)))
    }
}

/// One method per command: what it needs of the state, and the events it makes.
impl Post {
    pub(super) fn create(
        &self,
        project_id: Uuid,
        body: Body,
        external_id: Option<String>,
        start: Start,
    ) -> Result<Vec<Event>, Rejection> {
        if self.exists {
            return Err(Rejection::AlreadyExists);
        }
        let Body { content, media, thread, first_comment, targets } = body;
        check_targets(&targets)?;
        let (status, scheduled_at) = start.status_and_due_time();
        Ok(vec![Event::Created {
            project_id,
            content,
            media,
            thread,
            first_comment,
            targets,
            scheduled_at,
            status,
            requires_approval: start.requires_approval,
            external_id,
        }])
    }

    pub(super) fn update(&self, edit: Edit) -> Result<Vec<Event>, Rejection> {
        let Edit { content, media, thread, first_comment, targets, scheduled_at } = edit;
        if matches!(
            self.status,
            PostStatus::Canceled | PostStatus::Published | PostStatus::Partial | PostStatus::Failed
        ) {
            return Err(Rejection::Finished(self.status));
        }
        if self.deliveries.iter().any(|delivery| delivery.status.started()) {
            return Err(Rejection::DeliveryStarted);
        }
        let targets = match targets {
            Some(targets) => {
                check_targets(&targets)?;
                targets
            }
            None => self
                .deliveries
                .iter()
                .map(|delivery| Target {
                    delivery_id: delivery.id,
                    account_id: delivery.account_id,
                    content: delivery.content.clone(),
                    options: delivery.options.clone(),
                    media: delivery.media.clone(),
                    thread: delivery.thread.clone(),
                    first_comment: delivery.first_comment.clone(),
                })
                .collect(),
        };
        Ok(vec![Event::Updated {
            content: content.unwrap_or_else(|| self.content.clone()),
            media: media.unwrap_or_else(|| self.media.clone()),
            thread: thread.unwrap_or_else(|| self.thread.clone()),
            first_comment: first_comment.unwrap_or_else(|| self.first_comment.clone()),
            targets,
            scheduled_at: scheduled_at.or(self.scheduled_at),
            generation: self.generation + 1,
        }])
    }

    pub(super) fn approve(&self) -> Result<Vec<Event>, Rejection> {
        if self.status != PostStatus::PendingApproval {
            return Err(Rejection::NotPendingApproval);
        }
        Ok(vec![Event::Approved { status: PostStatus::Scheduled }])
    }

    pub(super) fn publish(&self, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
        if self.status != PostStatus::Draft {
            return Err(Rejection::NotADraft);
        }
        Ok(vec![Event::PublishRequested { scheduled_at: now, status: self.initial_status() }])
    }

    pub(super) fn cancel(&self) -> Result<Vec<Event>, Rejection> {
        let delivery_ids: Vec<Uuid> = self
            .deliveries
            .iter()
            .filter(|delivery| !delivery.status.started() && delivery.status != DeliveryStatus::Canceled)
            .map(|delivery| delivery.id)
            .collect();
        if delivery_ids.is_empty() {
            return Err(Rejection::Finished(self.status));
        }
        let statuses: Vec<DeliveryStatus> = self
            .deliveries
            .iter()
            .map(
                |delivery| if delivery_ids.contains(&delivery.id) { DeliveryStatus::Canceled } else { delivery.status },
            )
            .collect();
        Ok(vec![Event::Canceled { delivery_ids, status: derive_status(&statuses, PostStatus::Canceled) }])
    }

    pub(super) fn retry(&self, force: bool, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
        let delivery_ids: Vec<Uuid> = self
            .deliveries
            .iter()
            .filter(|delivery| {
                delivery.status == DeliveryStatus::Failed || (force && delivery.status == DeliveryStatus::Unknown)
            })
            .map(|delivery| delivery.id)
            .collect();
        if delivery_ids.is_empty() {
            return Err(Rejection::NothingToRetry);
        }
        Ok(vec![Event::Retried { delivery_ids, generation: self.generation + 1, scheduled_at: now }])
    }

    pub(super) fn queue(&self, delivery_id: Uuid, generation: i32) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Pending
            || delivery.generation != generation
            || self.status != PostStatus::Scheduled && self.status != PostStatus::Publishing
        {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryQueued { delivery_id, generation }])
    }

    pub(super) fn start_publishing(&self, delivery_id: Uuid, generation: i32) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Queued || delivery.generation != generation {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryPublishing { delivery_id, attempt: delivery.attempts + 1 }])
    }

    pub(super) fn record_published(
        &self,
        delivery_id: Uuid,
        platform_post_id: String,
        platform_url: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if !matches!(delivery.status, DeliveryStatus::Publishing | DeliveryStatus::Unknown) {
            return Err(moved(delivery));
        }
        let post_status = self.status_with(delivery_id, DeliveryStatus::Published);
        Ok(vec![Event::DeliveryPublished {
            delivery_id,
            platform_post_id,
            platform_url,
            published_at: at,
            post_status,
        }])
    }

    pub(super) fn start_step(&self, delivery_id: Uuid, generation: i32, index: usize) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Publishing
            || delivery.generation != generation
            || delivery.step_in_flight.is_some()
            || index == 0
            || delivery.next_step() != index
        {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryStepPublishing { delivery_id, index }])
    }

    pub(super) fn record_step_published(
        &self,
        delivery_id: Uuid,
        index: usize,
        item: PublishedItem,
    ) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Publishing
            || delivery.step_in_flight != Some(index)
            || item.index != index
        {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryStepPublished { delivery_id, item }])
    }

    pub(super) fn record_step_retrying(
        &self,
        delivery_id: Uuid,
        index: usize,
        error: DeliveryError,
    ) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Publishing || delivery.step_in_flight != Some(index) || index == 0 {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryStepRetrying { delivery_id, index, error }])
    }

    pub(super) fn record_retrying(
        &self,
        delivery_id: Uuid,
        error: DeliveryError,
        retry_at: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Publishing {
            return Err(moved(delivery));
        }
        Ok(vec![Event::DeliveryRetrying { delivery_id, error, retry_at }])
    }

    pub(super) fn record_failed(&self, delivery_id: Uuid, error: DeliveryError) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if !matches!(delivery.status, DeliveryStatus::Publishing | DeliveryStatus::Queued) {
            return Err(moved(delivery));
        }
        Ok(vec![self.failed(delivery_id, error)])
    }

    pub(super) fn record_unknown(&self, delivery_id: Uuid, error: DeliveryError) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != DeliveryStatus::Publishing {
            return Err(moved(delivery));
        }
        Ok(vec![self.unknown(delivery_id, error)])
    }

    pub(super) fn record_abandoned(
        &self,
        delivery_id: Uuid,
        generation: i32,
        status: DeliveryStatus,
        error: DeliveryError,
    ) -> Result<Vec<Event>, Rejection> {
        let delivery = self.delivery(delivery_id)?;
        if delivery.status != status || delivery.generation != generation {
            return Err(moved(delivery));
        }
        match status {
            DeliveryStatus::Publishing => Ok(vec![self.unknown(delivery_id, error)]),
            DeliveryStatus::Queued => Ok(vec![self.failed(delivery_id, error)]),
            _ => Err(moved(delivery)),
        }
    }

    /// The delivery failed, and the post's status with it.
    fn failed(&self, delivery_id: Uuid, error: DeliveryError) -> Event {
        let post_status = self.status_with(delivery_id, DeliveryStatus::Failed);
        Event::DeliveryFailed { delivery_id, error, post_status }
    }

    /// The delivery's outcome is unknown, and the post's status with it.
    fn unknown(&self, delivery_id: Uuid, error: DeliveryError) -> Event {
        let post_status = self.status_with(delivery_id, DeliveryStatus::Unknown);
        Event::DeliveryUnknown { delivery_id, error, post_status }
    }
}

/// The refusal of a command meant for a delivery in another status or generation.
fn moved(delivery: &Delivery) -> Rejection {
    Rejection::DeliveryMoved { status: delivery.status, generation: delivery.generation }
}
