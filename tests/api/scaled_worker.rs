//! The scaled shape with a worker `kill -9`ed in the middle of its batches under 16 writers and
//! restarted: every acknowledged message is stored once, with its body, and the counts match.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::scaled::{create_application, get, join_within, numbers, post, wait_until};
use crate::stack::{eventually, services, Stack};

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
                assert_eq!(status, StatusCode::CREATED, "writer {writer}: {message}");
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
    // A writer that ended early panicked: stop waiting, its panic surfaces at the join below.
    wait_until("a third of the messages acknowledged", || {
        count.load(Ordering::Relaxed) >= target / 3 || writers.iter().any(|w| w.is_finished())
    })
    .await;
    let mut killed = stack.workers.remove(0);
    killed.start_kill().expect("SIGKILL");
    killed.wait().await.expect("worker ends");
    wait_until("two thirds acknowledged with one worker down", || {
        count.load(Ordering::Relaxed) >= 2 * target / 3 || writers.iter().any(|w| w.is_finished())
    })
    .await;
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
    join_within("writer", Duration::from_secs(120), writers).await;
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
