//! Read models, kept by one dispatcher inside the append's transaction.
//!
//! [`ReadModels`] is the [`Projector`] the event store and the group committer are handed; it
//! routes each recorded event to its aggregate's projection ([`apply`]). Every timestamp a read model
//! holds comes from the event (`recorded_at`), never from the clock, so `herald projections
//! rebuild` reproduces every row exactly.

mod account;
mod api_key;
mod connect_session;
mod media;
mod oauth_app;
mod post;
mod project;
pub mod rebuild;
mod webhook;

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::domain::aggregate::Aggregate;
use crate::domain::{account::Account, api_key::ApiKey, connect_session::ConnectSession, oauth_app::OAuthApp};
use crate::domain::{media_item::Media, post::Post, project::Project, webhook::WebhookEndpoint};
use crate::events::{ProjectionFailed, Projector, RecordedEvent};

/// Every read model herald keeps, as one [`Projector`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadModels;

#[async_trait]
impl Projector for ReadModels {
    async fn project(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionFailed> {
        apply_all(tx, events).await.map_err(|error| ProjectionFailed(Box::new(error)))
    }
}

/// Updates the read models for one recorded event.
pub async fn apply(tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let kind = event.stream_id.split_once(':').map_or("", |(kind, _)| kind);
    match kind {
        Project::KIND => project::apply(tx, event).await,
        ApiKey::KIND => api_key::apply(tx, event).await,
        OAuthApp::KIND => oauth_app::apply(tx, event).await,
        ConnectSession::KIND => connect_session::apply(tx, event).await,
        Account::KIND => account::apply(tx, event).await,
        Post::KIND => post::apply(tx, event).await,
        Media::KIND => media::apply(tx, event).await,
        WebhookEndpoint::KIND => webhook::apply(tx, event).await,
        other => Err(ProjectionError::UnknownStream(other.to_owned())),
    }
}

/// Updates the read models for `events`, in order, applying runs of `post.created` and of
/// `delivery.*` events set-wise (the hot paths of a busy api and a busy worker; see the group
/// committer). A run of delivery changes ends where a delivery or a post repeats, so every row
/// still sees its events in order.
async fn apply_all(tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let mut created_posts: Vec<&RecordedEvent> = Vec::new();
    let mut delivery_changes = DeliveryRun::default();
    for event in events {
        if event.event_type == post::CREATED {
            delivery_changes.flush(tx).await?;
            created_posts.push(event);
            continue;
        }
        post::insert_created(tx, &created_posts).await?;
        created_posts.clear();
        match post::delivery_change(event)? {
            Some(change) => delivery_changes.push(tx, change).await?,
            None => {
                delivery_changes.flush(tx).await?;
                apply(tx, event).await?;
            }
        }
    }
    post::insert_created(tx, &created_posts).await?;
    delivery_changes.flush(tx).await?;
    Ok(())
}

/// Delivery changes waiting to be applied together, each delivery and post at most once.
#[derive(Default)]
struct DeliveryRun {
    changes: Vec<post::DeliveryChange>,
    rows: HashSet<uuid::Uuid>,
}

impl DeliveryRun {
    async fn push(&mut self, tx: &mut PgConnection, change: post::DeliveryChange) -> Result<(), sqlx::Error> {
        if self.rows.contains(&change.delivery_id) || self.rows.contains(&change.post_id) {
            self.flush(tx).await?;
        }
        self.rows.extend([change.delivery_id, change.post_id]);
        self.changes.push(change);
        Ok(())
    }

    async fn flush(&mut self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        post::apply_delivery_changes(tx, &self.changes).await?;
        self.changes.clear();
        self.rows.clear();
        Ok(())
    }
}

/// A projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("no projection for streams of kind {0:?}")]
    UnknownStream(String),
    #[error("stored event is invalid: {0}")]
    Invalid(&'static str),
    #[error("stored event could not be decoded")]
    Decode(#[from] serde_json::Error),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// The uuid of a `<kind>:<uuid>` stream.
fn stream_uuid(stream_id: &str) -> Result<uuid::Uuid, ProjectionError> {
    crate::events::StreamId::parse(stream_id)
        .map(|(_, id)| id)
        .ok_or_else(|| ProjectionError::UnknownStream(stream_id.to_owned()))
}
