//! Webhooks, following Standard Webhooks (the scheme svix's libraries verify), made from the
//! event log.
//!
//! - [`catalog`]: the message types, and which a log event makes;
//! - [`dispatch`]: the dispatcher (a scheduler loop) that turns the log into messages per
//!   endpoint, in log order, exactly once; replays and resends;
//! - [`payload`]: the messages' bodies, with the resource as the api shows it;
//! - [`outbox`]: what senders (the `webhooks.send` job, one lane per endpoint) read and record;
//! - [`signing`]: the `webhook-signature` header.
//!
//! **Guarantees.** Every event an endpoint hears becomes one message, written in the same
//! transaction that moves the dispatcher's cursor, so a crash loses none and makes none twice.
//! A message is delivered at least once: it stays pending until an attempt's 2xx is recorded, so
//! a sender killed mid-send leaves it to the next sender, which sends it again with the same
//! `webhook-id` (receivers deduplicate on it). Messages leave in log order per endpoint; with
//! `max_in_flight` 1 (the default) each waits for the answer to the one before. A failed attempt
//! schedules that message's retry (`HERALD_WEBHOOKS__RETRY_SCHEDULE_SECS`) and the ones after it
//! go on, so after a failure a retried message arrives after later ones. A 410 disables the
//! endpoint at once; failures without a success for `disable_after` disable it too, with a
//! `webhook.disabled` event (`endpoint.disabled` to the project's other endpoints).
//!
//! This is layer 3 (use cases): it reads the log and the read models, writes its own tables and
//! queues jobs. Sending over HTTP is the worker's (`herald_worker::jobs::webhooks`).

pub mod catalog;
pub mod dispatch;
pub mod outbox;
pub mod payload;
pub mod signing;
