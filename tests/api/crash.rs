//! The real binary as a child process: `kill -9` under load loses nothing acknowledged, a second
//! process on the same data directory refuses to start, SIGTERM drains and exits cleanly, and
//! the CLI answers `--help` and `sync-counts`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::helpers::{binary, create_application_at, start_binary, Server};

async fn start(dir: &Path) -> Server {
    let dir = dir.to_str().expect("UTF-8 path");
    start_binary(
        &[
            "serve",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--data-dir",
            dir,
        ],
        &[],
    )
    .await
}

/// Polls `done` every 5 ms; fails the test, naming `what`, if it is still false after 60 s (a
/// loaded machine is slow, but a spin loop without a deadline hangs the suite instead of failing).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened within 60 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn kill_9_under_concurrent_writes_loses_no_acknowledged_message() {
    let test = "kill_9_under_concurrent_writes_loses_no_acknowledged_message";
    let why = "kills the embedded binary (serve on SQLite), as the embedded run did; the scaled \
               equivalents are scaled::kill_9_of_a_worker_mid_batch_loses_and_duplicates_nothing \
               and broker::with_the_broker_down_creations_answer_503_and_nothing_acknowledged_is_lost";
    if crate::helpers::embedded_only(test, why) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let client = reqwest::Client::new();
    let token = create_application_at(&client, &server.address, "crash").await;
    let chats = 4u64;
    for _ in 0..chats {
        let response = client
            .post(format!("{}/applications/{token}/chats", server.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    // 32 writers, each on its own connection, until the server dies under them.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..32u64 {
        let (address, token) = (server.address.clone(), token.clone());
        let (acknowledged, count) = (acknowledged.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..10_000u64 {
                let chat = 1 + (writer + i) % chats;
                let body = format!("writer {writer} message {i}");
                let sent = client
                    .post(format!(
                        "{address}/applications/{token}/chats/{chat}/messages"
                    ))
                    .json(&json!({ "body": body }))
                    .send()
                    .await;
                // A cut connection is the kill: unacknowledged, and this writer is done.
                let Ok(response) = sent else { return };
                let status = response.status();
                let Ok(text) = response.text().await else {
                    return; // the kill cut the body: unacknowledged too
                };
                // Any answer other than 201 is a defect the kill cannot explain.
                assert_eq!(status, StatusCode::CREATED, "writer {writer}: {text}");
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    panic!("writer {writer}: a 201 whose body is not JSON: {text}");
                };
                let number = message["number"].as_u64().unwrap();
                acknowledged.lock().unwrap().push((chat, number, body));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    wait_until("600 messages acknowledged before the kill", || {
        count.load(Ordering::Relaxed) >= 600
    })
    .await;
    let mut server = server;
    server.child.start_kill().unwrap(); // SIGKILL
    server.child.wait().await.unwrap();
    for writer in writers {
        // A writer that panicked fails the test; one that hangs on the dead server does too.
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("a writer still running 30 s after the kill")
            .expect("writer");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 600);

    let restarted = start(dir.path()).await;
    let mut highest: BTreeMap<u64, u64> = BTreeMap::new();
    for (chat, number, body) in &acknowledged {
        let stored: Value = client
            .get(format!(
                "{}/applications/{token}/chats/{chat}/messages/{number}",
                restarted.address
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            stored["body"].as_str(),
            Some(body.as_str()),
            "chat {chat} message {number}"
        );
        let top = highest.entry(*chat).or_default();
        *top = (*top).max(*number);
    }
    for chat in 1..=chats {
        let listed: Vec<Value> = client
            .get(format!(
                "{}/applications/{token}/chats/{chat}/messages?per_page=1000",
                restarted.address
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let numbers: Vec<u64> = listed
            .iter()
            .map(|m| m["number"].as_u64().unwrap())
            .collect();
        let unique: BTreeSet<u64> = numbers.iter().copied().collect();
        assert_eq!(unique.len(), numbers.len(), "no duplicate in chat {chat}");
        let stored_top = numbers.last().copied().unwrap_or(0);
        assert!(stored_top >= highest[&chat]);
        let next: Value = client
            .post(format!(
                "{}/applications/{token}/chats/{chat}/messages",
                restarted.address
            ))
            .json(&json!({ "body": "after restart" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            next["number"].as_u64().unwrap(),
            stored_top + 1,
            "the next number follows the stored ones"
        );
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_refuses_to_start() {
    let test = "a_second_process_on_the_same_data_directory_refuses_to_start";
    let why = "the data-directory lock is the embedded shape's (one process per SQLite \
               directory); scaled processes share MariaDB and Redis, so there is no equivalent";
    if crate::helpers::embedded_only(test, why) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path()).await;
    let second = Command::new(binary())
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another chat-system process"), "{stderr}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_writes_and_exits_cleanly() {
    let test = "sigterm_finishes_in_flight_writes_and_exits_cleanly";
    let why = "signals the embedded binary, as the embedded run did; no scaled test sends SIGTERM";
    if crate::helpers::embedded_only(test, why) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let client = reqwest::Client::new();
    let token = create_application_at(&client, &server.address, "term").await;
    let pid = server.child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().await.unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    let restarted = start(dir.path()).await;
    let response = client
        .get(format!("{}/applications/{token}", restarted.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_command_has_help_and_sync_counts_repairs_counts() {
    let test = "every_command_has_help_and_sync_counts_repairs_counts";
    let why = "runs the CLI and sync-counts on an embedded data directory, as the embedded run \
               did; scaled counts are checked by scaled::the_scaled_stack_serves_the_api_across_processes";
    if crate::helpers::embedded_only(test, why) {
        return;
    }
    for command in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["sync-counts", "--help"],
        vec!["worker", "--help"],
        vec!["reindex", "--help"],
    ] {
        let output = Command::new(binary())
            .args(&command)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{command:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let migrate = Command::new(binary())
        .arg("migrate")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(migrate.status.success());
    let app = crate::helpers::spawn_app_in(dir).await;
    let token = app.create_application("counts").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "one").await;
    app.create_message(&token, chat, "two").await;
    // Break the counts behind the server's back, then repair them while it serves.
    let database = app.dir.path().join("chat.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE chats SET messages_count = 40")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE applications SET chats_count = 9")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        app.get_json(&format!("/applications/{token}")).await["chats_count"],
        9
    );

    let output = Command::new(binary())
        .arg("sync-counts")
        .arg("--data-dir")
        .arg(app.dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("1 applications and 1 chats corrected"),
        "{said}"
    );
    assert_eq!(
        app.get_json(&format!("/applications/{token}")).await["chats_count"],
        1
    );
    assert_eq!(
        app.get_json(&format!("/applications/{token}/chats/{chat}"))
            .await["messages_count"],
        2
    );
}
