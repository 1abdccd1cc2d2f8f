//! herald's core, shared by every role: settings, the database, encryption, telemetry and the
//! process plumbing. It knows nothing of HTTP handlers or job runners (those live in `api/`,
//! `worker/` and `scheduler/`).

pub mod abandoned;
pub mod batch;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod events;
pub mod heartbeat;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod notify;
pub mod platforms;
pub mod posts;
pub mod projections;
pub mod queue;
pub mod rate_limit;
pub mod retention;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
