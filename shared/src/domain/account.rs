//! A connected social account. Its tokens live encrypted outside the log (see `credentials`);
//! the log records what happened to them: connected, refreshed, needs a reconnect, disconnected.
//! A reconnect revives the same account, never a duplicate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};

/// Stored as text (`accounts.status`), read back with `status AS "status: AccountStatus"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Connected,
    NeedsReconnect,
    Disconnected,
}

impl AccountStatus {
    /// Every status, as stored and shown.
    pub const ALL: [AccountStatus; 3] =
        [AccountStatus::Connected, AccountStatus::NeedsReconnect, AccountStatus::Disconnected];

    /// The status named `text`, if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Connected => "connected",
            AccountStatus::NeedsReconnect => "needs_reconnect",
            AccountStatus::Disconnected => "disconnected",
        }
    }
}

/// What a grant told us about the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub project_id: Uuid,
    pub platform: String,
    pub platform_user_id: String,
    /// `person`, `page`, `organization`, `channel` ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub session_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub exists: bool,
    pub project_id: Uuid,
    pub status: AccountStatus,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Connect(Box<Grant>),
    RecordRefresh { expires_at: Option<DateTime<Utc>> },
    RecordRefreshFailed { reason: String },
    MarkNeedsReconnect { reason: String },
    Disconnect,
    SetExternalId { external_id: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "account.connected")]
    Connected(Box<Grant>),
    #[serde(rename = "account.reconnected")]
    Reconnected(Box<Grant>),
    #[serde(rename = "account.token_refreshed")]
    TokenRefreshed { expires_at: Option<DateTime<Utc>> },
    #[serde(rename = "account.refresh_failed")]
    RefreshFailed { reason: String },
    #[serde(rename = "account.needs_reconnect")]
    NeedsReconnect { reason: String },
    #[serde(rename = "account.disconnected")]
    Disconnected {},
    #[serde(rename = "account.updated")]
    Updated { external_id: Option<String> },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Connected(_) => "account.connected",
            Event::Reconnected(_) => "account.reconnected",
            Event::TokenRefreshed { .. } => "account.token_refreshed",
            Event::RefreshFailed { .. } => "account.refresh_failed",
            Event::NeedsReconnect { .. } => "account.needs_reconnect",
            Event::Disconnected {} => "account.disconnected",
            Event::Updated { .. } => "account.updated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the account does not exist")]
    NotFound,
    #[error("the account is disconnected")]
    Disconnected,
    #[error("the grant belongs to another project or account")]
    WrongGrant,
    #[error("the account already has that external id")]
    Unchanged,
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        if !self.exists && !matches!(command, Command::Connect(_)) {
            return Err(Rejection::NotFound);
        }
        match command {
            Command::Connect(grant) if !self.exists => Ok(vec![Event::Connected(grant)]),
            Command::Connect(grant) => {
                if grant.project_id != self.project_id {
                    return Err(Rejection::WrongGrant);
                }
                Ok(vec![Event::Reconnected(grant)])
            }
            Command::RecordRefresh { expires_at } => {
                if self.status == AccountStatus::Disconnected {
                    return Err(Rejection::Disconnected);
                }
                Ok(vec![Event::TokenRefreshed { expires_at }])
            }
            Command::RecordRefreshFailed { reason } => {
                if self.status == AccountStatus::Disconnected {
                    return Err(Rejection::Disconnected);
                }
                Ok(vec![Event::RefreshFailed { reason }])
            }
            Command::MarkNeedsReconnect { reason } => match self.status {
                AccountStatus::Disconnected => Err(Rejection::Disconnected),
                AccountStatus::NeedsReconnect => Ok(vec![]),
                AccountStatus::Connected => Ok(vec![Event::NeedsReconnect { reason }]),
            },
            Command::Disconnect => {
                if self.status == AccountStatus::Disconnected {
                    return Err(Rejection::Disconnected);
                }
                Ok(vec![Event::Disconnected {}])
            }
            Command::SetExternalId { external_id } => {
                if external_id == self.external_id {
                    return Err(Rejection::Unchanged);
                }
                Ok(vec![Event::Updated { external_id }])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Connected(grant) => {
                self.exists = true;
                self.project_id = grant.project_id;
                self.status = AccountStatus::Connected;
                self.external_id = grant.external_id.clone();
            }
            Event::Reconnected(grant) => {
                self.status = AccountStatus::Connected;
                if grant.external_id.is_some() {
                    self.external_id = grant.external_id.clone();
                }
            }
            Event::TokenRefreshed { .. } => self.status = AccountStatus::Connected,
            Event::RefreshFailed { .. } => {}
            Event::NeedsReconnect { .. } => self.status = AccountStatus::NeedsReconnect,
            Event::Disconnected {} => self.status = AccountStatus::Disconnected,
            Event::Updated { external_id } => self.external_id = external_id.clone(),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(external_id: Option<&str>) -> Box<Grant> {
        Box::new(Grant {
            project_id: Uuid::from_u128(1),
            platform: "sandbox".into(),
            platform_user_id: "u1".into(),
            kind: "person".into(),
            username: Some("ada".into()),
            display_name: None,
            external_id: external_id.map(str::to_owned),
            app_id: None,
            scopes: vec!["publish".into()],
            expires_at: None,
            session_id: Uuid::from_u128(9),
        })
    }

    #[test]
    fn the_first_grant_connects_and_a_later_one_reconnects_the_same_account() {
        assert_eq!(
            Account::default().decide(Command::Connect(grant(Some("a")))),
            Ok(vec![Event::Connected(grant(Some("a")))])
        );
        let disconnected = Account::replay(&[Event::Connected(grant(Some("a"))), Event::Disconnected {}]);
        let events = disconnected.decide(Command::Connect(grant(None))).unwrap();
        assert_eq!(events, vec![Event::Reconnected(grant(None))]);
        let account = events.iter().fold(disconnected, Account::evolve);
        assert_eq!(account.status, AccountStatus::Connected);
        assert_eq!(account.external_id.as_deref(), Some("a"), "a reconnect without external_id keeps the old one");
    }

    #[test]
    fn a_grant_of_another_project_is_refused() {
        let account = Account::replay(&[Event::Connected(grant(None))]);
        let mut other = grant(None);
        other.project_id = Uuid::from_u128(2);
        assert_eq!(account.decide(Command::Connect(other)), Err(Rejection::WrongGrant));
    }

    #[test]
    fn refresh_outcomes_and_needs_reconnect() {
        let account = Account::replay(&[Event::Connected(grant(None))]);
        assert_eq!(
            account.decide(Command::RecordRefresh { expires_at: None }),
            Ok(vec![Event::TokenRefreshed { expires_at: None }])
        );
        assert_eq!(
            account.decide(Command::RecordRefreshFailed { reason: "503".into() }),
            Ok(vec![Event::RefreshFailed { reason: "503".into() }])
        );
        let dead = account.decide(Command::MarkNeedsReconnect { reason: "invalid_grant".into() }).unwrap();
        let account = dead.iter().fold(account, Account::evolve);
        assert_eq!(account.status, AccountStatus::NeedsReconnect);
        assert_eq!(account.decide(Command::MarkNeedsReconnect { reason: "again".into() }), Ok(vec![]));
    }

    #[test]
    fn a_disconnected_account_refuses_everything_but_a_reconnect() {
        let account = Account::replay(&[Event::Connected(grant(None)), Event::Disconnected {}]);
        assert_eq!(account.decide(Command::Disconnect), Err(Rejection::Disconnected));
        assert_eq!(account.decide(Command::RecordRefresh { expires_at: None }), Err(Rejection::Disconnected));
        assert_eq!(account.decide(Command::MarkNeedsReconnect { reason: "x".into() }), Err(Rejection::Disconnected));
        assert_eq!(account.decide(Command::RecordRefreshFailed { reason: "x".into() }), Err(Rejection::Disconnected));
        assert_eq!(Account::default().decide(Command::Disconnect), Err(Rejection::NotFound));
    }

    #[test]
    fn the_external_id_changes_only_when_it_differs() {
        let account = Account::replay(&[Event::Connected(grant(Some("a")))]);
        assert_eq!(account.decide(Command::SetExternalId { external_id: Some("a".into()) }), Err(Rejection::Unchanged));
        assert_eq!(
            account.decide(Command::SetExternalId { external_id: Some("b".into()) }),
            Ok(vec![Event::Updated { external_id: Some("b".into()) }])
        );
    }
}
