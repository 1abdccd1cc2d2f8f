//! The OAuth client a connect, refresh or revoke calls the platform with: a project's own app,
//! whose secret is sealed here, or the platform's managed one from the settings.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{CredentialError, load_app_secret};
use crate::crypto::Keyring;
use crate::domain::tokens::ClientCredentials;

/// Why no OAuth client could be found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no managed app is configured for this platform")]
    NoManagedApp,
    #[error("the project has no app with this id on this platform")]
    NoSuchApp,
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

/// The OAuth client a connect or refresh of `project_id` on `platform` uses: the project's own
/// app `app_id`, or `managed` (the platform's managed app, `platforms::Platforms::managed_app`).
pub async fn client_for(
    tx: &mut PgConnection,
    keyring: &Keyring,
    managed: Option<&ClientCredentials>,
    project_id: Uuid,
    platform: &str,
    app_id: Option<Uuid>,
) -> Result<ClientCredentials, ClientError> {
    let Some(app_id) = app_id else {
        return managed.cloned().ok_or(ClientError::NoManagedApp);
    };
    let client_id = sqlx::query_scalar!(
        "SELECT client_id FROM oauth_apps WHERE id = $1 AND project_id = $2 AND platform = $3 AND deleted_at IS NULL",
        app_id,
        project_id,
        platform
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(CredentialError::from)?
    .ok_or(ClientError::NoSuchApp)?;
    let client_secret = load_app_secret(tx, keyring, app_id).await?;
    Ok(ClientCredentials { client_id, client_secret })
}
