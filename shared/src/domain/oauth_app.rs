//! A project's own OAuth app for a platform ("bring your own app"). Platform and client id never
//! change; the client secret lives encrypted outside the log (the event only says it changed).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OAuthApp {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub platform: String,
    pub client_id: String,
    pub name: String,
    pub image_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register {
        project_id: Uuid,
        platform: String,
        name: String,
        image_url: Option<String>,
        client_id: String,
    },
    Update {
        name: Option<String>,
        image_url: Option<Option<String>>,
        secret_changed: bool,
    },
    /// `accounts_using` is how many live accounts were connected through the app.
    Delete {
        accounts_using: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "app.registered")]
    Registered { project_id: Uuid, platform: String, name: String, image_url: Option<String>, client_id: String },
    #[serde(rename = "app.updated")]
    Updated { name: String, image_url: Option<String>, secret_changed: bool },
    #[serde(rename = "app.deleted")]
    Deleted {},
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Registered { .. } => "app.registered",
            Event::Updated { .. } => "app.updated",
            Event::Deleted {} => "app.deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the app already exists")]
    AlreadyExists,
    #[error("the app does not exist")]
    NotFound,
    #[error("{0} accounts still use this app")]
    InUse(i64),
    #[error("nothing to change")]
    Unchanged,
    #[error("name and client id must not be blank")]
    Blank,
}

impl Aggregate for OAuthApp {
    const KIND: &'static str = "app";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        if !matches!(command, Command::Register { .. }) && (!self.exists || self.deleted) {
            return Err(Rejection::NotFound);
        }
        match command {
            Command::Register { project_id, platform, name, image_url, client_id } => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                if name.trim().is_empty() || client_id.trim().is_empty() {
                    return Err(Rejection::Blank);
                }
                Ok(vec![Event::Registered { project_id, platform, name, image_url, client_id }])
            }
            Command::Update { name, image_url, secret_changed } => {
                if name.as_deref().is_some_and(|name| name.trim().is_empty()) {
                    return Err(Rejection::Blank);
                }
                let name = name.unwrap_or_else(|| self.name.clone());
                let image_url = image_url.unwrap_or_else(|| self.image_url.clone());
                if name == self.name && image_url == self.image_url && !secret_changed {
                    return Err(Rejection::Unchanged);
                }
                Ok(vec![Event::Updated { name, image_url, secret_changed }])
            }
            Command::Delete { accounts_using } => {
                if accounts_using > 0 {
                    return Err(Rejection::InUse(accounts_using));
                }
                Ok(vec![Event::Deleted {}])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Registered { project_id, platform, name, image_url, client_id } => {
                self = OAuthApp {
                    exists: true,
                    deleted: false,
                    project_id: *project_id,
                    platform: platform.clone(),
                    client_id: client_id.clone(),
                    name: name.clone(),
                    image_url: image_url.clone(),
                };
            }
            Event::Updated { name, image_url, .. } => {
                self.name = name.clone();
                self.image_url = image_url.clone();
            }
            Event::Deleted {} => self.deleted = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Event {
        Event::Registered {
            project_id: Uuid::from_u128(1),
            platform: "x".into(),
            name: "Mine".into(),
            image_url: None,
            client_id: "cid".into(),
        }
    }

    #[test]
    fn an_app_is_registered_updated_and_deleted() {
        let app = OAuthApp::replay(&[registered()]);
        let update = Command::Update { name: Some("Renamed".into()), image_url: None, secret_changed: true };
        assert_eq!(
            app.decide(update),
            Ok(vec![Event::Updated { name: "Renamed".into(), image_url: None, secret_changed: true }])
        );
        assert_eq!(app.decide(Command::Delete { accounts_using: 0 }), Ok(vec![Event::Deleted {}]));
    }

    #[test]
    fn deleting_an_app_in_use_or_changing_nothing_is_refused() {
        let app = OAuthApp::replay(&[registered()]);
        assert_eq!(app.decide(Command::Delete { accounts_using: 2 }), Err(Rejection::InUse(2)));
        let nothing = Command::Update { name: Some("Mine".into()), image_url: None, secret_changed: false };
        assert_eq!(app.decide(nothing), Err(Rejection::Unchanged));
        let blank = Command::Update { name: Some(" ".into()), image_url: None, secret_changed: false };
        assert_eq!(app.decide(blank), Err(Rejection::Blank));
    }

    #[test]
    fn a_deleted_or_missing_app_is_not_found_and_registration_happens_once() {
        let deleted = OAuthApp::replay(&[registered(), Event::Deleted {}]);
        assert_eq!(deleted.decide(Command::Delete { accounts_using: 0 }), Err(Rejection::NotFound));
        assert_eq!(OAuthApp::default().decide(Command::Delete { accounts_using: 0 }), Err(Rejection::NotFound));
        let again = Command::Register {
            project_id: Uuid::from_u128(1),
            platform: "x".into(),
            name: "n".into(),
            image_url: None,
            client_id: "c".into(),
        };
        assert_eq!(OAuthApp::replay(&[registered()]).decide(again), Err(Rejection::AlreadyExists));
    }
}
