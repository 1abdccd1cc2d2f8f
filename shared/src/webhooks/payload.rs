//! The bodies of webhook messages: `{"type", "timestamp", "data"}` (the Standard Webhooks
//! envelope), where `data` holds the event (`id`, `type`, `position`, `stream`, `recorded_at`)
//! and what it concerns as the api shows it (`post`, with `delivery` for a delivery's message,
//! `account`, `connect_session`, `media`, `key`, `endpoint`). Resources are loaded when the
//! message is made, so they show the state just after the event (or later, when the dispatcher
//! is behind); a resource that is gone by then is named by its id only.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::catalog::{Concern, Planned};
use crate::Config;
use crate::events::RecordedEvent;
use crate::views;

/// What rendering a resource needs beyond the database: media URLs are signed.
#[derive(Clone)]
pub struct PayloadContext {
    pub config: std::sync::Arc<Config>,
    pub media_url_key: [u8; 32],
}

/// The body of each of `messages` (of `project_id`'s events), in order.
pub async fn bodies(
    pool: &PgPool,
    context: &PayloadContext,
    project_id: Uuid,
    messages: &[(&RecordedEvent, &Planned)],
) -> Result<Vec<Value>, sqlx::Error> {
    let Resources { loaded, deliveries } = load(pool, context, project_id, messages).await?;
    let resource = |id: Uuid| loaded.get(&id).cloned().unwrap_or_else(|| json!({ "id": id }));
    Ok(messages
        .iter()
        .map(|(event, planned)| {
            let mut data = serde_json::Map::new();
            data.insert(
                "event".into(),
                json!({
                    "id": planned.webhook_id, "type": event.event_type, "position": event.position,
                    "stream": event.stream_id, "recorded_at": event.recorded_at,
                }),
            );
            match planned.concern {
                Concern::Post(id) => {
                    data.insert("post".into(), resource(id));
                }
                Concern::Delivery { post_id, delivery_id } => {
                    data.insert("post".into(), resource(post_id));
                    let delivery =
                        deliveries.get(&delivery_id).cloned().unwrap_or_else(|| json!({ "id": delivery_id }));
                    data.insert("delivery".into(), delivery);
                }
                Concern::Account(id) => {
                    data.insert("account".into(), resource(id));
                }
                Concern::Connect(id) => {
                    data.insert("connect_session".into(), resource(id));
                }
                Concern::Media(id) => {
                    data.insert("media".into(), resource(id));
                }
                Concern::Key(id) => {
                    data.insert("key".into(), resource(id));
                }
                Concern::Endpoint(id) => {
                    data.insert("endpoint".into(), resource(id));
                }
            }
            json!({ "type": planned.event_type, "timestamp": event.recorded_at, "data": data })
        })
        .collect())
}

/// The resources messages name, as the api shows them, by id; and each delivery of the posts.
struct Resources {
    loaded: HashMap<Uuid, Value>,
    deliveries: HashMap<Uuid, Value>,
}

async fn load(
    pool: &PgPool,
    context: &PayloadContext,
    project_id: Uuid,
    messages: &[(&RecordedEvent, &Planned)],
) -> Result<Resources, sqlx::Error> {
    let mut wanted: HashMap<&'static str, Vec<Uuid>> = HashMap::new();
    for (_, planned) in messages {
        let (kind, id) = match planned.concern {
            Concern::Post(id) | Concern::Delivery { post_id: id, .. } => ("post", id),
            Concern::Account(id) => ("account", id),
            Concern::Connect(id) => ("connect", id),
            Concern::Media(id) => ("media", id),
            Concern::Key(id) => ("key", id),
            Concern::Endpoint(id) => ("endpoint", id),
        };
        wanted.entry(kind).or_default().push(id);
    }
    let ids = |kind: &str| {
        let mut ids = wanted.get(kind).cloned().unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut loaded: HashMap<Uuid, Value> = HashMap::new();
    let mut deliveries: HashMap<Uuid, Value> = HashMap::new();
    for post in views::posts::load_many(pool, project_id, &ids("post")).await? {
        let mut value = serde_json::to_value(&post).unwrap_or(Value::Null);
        for delivery in value.get("deliveries").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = delivery.get("id").and_then(Value::as_str).and_then(|id| id.parse().ok()) {
                deliveries.insert(id, delivery.clone());
            }
        }
        loaded.insert(post.id, value.take());
    }
    for account in views::accounts::load_many(pool, project_id, &ids("account")).await? {
        loaded.insert(account.id, serde_json::to_value(&account).unwrap_or(Value::Null));
    }
    for key in views::keys::load_many(pool, project_id, &ids("key")).await? {
        loaded.insert(key.id, serde_json::to_value(&key).unwrap_or(Value::Null));
    }
    for row in views::media::load_many(pool, project_id, &ids("media")).await? {
        let id = row.id;
        let view = row.view(&context.config, &context.media_url_key);
        loaded.insert(id, serde_json::to_value(&view).unwrap_or(Value::Null));
    }
    for session in sqlx::query!(
        "SELECT id, platform, status, external_id, error, account_ids FROM connect_sessions
         WHERE id = ANY($1) AND project_id = $2",
        &ids("connect"),
        project_id
    )
    .fetch_all(pool)
    .await?
    {
        let value = json!({
            "id": session.id, "platform": session.platform, "status": session.status,
            "external_id": session.external_id, "error": session.error, "account_ids": session.account_ids,
        });
        loaded.insert(session.id, value);
    }
    for endpoint in sqlx::query!(
        "SELECT id, url, description, enabled, disabled_reason FROM webhook_endpoints WHERE id = ANY($1) AND project_id = $2",
        &ids("endpoint"),
        project_id
    )
    .fetch_all(pool)
    .await?
    {
        let value = json!({
            "id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "enabled": endpoint.enabled, "disabled_reason": endpoint.disabled_reason,
        });
        loaded.insert(endpoint.id, value);
    }
    Ok(Resources { loaded, deliveries })
}
