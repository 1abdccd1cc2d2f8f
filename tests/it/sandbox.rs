//! The sandbox platform as an operator runs it: a failure of its own database is a 503 (try
//! again), never a dead grant; it can be turned off; and the maintenance job prunes what it has
//! spent (codes, tokens, grants, posts) and old connect-session secrets, keeping what is live.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use herald_shared::events::EventMetadata;
use herald_shared::platforms::PlatformSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::connect::{client, get_json};
use crate::harness::{TestApp, TestDb, test_config};

/// A problem answer: its status, `application/problem+json`, and its body.
async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_database_error_in_the_sandbox_token_look_up_is_a_503_and_never_disconnects_the_account() {
    let (app, client, accounts) = crate::posts::app_with_accounts().await;
    let account = accounts[0].clone();

    // The sandbox's token table is unreadable for a while.
    sqlx::query("ALTER TABLE sandbox_tokens RENAME TO sandbox_tokens_away").execute(&app.pool).await.unwrap();
    let asked = client.http.get(app.url("/sandbox/api/accounts")).bearer_auth("any-token").send().await.unwrap();
    let body = problem(asked, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["code"], "sandbox_unavailable", "{body}");
    // Its token endpoint too: a 400 would fail a refresh (or a connect) for good.
    let refreshed = client
        .http
        .post(app.url("/sandbox/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=any-token&client_id=herald-sandbox")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refreshed.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");

    let body = json!({"content": "through a blip", "targets": [{"account_id": account}]});
    let created = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    let post_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // Its first attempt meets the failure and is retried as transient.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let retried: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type IN ('delivery.retrying', 'delivery.failed')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if retried > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the publish never met the failure");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sqlx::query("ALTER TABLE sandbox_tokens_away RENAME TO sandbox_tokens").execute(&app.pool).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let post = loop {
        let post = get_json(&app, &client, &format!("/v1/posts/{post_id}")).await;
        if matches!(post["status"].as_str(), Some("published" | "failed")) {
            break post;
        }
        assert!(tokio::time::Instant::now() < deadline, "the post never finished: {post}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(post["status"], "published", "{post}");
    let account = get_json(&app, &client, &format!("/v1/accounts/{account}")).await;
    assert_eq!(account["status"], "connected", "a database blip is no dead grant: {account}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_sandbox_turned_off_is_not_served_and_its_accounts_are_refused() {
    let db = TestDb::new().await;
    let mut config = test_config(&db);
    let off = PlatformSettings { enabled: Some(false), ..PlatformSettings::default() };
    config.platforms.insert("sandbox".into(), off);
    let app = TestApp::spawn_on(db, Arc::new(config), Router::new()).await;
    let client = client(&app).await;

    for path in [
        "/sandbox/oauth/authorize?response_type=code&client_id=herald-sandbox&redirect_uri=https://x.example/&login=eve",
        "/sandbox/api/accounts",
    ] {
        let body = problem(client.http.get(app.url(path)).send().await.unwrap(), StatusCode::NOT_FOUND).await;
        assert_eq!(body["code"], "not_found", "{body}");
    }
    let codes: i64 = sqlx::query_scalar("SELECT count(*) FROM sandbox_codes").fetch_one(&app.pool).await.unwrap();
    assert_eq!(codes, 0, "nobody can write the sandbox's rows");

    let connect = client
        .http
        .post(app.url("/v1/connect/sandbox"))
        .bearer_auth(&client.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = problem(connect, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("turned off"), "{body}");

    // An account connected while the sandbox was on cannot be posted to.
    let account = crate::abandoned::sandbox_account(&app).await;
    let post = json!({"content": "hello", "targets": [{"account_id": account}]});
    let refused = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&post).send().await.unwrap();
    let body = problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "targets[0].account_id", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("turned off"), "{body}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_maintenance_job_prunes_spent_sandbox_state_and_old_session_secrets_and_keeps_live_ones() {
    let db = TestDb::new().await;
    let pool = db.pool_for_test().await;
    let (project_id, _, _) =
        herald_shared::commands::keys::create_project(&pool, "Acme", &EventMetadata::default()).await.unwrap();
    let statements = [
        // Codes: one expired two hours ago (used or not, it is spent), one still good.
        "INSERT INTO sandbox_codes (code_hash, client_id, redirect_uri, login, scopes, expires_at, used_at) VALUES
             ('\\x01', 'c', 'https://x/', 'old', '{}', now() - interval '2 hours', now() - interval '2 hours'),
             ('\\x02', 'c', 'https://x/', 'live', '{}', now() + interval '60 seconds', NULL)",
        // Grants: live; revoked long ago; revoked an hour ago; old with only spent tokens.
        "INSERT INTO sandbox_grants (id, client_id, login, scopes, created_at, revoked_at) VALUES
             ('00000000-0000-0000-0000-00000000000a', 'c', 'live', '{}', now() - interval '30 days', NULL),
             ('00000000-0000-0000-0000-00000000000b', 'c', 'revoked-old', '{}', now() - interval '30 days',
              now() - interval '8 days'),
             ('00000000-0000-0000-0000-00000000000c', 'c', 'revoked-recent', '{}', now() - interval '30 days',
              now() - interval '1 hour'),
             ('00000000-0000-0000-0000-00000000000d', 'c', 'dead', '{}', now() - interval '30 days', NULL)",
        "INSERT INTO sandbox_tokens (token_hash, grant_id, kind, expires_at, used_at) VALUES
             ('\\xa1', '00000000-0000-0000-0000-00000000000a', 'access', now() + interval '15 minutes', NULL),
             ('\\xa2', '00000000-0000-0000-0000-00000000000a', 'access', now() - interval '2 days', NULL),
             ('\\xa3', '00000000-0000-0000-0000-00000000000a', 'refresh', NULL, now() - interval '8 days'),
             ('\\xa4', '00000000-0000-0000-0000-00000000000a', 'refresh', NULL, now() - interval '1 hour'),
             ('\\xa5', '00000000-0000-0000-0000-00000000000a', 'refresh', NULL, NULL),
             ('\\xb1', '00000000-0000-0000-0000-00000000000b', 'refresh', NULL, NULL),
             ('\\xc1', '00000000-0000-0000-0000-00000000000c', 'refresh', NULL, NULL),
             ('\\xd1', '00000000-0000-0000-0000-00000000000d', 'access', now() - interval '8 days', NULL),
             ('\\xd2', '00000000-0000-0000-0000-00000000000d', 'refresh', NULL, now() - interval '8 days')",
        "INSERT INTO sandbox_posts (id, login, account_id, text, client_ref, created_at) VALUES
             ('00000000-0000-0000-0000-0000000000e1', 'live', 'person-live', 'old', 'r-old', now() - interval '8 days'),
             ('00000000-0000-0000-0000-0000000000e2', 'live', 'person-live', 'new', 'r-new', now())",
        "INSERT INTO sandbox_publish_attempts (client_ref, attempts, updated_at) VALUES
             ('r-old', 1, now() - interval '8 days'), ('r-new', 2, now())",
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&pool).await.unwrap();
    }
    // Connect sessions (their read model rows) and their sealed secrets.
    let sessions = [
        ("started-expired-long-ago", "started", "now() - interval '2 days'", "now() - interval '2 days'"),
        ("started-live", "started", "now() + interval '10 minutes'", "now()"),
        ("denied-long-ago", "denied", "now() - interval '2 days'", "now() - interval '2 days'"),
        ("failed-recently", "failed", "now() - interval '1 hour'", "now() - interval '1 hour'"),
        ("pending-long-ago", "pending", "now() - interval '2 days'", "now() - interval '2 days'"),
    ];
    let mut session_ids = std::collections::HashMap::new();
    for (name, status, expires_at, updated_at) in sessions {
        let id = Uuid::now_v7();
        let insert = format!(
            "INSERT INTO connect_sessions (id, project_id, platform, state_hash, status, expires_at, created_at, updated_at)
             VALUES ($1, $2, 'sandbox', $3, $4, {expires_at}, now() - interval '3 days', {updated_at})"
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(id)
            .bind(project_id)
            .bind(id.as_bytes().to_vec())
            .bind(status)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO connect_session_secrets (session_id, pkce_verifier) VALUES ($1, 'v1.sealed')")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        session_ids.insert(id, name);
    }

    // The scheduler queues the maintenance job at start; a worker runs it.
    let config = Arc::new(test_config(&db));
    let app = TestApp::spawn_on(db, config, Router::new()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ran: Option<String> =
            sqlx::query_scalar("SELECT state FROM finished_jobs WHERE kind = 'maintenance.prune'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        if let Some(state) = ran {
            assert_eq!(state, "succeeded");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the maintenance job did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let strings = async |query: &str| -> Vec<String> {
        let mut rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned())).fetch_all(&pool).await.unwrap();
        rows.sort();
        rows
    };
    assert_eq!(strings("SELECT login FROM sandbox_codes").await, ["live"]);
    assert_eq!(strings("SELECT login FROM sandbox_grants").await, ["live", "revoked-recent"]);
    assert_eq!(
        strings("SELECT encode(token_hash, 'hex') FROM sandbox_tokens").await,
        ["a1", "a4", "a5", "c1"],
        "live tokens, a recently rotated refresh token (reuse still revokes) and a recently revoked grant's"
    );
    assert_eq!(strings("SELECT text FROM sandbox_posts").await, ["new"]);
    assert_eq!(strings("SELECT client_ref FROM sandbox_publish_attempts").await, ["r-new"]);
    let kept: Vec<Uuid> =
        sqlx::query_scalar("SELECT session_id FROM connect_session_secrets").fetch_all(&pool).await.unwrap();
    let mut kept: Vec<&str> = kept.iter().map(|id| session_ids[id]).collect();
    kept.sort_unstable();
    assert_eq!(kept, ["failed-recently", "pending-long-ago", "started-live"]);
    app.stop().await.unwrap();
}
