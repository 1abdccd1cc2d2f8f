//! Which webhook messages an event of the log makes: the types a client can subscribe to, and
//! the mapping from the log's event types to them.

use serde_json::Value;
use uuid::Uuid;

use crate::events::{RecordedEvent, StreamId};

/// Every type an endpoint can ask for, and what it means.
pub const TYPES: &[(&str, &str)] = &[
    ("post.published", "every target of a post is published"),
    ("post.partial", "a post ended with some targets published and some not"),
    ("post.failed", "a post ended with no target published"),
    ("post.canceled", "a post was canceled before any target was published"),
    ("delivery.published", "one target of a post is published"),
    ("delivery.failed", "one target of a post failed for good"),
    ("delivery.unknown", "herald cannot tell whether one target was published (it will not try again by itself)"),
    ("account.connected", "an account was connected or reconnected"),
    ("account.needs_reconnect", "an account's grant stopped working: its user must connect it again"),
    ("account.disconnected", "an account was disconnected"),
    ("connect.failed", "a connect flow failed or was denied"),
    ("media.ready", "a media item's bytes are stored and it can be attached"),
    ("media.failed", "a media import failed"),
    ("key.revoked", "an API key was revoked"),
    ("endpoint.disabled", "a webhook endpoint was disabled (it answered 410, or failed for days)"),
    ("webhook.test", "a test message asked for with POST /v1/webhooks/{id}/test"),
];

/// Whether `name` is one of [`TYPES`].
pub fn is_known(name: &str) -> bool {
    TYPES.iter().any(|(known, _)| *known == name)
}

/// What a message is about, to load it as the api shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concern {
    Post(Uuid),
    Delivery { post_id: Uuid, delivery_id: Uuid },
    Account(Uuid),
    Connect(Uuid),
    Media(Uuid),
    Key(Uuid),
    Endpoint(Uuid),
}

/// One message an event makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// One of [`TYPES`].
    pub event_type: &'static str,
    /// The `webhook-id` header: the event's, and the same on every attempt, replay or resend.
    pub webhook_id: String,
    pub concern: Concern,
    /// Only this endpoint hears it (a `webhook.test`).
    pub only_endpoint: Option<Uuid>,
}

/// The messages `event` makes, in order (a delivery's before the post's it completes).
pub fn plan(event: &RecordedEvent) -> Vec<Planned> {
    let Some((_, id)) = StreamId::parse(&event.stream_id) else { return Vec::new() };
    let own = format!("evt_{}", event.position);
    let one = |event_type: &'static str, concern: Concern| {
        vec![Planned { event_type, webhook_id: own.clone(), concern, only_endpoint: None }]
    };
    let post_outcome = |planned: &mut Vec<Planned>, status: Option<&str>| {
        let event_type = match status {
            Some("published") => "post.published",
            Some("partial") => "post.partial",
            Some("failed") => "post.failed",
            Some("canceled") => "post.canceled",
            _ => return,
        };
        planned.push(Planned {
            event_type,
            webhook_id: format!("{own}_post"),
            concern: Concern::Post(id),
            only_endpoint: None,
        });
    };
    let payload = &event.payload;
    let post_status = payload.get("post_status").and_then(Value::as_str);
    match event.event_type.as_str() {
        kind @ ("delivery.published" | "delivery.failed" | "delivery.unknown") => {
            let Some(delivery_id) = uuid_at(payload, "delivery_id") else { return Vec::new() };
            let event_type = match kind {
                "delivery.published" => "delivery.published",
                "delivery.failed" => "delivery.failed",
                _ => "delivery.unknown",
            };
            let mut planned = one(event_type, Concern::Delivery { post_id: id, delivery_id });
            post_outcome(&mut planned, post_status);
            planned
        }
        "post.canceled" => {
            let mut planned = Vec::new();
            post_outcome(&mut planned, payload.get("status").and_then(Value::as_str));
            // Its only message, so it keeps the event's own id.
            for message in &mut planned {
                message.webhook_id = own.clone();
            }
            planned
        }
        "account.connected" | "account.reconnected" => one("account.connected", Concern::Account(id)),
        "account.needs_reconnect" => one("account.needs_reconnect", Concern::Account(id)),
        "account.disconnected" => one("account.disconnected", Concern::Account(id)),
        "connect.failed" | "connect.denied" => one("connect.failed", Concern::Connect(id)),
        "media.uploaded" | "media.imported" => one("media.ready", Concern::Media(id)),
        "media.import_failed" => one("media.failed", Concern::Media(id)),
        "key.revoked" => one("key.revoked", Concern::Key(id)),
        "webhook.disabled" => one("endpoint.disabled", Concern::Endpoint(id)),
        "webhook.tested" => vec![Planned {
            event_type: "webhook.test",
            webhook_id: own,
            concern: Concern::Endpoint(id),
            only_endpoint: Some(id),
        }],
        _ => Vec::new(),
    }
}

fn uuid_at(payload: &Value, field: &str) -> Option<Uuid> {
    payload.get(field)?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn event(position: i64, stream: &str, event_type: &str, payload: Value) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: stream.to_owned(),
            version: 1,
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload,
            metadata: json!({}),
            project_id: None,
            recorded_at: Utc::now(),
            transaction_id: 1,
        }
    }

    #[test]
    fn the_delivery_that_ends_a_post_makes_its_own_message_then_the_posts() {
        let post = Uuid::now_v7();
        let delivery = Uuid::now_v7();
        let payload = json!({"delivery_id": delivery, "post_status": "partial"});
        let planned = plan(&event(7, &format!("post:{post}"), "delivery.failed", payload));
        let types: Vec<_> = planned.iter().map(|p| (p.event_type, p.webhook_id.as_str())).collect();
        assert_eq!(types, vec![("delivery.failed", "evt_7"), ("post.partial", "evt_7_post")]);
        let payload = json!({"delivery_id": delivery, "post_status": "publishing"});
        assert_eq!(plan(&event(8, &format!("post:{post}"), "delivery.published", payload)).len(), 1);
    }

    #[test]
    fn every_planned_type_is_in_the_catalog_and_unheard_events_make_nothing() {
        let id = Uuid::now_v7();
        for (stream, event_type) in [
            ("account", "account.reconnected"),
            ("connect", "connect.denied"),
            ("media", "media.imported"),
            ("key", "key.revoked"),
            ("webhook", "webhook.disabled"),
            ("webhook", "webhook.tested"),
        ] {
            let planned = plan(&event(1, &format!("{stream}:{id}"), event_type, json!({})));
            assert_eq!(planned.len(), 1, "{event_type}");
            assert!(is_known(planned[0].event_type));
        }
        assert!(plan(&event(1, &format!("post:{id}"), "post.created", json!({}))).is_empty());
        assert!(plan(&event(1, &format!("account:{id}"), "account.token_refreshed", json!({}))).is_empty());
    }
}
