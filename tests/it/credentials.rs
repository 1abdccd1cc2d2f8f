//! Keeping credentials fresh, against an in-test OAuth platform that rotates refresh tokens:
//! concurrent refreshes make one token request, a transient failure retries and leaves the
//! account connected, a dead grant asks for a reconnect, a grant without a refresh token keeps
//! the stored one, and the scheduler refreshes what expires within the platform's margin.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_shared::crypto::Keyring;
use herald_shared::platforms::Platforms;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::connect::{Client, authorize, client, get_json};
use crate::fake_oauth::FakeOAuth;
use crate::harness::TestApp;

pub async fn app_with_fake() -> (TestApp, Arc<FakeOAuth>, Client) {
    let (app, fake) = FakeOAuth::app_in_front().await;
    let client = client(&app).await;
    (app, fake, client)
}

/// Connects the fake platform's one account; returns its id.
async fn connect(app: &TestApp, client: &Client) -> String {
    let (_, callback) = authorize(app, client, json!({}), "login=ada").await;
    let page = client.http.get(&callback).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("1 account(s) connected"));
    get_json(app, client, "/v1/accounts").await["data"][0]["id"].as_str().unwrap().to_owned()
}

pub async fn refresh(app: &TestApp, client: &Client, account_id: &str) -> reqwest::StatusCode {
    let path = format!("/v1/accounts/{account_id}/refresh");
    client.http.post(app.url(&path)).bearer_auth(&client.key).send().await.unwrap().status()
}

/// Waits until no refresh job is queued or running.
pub async fn refreshes_settled(app: &TestApp) {
    for _ in 0..400 {
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'account.refresh'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if live == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("refresh jobs still live after 20 s");
}

pub async fn account_of(app: &TestApp, client: &Client, account_id: &str) -> Value {
    get_json(app, client, &format!("/v1/accounts/{account_id}")).await
}

#[tokio::test]
async fn twenty_concurrent_refreshes_make_one_token_request_per_rotation() {
    let (app, fake, client) = app_with_fake().await;
    let account_id = connect(&app, &client).await;
    let before = account_of(&app, &client, &account_id).await;

    let triggers = (0..20).map(|_| refresh(&app, &client, &account_id));
    for status in futures::future::join_all(triggers).await {
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    }
    refreshes_settled(&app).await;
    assert_eq!(fake.refresh_requests.load(Ordering::SeqCst), 1, "one token request for twenty triggers");
    let after = account_of(&app, &client, &account_id).await;
    assert_eq!(after["status"], "connected");
    assert!(after["last_refresh_at"].is_string());
    assert_ne!(after["expires_at"], before["expires_at"]);

    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_transient_failure_retries_and_leaves_the_account_connected() {
    let (app, fake, client) = app_with_fake().await;
    let account_id = connect(&app, &client).await;
    fake.fail_next.store(1, Ordering::SeqCst);
    refresh(&app, &client, &account_id).await;
    // The first try fails (503) and is recorded; the account stays connected.
    for _ in 0..200 {
        if account_of(&app, &client, &account_id).await["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let failed = account_of(&app, &client, &account_id).await;
    assert_eq!(failed["status"], "connected");
    assert!(failed["last_error"].as_str().unwrap().contains("unreachable"), "{failed}");
    refreshes_settled(&app).await;
    let recovered = account_of(&app, &client, &account_id).await;
    assert_eq!(recovered["status"], "connected");
    assert!(recovered["last_error"].is_null(), "the retry succeeded: {recovered}");
    assert_eq!(fake.refresh_requests.load(Ordering::SeqCst), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_grant_marks_the_account_needs_reconnect_with_the_reason() {
    let (app, fake, client) = app_with_fake().await;
    let account_id = connect(&app, &client).await;
    fake.revoke_all();
    refresh(&app, &client, &account_id).await;
    refreshes_settled(&app).await;
    let dead = account_of(&app, &client, &account_id).await;
    assert_eq!(dead["status"], "needs_reconnect");
    assert!(dead["last_error"].as_str().unwrap().contains("invalid_grant"), "{dead}");
    assert_eq!(refresh(&app, &client, &account_id).await, reqwest::StatusCode::CONFLICT);

    // A reconnect revives the same account.
    let revived = connect(&app, &client).await;
    assert_eq!(revived, account_id);
    assert_eq!(account_of(&app, &client, &account_id).await["status"], "connected");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_reconnect_without_a_refresh_token_keeps_the_stored_one() {
    let (app, fake, client) = app_with_fake().await;
    let account_id = connect(&app, &client).await;
    let id = Uuid::parse_str(&account_id).unwrap();
    let keyring = Keyring::from_config(&app.config).unwrap();
    let stored_refresh = |app: &TestApp| {
        let (pool, keyring) = (app.pool.clone(), &keyring);
        async move {
            let mut tx = pool.begin().await.unwrap();
            let stored = herald_shared::credentials::load_account_tokens(&mut tx, keyring, id).await.unwrap().unwrap();
            stored.refresh_token.unwrap().expose_secret().to_owned()
        }
    };
    let first = stored_refresh(&app).await;
    fake.omit_refresh_token.store(true, Ordering::SeqCst);
    assert_eq!(connect(&app, &client).await, account_id);
    assert_eq!(stored_refresh(&app).await, first, "the reconnect sent no refresh token; the old one stays");
    refresh(&app, &client, &account_id).await;
    refreshes_settled(&app).await;
    assert_eq!(account_of(&app, &client, &account_id).await["status"], "connected", "and it still works");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_scheduler_refreshes_credentials_that_expire_within_the_margin() {
    let (app, fake, client) = app_with_fake().await;
    fake.short_lived.store(true, Ordering::SeqCst);
    let account_id = connect(&app, &client).await;
    // The fake's tokens now live 60 s: inside the sandbox's five-minute margin.
    assert_eq!(
        herald_scheduler::emit_refreshes(&app.pool, &Platforms::from_config(&app.config).unwrap()).await.unwrap(),
        1
    );
    refreshes_settled(&app).await;
    assert_eq!(fake.refresh_requests.load(Ordering::SeqCst), 1);
    assert!(account_of(&app, &client, &account_id).await["last_refresh_at"].is_string());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_key_and_secrets_reencrypt_move_every_secret_to_it() {
    let (app, _fake, client) = app_with_fake().await;
    let account_id = Uuid::parse_str(&connect(&app, &client).await).unwrap();
    let registered = client
        .http
        .post(app.url("/v1/apps"))
        .bearer_auth(&client.key)
        .json(&json!({"platform": "sandbox", "name": "Own", "client_id": "own", "client_secret": "own-secret"}))
        .send()
        .await
        .unwrap();
    let app_id = Uuid::parse_str(registered.json::<Value>().await.unwrap()["id"].as_str().unwrap()).unwrap();

    let old_key = app.config.encryption_key.as_ref().unwrap().expose_secret().to_owned();
    let new_key = Keyring::generate_base64();
    let output = tokio::process::Command::new(crate::harness::herald_binary())
        .args(["secrets", "reencrypt"])
        .env_clear()
        .env("DATABASE_URL", &app.db.url)
        .env("HERALD_ENCRYPTION_KEYS", format!("{},{old_key}", new_key.expose_secret()))
        .env("HERALD_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("grant_credentials.refresh_token: 1 re-encrypted"), "{stdout}");
    assert!(stdout.contains("oauth_app_secrets.client_secret: 1 re-encrypted"), "{stdout}");

    // Only the new key is needed from now on.
    let mut only_new = Keyring::default();
    only_new.push_base64(new_key.expose_secret()).unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let tokens = herald_shared::credentials::load_account_tokens(&mut tx, &only_new, account_id).await.unwrap();
    assert!(tokens.unwrap().refresh_token.is_some());
    let secret = herald_shared::credentials::load_app_secret(&mut tx, &only_new, app_id).await.unwrap().unwrap();
    assert_eq!(secret.expose_secret(), "own-secret");
    drop(tx);
    let again = herald_shared::credentials::reencrypt_all(&app.pool, &only_new, 2).await.unwrap();
    assert_eq!(again.total(), 0, "nothing left under the old key");
    app.stop().await.unwrap();
}

/// Everything the app logs, at every level, kept for a scan.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so every task of the app logs into this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn no_token_code_state_or_client_secret_reaches_the_logs() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, fake, client) = app_with_fake().await;
    let (_, callback) = authorize(&app, &client, json!({}), "login=ada").await;
    let sent = crate::connect::query_of(&callback);
    client.http.get(&callback).send().await.unwrap();
    let account_id = get_json(&app, &client, "/v1/accounts").await["data"][0]["id"].as_str().unwrap().to_owned();
    fake.fail_next.store(1, Ordering::SeqCst);
    refresh(&app, &client, &account_id).await;
    refreshes_settled(&app).await;
    let body =
        json!({"platform": "sandbox", "name": "Own", "client_id": "own", "client_secret": "log-scan-secret-9f2"});
    client.http.post(app.url("/v1/apps")).bearer_auth(&client.key).json(&body).send().await.unwrap();

    let keyring = Keyring::from_config(&app.config).unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let id = Uuid::parse_str(&account_id).unwrap();
    let stored = herald_shared::credentials::load_account_tokens(&mut tx, &keyring, id).await.unwrap().unwrap();
    drop(tx);
    app.stop().await.unwrap();

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("refresh"), "the capture works: {} bytes", logged.len());
    let secrets = [
        ("access token", stored.access_token.unwrap().expose_secret().to_owned()),
        ("refresh token", stored.refresh_token.unwrap().expose_secret().to_owned()),
        ("code", sent["code"].clone()),
        ("state", sent["state"].clone()),
        ("client secret", "log-scan-secret-9f2".to_owned()),
        ("managed client secret", "fake-secret".to_owned()),
        ("api key", client.key.clone()),
    ];
    for (what, secret) in secrets {
        assert!(!logged.contains(&secret), "the {what} is in the logs");
    }
}
