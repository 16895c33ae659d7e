//! SIGTERM with writes in flight: 32 writers post messages while the signal arrives. Every
//! request is answered or refused (none hangs), the process exits 0, and after a restart every
//! message answered `201` is stored once with its body.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::time::timeout;

use crate::durability::{serve, terminate, DEADLINE};

/// What a writer saw: the messages answered `201`, and whether it was refused at the end.
type Acknowledged = Arc<Mutex<Vec<(u64, u64, String)>>>;

/// One of 32 writers: posts until the server refuses it. A refusal is a transport error (the
/// connection refused, reset or closed) once shutdown has begun; anything else fails the test:
/// an error before SIGTERM, a timeout (a hang), or any status but `201` (the server drains its
/// in-flight requests on SIGTERM, so it has no reason to answer 503).
async fn writer(
    writer: u64,
    address: String,
    token: String,
    chats: u64,
    stopping: Arc<AtomicBool>,
    acknowledged: Acknowledged,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    for i in 0.. {
        let chat = 1 + (writer + i) % chats;
        let body = format!("writer {writer} message {i}");
        let url = format!("{address}/applications/{token}/chats/{chat}/messages");
        let sent = client.post(url).json(&json!({ "body": body })).send().await;
        // Read after the error: the flag is set before SIGTERM is sent, so any error that
        // shutdown caused sees it.
        let shutting_down = stopping.load(Ordering::SeqCst);
        let response = match sent {
            Ok(response) => response,
            Err(error) if shutting_down && !error.is_timeout() => return,
            Err(error) => {
                panic!("writer {writer}: no answer (shutdown begun: {shutting_down}): {error:?}")
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_else(|error| {
            panic!("writer {writer}: {status} with an unreadable body: {error:?}")
        });
        assert_eq!(status, StatusCode::CREATED, "writer {writer}: {text}");
        let message: Value = serde_json::from_str(&text).expect("a JSON message");
        let number = message["number"].as_u64().expect("a number");
        acknowledged
            .lock()
            .expect("lock")
            .push((chat, number, body));
    }
}

/// Every message under `chat_url`, page by page.
async fn list(client: &reqwest::Client, chat_url: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all
            .last()
            .map_or(0, |m| m["number"].as_u64().expect("a number"));
        let page: Vec<Value> = client
            .get(format!("{chat_url}/messages?per_page=1000&after={after}"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("a JSON list");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test]
async fn sigterm_with_32_writers_in_flight_stores_every_answered_write() {
    let test = "sigterm_with_32_writers_in_flight_stores_every_answered_write";
    let why = "signals the embedded binary, as the embedded run did; no scaled test sends SIGTERM";
    if crate::helpers::embedded_only(test, why) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = serve(&[], dir.path()).await;
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let url = format!("{}/applications", server.address);
    let response = client
        .post(url)
        .json(&json!({ "name": "term" }))
        .send()
        .await;
    let app: Value = response
        .expect("create an application")
        .json()
        .await
        .expect("JSON");
    let token = app["token"].as_str().expect("a token").to_owned();
    let chats = 4u64;
    for _ in 0..chats {
        let url = format!("{}/applications/{token}/chats", server.address);
        let response = client.post(url).send().await.expect("create a chat");
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let stopping = Arc::new(AtomicBool::new(false));
    let acknowledged: Acknowledged = Arc::default();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (address, token) = (server.address.clone(), token.clone());
            let task = writer(
                w,
                address,
                token,
                chats,
                stopping.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    // SIGTERM once the writers are well under way, so requests are in flight when it lands.
    timeout(DEADLINE, async {
        while acknowledged.lock().expect("lock").len() < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("300 writes acknowledged within the deadline");
    stopping.store(true, Ordering::SeqCst);
    terminate(server.child.id().expect("the server runs")).await;
    let exit = timeout(DEADLINE, server.child.wait())
        .await
        .expect("the server exited within the deadline after SIGTERM")
        .expect("wait for the server");
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    for (w, task) in writers.into_iter().enumerate() {
        let joined = timeout(DEADLINE, task).await;
        let joined = joined.unwrap_or_else(|_| panic!("writer {w} still running after the exit"));
        if let Err(error) = joined {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let restarted = serve(&[], dir.path()).await;
    let mut stored: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for chat in 1..=chats {
        let mut bodies = BTreeSet::new();
        let chat_url = format!("{}/applications/{token}/chats/{chat}", restarted.address);
        for message in list(&client, &chat_url).await {
            let body = message["body"].as_str().expect("a body").to_owned();
            assert!(
                bodies.insert(body.clone()),
                "chat {chat}: {body:?} stored twice"
            );
            let number = message["number"].as_u64().expect("a number");
            stored.insert((chat, number), body);
        }
    }
    for (chat, number, body) in &acknowledged {
        assert_eq!(
            stored.get(&(*chat, *number)),
            Some(body),
            "chat {chat} message {number}, answered 201, after the restart"
        );
    }
    let answered: BTreeSet<(u64, u64)> = acknowledged.iter().map(|(c, n, _)| (*c, *n)).collect();
    assert_eq!(
        answered.len(),
        acknowledged.len(),
        "no number answered twice"
    );
    eprintln!(
        "{test}: {} writes answered before the exit",
        acknowledged.len()
    );
}
