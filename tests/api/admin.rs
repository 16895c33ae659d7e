//! The operators' key: `GET /applications` lists applications only to `Authorization: Bearer
//! <ADMIN_KEY>`; without a configured key nobody can; guessing is rate limited.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{embedded_only, error_code, spawn_app, spawn_app_with, TestApp};

async fn list(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn without_an_admin_key_nobody_lists_applications() {
    let app = spawn_app().await;
    app.create_application("private").await;
    for key in [None, Some(""), Some("guess")] {
        let response = list(&app, "/applications", key).await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn the_admin_key_lists_live_applications_in_pages_and_a_wrong_key_is_401() {
    if embedded_only(
        "admin::the_admin_key_lists_live_applications_in_pages_and_a_wrong_key_is_401",
        "sets ADMIN_KEY on the in-process server",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let app = spawn_app_with(dir, |config| {
        config.admin_key = Some("s3cret-operators-key".into())
    })
    .await;
    let first = app.create_application("first").await;
    let second = app.create_application("second").await;
    let doomed = app.create_application("doomed").await;
    let response = app
        .request(Method::DELETE, &format!("/applications/{doomed}"), None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for wrong in [
        None,
        Some("s3cret-operators-ke"),
        Some("s3cret-operators-key2"),
    ] {
        let response = list(&app, "/applications", wrong).await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{wrong:?}"
        );
    }
    let response = list(
        &app,
        "/applications?per_page=1",
        Some("s3cret-operators-key"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let link = response.headers()["link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(link.contains("page=2"), "{link}");
    let page: Value = response.json().await.expect("JSON");
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["token"], first.as_str());
    let all: Value = list(&app, "/applications", Some("s3cret-operators-key"))
        .await
        .json()
        .await
        .expect("JSON");
    let tokens: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["token"].as_str().expect("token"))
        .collect();
    assert_eq!(
        tokens,
        vec![first.as_str(), second.as_str()],
        "the deleted one is not listed"
    );
}

#[tokio::test]
async fn guessing_the_admin_key_is_rate_limited() {
    if embedded_only(
        "admin::guessing_the_admin_key_is_rate_limited",
        "sets ADMIN_KEY on the in-process server",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let app = spawn_app_with(dir, |config| config.admin_key = Some("k".repeat(32))).await;
    let mut limited = false;
    for attempt in 0..40 {
        let response = list(&app, "/applications", Some(&format!("guess{attempt}"))).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                limited = true;
                break;
            }
            other => panic!("attempt {attempt}: {other}"),
        }
    }
    assert!(limited, "40 quick wrong guesses must be rate limited");
}
