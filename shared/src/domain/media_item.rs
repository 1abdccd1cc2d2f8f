//! A media item of a project's library: an image or a video, uploaded or imported from a URL.
//!
//! `ready` (uploaded, or imported) / `importing -> ready | failed`; any of them `-> deleted`.
//!
//! An item is recorded only once its object is stored (an upload) or its import is requested,
//! so an upload that dies half-way leaves no stream. What the object is (kind, size, SHA-256,
//! dimensions, codecs) is [`MediaFacts`], read from its bytes by `crate::media`. Deleting is
//! soft: the item stops being served at once and the maintenance job removes its object later
//! (`crate::retention`). Whether a post still needs it is asked before deleting
//! (`crate::commands::media`), not here: that is other aggregates' state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};
use super::api_key::Environment;
use super::media::MediaFacts;

/// Every media object's key starts with this; the orphan sweep lists it.
pub const OBJECT_PREFIX: &str = "media/";

/// The store key of item `id`'s object. The id is a UUIDv7, so the key carries when the item was
/// begun: the orphan sweep leaves young objects alone (an upload may be between storing its
/// object and committing its row).
pub fn object_key(id: Uuid) -> String {
    format!("{OBJECT_PREFIX}{id}")
}

/// Where an item is in its life. Stored as text (`media.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MediaStatus {
    /// Its import job has not finished.
    Importing,
    /// Its object is stored and described.
    Ready,
    /// Its import failed (`failure_reason` says why); it has no object.
    Failed,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Importing => "importing",
            MediaStatus::Ready => "ready",
            MediaStatus::Failed => "failed",
        }
    }

    /// The status named `text`, as lists filter by it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "importing" => Some(MediaStatus::Importing),
            "ready" => Some(MediaStatus::Ready),
            "failed" => Some(MediaStatus::Failed),
            _ => None,
        }
    }
}

/// The state an item's events fold to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Media {
    pub project_id: Uuid,
    /// `None` until the item exists.
    pub status: Option<MediaStatus>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An upload's object is stored at `object_key` and described by `facts`.
    Upload { project_id: Uuid, environment: Environment, facts: MediaFacts, object_key: String },
    /// Fetch `source_url` into `object_key` (a job does it).
    RequestImport { project_id: Uuid, environment: Environment, source_url: String, object_key: String },
    /// The import job stored the object.
    CompleteImport { facts: MediaFacts },
    /// The import job gave up, for `reason` (shown to the client).
    FailImport { reason: String },
    /// Stop serving it; its object goes with the next sweep.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "media.uploaded")]
    Uploaded { project_id: Uuid, environment: Environment, facts: MediaFacts, object_key: String },
    #[serde(rename = "media.import_requested")]
    ImportRequested { project_id: Uuid, environment: Environment, source_url: String, object_key: String },
    #[serde(rename = "media.imported")]
    Imported { facts: MediaFacts },
    #[serde(rename = "media.import_failed")]
    ImportFailed { reason: String },
    #[serde(rename = "media.deleted")]
    Deleted {},
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Uploaded { .. } => "media.uploaded",
            Event::ImportRequested { .. } => "media.import_requested",
            Event::Imported { .. } => "media.imported",
            Event::ImportFailed { .. } => "media.import_failed",
            Event::Deleted {} => "media.deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the media item already exists")]
    AlreadyExists,
    #[error("no such media item")]
    NotFound,
    #[error("the media item was deleted")]
    Deleted,
    #[error("the media item is not being imported (it is {0})")]
    NotImporting(&'static str),
}

impl Aggregate for Media {
    const KIND: &'static str = "media";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Upload { project_id, environment, facts, object_key } => {
                self.absent()?;
                Ok(vec![Event::Uploaded { project_id, environment, facts, object_key }])
            }
            Command::RequestImport { project_id, environment, source_url, object_key } => {
                self.absent()?;
                Ok(vec![Event::ImportRequested { project_id, environment, source_url, object_key }])
            }
            Command::CompleteImport { facts } => {
                self.importing()?;
                Ok(vec![Event::Imported { facts }])
            }
            Command::FailImport { reason } => {
                self.importing()?;
                Ok(vec![Event::ImportFailed { reason }])
            }
            Command::Delete => {
                self.live()?;
                Ok(vec![Event::Deleted {}])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Uploaded { project_id, .. } => {
                self.project_id = *project_id;
                self.status = Some(MediaStatus::Ready);
            }
            Event::ImportRequested { project_id, .. } => {
                self.project_id = *project_id;
                self.status = Some(MediaStatus::Importing);
            }
            Event::Imported { .. } => self.status = Some(MediaStatus::Ready),
            Event::ImportFailed { .. } => self.status = Some(MediaStatus::Failed),
            Event::Deleted {} => self.deleted = true,
        }
        self
    }
}

impl Media {
    fn absent(&self) -> Result<(), Rejection> {
        if self.status.is_some() { Err(Rejection::AlreadyExists) } else { Ok(()) }
    }

    /// Exists and is not deleted.
    fn live(&self) -> Result<MediaStatus, Rejection> {
        let status = self.status.ok_or(Rejection::NotFound)?;
        if self.deleted { Err(Rejection::Deleted) } else { Ok(status) }
    }

    /// An import's outcome lands only on a live item still importing: one deleted meanwhile
    /// refuses it (the job then removes the object it stored).
    fn importing(&self) -> Result<(), Rejection> {
        match self.live()? {
            MediaStatus::Importing => Ok(()),
            other => Err(Rejection::NotImporting(other.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::media::MediaKind;

    fn facts() -> MediaFacts {
        MediaFacts {
            kind: MediaKind::Image,
            content_type: "image/png".into(),
            size_bytes: 67,
            sha256: "ab".repeat(32),
            width: Some(1),
            height: Some(1),
            duration_ms: None,
            frame_rate: None,
            video_codec: None,
            audio_codec: None,
        }
    }

    fn upload() -> Command {
        Command::Upload {
            project_id: Uuid::nil(),
            environment: Environment::Live,
            facts: facts(),
            object_key: "media/x".into(),
        }
    }

    fn import() -> Command {
        Command::RequestImport {
            project_id: Uuid::nil(),
            environment: Environment::Test,
            source_url: "https://example.com/a.png".into(),
            object_key: "media/y".into(),
        }
    }

    /// Given `history` (commands that succeed), when `command`: its outcome.
    fn given(history: Vec<Command>, command: Command) -> Result<Vec<Event>, Rejection> {
        let state = history.into_iter().fold(Media::default(), |state, command| {
            let events = state.decide(command).expect("the history is valid");
            events.iter().fold(state, Media::evolve)
        });
        state.decide(command)
    }

    #[test]
    fn an_upload_is_ready_at_once_and_only_once() {
        let events = given(vec![], upload()).unwrap();
        assert!(matches!(&events[..], [Event::Uploaded { object_key, .. }] if object_key == "media/x"));
        let state = Media::replay(&events);
        assert_eq!(state.status, Some(MediaStatus::Ready));
        assert_eq!(given(vec![upload()], upload()), Err(Rejection::AlreadyExists));
        assert_eq!(given(vec![upload()], import()), Err(Rejection::AlreadyExists));
    }

    #[test]
    fn an_import_ends_ready_or_failed_once() {
        assert_eq!(
            given(vec![import()], Command::CompleteImport { facts: facts() }),
            Ok(vec![Event::Imported { facts: facts() }])
        );
        let reason = || Command::FailImport { reason: "timed out".into() };
        assert_eq!(given(vec![import()], reason()), Ok(vec![Event::ImportFailed { reason: "timed out".into() }]));
        assert_eq!(given(vec![import(), reason()], reason()), Err(Rejection::NotImporting("failed")));
        let done = Command::CompleteImport { facts: facts() };
        assert_eq!(
            given(vec![import(), Command::CompleteImport { facts: facts() }], done),
            Err(Rejection::NotImporting("ready"))
        );
        assert_eq!(given(vec![upload()], reason()), Err(Rejection::NotImporting("ready")));
        assert_eq!(given(vec![], reason()), Err(Rejection::NotFound));
    }

    #[test]
    fn a_deleted_item_takes_no_more_outcomes_and_no_second_delete() {
        assert_eq!(given(vec![upload()], Command::Delete), Ok(vec![Event::Deleted {}]));
        assert_eq!(given(vec![upload(), Command::Delete], Command::Delete), Err(Rejection::Deleted));
        assert_eq!(given(vec![], Command::Delete), Err(Rejection::NotFound));
        // Deleted while its import ran: the job's outcome is refused, and it cleans up.
        let done = Command::CompleteImport { facts: facts() };
        assert_eq!(given(vec![import(), Command::Delete], done), Err(Rejection::Deleted));
    }

    #[test]
    fn events_keep_their_stored_names() {
        let events = given(vec![], upload()).unwrap();
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["type"], "media.uploaded");
        assert_eq!(json["environment"], "live");
        assert_eq!(events[0].event_type(), "media.uploaded");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, events[0]);
        assert_eq!(Event::Deleted {}.event_type(), "media.deleted");
    }
}
