//! The jobs herald runs, as payloads. The api and the scheduler enqueue them; a worker
//! (`herald_worker::jobs`) performs them. A payload is the job's whole input: a worker loads
//! anything else it needs, so a job that waited an hour acts on the state of now.

use serde::{Deserialize, Serialize};

use crate::queue::Job;

/// Deletes what has outlived its use: finished jobs older than the retention window
/// (`HERALD_QUEUE__RETENTION_HOURS`) and `Idempotency-Key` records older than 24 hours. The
/// scheduler enqueues one every few minutes; its dedup key keeps replicas from piling up copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneExpired {}

impl Job for PruneExpired {
    const KIND: &'static str = "maintenance.prune";
    const QUEUE: &'static str = "maintenance";
    const MAX_ATTEMPTS: i32 = 3;

    fn dedup_key(&self) -> Option<String> {
        Some(Self::KIND.to_owned())
    }
}
