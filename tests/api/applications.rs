use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_keys, error_code, spawn_app};

const APPLICATION_KEYS: [&str; 5] = ["token", "name", "chats_count", "created_at", "updated_at"];

#[tokio::test]
async fn create_returns_the_application_with_a_fresh_token_and_no_internal_id() {
    let app = spawn_app().await;
    let response = app.post("/applications", json!({ "name": "test6" })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_keys(&created, &APPLICATION_KEYS);
    assert_eq!(created["name"], "test6");
    assert_eq!(created["chats_count"], 0);
    let token = created["token"].as_str().unwrap();
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let fetched = app.get_json(&format!("/applications/{token}")).await;
    assert_eq!(fetched, created);
    let other = app.create_application("test6").await;
    assert_ne!(other, token);
}

#[tokio::test]
async fn wrapped_bodies_trailing_slashes_and_the_v1_prefix_are_accepted() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/applications/",
            json!({ "application": { "name": "wrapped" }, "id": 7 }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_keys(&created, &APPLICATION_KEYS);
    assert_eq!(created["name"], "wrapped");
    let token = created["token"].as_str().unwrap();
    let fetched = app
        .get_json(&format!("/api/v1/applications/{token}/"))
        .await;
    assert_eq!(fetched["name"], "wrapped");
}

#[tokio::test]
async fn put_and_patch_rename_the_application() {
    let app = spawn_app().await;
    let token = app.create_application("before").await;
    let path = format!("/applications/{token}");
    for (method, name) in [(Method::PUT, "after put"), (Method::PATCH, "after patch")] {
        let response = app
            .request(
                method,
                &path,
                Some(json!({ "name": name, "token": "ignored" })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let renamed: Value = response.json().await.unwrap();
        assert_eq!(renamed["name"], name);
        assert_eq!(renamed["token"], token.as_str());
        assert!(renamed["updated_at"].as_str() >= renamed["created_at"].as_str());
    }
    assert_eq!(app.get_json(&path).await["name"], "after patch");

    let missing = app
        .request(
            Method::PUT,
            "/applications/nosuchtoken",
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(
        error_code(missing, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn names_are_validated() {
    let app = spawn_app().await;
    let cases = [
        json!({}),
        json!({ "name": null }),
        json!({ "name": 42 }),
        json!({ "name": "" }),
        json!({ "name": " \t\n" }),
        json!({ "name": "x".repeat(256) }),
        json!({ "application": { "name": ["a"] } }),
    ];
    for body in cases {
        let response = app.post("/applications", body.clone()).await;
        assert_eq!(
            error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
            "validation_failed",
            "{body}"
        );
    }
    let longest = app
        .post("/applications", json!({ "name": "é".repeat(255) }))
        .await;
    assert_eq!(longest.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_tokens_are_404() {
    let app = spawn_app().await;
    for token in [
        "unknown",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "%F0%9F%98%80",
        "a%20b",
        &"x".repeat(500),
    ] {
        let response = app.get(&format!("/applications/{token}")).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{token}"
        );
    }
}
