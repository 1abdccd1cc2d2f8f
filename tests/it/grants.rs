//! One grant, one credential: the sandbox's grant reaches a person and two pages and rotates its
//! refresh token on every use (a reused one revokes the grant, as X and TikTok do). Its
//! accounts share one pair: refreshed concurrently or in turn, each rotation is one token
//! request and every account stays connected; disconnecting one leaves the others publishing;
//! only the last disconnect revokes the grant, once.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::connect::{Client, authorize, get_json};
use crate::credentials::{refresh, refreshes_settled};
use crate::harness::TestApp;
use crate::posts::{app_with_accounts, create, made, wait_for};

/// Refresh tokens the sandbox has seen used, and whether it revoked the grant for a reuse.
async fn sandbox_grant(app: &TestApp) -> (i64, Option<String>) {
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sandbox_tokens WHERE kind = 'refresh' AND used_at IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let revoked: Option<String> =
        sqlx::query_scalar("SELECT revoked_because FROM sandbox_grants WHERE revoked_at IS NOT NULL LIMIT 1")
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    (used, revoked)
}

async fn statuses(app: &TestApp, client: &Client, ids: &[String]) -> Vec<String> {
    let mut statuses = Vec::new();
    for id in ids {
        statuses
            .push(get_json(app, client, &format!("/v1/accounts/{id}")).await["status"].as_str().unwrap().to_owned());
    }
    statuses
}

/// Lets the next refresh of the shared pair rotate at once (it was refreshed moments ago).
async fn age_the_pair(app: &TestApp) {
    sqlx::query("UPDATE grant_credentials SET refreshed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
}

async fn publish(app: &TestApp, client: &Client, account_id: &str, text: &str) {
    let post = create(app, client, json!({"content": text, "targets": [{"account_id": account_id}]})).await;
    wait_for(app, client, post["id"].as_str().unwrap(), &["published"], Duration::from_secs(10)).await;
    assert_eq!(made(app, text).await, 1, "{text}");
}

#[tokio::test]
async fn a_grants_accounts_share_one_pair_refreshed_once_per_rotation() {
    let (app, client, ids) = app_with_accounts().await;
    assert_eq!(ids.len(), 3, "a person and two pages");
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grant_credentials").fetch_one(&app.pool).await.unwrap();
    assert_eq!(grants, 1, "one pair for the three accounts");

    // All three at once: one refresh.
    let triggers = ids.iter().map(|id| refresh(&app, &client, id));
    for status in futures::future::join_all(triggers).await {
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    }
    refreshes_settled(&app).await;
    assert_eq!(sandbox_grant(&app).await, (1, None), "one token request, the grant alive");

    // In turn, each allowed to rotate: each uses the token the one before it got.
    for (turn, id) in ids.iter().enumerate() {
        age_the_pair(&app).await;
        assert_eq!(refresh(&app, &client, id).await, reqwest::StatusCode::ACCEPTED);
        refreshes_settled(&app).await;
        assert_eq!(sandbox_grant(&app).await, (2 + turn as i64, None), "turn {turn}");
    }
    assert_eq!(statuses(&app, &client, &ids).await, ["connected"; 3]);
    for (index, id) in ids.iter().enumerate() {
        let account = get_json(&app, &client, &format!("/v1/accounts/{id}")).await;
        assert!(account["last_refresh_at"].is_string(), "every account records the refresh: {account}");
        publish(&app, &client, id, &format!("after the refreshes, account {index}")).await;
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn disconnecting_one_account_keeps_its_siblings_and_the_last_revokes_the_grant_once() {
    let (app, client, ids) = app_with_accounts().await;
    let disconnect = |id: &str| {
        let path = format!("/v1/accounts/{id}/disconnect");
        client.http.post(app.url(&path)).bearer_auth(&client.key).send()
    };
    let revocations = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE kind = 'account.revoke'")
            .fetch_one(&app.pool)
            .await
            .unwrap()
            + sqlx::query_scalar::<_, i64>("SELECT count(*) FROM finished_jobs WHERE kind = 'account.revoke'")
                .fetch_one(&app.pool)
                .await
                .unwrap()
    };

    // The user picked the person and one page: the other page goes.
    let dropped = disconnect(&ids[2]).await.unwrap();
    assert_eq!(dropped.status(), reqwest::StatusCode::OK);
    let (access, grant): (Option<String>, Option<Uuid>) =
        sqlx::query_as("SELECT access_token, grant_id FROM account_credentials WHERE account_id = $1")
            .bind(Uuid::parse_str(&ids[2]).unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(access.is_none() && grant.is_none(), "the page's tokens are gone at once");
    assert_eq!(revocations().await, 0, "the grant still serves two accounts");
    assert_eq!(statuses(&app, &client, &ids).await, ["connected", "connected", "disconnected"]);
    publish(&app, &client, &ids[0], "the person still publishes").await;
    publish(&app, &client, &ids[1], "the kept page still publishes").await;
    assert_eq!(sandbox_grant(&app).await.1, None);

    // The last two, at once: the grant is revoked once.
    let (first, second) = tokio::join!(disconnect(&ids[0]), disconnect(&ids[1]));
    assert_eq!(first.unwrap().status(), reqwest::StatusCode::OK);
    assert_eq!(second.unwrap().status(), reqwest::StatusCode::OK);
    let mut revoked = None;
    for _ in 0..200 {
        revoked = sandbox_grant(&app).await.1;
        if revoked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(revoked.as_deref(), Some("revoked by the client"));
    assert_eq!(revocations().await, 1, "one revocation for the whole grant");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM grant_credentials").fetch_one(&app.pool).await.unwrap();
    assert_eq!(left, 0, "the grant's pair is forgotten");

    // A reconnect of the same grant revives all three, the same accounts.
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    assert_eq!(statuses(&app, &client, &ids).await, ["connected"; 3]);
    publish(&app, &client, &ids[2], "the dropped page is back").await;
    app.stop().await.unwrap();
}
