//! The bridge from posts to the queue: every delivery that is due to be published gets a
//! publish job, queued in the transaction that makes it due (creation, approval, a draft's
//! publish, an edit, a retry) with `run_at` = the post's scheduled time. The queue then wakes a
//! worker at that time; the scheduler's sweep ([`queue_due`]) catches anything left pending.
//!
//! Queueing is `delivery.queued` (pending → queued) plus the job, deduplicated per delivery and
//! generation, so any number of schedulers or retries make one job.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ExecuteError, execute, load};
use crate::domain::post::{self, DeliveryStatus, Post, PostStatus};
use crate::events::EventMetadata;
use crate::jobs::PublishDelivery;
use crate::queue::{self, NewJob};

/// Queues every pending delivery of `post_id` (as of `post`) for publishing at its due time.
/// Returns how many it queued. Nothing for a draft, a post awaiting approval or a canceled one.
pub async fn queue_pending(
    tx: &mut PgConnection,
    post_id: Uuid,
    post: &Post,
    metadata: &EventMetadata,
) -> Result<usize, ExecuteError<post::Rejection>> {
    if !matches!(post.status, PostStatus::Scheduled | PostStatus::Publishing) {
        return Ok(0);
    }
    let run_at: DateTime<Utc> = post.scheduled_at.unwrap_or_else(Utc::now);
    let pending: Vec<(Uuid, i32)> = post
        .deliveries
        .iter()
        .filter(|delivery| delivery.status == DeliveryStatus::Pending)
        .map(|delivery| (delivery.id, delivery.generation))
        .collect();
    let mut jobs = Vec::with_capacity(pending.len());
    for (delivery_id, generation) in &pending {
        let command = post::Command::Queue { delivery_id: *delivery_id, generation: *generation };
        execute::<Post>(tx, post_id, command, metadata).await?;
        let job = PublishDelivery { post_id, delivery_id: *delivery_id, generation: *generation };
        jobs.push(NewJob::of(&job)?.run_at(run_at));
    }
    queue::enqueue_many(&mut *tx, &jobs).await?;
    Ok(pending.len())
}

/// The scheduler's sweep: queues pending deliveries of scheduled posts due within `horizon`.
/// Each post is handled in its own transaction; a post that changed meanwhile is skipped (the
/// change queued what it needed).
pub async fn queue_due(pool: &sqlx::PgPool, horizon: chrono::Duration, limit: i64) -> Result<usize, anyhow::Error> {
    let posts = sqlx::query_scalar!(
        "SELECT DISTINCT p.id FROM posts p JOIN deliveries d ON d.post_id = p.id
         WHERE p.status IN ('scheduled', 'publishing') AND d.status = 'pending'
           AND coalesce(p.scheduled_at, now()) <= now() + make_interval(secs => $1)
         LIMIT $2",
        horizon.num_seconds() as f64,
        limit
    )
    .fetch_all(pool)
    .await?;
    let metadata = EventMetadata { actor: Some("scheduler".into()), ..EventMetadata::default() };
    let mut queued = 0;
    for post_id in posts {
        let mut tx = pool.begin().await?;
        let (post, _) = load::<Post>(&mut tx, post_id).await?;
        let metadata = EventMetadata { project_id: Some(post.project_id), ..metadata.clone() };
        match queue_pending(&mut tx, post_id, &post, &metadata).await {
            Ok(count) => {
                tx.commit().await?;
                queued += count;
            }
            Err(ExecuteError::Conflict { .. } | ExecuteError::Rejected(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(queued)
}
