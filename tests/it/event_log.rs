//! The event log against a real PostgreSQL: optimistic concurrency, projections in the same
//! transaction, a reader that never skips, rebuilds that reproduce every row.

use chrono::{DateTime, Utc};
use herald_shared::commands::{ExecuteError, execute, execute_loaded};
use herald_shared::domain::aggregate::Aggregate;
use herald_shared::domain::{account, api_key, connect_session, oauth_app, post, project, webhook};
use herald_shared::events::reader::{Cursor, Filter, read_after, wait_for_horizon};
use herald_shared::events::{
    AppendError, EventMetadata, ExpectedVersion, GroupCommitter, ProjectionFailed, Projector, RecordedEvent, StreamId,
    append,
};
use herald_shared::projections::ReadModels;
use herald_shared::projections::rebuild::{READ_MODELS, rebuild};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::harness::TestDb;

/// For the store's own tests: appends that keep no read model, so a stream can be written
/// without the rows its events would make.
struct NoReadModels;

#[async_trait::async_trait]
impl Projector for NoReadModels {
    async fn project(&self, _: &mut sqlx::PgConnection, _: &[RecordedEvent]) -> Result<(), ProjectionFailed> {
        Ok(())
    }
}

/// How long a test waits for open transactions elsewhere on the server to finish.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

fn metadata(project_id: Uuid) -> EventMetadata {
    EventMetadata { project_id: Some(project_id), actor: Some("test".into()), ..EventMetadata::default() }
}

async fn run<A: Aggregate>(
    pool: &PgPool,
    id: Uuid,
    command: A::Command,
    project_id: Uuid,
) -> Result<(), ExecuteError<A::Rejection>> {
    let mut tx = pool.begin().await?;
    execute::<A>(&mut tx, id, command, &metadata(project_id)).await?;
    tx.commit().await?;
    Ok(())
}

/// An uploaded item deleted later, an import that completed and one that failed.
async fn media_script(pool: &PgPool, project_id: Uuid) {
    use herald_shared::domain::api_key::Environment;
    use herald_shared::domain::media::{MediaFacts, MediaKind};
    use herald_shared::domain::media_item::{Command, Media, object_key};
    let facts = MediaFacts {
        kind: MediaKind::Video,
        content_type: "video/mp4".into(),
        size_bytes: 1234,
        sha256: "ab".repeat(32),
        width: Some(1920),
        height: Some(1080),
        duration_ms: Some(3000),
        frame_rate: Some(29.97),
        video_codec: Some("h264".into()),
        audio_codec: Some("aac".into()),
    };
    let uploaded = Uuid::now_v7();
    let upload = Command::Upload {
        project_id,
        environment: Environment::Test,
        facts: facts.clone(),
        object_key: object_key(uploaded),
    };
    run::<Media>(pool, uploaded, upload, project_id).await.unwrap();
    run::<Media>(pool, uploaded, Command::Delete, project_id).await.unwrap();
    for outcome in [Command::CompleteImport { facts }, Command::FailImport { reason: "timed out".into() }] {
        let imported = Uuid::now_v7();
        let request = Command::RequestImport {
            project_id,
            environment: Environment::Live,
            source_url: "https://example.com/a.mp4".into(),
            object_key: object_key(imported),
        };
        run::<Media>(pool, imported, request, project_id).await.unwrap();
        run::<Media>(pool, imported, outcome, project_id).await.unwrap();
    }
}

async fn create_project(pool: &PgPool, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    run::<project::Project>(pool, id, project::Command::Create { name: name.into() }, id).await.unwrap();
    id
}

fn create_post(project_id: Uuid, accounts: &[Uuid], scheduled_at: Option<DateTime<Utc>>) -> post::Command {
    post::Command::Create {
        project_id,
        content: "hello world".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: accounts
            .iter()
            .map(|account_id| post::Target {
                delivery_id: Uuid::now_v7(),
                account_id: *account_id,
                content: None,
                options: Value::Null,
                media: None,
                thread: None,
                first_comment: None,
            })
            .collect(),
        scheduled_at,
        draft: false,
        requires_approval: false,
        external_id: Some("ext-1".into()),
        now: Utc::now(),
    }
}

#[tokio::test]
async fn an_append_at_the_wrong_version_is_a_conflict_naming_both_versions() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let stream = StreamId::of::<project::Project>(Uuid::now_v7());
    let events = [project::Event::Created { name: "a".into() }];
    let mut tx = pool.begin().await.unwrap();
    append(&mut tx, &NoReadModels, &stream, ExpectedVersion::NoStream, &events, &EventMetadata::default())
        .await
        .unwrap();
    let again =
        append(&mut tx, &NoReadModels, &stream, ExpectedVersion::NoStream, &events, &EventMetadata::default()).await;
    assert!(
        matches!(again, Err(AppendError::Conflict { expected: ExpectedVersion::NoStream, actual: Some(1), .. })),
        "{again:?}"
    );
    let stale =
        append(&mut tx, &NoReadModels, &stream, ExpectedVersion::Exact(3), &events, &EventMetadata::default()).await;
    assert!(
        matches!(stale, Err(AppendError::Conflict { expected: ExpectedVersion::Exact(3), actual: Some(1), .. })),
        "{stale:?}"
    );
    let recorded =
        append(&mut tx, &NoReadModels, &stream, ExpectedVersion::Exact(1), &events, &EventMetadata::default())
            .await
            .unwrap();
    assert_eq!(recorded[0].version, 2);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn of_two_concurrent_writers_at_the_same_version_exactly_one_wins() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "p").await;
    let post_id = Uuid::now_v7();
    run::<post::Post>(&pool, post_id, create_post(project_id, &[Uuid::now_v7()], None), project_id).await.unwrap();

    let stream = StreamId::of::<post::Post>(post_id);
    let mut first = pool.begin().await.unwrap();
    let mut second = pool.begin().await.unwrap();
    let cancel = [post::Event::Canceled { delivery_ids: vec![], status: post::PostStatus::Canceled }];
    append(&mut first, &NoReadModels, &stream, ExpectedVersion::Exact(1), &cancel, &EventMetadata::default())
        .await
        .unwrap();
    let racing = tokio::spawn(async move {
        let result =
            append(&mut second, &NoReadModels, &stream, ExpectedVersion::Exact(1), &cancel, &EventMetadata::default())
                .await;
        (result, second)
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    first.commit().await.unwrap();
    let (result, second) = racing.await.unwrap();
    assert!(matches!(result, Err(AppendError::Conflict { actual: Some(2), .. })), "{result:?}");
    second.rollback().await.unwrap();
}

#[tokio::test]
async fn read_models_follow_inside_the_same_transaction_and_vanish_with_it() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "p").await;
    let post_id = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    execute::<post::Post>(
        &mut tx,
        post_id,
        create_post(project_id, &[Uuid::now_v7(), Uuid::now_v7()], None),
        &metadata(project_id),
    )
    .await
    .unwrap();
    let (status, deliveries): (String, i64) = sqlx::query_as(
        "SELECT p.status, (SELECT count(*) FROM deliveries d WHERE d.post_id = p.id) FROM posts p WHERE p.id = $1",
    )
    .bind(post_id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((status.as_str(), deliveries), ("scheduled", 2));
    tx.rollback().await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM events WHERE stream_id LIKE 'post:%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "a rolled-back command leaves no event and no row");
}

#[tokio::test]
async fn a_rejected_command_records_nothing() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "p").await;
    let missing = run::<post::Post>(&pool, Uuid::now_v7(), post::Command::Approve, project_id).await;
    assert!(matches!(missing, Err(ExecuteError::Rejected(post::Rejection::NotFound))));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(events, 1, "only the project's creation");
}

#[tokio::test]
async fn events_cannot_be_changed_or_deleted() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    create_project(&pool, "p").await;
    for statement in ["UPDATE events SET payload = '{}'", "DELETE FROM events", "TRUNCATE events"] {
        let error = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(error.to_string().contains("never updated or deleted"), "{statement}: {error}");
    }
}

/// Two appends commit in the opposite order of their positions; a reader polling in between
/// must not move past the one still in flight.
#[tokio::test]
async fn the_reader_never_skips_an_event_that_commits_late() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let (early, late) =
        (StreamId::of::<project::Project>(Uuid::now_v7()), StreamId::of::<project::Project>(Uuid::now_v7()));
    let created = [project::Event::Created { name: "x".into() }];

    let mut slow = pool.begin().await.unwrap();
    let slow_event =
        append(&mut slow, &NoReadModels, &early, ExpectedVersion::NoStream, &created, &EventMetadata::default())
            .await
            .unwrap();
    let mut fast = pool.begin().await.unwrap();
    let fast_event =
        append(&mut fast, &NoReadModels, &late, ExpectedVersion::NoStream, &created, &EventMetadata::default())
            .await
            .unwrap();
    assert!(slow_event[0].position < fast_event[0].position);
    fast.commit().await.unwrap();

    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    let read = read_after(&pool, cursor, &Filter::default(), 100).await.unwrap();
    for event in &read {
        seen.push(event.stream_id.clone());
        cursor = Cursor::after(event);
    }
    assert!(seen.is_empty(), "nothing is readable while an earlier append is in flight: {seen:?}");

    slow.commit().await.unwrap();
    assert!(wait_for_horizon(&pool, SETTLE).await.unwrap());
    let read = read_after(&pool, cursor, &Filter::default(), 100).await.unwrap();
    for event in &read {
        seen.push(event.stream_id.clone());
        cursor = Cursor::after(event);
    }
    assert_eq!(seen, vec![early.to_string(), late.to_string()], "both, in log order, none skipped");
    assert!(read_after(&pool, cursor, &Filter::default(), 100).await.unwrap().is_empty(), "and nothing twice");
}

#[tokio::test]
async fn the_reader_filters_by_project_and_type() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let mine = create_project(&pool, "mine").await;
    let theirs = create_project(&pool, "theirs").await;
    run::<post::Post>(&pool, Uuid::now_v7(), create_post(mine, &[Uuid::now_v7()], None), mine).await.unwrap();
    run::<post::Post>(&pool, Uuid::now_v7(), create_post(theirs, &[Uuid::now_v7()], None), theirs).await.unwrap();

    let filter = Filter { project_id: Some(mine), event_types: Some(vec!["post.created".into()]) };
    assert!(wait_for_horizon(&pool, SETTLE).await.unwrap(), "tests in other databases share the horizon");
    let events = read_after(&pool, Cursor::START, &filter, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].project_id, Some(mine));
    assert_eq!(events[0].event_type, "post.created");
}

async fn snapshot(pool: &PgPool) -> Vec<(String, Vec<Value>)> {
    let mut tables = Vec::new();
    for table in READ_MODELS {
        let rows: Vec<Value> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT to_jsonb(t) FROM {table} t ORDER BY id")))
                .fetch_all(pool)
                .await
                .unwrap();
        tables.push(((*table).to_owned(), rows));
    }
    tables
}

#[tokio::test]
async fn a_rebuild_reproduces_every_read_model_row() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "Acme").await;
    run::<project::Project>(&pool, project_id, project::Command::Rename { name: "Acme Inc".into() }, project_id)
        .await
        .unwrap();

    let key_id = Uuid::now_v7();
    let spec = api_key::KeySpec {
        project_id,
        name: "ci".into(),
        description: Some("for CI".into()),
        prefix: "hk_live_abcd".into(),
        key_hash: "ab".repeat(32),
        environment: api_key::Environment::Live,
        scopes: vec!["posts:read".into(), "posts:write".into()],
        platforms: Some(vec!["x".into()]),
        accounts: None,
        expires_at: Some(Utc::now()),
        requests_per_minute: 60,
        requests_per_day: 10_000,
        allowed_ips: vec!["10.0.0.0/8".into()],
        allowed_origins: vec![],
    };
    run::<api_key::ApiKey>(&pool, key_id, api_key::Command::Create(Box::new(spec)), project_id).await.unwrap();
    run::<api_key::ApiKey>(&pool, key_id, api_key::Command::Revoke, project_id).await.unwrap();

    let app_id = Uuid::now_v7();
    let register = oauth_app::Command::Register {
        project_id,
        platform: "x".into(),
        name: "Ours".into(),
        image_url: None,
        client_id: "client".into(),
    };
    run::<oauth_app::OAuthApp>(&pool, app_id, register, project_id).await.unwrap();
    let update =
        oauth_app::Command::Update { name: None, image_url: Some(Some("https://img".into())), secret_changed: true };
    run::<oauth_app::OAuthApp>(&pool, app_id, update, project_id).await.unwrap();

    let session_id = Uuid::now_v7();
    let session = connect_session::SessionSpec {
        project_id,
        platform: "sandbox".into(),
        app_id: None,
        redirect_uri: Some("https://client/done".into()),
        external_id: Some("user-1".into()),
        scopes: vec![],
        state_hash: "cd".repeat(32),
        expires_at: Utc::now() + chrono::Duration::minutes(10),
    };
    run::<connect_session::ConnectSession>(
        &pool,
        session_id,
        connect_session::Command::Start(Box::new(session)),
        project_id,
    )
    .await
    .unwrap();
    run::<connect_session::ConnectSession>(
        &pool,
        session_id,
        connect_session::Command::Authorize { now: Utc::now() },
        project_id,
    )
    .await
    .unwrap();

    let account_id = Uuid::now_v7();
    let grant = account::Grant {
        project_id,
        platform: "sandbox".into(),
        platform_user_id: "u-1".into(),
        kind: "person".into(),
        username: Some("ada".into()),
        display_name: Some("Ada".into()),
        external_id: Some("user-1".into()),
        app_id: None,
        scopes: vec!["publish".into()],
        expires_at: Some(Utc::now()),
        session_id,
    };
    run::<account::Account>(&pool, account_id, account::Command::Connect(Box::new(grant.clone())), project_id)
        .await
        .unwrap();
    run::<connect_session::ConnectSession>(
        &pool,
        session_id,
        connect_session::Command::Complete { account_ids: vec![account_id] },
        project_id,
    )
    .await
    .unwrap();
    run::<account::Account>(
        &pool,
        account_id,
        account::Command::RecordRefresh { expires_at: Some(Utc::now()) },
        project_id,
    )
    .await
    .unwrap();
    run::<account::Account>(
        &pool,
        account_id,
        account::Command::MarkNeedsReconnect { reason: "invalid_grant".into() },
        project_id,
    )
    .await
    .unwrap();
    run::<account::Account>(&pool, account_id, account::Command::Connect(Box::new(grant)), project_id).await.unwrap();

    let published = Uuid::now_v7();
    run::<post::Post>(&pool, published, create_post(project_id, &[account_id], None), project_id).await.unwrap();
    let delivery_id: Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE post_id = $1")
        .bind(published)
        .fetch_one(&pool)
        .await
        .unwrap();
    for command in [
        post::Command::Queue { delivery_id, generation: 1 },
        post::Command::StartPublishing { delivery_id, generation: 1 },
        post::Command::RecordPublished {
            delivery_id,
            platform_post_id: "p-1".into(),
            platform_url: Some("https://sandbox/p-1".into()),
            at: Utc::now(),
        },
    ] {
        run::<post::Post>(&pool, published, command, project_id).await.unwrap();
    }
    let edited = Uuid::now_v7();
    run::<post::Post>(&pool, edited, create_post(project_id, &[account_id, Uuid::now_v7()], None), project_id)
        .await
        .unwrap();
    let update = post::Command::Update {
        content: Some("edited".into()),
        media: None,
        thread: None,
        first_comment: None,
        targets: None,
        scheduled_at: None,
    };
    run::<post::Post>(&pool, edited, update, project_id).await.unwrap();
    run::<post::Post>(&pool, edited, post::Command::Cancel, project_id).await.unwrap();

    media_script(&pool, project_id).await;
    // A webhook endpoint, changed, disabled and another deleted.
    let reach = webhook::KeyReach {
        environment: api_key::Environment::Live,
        scopes: vec!["posts:read".into()],
        platforms: Some(vec!["x".into()]),
        accounts: None,
    };
    let settings = webhook::Settings {
        url: "https://example.test/hook".into(),
        description: Some("orders".into()),
        event_types: Some(vec!["post.published".into()]),
        max_in_flight: 1,
    };
    for deleted in [false, true] {
        let endpoint = Uuid::now_v7();
        let create = webhook::Command::Create { project_id, settings: settings.clone(), reach: reach.clone() };
        run::<webhook::WebhookEndpoint>(&pool, endpoint, create, project_id).await.unwrap();
        let mut changed = settings.clone();
        changed.max_in_flight = 4;
        let update = webhook::Command::Update { settings: changed, enabled: true, headers_changed: true };
        run::<webhook::WebhookEndpoint>(&pool, endpoint, update, project_id).await.unwrap();
        let last = if deleted { webhook::Command::Delete } else { webhook::Command::Disable { reason: "410".into() } };
        run::<webhook::WebhookEndpoint>(&pool, endpoint, last, project_id).await.unwrap();
    }
    // A post with media on it and on one target (post_media, and both lists).
    let mut with_media = create_post(project_id, &[account_id, Uuid::now_v7()], None);
    if let post::Command::Create { media, targets, .. } = &mut with_media {
        *media = vec![post::MediaRef { id: Uuid::now_v7(), alt_text: Some("a cat".into()) }];
        targets[1].media = Some(vec![post::MediaRef { id: Uuid::now_v7(), alt_text: None }]);
    }
    run::<post::Post>(&pool, Uuid::now_v7(), with_media, project_id).await.unwrap();

    let before = snapshot(&pool).await;
    assert!(before.iter().all(|(_, rows)| !rows.is_empty()), "the script touches every read model: {before:?}");
    let applied = rebuild(&pool).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(applied, u64::try_from(events).unwrap());
    let after = snapshot(&pool).await;
    for ((table, rows_before), (_, rows_after)) in before.iter().zip(&after) {
        assert_eq!(rows_before, rows_after, "{table} differs after the rebuild");
    }
}

#[tokio::test]
async fn the_group_committer_gives_each_caller_its_own_result() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "p").await;
    let committer = GroupCommitter::spawn(pool.clone(), std::sync::Arc::new(ReadModels), 1, 64);
    let contested = Uuid::now_v7();
    let mut calls = Vec::new();
    for index in 0..40 {
        let post_id = if index % 20 == 0 { contested } else { Uuid::now_v7() };
        let committer = committer.clone();
        let command = create_post(project_id, &[Uuid::now_v7()], None);
        calls.push(tokio::spawn(async move {
            execute_loaded(&committer, post_id, &mut (post::Post::default(), 0), command, metadata(project_id))
                .await
                .map(|events| (post_id, events))
        }));
    }
    let mut created = Vec::new();
    let mut conflicts = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok((post_id, events)) => {
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].version, 1);
                created.push(post_id);
            }
            Err(ExecuteError::Conflict { actual, .. }) => {
                assert_eq!(actual, Some(1), "the stream another caller created");
                conflicts += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((created.len(), conflicts), (39, 1), "the contested stream is created once; every other call succeeds");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE id = ANY($1)")
        .bind(&created)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 39, "every created post is projected");
}

#[tokio::test]
async fn the_rebuild_command_replays_the_log() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let project_id = create_project(&pool, "p").await;
    run::<post::Post>(&pool, Uuid::now_v7(), create_post(project_id, &[Uuid::now_v7()], None), project_id)
        .await
        .unwrap();
    sqlx::query("DELETE FROM deliveries").execute(&pool).await.unwrap();
    let output = std::process::Command::new(crate::harness::herald_binary())
        .args(["projections", "rebuild"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("rebuilt the read models from 2 events"));
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&pool).await.unwrap();
    assert_eq!(deliveries, 1, "the lost row is back");
}
