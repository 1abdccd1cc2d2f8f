//! What a process says about itself on `/readyz`: where it is in its life, and whether the
//! database (and, for a worker, claiming) works.
//!
//! Liveness (`/healthz`) is only "the process serves requests": restarting a process because
//! PostgreSQL is down would not bring PostgreSQL back. Readiness is the honest one: a process
//! is ready when it has its database, the schema is current and, for a worker, its last claim
//! did not fail. So a worker that cannot claim (the database gone, its pool exhausted) shows
//! as not ready instead of hiding behind a green health check while posts wait.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use crate::db::{self, Readiness};

/// How long `/readyz` waits for the database.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Waiting for PostgreSQL to answer (and migrating).
    WaitingForDatabase = 0,
    /// Doing its work.
    Running = 1,
    /// Shutting down: finishing or giving back what it holds.
    Stopping = 2,
}

/// One process's health, shared by its parts and read by its ops server.
#[derive(Debug)]
pub struct Health {
    stage: AtomicU8,
    pool: OnceLock<PgPool>,
    /// The last claim of any queue failed (a worker only).
    claims_failing: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            stage: AtomicU8::new(Stage::WaitingForDatabase as u8),
            pool: OnceLock::new(),
            claims_failing: AtomicBool::new(false),
        }
    }
}

/// Why a process is not ready: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub code: &'static str,
    pub detail: String,
}

impl NotReady {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

impl Health {
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            0 => Stage::WaitingForDatabase,
            1 => Stage::Running,
            _ => Stage::Stopping,
        }
    }

    /// The database answered and is migrated: the process runs on `pool`.
    pub fn running(&self, pool: &PgPool) {
        let _ = self.pool.set(pool.clone());
        self.stage.store(Stage::Running as u8, Ordering::Relaxed);
    }

    /// The process is shutting down.
    pub fn stopping(&self) {
        self.stage.store(Stage::Stopping as u8, Ordering::Relaxed);
    }

    /// A claim failed (`true`) or succeeded (`false`).
    pub fn claims_failing(&self, failing: bool) {
        self.claims_failing.store(failing, Ordering::Relaxed);
    }

    /// Whether the process is ready, and if not, why.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        match self.stage() {
            Stage::WaitingForDatabase => {
                return Err(NotReady::new("database_unreachable", "waiting for the database at start"));
            }
            Stage::Stopping => return Err(NotReady::new("stopping", "the process is shutting down")),
            Stage::Running => {}
        }
        if self.claims_failing.load(Ordering::Relaxed) {
            return Err(NotReady::new("cannot_claim", "the worker's last claim of jobs failed"));
        }
        let Some(pool) = self.pool.get() else {
            return Err(NotReady::new("database_unreachable", "no database yet"));
        };
        match db::readiness(pool, DATABASE_CHECK_TIMEOUT).await {
            Readiness::Ready => Ok(()),
            Readiness::Unreachable => Err(NotReady::new("database_unreachable", "the database does not answer")),
            Readiness::MigrationsMissing(versions) => Err(NotReady::new(
                "migrations_missing",
                format!("database migrations not applied: {versions:?}; run `herald migrate`"),
            )),
        }
    }
}
