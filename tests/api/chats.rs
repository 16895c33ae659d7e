use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_keys, error_code, spawn_app};

#[tokio::test]
async fn chats_are_created_with_no_body_an_empty_object_or_no_content_type() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let path = format!("/applications/{token}/chats");
    // The seed's curl: content type set, no body.
    let first = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let chat: Value = first.json().await.unwrap();
    assert_keys(
        &chat,
        &[
            "number",
            "chat_number",
            "messages_count",
            "revision",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(chat["number"], 1);
    assert_eq!(chat["revision"], 0);
    assert_eq!(chat["chat_number"], 1);
    assert_eq!(chat["messages_count"], 0);

    let second = app.post(&format!("{path}/"), json!({})).await;
    assert_eq!(second.json::<Value>().await.unwrap()["number"], 2);
    let third = app.client.post(app.url(&path)).send().await.unwrap();
    assert_eq!(third.json::<Value>().await.unwrap()["number"], 3);

    assert_eq!(
        app.get_json(&format!("/applications/{token}")).await["chats_count"],
        3
    );
    assert_eq!(app.get_json(&format!("{path}/2")).await["number"], 2);
}

#[tokio::test]
async fn concurrent_creations_number_chats_1_to_n_per_application() {
    let app = spawn_app().await;
    let tokens = [
        app.create_application("a").await,
        app.create_application("b").await,
    ];
    let per_app = 150;
    let mut tasks = Vec::new();
    for token in &tokens {
        for _ in 0..per_app {
            let client = reqwest::Client::new();
            let url = app.url(&format!("/applications/{token}/chats"));
            tasks.push(tokio::spawn(async move {
                let response = client.post(url).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                response.json::<Value>().await.unwrap()["number"]
                    .as_u64()
                    .unwrap()
            }));
        }
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    for (index, token) in tokens.iter().enumerate() {
        let mine: BTreeSet<u64> = numbers[index * per_app..(index + 1) * per_app]
            .iter()
            .copied()
            .collect();
        assert_eq!(mine, (1..=per_app as u64).collect(), "no gap, no duplicate");
        let application = app.get_json(&format!("/applications/{token}")).await;
        assert_eq!(application["chats_count"], per_app as u64);
    }
}

#[tokio::test]
async fn lists_are_paginated_by_keyset_with_a_link_header() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    for _ in 0..7 {
        app.create_chat(&token).await;
    }
    let base = format!("/applications/{token}/chats");
    let all: Vec<Value> = app.get(&base).await.json().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| c["number"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );

    let mut path = format!("{base}?per_page=3");
    let mut seen = Vec::new();
    loop {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = response.json().await.unwrap();
        seen.extend(page.iter().map(|c| c["number"].as_u64().unwrap()));
        let Some(link) = link else { break };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        assert!(link.contains("after="), "{link}");
        path = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());

    let page2: Vec<Value> = app
        .get(&format!("{base}?per_page=3&page=2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page2
            .iter()
            .map(|c| c["number"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    let after: Vec<Value> = app
        .get(&format!("{base}?after=5"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    // Above the cap is clamped, not refused (the cap itself, by count: messages.rs).
    let clamped = app.get(&format!("{base}?per_page=100000")).await;
    assert_eq!(clamped.status(), StatusCode::OK);
    let clamped: Vec<Value> = clamped.json().await.unwrap();
    assert_eq!(clamped.len(), 7);

    for bad in [
        "per_page=0",
        "per_page=x",
        "after=-1",
        "page=0",
        "after=99999999999999999999999",
    ] {
        let response = app.get(&format!("{base}?{bad}")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_chats_and_applications_are_404() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    app.create_chat(&token).await;
    for path in [
        format!("/applications/{token}/chats/2"),
        format!("/applications/{token}/chats/0"),
        format!("/applications/{token}/chats/-1"),
        format!("/applications/{token}/chats/abc"),
        format!("/applications/{token}/chats/18446744073709551616"),
        "/applications/nope/chats".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
    let response = app.post("/applications/nope/chats", json!({})).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}
