//! Posts: checking a new or edited post's targets, and running a post command together with the
//! publish jobs it makes due.
//!
//! Every target must be a connected account of the project within the key's reach, named once,
//! and its content must fit the platform. The checks collect every problem (one per field), so a
//! client learns all it has to fix from one answer.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{ExecuteError, Executed, deliveries, execute};
use crate::domain::account::AccountStatus;
use crate::domain::api_key::Reach;
use crate::domain::content::ContentRules;
use crate::domain::post::{self, Post, Target};
use crate::events::EventMetadata;

/// The most targets one post may have.
pub const MAX_TARGETS: usize = 50;

/// One target as a client asks for it.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    pub account_id: Uuid,
    /// This target's text instead of the post's.
    pub content: Option<String>,
    /// Platform options, passed to the platform's adapter.
    pub options: Value,
}

/// One field of a request that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer-ish path of the field, e.g. `targets[0].account_id`.
    pub field: String,
    pub message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Checks a post's `external_id`: 1 to 255 characters when given.
pub fn check_external_id(external_id: Option<&str>, problems: &mut Vec<Invalid>) {
    if external_id.is_some_and(|id| id.is_empty() || id.len() > 255) {
        problems.push(Invalid::new("external_id", "must be 1 to 255 characters"));
    }
}

/// Checks `targets` of a post of `content` in `project_id` for a key of `reach`, adding every
/// problem to `problems`, and gives each a new delivery id. `rules` answers what a platform takes,
/// or why it cannot be published to.
pub async fn check_targets(
    pool: &PgPool,
    project_id: Uuid,
    reach: &Reach<'_>,
    rules: impl Fn(&str) -> Result<ContentRules, String>,
    content: &str,
    targets: Vec<TargetRequest>,
    problems: &mut Vec<Invalid>,
) -> Result<Vec<Target>, sqlx::Error> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        problems.push(Invalid::new("targets", format!("must have 1 to {MAX_TARGETS} targets")));
    }
    let ids: Vec<Uuid> = targets.iter().map(|target| target.account_id).collect();
    let accounts = sqlx::query!(
        r#"SELECT id, platform, status AS "status: AccountStatus", external_id FROM accounts
           WHERE project_id = $1 AND id = ANY($2)"#,
        project_id,
        &ids
    )
    .fetch_all(pool)
    .await?;
    let mut checked = Vec::with_capacity(targets.len());
    for (index, target) in targets.into_iter().enumerate() {
        let field = |name: &str| format!("targets[{index}].{name}");
        let reachable = accounts
            .iter()
            .find(|account| account.id == target.account_id)
            .filter(|account| reach.reaches_account(&account.platform, account.id, account.external_id.as_deref()));
        let Some(account) = reachable else {
            problems.push(Invalid::new(field("account_id"), "no such account"));
            continue;
        };
        if ids[..index].contains(&target.account_id) {
            problems.push(Invalid::new(field("account_id"), "targeted twice"));
        }
        if account.status != AccountStatus::Connected {
            let status = account.status.as_str();
            problems.push(Invalid::new(field("account_id"), format!("the account is {status}; reconnect it")));
        }
        let text = target.content.as_deref().unwrap_or(content);
        let content_field = if target.content.is_some() { field("content") } else { "content".to_owned() };
        match rules(&account.platform) {
            Err(reason) => problems.push(Invalid::new(field("account_id"), reason)),
            Ok(rules) if !rules.publishes_text => problems.push(Invalid::new(
                field("account_id"),
                format!("{} posts need an image or a video, which herald cannot attach yet", account.platform),
            )),
            Ok(rules) => check_length(&account.platform, rules.max_chars, text, content_field, problems),
        }
        if !(target.options.is_null() || target.options.is_object()) {
            problems.push(Invalid::new(field("options"), "must be an object"));
        }
        checked.push(Target {
            delivery_id: Uuid::now_v7(),
            account_id: target.account_id,
            content: target.content,
            options: target.options,
        });
    }
    Ok(checked)
}

/// Checks that `text` is not empty and fits `max_chars`.
fn check_length(platform: &str, max_chars: usize, text: &str, field: String, problems: &mut Vec<Invalid>) {
    let length = text.chars().count();
    if length == 0 {
        problems.push(Invalid::new(field, "must not be empty"));
    } else if length > max_chars {
        problems.push(Invalid::new(field, format!("{length} characters; {platform} takes at most {max_chars}")));
    }
}

/// The targets `post` has now, as requests: an edit of the content alone checks them again
/// against the new text.
pub fn current_targets(post: &Post) -> Vec<TargetRequest> {
    post.deliveries
        .iter()
        .map(|delivery| TargetRequest {
            account_id: delivery.account_id,
            content: delivery.content.clone(),
            options: delivery.options.clone(),
        })
        .collect()
}

/// Runs `command` on post `id` and queues the publish jobs of every delivery it made due, inside
/// `tx` (the caller commits).
pub async fn execute_and_queue(
    tx: &mut PgConnection,
    id: Uuid,
    command: post::Command,
    metadata: &EventMetadata,
) -> Result<Executed<Post>, ExecuteError<post::Rejection>> {
    let executed = execute::<Post>(tx, id, command, metadata).await?;
    deliveries::queue_pending(tx, id, &executed.state, metadata).await?;
    Ok(executed)
}
