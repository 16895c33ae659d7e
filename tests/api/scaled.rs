//! The scaled shape end to end: two API processes and two workers on MariaDB, Redis and a
//! Kafka-compatible broker. Reads poll for the visibility SPEC §4 allows. The fault tests live
//! beside it: a worker killed (`scaled_worker.rs`), the broker killed (`scaled_broker.rs`); the
//! small HTTP helpers here serve all three.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::stack::{eventually, services, Stack};

pub(crate) async fn post(client: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn get(client: &Client, url: String) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

pub(crate) fn numbers(list: &Value) -> Vec<u64> {
    list.as_array().map_or_else(Vec::new, |items| {
        items.iter().filter_map(|m| m["number"].as_u64()).collect()
    })
}

/// Awaits every task, each within `limit` of the call: a task that panicked fails the test with
/// its panic, and one that hangs fails it too, instead of hanging the suite.
pub(crate) async fn join_within<T>(
    what: &str,
    limit: Duration,
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut results = Vec::with_capacity(tasks.len());
    for (index, task) in tasks.into_iter().enumerate() {
        let joined = tokio::time::timeout_at(deadline, task)
            .await
            .unwrap_or_else(|_| panic!("{what} {index} still running after {limit:?}"));
        match joined {
            Ok(value) => results.push(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("{what} {index}: {error}"),
        }
    }
    results
}

/// Polls `done` every 5 ms; fails the test, naming `what`, when it is still false after 60 s.
pub(crate) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened within 60 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn create_application(client: &Client, api: &str) -> String {
    crate::helpers::create_application_at(client, api, "scaled").await
}

#[tokio::test]
async fn the_scaled_stack_serves_the_api_across_processes() {
    let Some(services) = services("the_scaled_stack_serves_the_api_across_processes") else {
        return;
    };
    let stack = Stack::start(&services, 2, 2).await;
    let client = Client::new();
    let (a, b) = (stack.api(0).to_owned(), stack.api(1).to_owned());

    // Applications are synchronous: usable at once on the other process.
    let token = create_application(&client, &a).await;
    assert!(get(&client, format!("{b}/applications/{token}"))
        .await
        .is_some());

    // Consecutive numbers across processes.
    for (expected, api) in [(1, &a), (2, &b), (3, &a)] {
        let (status, chat) = post(
            &client,
            format!("{api}/applications/{token}/chats"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(chat["number"], expected);
    }

    // Concurrent messages over both processes: exactly 1..N per chat.
    let per_chat = 100u64;
    let mut tasks = Vec::new();
    for chat in [1u64, 2] {
        for i in 0..per_chat {
            let (client, api, token) = (
                Client::new(),
                stack.api(i as usize).to_owned(),
                token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let url = format!("{api}/applications/{token}/chats/{chat}/messages");
                let (status, message) =
                    post(&client, url, json!({ "body": format!("message {i}") })).await;
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "chat {chat} message {i}: {message}"
                );
                message["number"].as_u64().expect("number")
            }));
        }
    }
    let drawn = join_within("writer", Duration::from_secs(60), tasks).await;
    for (index, chat) in [1u64, 2].iter().enumerate() {
        let mine: BTreeSet<u64> = drawn[index * per_chat as usize..(index + 1) * per_chat as usize]
            .iter()
            .copied()
            .collect();
        assert_eq!(mine, (1..=per_chat).collect());
        let listed = eventually("every message stored", || {
            let url = format!("{b}/applications/{token}/chats/{chat}/messages?per_page=1000");
            let client = client.clone();
            async move {
                get(&client, url)
                    .await
                    .filter(|list| numbers(list).len() == per_chat as usize)
            }
        })
        .await;
        assert_eq!(numbers(&listed), (1..=per_chat).collect::<Vec<_>>());
        let counted = eventually("messages_count exact", || {
            let url = format!("{a}/applications/{token}/chats/{chat}");
            let client = client.clone();
            async move {
                get(&client, url)
                    .await
                    .filter(|c| c["messages_count"] == per_chat)
            }
        })
        .await;
        assert_eq!(counted["number"], *chat);
    }
    let app = get(&client, format!("{a}/applications/{token}"))
        .await
        .expect("application");
    assert_eq!(app["chats_count"], 3);

    // Edits follow their creation.
    let url = format!("{a}/applications/{token}/chats/1/messages/7");
    let response = client
        .put(&url)
        .json(&json!({ "body": "edited body" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the edit stored", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            get(&client, url)
                .await
                .filter(|m| m["body"] == "edited body")
        }
    })
    .await;

    // Search semantics on MySQL.
    for body in [
        "error on all message",
        "ERROR: disk full",
        "all good here",
        "100% sure_thing",
        "1000 surething",
    ] {
        let (status, _) = post(
            &client,
            format!("{b}/applications/{token}/chats/3/messages"),
            json!({ "body": body }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let search = |q: &str| format!("{a}/search?application_token={token}&chat_number=3&body={q}");
    eventually("messages searchable", || {
        let (client, url) = (client.clone(), search("sure"));
        async move {
            get(&client, url)
                .await
                .filter(|found| numbers(found).len() == 2)
        }
    })
    .await;
    let found = get(&client, search("rror")).await.expect("search");
    assert_eq!(
        numbers(&found).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
    assert_eq!(
        numbers(&get(&client, search("rror%20all")).await.expect("search")),
        vec![1]
    );
    assert_eq!(
        numbers(&get(&client, search("0%25")).await.expect("search")),
        vec![4]
    );
    assert_eq!(
        numbers(&get(&client, search("e_t")).await.expect("search")),
        vec![4]
    );
    assert_eq!(
        numbers(&get(&client, search("l")).await.expect("search")).len(),
        3
    );

    // Unknown parents are 404 on every process.
    for api in [&a, &b] {
        let (status, error) = post(
            &client,
            format!("{api}/applications/{token}/chats/99/messages"),
            json!({ "body": "x" }),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["error"]["code"], "not_found");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_redis_reset_answers_503_then_resumes_without_duplicate_numbers() {
    let Some(services) =
        services("a_redis_reset_answers_503_then_resumes_without_duplicate_numbers")
    else {
        return;
    };
    let stack = Stack::start(&services, 2, 1).await;
    let client = Client::new();
    let token = create_application(&client, stack.api(0)).await;
    let (status, _) = post(
        &client,
        format!("{}/applications/{token}/chats", stack.api(0)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let messages = format!("{}/applications/{token}/chats/1/messages", stack.api(1));
    for i in 1..=20u64 {
        let (status, message) = post(
            &client,
            messages.clone(),
            json!({ "body": format!("before {i}") }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(message["number"], i);
    }
    stack.flush_redis().await;

    let response = client
        .post(&messages)
        .json(&json!({ "body": "during" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unavailable");

    let resumed = eventually("creation resumes", || {
        let (client, url) = (client.clone(), messages.clone());
        async move {
            let (status, message) = post(&client, url, json!({ "body": "after" })).await;
            (status == StatusCode::CREATED).then_some(message)
        }
    })
    .await;
    assert_eq!(
        resumed["number"], 21,
        "the counter continues from the stored messages"
    );
    let (status, chat) = post(
        &client,
        format!("{}/applications/{token}/chats", stack.api(0)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(chat["number"], 2);
    stack.stop().await;
}
