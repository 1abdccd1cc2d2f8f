//! The pure domain: one aggregate a file, each with its commands, events, rejections and the
//! `decide`/`evolve` pair (see [`aggregate::Aggregate`]). No I/O and no clock here: the
//! current time comes in with the command.

pub mod account;
pub mod aggregate;
pub mod api_key;
pub mod connect_session;
pub mod content;
pub mod media;
pub mod media_item;
pub mod media_rules;
pub mod oauth_app;
pub mod post;
pub mod project;
pub mod tokens;
pub mod webhook;
