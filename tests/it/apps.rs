//! Bring your own OAuth app: registered with a write-only secret, used by a connect that names
//! it, immutable where it must be, and not deletable while accounts use it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::connect::{authorize, client, get_json};
use crate::fake_oauth::FakeOAuth;
use crate::harness::tables_containing;

const SECRET: &str = "byok-client-secret-3b1f0c6e9a";

#[tokio::test]
async fn an_own_app_connects_accounts_and_its_secret_is_never_shown() {
    let (app, fake) = FakeOAuth::app_in_front().await;
    let client = client(&app).await;
    let send = |method: &str, path: &str, body: Option<Value>| {
        let request = client.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(&client.key);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send()
    };

    let body =
        json!({"platform": "sandbox", "name": "Acme Social", "client_id": "acme-own-client", "client_secret": SECRET});
    let registered = send("POST", "/v1/apps", Some(body)).await.unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let registered: Value = registered.json().await.unwrap();
    assert!(!registered.to_string().contains(SECRET));
    assert!(registered.get("client_secret").is_none());
    assert_eq!(registered["has_client_secret"], true);
    let app_id = registered["id"].as_str().unwrap().to_owned();

    for field in ["platform", "client_id"] {
        let changed = send("PATCH", &format!("/v1/apps/{app_id}"), Some(json!({field: "other"}))).await.unwrap();
        assert_eq!(changed.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = changed.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let renamed =
        send("PATCH", &format!("/v1/apps/{app_id}"), Some(json!({"name": "Acme", "image_url": null}))).await.unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    let bad =
        send("POST", "/v1/apps", Some(json!({"platform": "myspace", "name": "", "client_id": "x"}))).await.unwrap();
    let problem: Value = bad.json().await.unwrap();
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["platform", "name"]);

    // A connect through the app uses its client id (and secret) at the token endpoint.
    let (_, callback) = authorize(&app, &client, json!({"app_id": app_id}), "login=ada").await;
    client.http.get(&callback).send().await.unwrap();
    assert_eq!(fake.last_client_id.lock().unwrap().as_deref(), Some("acme-own-client"));
    let account = &get_json(&app, &client, "/v1/accounts").await["data"][0];
    assert_eq!(account["app_id"], app_id.as_str());
    let shown = get_json(&app, &client, &format!("/v1/apps/{app_id}")).await;
    assert_eq!(shown["integration_count"], 1);

    let refused = send("DELETE", &format!("/v1/apps/{app_id}"), None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT, "accounts still use it");
    let account_id = account["id"].as_str().unwrap();
    send("POST", &format!("/v1/accounts/{account_id}/disconnect"), None).await.unwrap();
    let deleted = send("DELETE", &format!("/v1/apps/{app_id}"), None).await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(send("GET", &format!("/v1/apps/{app_id}"), None).await.unwrap().status(), StatusCode::NOT_FOUND);

    // Nowhere in the database, the feed or any answer.
    let found = tables_containing(&app.pool, SECRET).await;
    assert!(found.is_empty(), "the client secret is in plain text in {found:?}");
    let feed = get_json(&app, &client, "/v1/events?limit=1000").await;
    assert!(!feed.to_string().contains(SECRET));
    app.stop().await.unwrap();
}
