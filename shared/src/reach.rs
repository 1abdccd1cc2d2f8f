//! What a key may read of its project's event log: the feed (`GET /v1/events`) shows an event,
//! and a webhook endpoint hears of it, only when the key (the endpoint's creating key) could
//! read what the event is about, through the route that shows it.
//!
//! - `post:<id>`: `posts:read`, and every target of the post within the key's reach (the rule of
//!   `GET /v1/posts`: all or nothing);
//! - `account:<id>` and `connect:<id>`: `connections:read`, and the account (the session's
//!   platform) within reach; a completed session's `account_ids` keep only reachable accounts;
//! - `key:<id>`: `keys:read`, and the key within the caller's own reach (as `GET /v1/keys`);
//! - `app:<id>`: `apps:read`, and the app's platform within reach;
//! - `media:<id>`: `media:read`, and for a test key only the test environment's items;
//! - `webhook:<id>`: `webhooks:read`, and the endpoint's reach within the key's;
//! - `project:<id>`: every key of the project.
//!
//! A page's subjects are looked up together, one query per kind, from the read models as they
//! are when the feed is read.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::account::Account;
use crate::domain::aggregate::Aggregate;
use crate::domain::api_key::{ApiKey, Environment, Reach, SCOPES};
use crate::domain::connect_session::ConnectSession;
use crate::domain::media_item::Media;
use crate::domain::oauth_app::OAuthApp;
use crate::domain::post::Post;
use crate::domain::project::Project;
use crate::domain::webhook::WebhookEndpoint;
use crate::events::{RecordedEvent, StreamId};

/// What an event is about, from its stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Post(Uuid),
    Account(Uuid),
    Connect(Uuid),
    Key(Uuid),
    App(Uuid),
    Media(Uuid),
    Webhook(Uuid),
    Project,
    Unknown,
}

fn subject(stream_id: &str) -> Subject {
    let Some((kind, id)) = StreamId::parse(stream_id) else { return Subject::Unknown };
    match kind {
        Post::KIND => Subject::Post(id),
        Account::KIND => Subject::Account(id),
        ConnectSession::KIND => Subject::Connect(id),
        ApiKey::KIND => Subject::Key(id),
        OAuthApp::KIND => Subject::App(id),
        Media::KIND => Subject::Media(id),
        WebhookEndpoint::KIND => Subject::Webhook(id),
        Project::KIND => Subject::Project,
        _ => Subject::Unknown,
    }
}

/// The page's subjects as the read models hold them, and whether the caller reaches each.
#[derive(Debug, Default)]
pub struct FeedReach {
    /// Everything, for a key that reaches all of its project.
    everything: bool,
    visible: HashSet<Uuid>,
    /// Accounts the caller reaches, for filtering `account_ids` inside payloads.
    reachable_accounts: HashSet<Uuid>,
}

impl FeedReach {
    /// Looks up, for `events`, what a key of reach `reach` may read.
    pub async fn of(pool: &PgPool, reach: &Reach<'_>, events: &[RecordedEvent]) -> Result<Self, sqlx::Error> {
        let unrestricted = !reach.test_only && reach.platforms.is_none() && reach.accounts.is_none();
        if unrestricted && SCOPES.iter().all(|scope| reach.scopes.iter().any(|held| held == scope)) {
            return Ok(FeedReach { everything: true, ..FeedReach::default() });
        }
        let wanted = Wanted::of(reach, events);
        let mut found = FeedReach::default();
        found.visible.extend(visible_posts(pool, reach, &wanted.ids(Post::KIND)).await?);
        let mut account_lookup = wanted.ids(Account::KIND);
        account_lookup.extend(wanted.accounts_in_payloads.iter().copied());
        found.reachable_accounts = reachable_accounts(pool, reach, &account_lookup).await?;
        found.visible.extend(wanted.ids(Account::KIND).into_iter().filter(|id| found.reachable_accounts.contains(id)));
        found.visible.extend(
            visible_sessions_and_apps(pool, reach, &wanted.ids(ConnectSession::KIND), &wanted.ids(OAuthApp::KIND))
                .await?,
        );
        found.visible.extend(visible_keys(pool, reach, &wanted.ids(ApiKey::KIND)).await?);
        found.visible.extend(visible_media(pool, reach, &wanted.ids(Media::KIND)).await?);
        found.visible.extend(visible_endpoints(pool, reach, &wanted.ids(WebhookEndpoint::KIND)).await?);
        Ok(found)
    }

    /// Whether the caller may read `event`.
    pub fn shows(&self, event: &RecordedEvent) -> bool {
        if self.everything {
            return true;
        }
        match subject(&event.stream_id) {
            Subject::Post(id)
            | Subject::Account(id)
            | Subject::Connect(id)
            | Subject::Key(id)
            | Subject::App(id)
            | Subject::Media(id)
            | Subject::Webhook(id) => self.visible.contains(&id),
            Subject::Project => true,
            Subject::Unknown => false,
        }
    }

    /// The payload as the caller may read it: accounts it does not reach leave `account_ids`.
    pub fn redact(&self, mut payload: Value) -> Value {
        if self.everything {
            return payload;
        }
        if let Some(Value::Array(ids)) = payload.get_mut("account_ids") {
            ids.retain(|id| {
                id.as_str().and_then(|id| id.parse().ok()).is_some_and(|id| self.reachable_accounts.contains(&id))
            });
        }
        payload
    }
}

/// The subjects of a page the caller's scopes let it ask about, by kind, and the accounts named
/// in payloads (a completed session's `account_ids`).
#[derive(Default)]
struct Wanted {
    by_kind: HashMap<&'static str, Vec<Uuid>>,
    accounts_in_payloads: Vec<Uuid>,
}

impl Wanted {
    fn of(reach: &Reach<'_>, events: &[RecordedEvent]) -> Self {
        let holds = |scope: &str| reach.scopes.iter().any(|held| held == scope);
        let mut wanted = Wanted::default();
        for event in events {
            let kind = match subject(&event.stream_id) {
                Subject::Post(id) if holds("posts:read") => Some((Post::KIND, id)),
                Subject::Account(id) if holds("connections:read") => Some((Account::KIND, id)),
                Subject::Connect(id) if holds("connections:read") => {
                    wanted.accounts_in_payloads.extend(account_ids(&event.payload));
                    Some((ConnectSession::KIND, id))
                }
                Subject::Key(id) if holds("keys:read") => Some((ApiKey::KIND, id)),
                Subject::App(id) if holds("apps:read") => Some((OAuthApp::KIND, id)),
                Subject::Media(id) if holds("media:read") => Some((Media::KIND, id)),
                Subject::Webhook(id) if holds("webhooks:read") => Some((WebhookEndpoint::KIND, id)),
                _ => None,
            };
            if let Some((kind, id)) = kind {
                wanted.by_kind.entry(kind).or_default().push(id);
            }
        }
        wanted
    }

    fn ids(&self, kind: &str) -> Vec<Uuid> {
        self.by_kind.get(kind).cloned().unwrap_or_default()
    }
}

/// The posts of `ids` whose every target the caller reaches (all or nothing, as `GET /v1/posts`).
async fn visible_posts(pool: &PgPool, reach: &Reach<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut posts: HashMap<Uuid, bool> = HashMap::new();
    for target in sqlx::query!(
        "SELECT d.post_id, a.id, a.platform, a.external_id
             FROM deliveries d JOIN accounts a ON a.id = d.account_id WHERE d.post_id = ANY($1)",
        ids
    )
    .fetch_all(pool)
    .await?
    {
        let reached = reach.reaches_account(&target.platform, target.id, target.external_id.as_deref());
        *posts.entry(target.post_id).or_insert(true) &= reached;
    }
    Ok(posts.into_iter().filter(|(_, all_reached)| *all_reached).map(|(id, _)| id).collect())
}

/// The accounts of `ids` the caller reaches.
async fn reachable_accounts(pool: &PgPool, reach: &Reach<'_>, ids: &[Uuid]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let accounts =
        sqlx::query!("SELECT id, platform, external_id FROM accounts WHERE id = ANY($1)", ids).fetch_all(pool).await?;
    Ok(accounts
        .into_iter()
        .filter(|account| reach.reaches_account(&account.platform, account.id, account.external_id.as_deref()))
        .map(|account| account.id)
        .collect())
}

/// The connect sessions of `sessions` and the apps of `apps` whose platform the caller reaches.
async fn visible_sessions_and_apps(
    pool: &PgPool,
    reach: &Reach<'_>,
    sessions: &[Uuid],
    apps: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut visible = Vec::new();
    for session in
        sqlx::query!("SELECT id, platform FROM connect_sessions WHERE id = ANY($1)", sessions).fetch_all(pool).await?
    {
        if reach.reaches_platform(&session.platform) {
            visible.push(session.id);
        }
    }
    for app in sqlx::query!("SELECT id, platform FROM oauth_apps WHERE id = ANY($1)", apps).fetch_all(pool).await? {
        if reach.reaches_platform(&app.platform) {
            visible.push(app.id);
        }
    }
    Ok(visible)
}

/// The keys of `ids` within the caller's own reach (as `GET /v1/keys`).
async fn visible_keys(pool: &PgPool, reach: &Reach<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let keys = sqlx::query!(
        r#"SELECT id, environment AS "environment: Environment", scopes, platforms, accounts FROM api_keys
               WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(pool)
    .await?;
    Ok(keys
        .into_iter()
        .filter(|key| {
            let theirs = Reach::stored(key.environment, &key.scopes, key.platforms.as_deref(), key.accounts.as_deref());
            reach.lacks(&theirs).is_none()
        })
        .map(|key| key.id)
        .collect())
}

/// The media items of `ids` a key of `reach` sees: a test key only the test environment's (as
/// `GET /v1/media`).
async fn visible_media(pool: &PgPool, reach: &Reach<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM media WHERE id = ANY($1) AND (NOT $2 OR environment = 'test')",
        ids,
        reach.test_only
    )
    .fetch_all(pool)
    .await
}

/// The webhook endpoints of `ids` whose reach lies within `reach` (as `GET /v1/webhooks`).
async fn visible_endpoints(pool: &PgPool, reach: &Reach<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let endpoints = sqlx::query!(
        r#"SELECT id, environment AS "environment: Environment", scopes, platforms, accounts FROM webhook_endpoints
           WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(pool)
    .await?;
    Ok(endpoints
        .into_iter()
        .filter(|endpoint| {
            let theirs = Reach::stored(
                endpoint.environment,
                &endpoint.scopes,
                endpoint.platforms.as_deref(),
                endpoint.accounts.as_deref(),
            );
            reach.lacks(&theirs).is_none()
        })
        .map(|endpoint| endpoint.id)
        .collect())
}

/// Removes what a client must never see, wherever it sits in a payload.
pub fn without_secrets(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        fields.remove("key_hash");
        for value in fields.values_mut() {
            *value = without_secrets(value.take());
        }
    }
    payload
}

fn account_ids(payload: &Value) -> impl Iterator<Item = Uuid> + '_ {
    payload
        .get("account_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str()?.parse().ok())
}
