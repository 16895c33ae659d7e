//! The scaled shape end to end: two API processes and two workers on MariaDB, Redis and a
//! Kafka-compatible broker. Reads poll for the visibility SPEC §4 allows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::stack::{eventually, services, Stack};

pub async fn post(client: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn get(client: &Client, url: String) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

pub fn numbers(list: &Value) -> Vec<u64> {
    list.as_array().map_or_else(Vec::new, |items| {
        items.iter().filter_map(|m| m["number"].as_u64()).collect()
    })
}

pub async fn create_application(client: &Client, api: &str) -> String {
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
                assert_eq!(status, StatusCode::CREATED);
                message["number"].as_u64().expect("number")
            }));
        }
    }
    let mut drawn = Vec::new();
    for task in tasks {
        drawn.push(task.await.expect("task"));
    }
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
async fn kill_9_of_a_worker_mid_batch_loses_and_duplicates_nothing() {
    let Some(services) = services("kill_9_of_a_worker_mid_batch_loses_and_duplicates_nothing")
    else {
        return;
    };
    let mut stack = Stack::start(&services, 2, 2).await;
    let client = Client::new();
    let token = create_application(&client, stack.api(0)).await;
    let chats = 4u64;
    for _ in 0..chats {
        let (status, _) = post(
            &client,
            format!("{}/applications/{token}/chats", stack.api(0)),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let acknowledged = Arc::new(Mutex::new(Vec::<(u64, u64, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let target = 1200;
    let mut writers = Vec::new();
    for writer in 0..16u64 {
        let (api, token) = (stack.api(writer as usize).to_owned(), token.clone());
        let (acknowledged, count) = (acknowledged.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            let client = Client::new();
            let mut i = 0u64;
            while count.load(Ordering::Relaxed) < target {
                let chat = 1 + (writer + i) % chats;
                let body = format!("w{writer} m{i}");
                let url = format!("{api}/applications/{token}/chats/{chat}/messages");
                let (status, message) = post(&client, url, json!({ "body": body })).await;
                assert_eq!(status, StatusCode::CREATED);
                acknowledged.lock().expect("lock").push((
                    chat,
                    message["number"].as_u64().expect("number"),
                    body,
                ));
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    while count.load(Ordering::Relaxed) < target / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut killed = stack.workers.remove(0);
    killed.start_kill().expect("SIGKILL");
    killed.wait().await.expect("worker ends");
    while count.load(Ordering::Relaxed) < 2 * target / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stack.workers.insert(
        0,
        crate::helpers::spawn_binary(
            &[
                "worker",
                "all",
                "--worker-index",
                "0",
                "--worker-count",
                "2",
            ],
            &stack.env,
        ),
    );
    for writer in writers {
        writer.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    for chat in 1..=chats {
        let mine: Vec<&(u64, u64, String)> =
            acknowledged.iter().filter(|(c, _, _)| *c == chat).collect();
        let expected = mine.len();
        let url = format!(
            "{}/applications/{token}/chats/{chat}/messages?per_page=1000",
            stack.api(1)
        );
        let listed = eventually("every acknowledged message stored", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                get(&client, url)
                    .await
                    .filter(|list| numbers(list).len() >= expected)
            }
        })
        .await;
        let stored: Vec<u64> = numbers(&listed);
        assert_eq!(
            stored.len(),
            mine.len(),
            "nothing duplicated, nothing extra in chat {chat}"
        );
        assert_eq!(stored, (1..=mine.len() as u64).collect::<Vec<_>>());
        let items = listed.as_array().expect("list");
        for (_, number, body) in &mine {
            assert_eq!(
                items[*number as usize - 1]["body"].as_str(),
                Some(body.as_str())
            );
        }
        let url = format!("{}/applications/{token}/chats/{chat}", stack.api(0));
        eventually("messages_count equals the rows", || {
            let (client, url) = (client.clone(), url.clone());
            let expected = expected as u64;
            async move {
                get(&client, url)
                    .await
                    .filter(|c| c["messages_count"] == expected)
            }
        })
        .await;
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
