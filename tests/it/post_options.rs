//! Per-target options are a tagged union by platform: checked at creation against the target
//! platform's options type (each problem at its field), shown as one variant per platform in the
//! OpenAPI document, and read by the adapter as the same type.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::connect::{Client, get_json};
use crate::fixtures::connected_account;
use crate::posts::{app_with_accounts, create};

async fn refused(app: &crate::harness::TestApp, client: &Client, target: Value) -> Vec<(String, String)> {
    let body = json!({"content": "options", "targets": [target]});
    let response = client.http.post(app.url("/v1/posts")).bearer_auth(&client.key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "validation_failed");
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| (error["field"].as_str().unwrap().to_owned(), error["message"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn options_are_checked_against_the_target_platforms_type_field_by_field() {
    let (app, client, accounts) = app_with_accounts().await;
    let project_id: Uuid =
        sqlx::query_scalar("SELECT project_id FROM accounts LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let mastodon = connected_account(&app, project_id, "mastodon", "m-user", None).await;

    let wrong_value = json!({"account_id": mastodon, "options": {"platform": "mastodon", "visibility": "everyone"}});
    let errors = refused(&app, &client, wrong_value).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "targets[0].options.visibility");
    assert!(errors[0].1.contains("unknown variant `everyone`"), "{errors:?}");

    let rule = json!({"account_id": mastodon, "options": {"platform": "mastodon", "language": "English"}});
    assert_eq!(
        refused(&app, &client, rule).await,
        [("targets[0].options.language".to_owned(), "must be an ISO 639-1 code, e.g. \"en\"".to_owned())]
    );

    let unknown = json!({"account_id": mastodon, "options": {"platform": "mastodon", "colour": "red"}});
    let errors = refused(&app, &client, unknown).await;
    assert!(errors[0].0.starts_with("targets[0].options"), "{errors:?}");
    assert!(errors[0].1.contains("unknown field `colour`"), "{errors:?}");

    let untagged = json!({"account_id": mastodon, "options": {"visibility": "unlisted"}});
    assert_eq!(refused(&app, &client, untagged).await[0].0, "targets[0].options.platform");
    let mistagged = json!({"account_id": accounts[0], "options": {"platform": "mastodon", "visibility": "unlisted"}});
    let errors = refused(&app, &client, mistagged).await;
    assert_eq!(
        errors,
        [(
            "targets[0].options.platform".to_owned(),
            "these options are for mastodon, but the account is on sandbox".to_owned()
        )]
    );
    let not_an_object = json!({"account_id": accounts[0], "options": [1]});
    assert_eq!(
        refused(&app, &client, not_an_object).await[0],
        ("targets[0].options".into(), "must be an object".into())
    );
    let none_taken = json!({"account_id": accounts[0], "options": {"platform": "sandbox", "anything": 1}});
    assert!(refused(&app, &client, none_taken).await[0].1.contains("unknown field `anything`"));

    // Fine: tagged, empty, or absent.
    for options in [json!({"platform": "sandbox"}), json!({}), Value::Null] {
        let body =
            json!({"content": "fine", "targets": [{"account_id": accounts[0], "options": options}], "draft": true});
        create(&app, &client, body).await;
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_document_shows_one_options_variant_per_platform() {
    let (app, client, _) = app_with_accounts().await;
    let document = get_json(&app, &client, "/v1/openapi.json").await;
    let schemas = &document["components"]["schemas"];
    let union = &schemas["TargetOptions"];
    assert_eq!(union["discriminator"]["propertyName"], "platform", "{union}");
    for platform in herald_shared::platforms::ALL {
        let mapped = union["discriminator"]["mapping"][platform.name].as_str().unwrap();
        let variant = mapped.rsplit('/').next().unwrap();
        assert!(schemas[variant]["allOf"].is_array(), "{variant}: {}", schemas[variant]);
    }
    let mastodon = &schemas["MastodonOptions"]["properties"];
    assert!(mastodon["visibility"].is_object() && mastodon["spoiler_text"].is_object(), "{mastodon}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn each_platform_counts_a_text_as_it_does() {
    let (app, client, _) = app_with_accounts().await;
    let project_id: Uuid =
        sqlx::query_scalar("SELECT project_id FROM accounts LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let x = connected_account(&app, project_id, "x", "x-user", None).await;
    let bluesky = connected_account(&app, project_id, "bluesky", "did:plc:ada", None).await;
    let instagram = connected_account(&app, project_id, "instagram", "ig-user", None).await;

    let wide = json!({"account_id": x, "content": "字".repeat(141)});
    assert_eq!(
        refused(&app, &client, wide).await,
        [(
            "targets[0].content".to_owned(),
            "282 weighted characters (URLs count 23, wide characters and emoji 2); x takes at most 280".to_owned()
        )]
    );
    let long_url = format!("{} https://example.com/{}", "a".repeat(250), "p".repeat(200));
    let graphemes = "e\u{301}".repeat(300);
    for (account_id, content) in [(x, long_url), (bluesky, graphemes)] {
        let body = json!({"content": "-", "targets": [{"account_id": account_id, "content": content}], "draft": true});
        create(&app, &client, body).await;
    }
    let too_many = json!({"account_id": bluesky, "content": "e\u{301}".repeat(301)});
    assert_eq!(refused(&app, &client, too_many).await[0].1, "301 characters (graphemes); bluesky takes at most 300");
    let tags: Vec<String> = (0..31).map(|n| format!("#tag{n}")).collect();
    let hashtags = json!({"account_id": instagram, "content": tags.join(" ")});
    let errors = refused(&app, &client, hashtags).await;
    assert!(
        errors.contains(&("targets[0].content".to_owned(), "31 hashtags; instagram takes at most 30".to_owned())),
        "{errors:?}"
    );
    app.stop().await.unwrap();
}
