//! herald's end-to-end tests: the real app, a real PostgreSQL, a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod api_edge;
mod apps;
mod connect;
mod credentials;
mod event_log;
mod fake_oauth;
mod foundation;
mod keys;
mod openapi;
mod platforms;
mod posts;
mod queue;
