//! One "connect" attempt: started by the client, authorized by the platform's callback (its
//! state is single use and expires), then completed by the exchange job with the accounts the
//! grant reaches, or denied, or failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};

/// Stored as text (`connect_sessions.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SessionStatus {
    #[default]
    Started,
    /// The callback arrived with a code; the exchange job runs.
    Pending,
    Connected,
    Denied,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Started => "started",
            SessionStatus::Pending => "pending",
            SessionStatus::Connected => "connected",
            SessionStatus::Denied => "denied",
            SessionStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub project_id: Uuid,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// SHA-256 of the state parameter, hex: the state itself is a credential.
    pub state_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectSession {
    pub exists: bool,
    pub project_id: Uuid,
    pub status: SessionStatus,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(Box<SessionSpec>),
    /// The callback brought a code.
    Authorize {
        now: DateTime<Utc>,
    },
    /// The callback brought `error=` (the user said no) or was otherwise unusable.
    Deny {
        reason: String,
        now: DateTime<Utc>,
    },
    Complete {
        account_ids: Vec<Uuid>,
    },
    Fail {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "connect.started")]
    Started(Box<SessionSpec>),
    #[serde(rename = "connect.authorized")]
    Authorized {},
    #[serde(rename = "connect.denied")]
    Denied { reason: String },
    #[serde(rename = "connect.completed")]
    Completed { account_ids: Vec<Uuid> },
    #[serde(rename = "connect.failed")]
    Failed { reason: String },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Started(_) => "connect.started",
            Event::Authorized {} => "connect.authorized",
            Event::Denied { .. } => "connect.denied",
            Event::Completed { .. } => "connect.completed",
            Event::Failed { .. } => "connect.failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the session already exists")]
    AlreadyExists,
    #[error("the session does not exist")]
    NotFound,
    #[error("the session's state was already used")]
    StateUsed,
    #[error("the session expired")]
    Expired,
    #[error("the session is {0:?}, not waiting for the exchange")]
    NotPending(SessionStatus),
}

impl ConnectSession {
    fn check_callback(&self, now: DateTime<Utc>) -> Result<(), Rejection> {
        if self.status != SessionStatus::Started {
            return Err(Rejection::StateUsed);
        }
        if self.expires_at.is_some_and(|expires_at| now >= expires_at) {
            return Err(Rejection::Expired);
        }
        Ok(())
    }
}

impl Aggregate for ConnectSession {
    const KIND: &'static str = "connect";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        if !self.exists && !matches!(command, Command::Start(_)) {
            return Err(Rejection::NotFound);
        }
        match command {
            Command::Start(spec) => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                Ok(vec![Event::Started(spec)])
            }
            Command::Authorize { now } => {
                self.check_callback(now)?;
                Ok(vec![Event::Authorized {}])
            }
            Command::Deny { reason, now } => {
                self.check_callback(now)?;
                Ok(vec![Event::Denied { reason }])
            }
            Command::Complete { account_ids } => {
                if self.status != SessionStatus::Pending {
                    return Err(Rejection::NotPending(self.status));
                }
                Ok(vec![Event::Completed { account_ids }])
            }
            Command::Fail { reason } => {
                if !matches!(self.status, SessionStatus::Pending | SessionStatus::Started) {
                    return Err(Rejection::NotPending(self.status));
                }
                Ok(vec![Event::Failed { reason }])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Started(spec) => {
                self.exists = true;
                self.project_id = spec.project_id;
                self.expires_at = Some(spec.expires_at);
                self.status = SessionStatus::Started;
            }
            Event::Authorized {} => self.status = SessionStatus::Pending,
            Event::Denied { .. } => self.status = SessionStatus::Denied,
            Event::Completed { .. } => self.status = SessionStatus::Connected,
            Event::Failed { .. } => self.status = SessionStatus::Failed,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap()
    }

    fn started() -> Event {
        Event::Started(Box::new(SessionSpec {
            project_id: Uuid::from_u128(1),
            platform: "sandbox".into(),
            app_id: None,
            redirect_uri: Some("https://client.example/done".into()),
            external_id: Some("user-7".into()),
            scopes: vec![],
            state_hash: "00".repeat(32),
            expires_at: at(600),
        }))
    }

    #[test]
    fn a_session_goes_started_pending_connected() {
        let session = ConnectSession::replay(&[started()]);
        assert_eq!(session.decide(Command::Authorize { now: at(10) }), Ok(vec![Event::Authorized {}]));
        let session = session.evolve(&Event::Authorized {});
        let accounts = vec![Uuid::from_u128(5)];
        assert_eq!(
            session.decide(Command::Complete { account_ids: accounts.clone() }),
            Ok(vec![Event::Completed { account_ids: accounts }])
        );
    }

    #[test]
    fn a_state_is_single_use_and_expires() {
        let used = ConnectSession::replay(&[started(), Event::Authorized {}]);
        assert_eq!(used.decide(Command::Authorize { now: at(11) }), Err(Rejection::StateUsed));
        let fresh = ConnectSession::replay(&[started()]);
        assert_eq!(fresh.decide(Command::Authorize { now: at(600) }), Err(Rejection::Expired));
        assert_eq!(fresh.decide(Command::Deny { reason: "x".into(), now: at(601) }), Err(Rejection::Expired));
    }

    #[test]
    fn a_denial_or_failure_ends_the_session() {
        let session = ConnectSession::replay(&[started()]);
        let denied = session.decide(Command::Deny { reason: "access_denied".into(), now: at(5) }).unwrap();
        let session = denied.iter().fold(session, ConnectSession::evolve);
        assert_eq!(session.status, SessionStatus::Denied);
        assert_eq!(
            session.decide(Command::Complete { account_ids: vec![] }),
            Err(Rejection::NotPending(SessionStatus::Denied))
        );
        assert_eq!(
            session.decide(Command::Fail { reason: "x".into() }),
            Err(Rejection::NotPending(SessionStatus::Denied))
        );
    }

    #[test]
    fn completing_before_the_callback_or_a_missing_session_is_refused() {
        let session = ConnectSession::replay(&[started()]);
        assert_eq!(
            session.decide(Command::Complete { account_ids: vec![] }),
            Err(Rejection::NotPending(SessionStatus::Started))
        );
        assert_eq!(ConnectSession::default().decide(Command::Authorize { now: at(0) }), Err(Rejection::NotFound));
        assert_eq!(
            session.decide(Command::Start(Box::new(SessionSpec {
                project_id: Uuid::nil(),
                platform: "x".into(),
                app_id: None,
                redirect_uri: None,
                external_id: None,
                scopes: vec![],
                state_hash: String::new(),
                expires_at: at(0),
            }))),
            Err(Rejection::AlreadyExists)
        );
    }
}
