//! API keys as the api shows them (`GET /v1/keys/{id}`: never the key, never its hash) and
//! webhook messages carry them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::api_key::{Environment, Reach};

/// A key as the api shows it: never the key itself, never its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Key)]
pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The key's first 12 characters, to recognise it by.
    #[schema(example = "hk_live_3f9a")]
    pub prefix: String,
    /// `live`, or `test` for a key that reaches only the sandbox platform.
    #[schema(value_type = String, example = "live")]
    pub environment: Environment,
    /// What the key may do, shorthands expanded.
    pub scopes: Vec<String>,
    /// Only these platforms, when set.
    pub platforms: Option<Vec<String>>,
    /// Only these accounts (ids or external ids), when set.
    pub accounts: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub requests_per_minute: i32,
    pub requests_per_day: i32,
    /// IP addresses or CIDR blocks the key may be used from; empty: any.
    pub allowed_ips: Vec<String>,
    /// `Origin`s a browser may use the key from; empty: any.
    pub allowed_origins: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// To the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyView {
    /// What the key reaches.
    pub fn reach(&self) -> Reach<'_> {
        Reach::stored(self.environment, &self.scopes, self.platforms.as_deref(), self.accounts.as_deref())
    }
}

/// The keys of `ids` of `project_id`, reach aside (the caller checks it).
pub async fn load_many(pool: &PgPool, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<KeyView>, sqlx::Error> {
    sqlx::query_as!(
        KeyView,
        r#"SELECT k.id, k.name, k.description, k.prefix, k.environment AS "environment: Environment", k.scopes, k.platforms, k.accounts,
                  k.expires_at, k.requests_per_minute, k.requests_per_day, k.allowed_ips, k.allowed_origins,
                  k.created_at, u.last_used_at AS "last_used_at?", k.revoked_at
           FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
           WHERE k.id = ANY($1) AND k.project_id = $2"#,
        ids,
        project_id,
    )
    .fetch_all(pool)
    .await
}
