//! herald's core, shared by every role. It knows nothing of HTTP handlers or job runners (those
//! live in `api/`, `worker/` and `scheduler/`).
//!
//! # Layers
//! Four layers, each using only the ones below it (a lower layer never imports a higher one):
//!
//! 1. **Domain and settings**, no I/O: [`domain`] (the pure aggregates and value types) and
//!    [`config`].
//! 2. **Storage and plumbing**: [`events`] (the log; it is handed a [`events::Projector`] and names
//!    no read model), [`projections`] (the read models), [`queue`] and [`jobs`] (the job payloads),
//!    [`media`] (the object store), [`rate_limit`], [`crypto`], [`credentials`] (the only reader of
//!    sealed tables), [`idempotency`], [`retention`], [`outbound`] (the guarded client for user-supplied
//!    URLs), [`batch`], [`notify`], [`heartbeat`], [`health`] (what `/readyz` says), [`db`],
//!    [`telemetry`], [`shutdown`], [`reach`] (what a key may read of the log), [`views`] (the resources as the api shows them).
//! 3. **Use cases**: [`commands`], what a route, a job or the CLI calls to change something (run a
//!    command on an aggregate, queue deliveries, keys and projects, post checks), and [`webhooks`]
//!    (the log turned into signed messages per endpoint).
//! 4. **The outside world**: [`platforms`], one file per social platform carrying its own spec.
//!
//! The binaries' crates sit above all four.

pub mod batch;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod events;
pub mod health;
pub mod heartbeat;
pub mod idempotency;
pub mod jobs;
pub mod media;
pub mod notify;
pub mod outbound;
pub mod platforms;
pub mod projections;
pub mod queue;
pub mod rate_limit;
pub mod reach;
pub mod retention;
pub mod shutdown;
pub mod telemetry;
pub mod views;
pub mod webhooks;

pub use config::Config;
