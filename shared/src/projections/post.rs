//! `posts` and `deliveries` from the post stream.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ProjectionError, stream_uuid};
use crate::domain::post::{DeliveryStatus, Event, Target};
use crate::events::{DomainEvent, RecordedEvent};

/// The event type [`insert_created`] handles.
pub const CREATED: &str = "post.created";

/// Inserts the `posts` and `deliveries` rows of many `post.created` events in two statements.
pub async fn insert_created(tx: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut posts = PostRows::default();
    let mut deliveries = DeliveryRows::default();
    for recorded in events {
        let post_id = stream_uuid(&recorded.stream_id)?;
        let Event::Created { project_id, content, targets, scheduled_at, status, requires_approval, external_id } =
            Event::decode(&recorded.event_type, recorded.schema_version, recorded.payload.clone())?
        else {
            return Err(ProjectionError::Invalid("expected post.created"));
        };
        deliveries.push(post_id, project_id, &content, &targets, 1, recorded.recorded_at);
        posts.ids.push(post_id);
        posts.projects.push(project_id);
        posts.statuses.push(status.as_str().to_owned());
        posts.contents.push(content);
        posts.external_ids.push(external_id);
        posts.scheduled.push(scheduled_at);
        posts.approvals.push(requires_approval);
        posts.recorded.push(recorded.recorded_at);
    }
    sqlx::query!(
        "INSERT INTO posts (id, project_id, status, content, external_id, scheduled_at, requires_approval,
                            generation, created_at, updated_at)
         SELECT id, project_id, status, content, external_id, scheduled_at, requires_approval, 1, recorded_at, recorded_at
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bool[],
                     $8::timestamptz[])
              AS p(id, project_id, status, content, external_id, scheduled_at, requires_approval, recorded_at)",
        &posts.ids,
        &posts.projects,
        &posts.statuses,
        &posts.contents,
        &posts.external_ids as &[Option<String>],
        &posts.scheduled as &[Option<DateTime<Utc>>],
        &posts.approvals,
        &posts.recorded,
    )
    .execute(&mut *tx)
    .await?;
    deliveries.insert(tx).await?;
    Ok(())
}

#[derive(Default)]
struct PostRows {
    ids: Vec<Uuid>,
    projects: Vec<Uuid>,
    statuses: Vec<String>,
    contents: Vec<String>,
    external_ids: Vec<Option<String>>,
    scheduled: Vec<Option<DateTime<Utc>>>,
    approvals: Vec<bool>,
    recorded: Vec<DateTime<Utc>>,
}

/// `deliveries` rows to insert in one statement.
#[derive(Default)]
struct DeliveryRows {
    ids: Vec<Uuid>,
    posts: Vec<Uuid>,
    projects: Vec<Uuid>,
    accounts: Vec<Uuid>,
    contents: Vec<String>,
    options: Vec<Value>,
    generations: Vec<i32>,
    recorded: Vec<DateTime<Utc>>,
}

impl DeliveryRows {
    fn push(
        &mut self,
        post_id: Uuid,
        project_id: Uuid,
        post_content: &str,
        targets: &[Target],
        generation: i32,
        at: DateTime<Utc>,
    ) {
        for target in targets {
            self.ids.push(target.delivery_id);
            self.posts.push(post_id);
            self.projects.push(project_id);
            self.accounts.push(target.account_id);
            self.contents.push(target.content.clone().unwrap_or_else(|| post_content.to_owned()));
            self.options.push(if target.options.is_null() {
                Value::Object(Default::default())
            } else {
                target.options.clone()
            });
            self.generations.push(generation);
            self.recorded.push(at);
        }
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO deliveries (id, post_id, project_id, account_id, content, options, status, generation, updated_at)
             SELECT id, post_id, project_id, account_id, content, options, 'pending', generation, updated_at
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::jsonb[], $7::int[],
                         $8::timestamptz[])
                  AS d(id, post_id, project_id, account_id, content, options, generation, updated_at)",
            &self.ids,
            &self.posts,
            &self.projects,
            &self.accounts,
            &self.contents,
            &self.options,
            &self.generations,
            &self.recorded,
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}

pub async fn apply(tx: &mut PgConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
    let post_id = stream_uuid(&recorded.stream_id)?;
    let at = recorded.recorded_at;
    let event = Event::decode(&recorded.event_type, recorded.schema_version, recorded.payload.clone())?;
    match event {
        Event::Created { .. } => insert_created(tx, &[recorded]).await?,
        Event::Updated { content, targets, scheduled_at, generation } => {
            let project_id = sqlx::query_scalar!(
                "UPDATE posts SET content = $2, scheduled_at = $3, generation = $4, updated_at = $5 WHERE id = $1
                 RETURNING project_id",
                post_id,
                content,
                scheduled_at,
                generation,
                at,
            )
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query!("DELETE FROM deliveries WHERE post_id = $1", post_id).execute(&mut *tx).await?;
            let mut rows = DeliveryRows::default();
            rows.push(post_id, project_id, &content, &targets, generation, at);
            rows.insert(tx).await?;
        }
        Event::Approved { status } => {
            sqlx::query!(
                "UPDATE posts SET status = $2, approved_at = $3, updated_at = $3 WHERE id = $1",
                post_id,
                status.as_str(),
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::PublishRequested { scheduled_at, status } => {
            sqlx::query!(
                "UPDATE posts SET status = $2, scheduled_at = $3, updated_at = $4 WHERE id = $1",
                post_id,
                status.as_str(),
                scheduled_at,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::Canceled { delivery_ids, status } => {
            set_delivery_status(tx, &delivery_ids, DeliveryStatus::Canceled, at).await?;
            set_post_status(tx, post_id, status.as_str(), at).await?;
        }
        Event::Retried { delivery_ids, generation, scheduled_at } => {
            sqlx::query!(
                "UPDATE deliveries SET status = 'pending', generation = $2, updated_at = $3 WHERE id = ANY($1)",
                &delivery_ids,
                generation,
                at,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE posts SET status = 'publishing', generation = $2, scheduled_at = $3, updated_at = $4 WHERE id = $1",
                post_id,
                generation,
                scheduled_at,
                at,
            )
            .execute(&mut *tx)
            .await?;
        }
        Event::DeliveryQueued { delivery_id, .. } => {
            set_delivery_status(tx, &[delivery_id], DeliveryStatus::Queued, at).await?;
        }
        Event::DeliveryPublishing { delivery_id, attempt } => {
            sqlx::query!(
                "UPDATE deliveries SET status = 'publishing', attempts = $2, updated_at = $3 WHERE id = $1",
                delivery_id,
                attempt,
                at,
            )
            .execute(&mut *tx)
            .await?;
            set_post_status(tx, post_id, "publishing", at).await?;
        }
        Event::DeliveryPublished { delivery_id, platform_post_id, platform_url, published_at, post_status } => {
            sqlx::query!(
                "UPDATE deliveries SET status = 'published', platform_post_id = $2, platform_url = $3,
                        published_at = $4, updated_at = $5
                 WHERE id = $1",
                delivery_id,
                platform_post_id,
                platform_url,
                published_at,
                at,
            )
            .execute(&mut *tx)
            .await?;
            set_post_status(tx, post_id, post_status.as_str(), at).await?;
        }
        Event::DeliveryRetrying { delivery_id, error, .. } => {
            set_delivery_error(tx, delivery_id, DeliveryStatus::Queued, serde_json::to_value(error)?, at).await?;
        }
        Event::DeliveryFailed { delivery_id, error, post_status } => {
            set_delivery_error(tx, delivery_id, DeliveryStatus::Failed, serde_json::to_value(error)?, at).await?;
            set_post_status(tx, post_id, post_status.as_str(), at).await?;
        }
        Event::DeliveryUnknown { delivery_id, error, post_status } => {
            set_delivery_error(tx, delivery_id, DeliveryStatus::Unknown, serde_json::to_value(error)?, at).await?;
            set_post_status(tx, post_id, post_status.as_str(), at).await?;
        }
    }
    Ok(())
}

async fn set_delivery_status(
    tx: &mut PgConnection,
    ids: &[Uuid],
    status: DeliveryStatus,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE deliveries SET status = $2, updated_at = $3 WHERE id = ANY($1)", ids, status.as_str(), at)
        .execute(tx)
        .await?;
    Ok(())
}

async fn set_delivery_error(
    tx: &mut PgConnection,
    id: Uuid,
    status: DeliveryStatus,
    error: Value,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE deliveries SET status = $2, last_error = $3, updated_at = $4 WHERE id = $1",
        id,
        status.as_str(),
        error,
        at,
    )
    .execute(tx)
    .await?;
    Ok(())
}

async fn set_post_status(
    tx: &mut PgConnection,
    post_id: Uuid,
    status: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE posts SET status = $2, updated_at = $3 WHERE id = $1", post_id, status, at)
        .execute(tx)
        .await?;
    Ok(())
}
