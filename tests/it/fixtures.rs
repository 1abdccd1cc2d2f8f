//! Records the tests make directly, as the code that makes them in production would: a
//! connected account (as the exchange job records it, without tokens) and a draft post.

use herald_shared::commands::execute;
use herald_shared::domain::account::{self, Account, Grant};
use herald_shared::domain::post::{self, Post, Target};
use herald_shared::events::EventMetadata;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::TestApp;

fn metadata(project_id: Uuid) -> EventMetadata {
    EventMetadata { project_id: Some(project_id), ..EventMetadata::default() }
}

/// A connected account of `project_id` on `platform`.
pub async fn connected_account(
    app: &TestApp,
    project_id: Uuid,
    platform: &str,
    platform_user_id: &str,
    external_id: Option<&str>,
) -> Uuid {
    let id = Uuid::now_v7();
    let grant = Grant {
        project_id,
        platform: platform.into(),
        platform_user_id: platform_user_id.into(),
        kind: "person".into(),
        username: None,
        display_name: None,
        external_id: external_id.map(str::to_owned),
        app_id: None,
        scopes: vec![],
        expires_at: None,
        session_id: Uuid::now_v7(),
    };
    let mut tx = app.pool.begin().await.unwrap();
    execute::<Account>(&mut tx, id, account::Command::Connect(Box::new(grant)), &metadata(project_id)).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// A draft post of `project_id` with `content`, aimed at `accounts`.
pub async fn draft_post(app: &TestApp, project_id: Uuid, content: &str, accounts: &[Uuid]) -> Uuid {
    let id = Uuid::now_v7();
    let targets = accounts
        .iter()
        .map(|account_id| Target {
            delivery_id: Uuid::now_v7(),
            account_id: *account_id,
            content: None,
            options: Value::Null,
            media: None,
            thread: None,
            first_comment: None,
        })
        .collect();
    let command = post::Command::Create {
        project_id,
        content: content.into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets,
        scheduled_at: None,
        draft: true,
        requires_approval: false,
        external_id: None,
        now: chrono::Utc::now(),
    };
    let mut tx = app.pool.begin().await.unwrap();
    execute::<Post>(&mut tx, id, command, &metadata(project_id)).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// Publish checkpoints kept in memory, for tests that call an adapter directly: what a worker
/// keeps sealed in `publish_checkpoints`, as the adapter sees it.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    kept: std::sync::Mutex<Vec<(String, String)>>,
}

impl MemoryCheckpoints {
    pub const fn new() -> Self {
        Self { kept: std::sync::Mutex::new(Vec::new()) }
    }
}

/// One store for adapter tests whose platforms keep no checkpoint, or that use references of
/// their own.
pub static CHECKPOINTS: MemoryCheckpoints = MemoryCheckpoints::new();

#[async_trait::async_trait]
impl herald_shared::platforms::PublishCheckpoints for MemoryCheckpoints {
    async fn load(&self, reference: &str) -> Result<Option<String>, herald_shared::platforms::PlatformError> {
        let kept = self.kept.lock().unwrap();
        Ok(kept.iter().find(|(kept, _)| kept == reference).map(|(_, state)| state.clone()))
    }

    async fn save(
        &self,
        reference: &str,
        _platform: &str,
        state: &str,
    ) -> Result<(), herald_shared::platforms::PlatformError> {
        let mut kept = self.kept.lock().unwrap();
        kept.retain(|(kept, _)| kept != reference);
        kept.push((reference.to_owned(), state.to_owned()));
        Ok(())
    }

    async fn forget(&self, reference: &str) -> Result<(), herald_shared::platforms::PlatformError> {
        self.kept.lock().unwrap().retain(|(kept, _)| kept != reference);
        Ok(())
    }
}
