//! herald's end-to-end tests: the real app, a real PostgreSQL, a fresh database per test.
// Tests and benches read best as one story each, so they are exempt from the length lint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod harness;

mod abandoned;
mod api_edge;
mod apps;
mod chains;
mod chains_li_yt;
mod chains_meta_masto;
mod chains_x_bsky;
mod checkpoints;
mod connect;
mod credentials;
mod deploy;
mod event_log;
mod fake_oauth;
mod fixtures;
mod foundation;
mod grants;
mod keys;
mod mastodon;
mod media;
mod media_import;
mod media_li_yt;
mod media_meta;
mod media_tt_pin;
mod media_x;
mod openapi;
mod ops;
mod outbound;
mod platforms;
mod post_media;
mod post_options;
mod posts;
mod queue;
mod reach;
mod s3;
mod sandbox;
mod termination;
mod traces;
mod webhooks;
