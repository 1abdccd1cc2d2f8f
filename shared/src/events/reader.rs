//! Reading the log in order, never skipping.
//!
//! Positions come from an identity column, assigned at insert; two concurrent appends can commit
//! in the opposite order. A reader that went by position alone could read position 12, move its
//! cursor past it, and never see position 11 when that commits a moment later.
//!
//! So readers order by `(transaction_id, position)` and read only events whose transaction is
//! older than the snapshot's `xmin`: every such transaction has finished, so nothing can appear
//! below the horizon any more, and the order below it is final. The price is that a
//! long-running transaction holds the horizon back (readers wait; nothing is lost).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::RecordedEvent;

/// Where a reader stands: after the event with this transaction id and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub transaction_id: i64,
    pub position: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor { transaction_id: 0, position: 0 };

    /// The cursor just after `event`.
    pub fn after(event: &RecordedEvent) -> Self {
        Cursor { transaction_id: event.transaction_id, position: event.position }
    }

    /// An opaque, URL-safe form for clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.transaction_id, self.position))
    }

    /// Reads a cursor made by [`Cursor::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (transaction_id, position) = text.split_once('.')?;
        let cursor = Cursor { transaction_id: transaction_id.parse().ok()?, position: position.parse().ok()? };
        (cursor.transaction_id >= 0 && cursor.position >= 0).then_some(cursor)
    }
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this project's events.
    pub project_id: Option<Uuid>,
    /// Only these event types.
    pub event_types: Option<Vec<String>>,
}

/// Up to `limit` events after `cursor`, in log order, below the safe horizon.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    cursor: Cursor,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as!(
        RecordedEvent,
        r#"SELECT position, stream_id, version, event_type, schema_version, payload, metadata, project_id,
                  recorded_at, transaction_id::text::bigint AS "transaction_id!"
           FROM events
           WHERE (transaction_id, position) > ($1::text::xid8, $2)
             AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
             AND ($3::uuid IS NULL OR project_id = $3)
             AND ($4::text[] IS NULL OR event_type = ANY($4))
           ORDER BY transaction_id, position
           LIMIT $5"#,
        cursor.transaction_id.to_string(),
        cursor.position,
        filter.project_id,
        filter.event_types.as_deref(),
        limit,
    )
    .fetch_all(executor)
    .await
}

/// Waits until every transaction that had begun when this was called has finished, so that
/// [`read_after`] sees everything committed before the call: "read your own writes" for a reader.
///
/// The horizon is cluster-wide: a transaction in *another database* of the same server holds it
/// back too. Returns `false` if the horizon has not passed within `timeout` (a transaction is
/// stuck open somewhere).
pub async fn wait_for_horizon(pool: &PgPool, timeout: Duration) -> Result<bool, sqlx::Error> {
    let target: String = sqlx::query_scalar!(r#"SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS "xmax!""#)
        .fetch_one(pool)
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let passed = sqlx::query_scalar!(
            r#"SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8 AS "passed!""#,
            target
        )
        .fetch_one(pool)
        .await?;
        if passed {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { transaction_id: 812, position: 40_001 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("-1.5")), None);
    }
}
