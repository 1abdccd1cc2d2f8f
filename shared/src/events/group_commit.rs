//! Group commit: many callers' appends in one transaction.
//!
//! One transaction per command costs about seven round trips and one WAL flush; under load that,
//! not PostgreSQL's work, is the ceiling (measured by `make bench-ingest`: 5.2k events/s at 64
//! writers one transaction each, against 37k single-row INSERTs/s from pgbench). Here appender
//! tasks take whatever requests are waiting (up to a batch), reserve every stream's versions in
//! one statement, insert every event in one statement, update the read models set-wise and commit
//! once. Each caller still gets its own result: a stream at the wrong version is a conflict for
//! that caller alone, and if the batch fails as a whole, each request is retried on its own so one
//! bad request cannot fail its neighbours.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::store::{NewEvent, append_encoded};
use super::{AppendError, EventMetadata, ExpectedVersion, Projector, RecordedEvent, StreamId};

/// One caller's append, waiting for its batch.
struct Request {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: EventMetadata,
    reply: oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>,
}

/// A handle to the appender tasks. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    sender: mpsc::Sender<Request>,
}

impl GroupCommitter {
    /// Starts `appenders` tasks on `pool`, each committing up to `max_batch` requests at a time
    /// and having `projector` update the read models in each batch's transaction.
    pub fn spawn(pool: PgPool, projector: Arc<dyn Projector>, appenders: usize, max_batch: usize) -> Self {
        let (sender, receiver) = mpsc::channel(max_batch * appenders.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        let appender = Appender { pool, projector };
        for _ in 0..appenders.max(1) {
            tokio::spawn(appender.clone().run(receiver.clone(), max_batch.max(1)));
        }
        Self { sender }
    }

    /// Appends `events` to `stream` if it is at `expected`; resolves once the batch holding them
    /// committed, with the events as recorded (read models already updated).
    pub async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> Result<Vec<RecordedEvent>, AppendError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { stream, expected, events, metadata, reply };
        self.sender.send(request).await.map_err(|_| AppendError::Stopped)?;
        answer.await.map_err(|_| AppendError::Stopped)?
    }
}

/// What an appender task commits with.
#[derive(Clone)]
struct Appender {
    pool: PgPool,
    projector: Arc<dyn Projector>,
}

impl Appender {
    async fn run(self, receiver: Arc<Mutex<mpsc::Receiver<Request>>>, max_batch: usize) {
        let mut deferred: VecDeque<Request> = VecDeque::new();
        loop {
            let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
            batch.extend(deferred.drain(..deferred.len().min(max_batch)));
            {
                let mut receiver = receiver.lock().await;
                if batch.is_empty() {
                    match receiver.recv().await {
                        Some(request) => batch.push(request),
                        None => return,
                    }
                }
                while batch.len() < max_batch {
                    match receiver.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
            }
            // A stream may appear once per batch; later appends to it wait for the next one.
            let mut streams = HashSet::new();
            let (batch, later): (Vec<Request>, Vec<Request>) =
                batch.into_iter().partition(|request| streams.insert(request.stream.clone()));
            deferred.extend(later);
            self.commit_batch(batch).await;
        }
    }

    async fn commit_batch(&self, batch: Vec<Request>) {
        if batch.is_empty() {
            return;
        }
        match self.try_batch(&batch).await {
            Ok(results) => {
                for (request, result) in batch.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(_) => {
                // Something in the batch broke the transaction: give each request its own.
                for request in batch {
                    let result = self.append_alone(&request).await;
                    let _ = request.reply.send(result);
                }
            }
        }
    }

    async fn append_alone(&self, request: &Request) -> Result<Vec<RecordedEvent>, AppendError> {
        let mut tx = self.pool.begin().await?;
        let recorded =
            append_encoded(&mut tx, &request.stream, request.expected, &request.events, &request.metadata).await?;
        self.projector.project(&mut tx, &recorded).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The whole batch in one transaction. Per-request conflicts are results; any other failure
    /// aborts the batch.
    async fn try_batch(&self, batch: &[Request]) -> Result<Vec<Result<Vec<RecordedEvent>, AppendError>>, AppendError> {
        let mut tx = self.pool.begin().await?;
        let reserved = reserve_versions(&mut tx, batch).await?;
        let mut results: Vec<Option<Result<Vec<RecordedEvent>, AppendError>>> = Vec::with_capacity(batch.len());
        let mut accepted = Vec::new();
        let mut conflicted = Vec::new();
        for (index, request) in batch.iter().enumerate() {
            match reserved.get(request.stream.as_str()) {
                Some(last_version) if !request.events.is_empty() => {
                    accepted.push((index, *last_version));
                    results.push(None);
                }
                Some(_) => results.push(Some(Ok(Vec::new()))),
                None => {
                    conflicted.push(index);
                    results.push(None);
                }
            }
        }
        if !conflicted.is_empty() {
            let names: Vec<String> = conflicted.iter().map(|index| batch[*index].stream.to_string()).collect();
            let actual: HashMap<String, i64> =
                sqlx::query!("SELECT stream_id, version FROM streams WHERE stream_id = ANY($1)", &names)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|row| (row.stream_id, row.version))
                    .collect();
            for index in conflicted {
                let request = &batch[index];
                results[index] = Some(Err(AppendError::Conflict {
                    stream: request.stream.to_string(),
                    expected: request.expected,
                    actual: actual.get(request.stream.as_str()).copied(),
                }));
            }
        }
        let recorded = insert_events(&mut tx, batch, &accepted).await?;
        self.projector.project(&mut tx, &recorded.iter().flatten().cloned().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        for ((index, _), events) in accepted.iter().zip(recorded) {
            results[*index] = Some(Ok(events));
        }
        Ok(results.into_iter().map(|result| result.unwrap_or_else(|| Ok(Vec::new()))).collect())
    }
}

/// Moves every stream of the batch by its count of events, each by its own rule; returns the new
/// last version of every stream that moved.
async fn reserve_versions(tx: &mut PgConnection, batch: &[Request]) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut reserved = HashMap::new();
    let count = |request: &Request| i64::try_from(request.events.len()).unwrap_or(i64::MAX);
    let new: Vec<&Request> = batch.iter().filter(|request| request.expected == ExpectedVersion::NoStream).collect();
    if !new.is_empty() {
        let names: Vec<String> = new.iter().map(|request| request.stream.to_string()).collect();
        let counts: Vec<i64> = new.iter().map(|request| count(request)).collect();
        for row in sqlx::query!(
            r#"INSERT INTO streams (stream_id, version) SELECT * FROM unnest($1::text[], $2::bigint[])
               ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id, version"#,
            &names,
            &counts,
        )
        .fetch_all(&mut *tx)
        .await?
        {
            reserved.insert(row.stream_id, row.version);
        }
    }
    let exact: Vec<(&Request, i64)> = batch
        .iter()
        .filter_map(|request| match request.expected {
            ExpectedVersion::Exact(version) => Some((request, version)),
            ExpectedVersion::NoStream => None,
        })
        .collect();
    if !exact.is_empty() {
        let names: Vec<String> = exact.iter().map(|(request, _)| request.stream.to_string()).collect();
        let expected: Vec<i64> = exact.iter().map(|(_, version)| *version).collect();
        let counts: Vec<i64> = exact.iter().map(|(request, _)| count(request)).collect();
        for row in sqlx::query!(
            r#"UPDATE streams s SET version = s.version + v.n
               FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(stream_id, expected, n)
               WHERE s.stream_id = v.stream_id AND s.version = v.expected
               RETURNING s.stream_id, s.version"#,
            &names,
            &expected,
            &counts,
        )
        .fetch_all(&mut *tx)
        .await?
        {
            reserved.insert(row.stream_id, row.version);
        }
    }
    Ok(reserved)
}

/// Inserts the accepted requests' events in one statement; returns them per request, in order.
async fn insert_events(
    tx: &mut PgConnection,
    batch: &[Request],
    accepted: &[(usize, i64)],
) -> Result<Vec<Vec<RecordedEvent>>, AppendError> {
    let mut streams = Vec::new();
    let mut versions = Vec::new();
    let mut types = Vec::new();
    let mut schema_versions = Vec::new();
    let mut payloads = Vec::new();
    let mut metadata = Vec::new();
    let mut projects = Vec::new();
    for (index, last_version) in accepted {
        let request = &batch[*index];
        let first_version = last_version - i64::try_from(request.events.len()).unwrap_or(i64::MAX) + 1;
        let metadata_json = serde_json::to_value(&request.metadata)?;
        for (offset, event) in request.events.iter().enumerate() {
            streams.push(request.stream.to_string());
            versions.push(first_version + i64::try_from(offset).unwrap_or(i64::MAX));
            types.push(event.event_type.clone());
            schema_versions.push(event.schema_version);
            payloads.push(event.payload.clone());
            metadata.push(metadata_json.clone());
            projects.push(request.metadata.project_id);
        }
    }
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        r#"INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata, project_id)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::jsonb[], $6::jsonb[], $7::uuid[])
           RETURNING stream_id, version, position, recorded_at, transaction_id::text::bigint AS "transaction_id!""#,
        &streams,
        &versions,
        &types,
        &schema_versions,
        &payloads,
        &metadata,
        &projects as &[Option<uuid::Uuid>],
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut rows: HashMap<(String, i64), _> =
        rows.into_iter().map(|row| ((row.stream_id.clone(), row.version), row)).collect();
    let mut per_request = Vec::with_capacity(accepted.len());
    let mut cursor = 0;
    for (index, _) in accepted {
        let request = &batch[*index];
        let mut recorded = Vec::with_capacity(request.events.len());
        for event in &request.events {
            let row = rows.remove(&(streams[cursor].clone(), versions[cursor])).ok_or(AppendError::Lost)?;
            recorded.push(RecordedEvent {
                position: row.position,
                stream_id: streams[cursor].clone(),
                version: versions[cursor],
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                payload: event.payload.clone(),
                metadata: metadata[cursor].clone(),
                project_id: projects[cursor],
                recorded_at: row.recorded_at,
                transaction_id: row.transaction_id,
            });
            cursor += 1;
        }
        per_request.push(recorded);
    }
    Ok(per_request)
}
