//! A webhook endpoint: where a project wants to hear of its events. The URL, the types it wants
//! and whether it is on are the endpoint's; the reach it hears within (environment, scopes,
//! platforms, accounts) is the creating key's, fixed at creation, so no key can hear through an
//! endpoint more than it could read. The signing secret and custom headers live sealed outside
//! the log (`crate::credentials::webhooks`): events only say they changed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};
use super::api_key::{Environment, Reach};

/// The reach an endpoint hears within: the creating key's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReach {
    pub environment: Environment,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
}

impl KeyReach {
    /// As a [`Reach`], to ask what it covers.
    pub fn reach(&self) -> Reach<'_> {
        Reach::stored(self.environment, &self.scopes, self.platforms.as_deref(), self.accounts.as_deref())
    }
}

/// What a client sets on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `None`: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Messages sent at once: 1 keeps log order strictly.
    pub max_in_flight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookEndpoint {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub enabled: bool,
    pub settings: Option<Settings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create {
        project_id: Uuid,
        settings: Settings,
        reach: KeyReach,
    },
    /// `settings` as they are to be; `headers_changed`: the custom headers were replaced.
    Update {
        settings: Settings,
        enabled: bool,
        headers_changed: bool,
    },
    RotateSecret,
    /// Send a `webhook.test` message.
    Test,
    /// Stop sending: the endpoint answered 410, or failed for days.
    Disable {
        reason: String,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "webhook.created")]
    Created { project_id: Uuid, settings: Settings, reach: KeyReach },
    #[serde(rename = "webhook.updated")]
    Updated { settings: Settings, enabled: bool, headers_changed: bool },
    #[serde(rename = "webhook.secret_rotated")]
    SecretRotated {},
    #[serde(rename = "webhook.tested")]
    Tested {},
    #[serde(rename = "webhook.disabled")]
    Disabled { reason: String },
    #[serde(rename = "webhook.deleted")]
    Deleted {},
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Created { .. } => "webhook.created",
            Event::Updated { .. } => "webhook.updated",
            Event::SecretRotated {} => "webhook.secret_rotated",
            Event::Tested {} => "webhook.tested",
            Event::Disabled { .. } => "webhook.disabled",
            Event::Deleted {} => "webhook.deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the endpoint already exists")]
    AlreadyExists,
    #[error("the endpoint does not exist")]
    NotFound,
    #[error("nothing to change")]
    Unchanged,
    #[error("the endpoint is disabled")]
    Disabled,
}

impl Aggregate for WebhookEndpoint {
    const KIND: &'static str = "webhook";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        if !matches!(command, Command::Create { .. }) && (!self.exists || self.deleted) {
            return Err(Rejection::NotFound);
        }
        match command {
            Command::Create { project_id, settings, reach } => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                Ok(vec![Event::Created { project_id, settings, reach }])
            }
            Command::Update { settings, enabled, headers_changed } => {
                if self.settings.as_ref() == Some(&settings) && self.enabled == enabled && !headers_changed {
                    return Err(Rejection::Unchanged);
                }
                Ok(vec![Event::Updated { settings, enabled, headers_changed }])
            }
            Command::RotateSecret => Ok(vec![Event::SecretRotated {}]),
            Command::Test => {
                if !self.enabled {
                    return Err(Rejection::Disabled);
                }
                Ok(vec![Event::Tested {}])
            }
            Command::Disable { reason } => {
                if !self.enabled {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::Disabled { reason }])
            }
            Command::Delete => Ok(vec![Event::Deleted {}]),
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Created { project_id, settings, .. } => {
                self = WebhookEndpoint {
                    exists: true,
                    deleted: false,
                    project_id: *project_id,
                    enabled: true,
                    settings: Some(settings.clone()),
                };
            }
            Event::Updated { settings, enabled, .. } => {
                self.settings = Some(settings.clone());
                self.enabled = *enabled;
            }
            Event::SecretRotated {} | Event::Tested {} => {}
            Event::Disabled { .. } => self.enabled = false,
            Event::Deleted {} => self.deleted = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings { url: "https://example.test/hook".into(), description: None, event_types: None, max_in_flight: 1 }
    }

    fn created() -> WebhookEndpoint {
        let reach = KeyReach { environment: Environment::Live, scopes: vec![], platforms: None, accounts: None };
        WebhookEndpoint::replay(&[Event::Created { project_id: Uuid::nil(), settings: settings(), reach }])
    }

    #[test]
    fn a_disabled_endpoint_cannot_be_tested_until_enabled_again() {
        let endpoint = created();
        let disabled = endpoint.clone().evolve(&Event::Disabled { reason: "410".into() });
        assert_eq!(disabled.decide(Command::Test), Err(Rejection::Disabled));
        assert_eq!(disabled.decide(Command::Disable { reason: "again".into() }), Ok(vec![]));
        let update = Command::Update { settings: settings(), enabled: true, headers_changed: false };
        assert!(disabled.decide(update).is_ok());
        assert_eq!(endpoint.decide(Command::Test), Ok(vec![Event::Tested {}]));
    }

    #[test]
    fn an_update_that_changes_nothing_is_refused_and_a_deleted_endpoint_is_gone() {
        let endpoint = created();
        let same = Command::Update { settings: settings(), enabled: true, headers_changed: false };
        assert_eq!(endpoint.decide(same), Err(Rejection::Unchanged));
        let deleted = endpoint.evolve(&Event::Deleted {});
        assert_eq!(deleted.decide(Command::RotateSecret), Err(Rejection::NotFound));
    }
}
