//! Projects and API keys from the operator's side: the CLI creates, lists and revokes them; the
//! database holds hashes, never keys.

use std::process::Command;

use herald_shared::domain::api_key;
use sqlx::PgPool;
use uuid::Uuid;

use crate::harness::{TestDb, herald_binary};

fn herald(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(herald_binary())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("HERALD_LOG", "warn")
        .env("HERALD_MAX_LIVE_KEYS", "3")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn stored_hashes(pool: &PgPool) -> Vec<(String, Vec<u8>)> {
    sqlx::query_as("SELECT prefix, key_hash FROM api_keys ORDER BY created_at").fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn an_operator_creates_a_project_with_an_admin_key_shown_once() {
    let db = TestDb::new().await;
    let (ok, stdout, stderr) = herald(&db, &["projects", "create", "Acme"]);
    assert!(ok, "{stderr}");
    let key = stdout.lines().last().unwrap();
    assert!(api_key::is_well_formed(key), "the key alone on the last line: {stdout}");
    let project: Uuid = stdout.lines().next().unwrap().strip_prefix("project ").unwrap().parse().unwrap();

    let pool = db.pool_for_test().await;
    let stored = stored_hashes(&pool).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, key[..12]);
    assert_eq!(hex::encode(&stored[0].1), api_key::hash(key), "stored as its SHA-256");
    let (events,): (String,) = sqlx::query_as("SELECT string_agg(payload::text || metadata::text, ' ') FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!events.contains(key), "the key is in no event");
    let scopes: Vec<String> = sqlx::query_scalar("SELECT scopes FROM api_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(scopes.len(), api_key::SCOPES.len(), "every scope");

    let (ok, listed, _) = herald(&db, &["keys", "list", "--project", &project.to_string()]);
    assert!(ok);
    assert!(listed.contains(&key[..12]) && listed.contains("live"), "{listed}");
    assert!(!listed.contains(key), "lists never show the key");
}

#[tokio::test]
async fn an_operator_creates_scoped_keys_up_to_the_limit_and_revokes_them() {
    let db = TestDb::new().await;
    let (_, stdout, _) = herald(&db, &["projects", "create", "Acme"]);
    let project = stdout.lines().next().unwrap().strip_prefix("project ").unwrap().to_owned();

    let (ok, created, stderr) = herald(
        &db,
        &["keys", "create", "--project", &project, "--name", "sandbox ci", "--scopes", "posts:read,read", "--test"],
    );
    assert!(ok, "{stderr}");
    let test_key = created.lines().last().unwrap();
    assert!(test_key.starts_with("hk_test_") && api_key::is_well_formed(test_key));
    let key_id = created.lines().next().unwrap().strip_prefix("key ").unwrap().split(';').next().unwrap().to_owned();

    let (ok, _, stderr) =
        herald(&db, &["keys", "create", "--project", &project, "--name", "bad", "--scopes", "posts:publish"]);
    assert!(!ok);
    assert!(stderr.contains("unknown scope `posts:publish`"), "{stderr}");

    let (ok, _, _) = herald(&db, &["keys", "create", "--project", &project, "--name", "third"]);
    assert!(ok);
    let (ok, _, stderr) = herald(&db, &["keys", "create", "--project", &project, "--name", "fourth"]);
    assert!(!ok, "HERALD_MAX_LIVE_KEYS=3");
    assert!(stderr.contains("already has 3 live keys"), "{stderr}");

    let (ok, revoked, stderr) = herald(&db, &["keys", "revoke", "--project", &project, &key_id]);
    assert!(ok, "{stderr}");
    assert!(revoked.contains(&key_id));
    let (ok, _, stderr) = herald(&db, &["keys", "revoke", "--project", &project, &key_id]);
    assert!(!ok && stderr.contains("already revoked"), "{stderr}");
    let (ok, _, _) = herald(&db, &["keys", "create", "--project", &project, "--name", "fourth"]);
    assert!(ok, "a revoked key frees its place");

    let other_project = Uuid::now_v7().to_string();
    let (ok, _, stderr) = herald(&db, &["keys", "revoke", "--project", &other_project, &key_id]);
    assert!(!ok && stderr.contains("no such key"), "another project cannot touch it: {stderr}");
    let (_, listed, _) = herald(&db, &["keys", "list", "--project", &project]);
    assert!(listed.contains("revoked"), "{listed}");
}
