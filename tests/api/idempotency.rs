//! `Idempotency-Key`: retries replay the first response and consume no number, also when they
//! race the original.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, TestApp};

async fn post_with_key(
    app: &TestApp,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_retried_creation_replays_the_first_response_and_consumes_no_number() {
    let app = spawn_app().await;
    let token = app.create_application("idem").await;
    let chat = app.create_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");

    let (status, replayed, first) =
        post_with_key(&app, &path, "key-1", json!({ "body": "hello" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replayed, None);
    let (status, replayed, again) =
        post_with_key(&app, &path, "key-1", json!({ "body": "hello" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again, first);
    assert_eq!(
        app.create_message(&token, chat, "next").await,
        2,
        "the retry consumed no number"
    );

    // Another request under the same key is refused; another application has its own keys.
    let response = app
        .client
        .post(app.url(&format!("/applications/{token}/chats")))
        .header("Idempotency-Key", "key-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "validation_failed"
    );
    let other = app.create_application("other").await;
    let other_chat = app.create_chat(&other).await;
    let other_path = format!("/applications/{other}/chats/{other_chat}/messages");
    let (status, replayed, message) =
        post_with_key(&app, &other_path, "key-1", json!({ "body": "x" })).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, None));
    assert_eq!(message["number"], 1);
}

#[tokio::test]
async fn racing_retries_get_one_creation() {
    let app = spawn_app().await;
    let token = app.create_application("race").await;
    let chat = app.create_chat(&token).await;
    let url = app.url(&format!("/applications/{token}/chats/{chat}/messages"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url) = (reqwest::Client::new(), url.clone());
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("Idempotency-Key", "same")
                .json(&json!({ "body": "once" }))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.expect("JSON")["number"]
                .as_u64()
                .expect("number")
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 1);
    }
    assert_eq!(app.create_message(&token, chat, "next").await, 2);
    let listed = app
        .get_json(&format!("/applications/{token}/chats/{chat}/messages"))
        .await;
    assert_eq!(listed.as_array().expect("list").len(), 2);
}

#[tokio::test]
async fn applications_updates_and_failures() {
    let app = spawn_app().await;
    let (status, _, first) =
        post_with_key(&app, "/applications", "app-key", json!({ "name": "a" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, replayed, again) =
        post_with_key(&app, "/applications/", "app-key", json!({ "name": "a" })).await;
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again["token"], first["token"]);

    // A failed request keeps nothing: the corrected retry runs.
    let token = first["token"].as_str().expect("token");
    let chat = app.create_chat(token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let (status, _, _) = post_with_key(&app, &path, "fix-me", json!({ "body": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, replayed, created) =
        post_with_key(&app, &path, "fix-me", json!({ "body": "fixed" })).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, None));
    assert_eq!(created["number"], 1);

    // The message is readable before it is edited (in the scaled shape: stored by a worker).
    assert_eq!(app.get_json(&format!("{path}/1")).await["body"], "fixed");
    let edit = |body: &'static str| {
        app.client
            .put(app.url(&format!("{path}/1")))
            .header("Idempotency-Key", "edit-1")
            .json(&json!({ "body": body }))
            .send()
    };
    let first_edit: Value = edit("edited once")
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let second = edit("edited once").await.expect("sent");
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<Value>().await.expect("JSON"), first_edit);
}
