//! An API key: its scope is fixed at creation (to change it, create a new key and revoke the old
//! one). The key itself never reaches the log: only its SHA-256 and its 12-character prefix.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{Aggregate, DomainEvent};

/// Everything a key is, but the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    pub project_id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The first 12 characters, shown in lists.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub key_hash: String,
    /// `live` or `test` (sandbox only).
    pub environment: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub requests_per_minute: i32,
    pub requests_per_day: i32,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiKey {
    pub exists: bool,
    pub project_id: Uuid,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<KeySpec>),
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "key.created")]
    Created(Box<KeySpec>),
    #[serde(rename = "key.revoked")]
    Revoked {},
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Created(_) => "key.created",
            Event::Revoked {} => "key.revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the key already exists")]
    AlreadyExists,
    #[error("the key does not exist")]
    NotFound,
    #[error("the key is already revoked")]
    AlreadyRevoked,
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("rate limits must be positive")]
    InvalidLimits,
}

impl Aggregate for ApiKey {
    const KIND: &'static str = "key";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Create(spec) => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                if spec.scopes.is_empty() {
                    return Err(Rejection::NoScopes);
                }
                if spec.requests_per_minute <= 0 || spec.requests_per_day <= 0 {
                    return Err(Rejection::InvalidLimits);
                }
                Ok(vec![Event::Created(spec)])
            }
            Command::Revoke => match (self.exists, self.revoked) {
                (false, _) => Err(Rejection::NotFound),
                (true, true) => Err(Rejection::AlreadyRevoked),
                (true, false) => Ok(vec![Event::Revoked {}]),
            },
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Created(spec) => {
                self.exists = true;
                self.project_id = spec.project_id;
            }
            Event::Revoked {} => self.revoked = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> KeySpec {
        KeySpec {
            project_id: Uuid::from_u128(1),
            name: "ci".into(),
            description: None,
            prefix: "hk_live_0123".into(),
            key_hash: "ab".repeat(32),
            environment: "live".into(),
            scopes: vec!["posts:read".into()],
            platforms: None,
            accounts: None,
            expires_at: None,
            requests_per_minute: 60,
            requests_per_day: 10_000,
            allowed_ips: vec![],
            allowed_origins: vec![],
        }
    }

    #[test]
    fn a_key_is_created_then_revoked_once() {
        let created = ApiKey::default().decide(Command::Create(Box::new(spec()))).unwrap();
        let key = ApiKey::replay(&created);
        assert_eq!(key.decide(Command::Create(Box::new(spec()))), Err(Rejection::AlreadyExists));
        let revoked = key.decide(Command::Revoke).unwrap();
        assert_eq!(revoked, vec![Event::Revoked {}]);
        let key = revoked.iter().fold(key, ApiKey::evolve);
        assert_eq!(key.decide(Command::Revoke), Err(Rejection::AlreadyRevoked));
    }

    #[test]
    fn a_key_needs_scopes_and_positive_limits_and_must_exist_to_be_revoked() {
        let no_scopes = KeySpec { scopes: vec![], ..spec() };
        assert_eq!(ApiKey::default().decide(Command::Create(Box::new(no_scopes))), Err(Rejection::NoScopes));
        let zero = KeySpec { requests_per_minute: 0, ..spec() };
        assert_eq!(ApiKey::default().decide(Command::Create(Box::new(zero))), Err(Rejection::InvalidLimits));
        assert_eq!(ApiKey::default().decide(Command::Revoke), Err(Rejection::NotFound));
    }
}
