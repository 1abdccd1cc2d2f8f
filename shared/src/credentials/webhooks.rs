//! Webhook endpoints' signing secrets and custom headers, sealed. A rotation keeps the replaced
//! secret for a while ([`ROTATION_OVERLAP`]) so receivers can switch over: meanwhile every
//! message carries both signatures.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{CredentialError, open, seal};
use crate::crypto::Keyring;

const TABLE: &str = "webhook_secrets";

/// How long a replaced secret still signs.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// A new signing secret: `whsec_` and the base64 of 32 random bytes (Standard Webhooks).
pub fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    // The thread-local generator is a CSPRNG seeded from the OS.
    rand::rng().fill(&mut bytes);
    SecretString::from(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// What a sender needs to sign and send an endpoint's messages.
#[derive(Debug, Clone)]
pub struct WebhookSigning {
    /// The secrets that sign now: the current one, and the replaced one during its overlap.
    pub secrets: Vec<SecretString>,
    /// Custom headers, sent with every message.
    pub headers: BTreeMap<String, SecretString>,
}

/// Stores the first secret of a new endpoint, and its custom headers.
pub async fn store_webhook_secret(
    tx: &mut PgConnection,
    keyring: &Keyring,
    endpoint_id: Uuid,
    secret: &SecretString,
    headers: &BTreeMap<String, String>,
) -> Result<(), CredentialError> {
    let sealed = seal(keyring, TABLE, endpoint_id, "secret", secret)?;
    let headers = seal_headers(keyring, endpoint_id, headers)?;
    sqlx::query!(
        "INSERT INTO webhook_secrets (endpoint_id, secret, headers) VALUES ($1, $2, $3)",
        endpoint_id,
        sealed,
        headers
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Replaces the secret with `secret`; the one it replaces signs too until `now +
/// ROTATION_OVERLAP`. A rotation within the overlap of the last one drops the oldest.
pub async fn rotate_webhook_secret(
    tx: &mut PgConnection,
    keyring: &Keyring,
    endpoint_id: Uuid,
    secret: &SecretString,
    now: DateTime<Utc>,
) -> Result<(), CredentialError> {
    let current =
        sqlx::query_scalar!("SELECT secret FROM webhook_secrets WHERE endpoint_id = $1 FOR UPDATE", endpoint_id)
            .fetch_one(&mut *tx)
            .await?;
    let previous = open(keyring, TABLE, endpoint_id, "secret", &current)?;
    let previous = seal(keyring, TABLE, endpoint_id, "previous_secret", &previous)?;
    let sealed = seal(keyring, TABLE, endpoint_id, "secret", secret)?;
    sqlx::query!(
        "UPDATE webhook_secrets SET secret = $2, previous_secret = $3, previous_until = $4 WHERE endpoint_id = $1",
        endpoint_id,
        sealed,
        previous,
        now + ROTATION_OVERLAP,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Replaces the custom headers.
pub async fn replace_webhook_headers(
    tx: &mut PgConnection,
    keyring: &Keyring,
    endpoint_id: Uuid,
    headers: &BTreeMap<String, String>,
) -> Result<(), CredentialError> {
    let sealed = seal_headers(keyring, endpoint_id, headers)?;
    sqlx::query!("UPDATE webhook_secrets SET headers = $2 WHERE endpoint_id = $1", endpoint_id, sealed)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The names of the custom headers (their values are never shown).
pub async fn webhook_header_names(
    tx: &mut PgConnection,
    keyring: &Keyring,
    endpoint_id: Uuid,
) -> Result<Vec<String>, CredentialError> {
    let sealed = sqlx::query_scalar!("SELECT headers FROM webhook_secrets WHERE endpoint_id = $1", endpoint_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    Ok(open_headers(keyring, endpoint_id, sealed.as_deref())?.into_keys().collect())
}

/// Forgets an endpoint's secrets and headers (it was deleted).
pub async fn forget_webhook_secret(tx: &mut PgConnection, endpoint_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM webhook_secrets WHERE endpoint_id = $1", endpoint_id).execute(&mut *tx).await?;
    Ok(())
}

/// The secrets that sign an endpoint's messages at `now`, and its headers; `None` for an endpoint
/// without secrets (deleted).
pub async fn webhook_signing(
    tx: &mut PgConnection,
    keyring: &Keyring,
    endpoint_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<WebhookSigning>, CredentialError> {
    let Some(row) = sqlx::query!(
        "SELECT secret, previous_secret, previous_until, headers FROM webhook_secrets WHERE endpoint_id = $1",
        endpoint_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let mut secrets = vec![open(keyring, TABLE, endpoint_id, "secret", &row.secret)?];
    if let (Some(previous), Some(until)) = (row.previous_secret, row.previous_until)
        && until > now
    {
        secrets.push(open(keyring, TABLE, endpoint_id, "previous_secret", &previous)?);
    }
    let headers = open_headers(keyring, endpoint_id, row.headers.as_deref())?
        .into_iter()
        .map(|(name, value)| (name, SecretString::from(value)))
        .collect();
    Ok(Some(WebhookSigning { secrets, headers }))
}

fn seal_headers(
    keyring: &Keyring,
    endpoint_id: Uuid,
    headers: &BTreeMap<String, String>,
) -> Result<Option<String>, CredentialError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_string(headers).unwrap_or_default();
    Ok(Some(seal(keyring, TABLE, endpoint_id, "headers", &SecretString::from(json))?))
}

fn open_headers(
    keyring: &Keyring,
    endpoint_id: Uuid,
    sealed: Option<&str>,
) -> Result<BTreeMap<String, String>, CredentialError> {
    let Some(sealed) = sealed else { return Ok(BTreeMap::new()) };
    let json = open(keyring, TABLE, endpoint_id, "headers", sealed)?;
    // Written by `seal_headers` from a map: anything else is no headers.
    Ok(serde_json::from_str(json.expose_secret()).unwrap_or_default())
}
