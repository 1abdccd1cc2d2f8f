//! Accounts as the api shows them (`GET /v1/accounts/{id}`) and webhook messages carry them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::account::AccountStatus;

/// A connected account and its health.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountView {
    pub id: Uuid,
    pub platform: String,
    /// The account's id on the platform.
    pub platform_user_id: String,
    /// `person`, `page`, `organization`, `channel` ...
    pub kind: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// Your id for the user it belongs to.
    pub external_id: Option<String>,
    /// The project's own OAuth app it was connected through; absent: the managed app.
    pub app_id: Option<Uuid>,
    /// `connected`, `needs_reconnect` or `disconnected`.
    #[schema(value_type = String, example = "connected")]
    pub status: AccountStatus,
    /// What the grant allows on the platform.
    pub scopes: Vec<String>,
    /// When the access token expires (herald refreshes it before).
    pub expires_at: Option<DateTime<Utc>>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// The platform's reason for the last failed refresh or the reconnect it needs.
    pub last_error: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The accounts of `ids` of `project_id`, reach aside (the caller checks it).
pub async fn load_many(pool: &PgPool, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<AccountView>, sqlx::Error> {
    sqlx::query_as!(
        AccountView,
        r#"SELECT id, platform, platform_user_id, kind, username, display_name, external_id, app_id, status AS "status: AccountStatus", scopes,
                expires_at, last_refresh_at, last_error, connected_at, updated_at
         FROM accounts WHERE id = ANY($1) AND project_id = $2"#,
        ids,
        project_id
    )
    .fetch_all(pool)
    .await
}
