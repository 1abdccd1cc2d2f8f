//! `GET /v1/events`: the project's events in log order, from the safe reader (no gaps, no
//! repeats), with an opaque cursor. Hashes of keys never leave the server, even in the feed.

use axum::extract::State;
use chrono::{DateTime, Utc};
use herald_shared::events::reader::{Cursor, Filter, read_after};
use herald_shared::reach::{FeedReach, without_secrets};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, page_limit};
use crate::extract::{ApiJson, ApiQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(feed))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// A cursor from this feed; absent: from the beginning.
    after: Option<String>,
    /// Comma-separated event types, e.g. `post.created,delivery.published`.
    types: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One event of the project.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
struct FeedEvent {
    /// The event's place in the log.
    position: i64,
    r#type: String,
    stream: String,
    version: i64,
    recorded_at: DateTime<Utc>,
    payload: Value,
    /// Pass as `after` to read on from here.
    cursor: String,
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventPage)]
struct Feed {
    data: Vec<FeedEvent>,
    /// Where to go on from; the same as `after` when nothing new has arrived.
    next_cursor: String,
}

/// Read the project's event feed.
///
/// The project's events in log order, without gaps or repeats, as far as the key may read what
/// they are about (a post's events only when every target is within reach, an account's when it
/// is, a key's when it lies within this key's reach). Needs `events:read`. Poll with
/// the last `next_cursor`: an empty page means nothing new yet.
#[utoipa::path(get, operation_id = "listEvents", security(("api_key" = ["events:read"])), path = "/v1/events", tag = "events", params(FeedQuery),
    responses((status = 200, description = "A page of events", body = Feed)))]
async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<ApiJson<Feed>, ApiError> {
    let cursor = match query.after.as_deref() {
        None | Some("") => Cursor::START,
        Some(text) => Cursor::decode(text).ok_or_else(|| {
            ApiError::validation(vec![FieldError {
                field: "after".into(),
                message: "not a cursor from this feed".into(),
            }])
        })?,
    };
    let limit = page_limit(query.limit, 100, 1000)?;
    let event_types = query
        .types
        .as_deref()
        .map(|types| types.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect());
    let filter = Filter { project_id: Some(caller.project_id), event_types };
    // Read on past what the key may not see until the page is full or the log is read to the
    // safe horizon; the cursor moves past the unseen events too, so none is looked at twice.
    let mut shown = Vec::new();
    let mut next_cursor = cursor;
    'reading: loop {
        let events =
            read_after(&state.pool, next_cursor, &filter, limit).await.map_err(|error| ApiError::internal(&error))?;
        let exhausted = events.len() < limit as usize;
        let reach = FeedReach::of(&state.pool, &caller.reach(), &events).await?;
        for event in events {
            next_cursor = Cursor::after(&event);
            if reach.shows(&event) {
                let payload = reach.redact(without_secrets(event.payload));
                shown.push(FeedEvent {
                    position: event.position,
                    r#type: event.event_type,
                    stream: event.stream_id,
                    version: event.version,
                    recorded_at: event.recorded_at,
                    payload,
                    cursor: next_cursor.encode(),
                });
                if shown.len() == limit as usize {
                    break 'reading;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(ApiJson(Feed { data: shown, next_cursor: next_cursor.encode() }))
}
