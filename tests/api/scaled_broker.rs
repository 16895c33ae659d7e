//! The scaled shape with its broker `kill -9`ed: while it is down creations answer `503` and
//! reads keep working; and events acknowledged while no worker ran, so that they existed only in
//! the broker when it died, are all stored once it restarts and a worker drains it. Each test runs
//! its own tansu on a free port with its own storage, so killing it harms no other test.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::scaled::{create_application, get, numbers, post};
use crate::stack::{eventually, services, Stack};

/// A broker of this test's own (tansu with its SQLite storage), so it can be killed.
struct Broker {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    async fn start(dir: tempfile::TempDir, port: u16) -> Option<Broker> {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Broker { child, port, dir });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("tansu did not start on port {port}");
    }

    /// A broker on a free port with a fresh storage directory; `None` (after saying `skipped`)
    /// when tansu is not on PATH, which fails the test under `CI=true`.
    async fn own(test: &str) -> Option<Broker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let broker = Broker::start(tempfile::tempdir().expect("dir"), port).await;
        if broker.is_none() {
            chat_harness::testing::missing(test, "tansu is not on PATH");
        }
        broker
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn kill(mut self) -> (tempfile::TempDir, u16) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("broker ends");
        (self.dir, self.port)
    }
}

#[tokio::test]
async fn with_the_broker_down_creations_answer_503_and_nothing_acknowledged_is_lost() {
    let test = "with_the_broker_down_creations_answer_503_and_nothing_acknowledged_is_lost";
    let Some(services) = services(test) else {
        return;
    };
    let Some(broker) = Broker::own(test).await else {
        return;
    };
    // tansu 0.6 panics on a producer id from before its restart, which stops its storage:
    // this broker restarts, so the producer here runs without idempotence (README, "tansu").
    let broker_url = broker.url();
    let stack = Stack::start_with(
        &services,
        &broker_url,
        1,
        1,
        &[("KAFKA_IDEMPOTENCE", "false")],
    )
    .await;
    let client = Client::new();
    let token = create_application(&client, stack.api(0)).await;
    let (status, _) = post(
        &client,
        format!("{}/applications/{token}/chats", stack.api(0)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let messages = format!("{}/applications/{token}/chats/1/messages", stack.api(0));
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let (status, message) = post(
            &client,
            messages.clone(),
            json!({ "body": format!("before {i}") }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        acknowledged.push((
            message["number"].as_u64().expect("number"),
            format!("before {i}"),
        ));
    }

    let chat_url = format!("{}/applications/{token}/chats/1", stack.api(0));
    eventually("the first messages stored", || {
        let (client, url) = (client.clone(), chat_url.clone());
        async move {
            get(&client, url)
                .await
                .filter(|chat| chat["messages_count"] == 10)
        }
    })
    .await;
    let (dir, port) = broker.kill().await;
    let response = client
        .post(&messages)
        .json(&json!({ "body": "while down" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let read = get(
        &client,
        format!("{}/applications/{token}/chats/1", stack.api(0)),
    )
    .await;
    assert!(read.is_some(), "reads keep working without the broker");

    let _broker = Broker::start(dir, port).await.expect("tansu restarts");
    let after = eventually("creations resume", || {
        let (client, url) = (client.clone(), messages.clone());
        async move {
            let (status, message) = post(&client, url, json!({ "body": "after" })).await;
            (status == StatusCode::CREATED).then_some(message)
        }
    })
    .await;
    acknowledged.push((
        after["number"].as_u64().expect("number"),
        "after".to_owned(),
    ));
    for (number, body) in acknowledged {
        let url = format!(
            "{}/applications/{token}/chats/1/messages/{number}",
            stack.api(0)
        );
        let stored = eventually("acknowledged message stored", || {
            let (client, url) = (client.clone(), url.clone());
            async move { get(&client, url).await }
        })
        .await;
        assert_eq!(stored["body"].as_str(), Some(body.as_str()));
    }
    stack.stop().await;
}

#[tokio::test]
async fn acknowledged_events_only_in_a_killed_broker_are_all_stored_after_its_restart() {
    let test = "acknowledged_events_only_in_a_killed_broker_are_all_stored_after_its_restart";
    let Some(services) = services(test) else {
        return;
    };
    let Some(broker) = Broker::own(test).await else {
        return;
    };
    // Without idempotence for the same reason as the test above: this broker restarts.
    let mut stack = Stack::start_with(
        &services,
        &broker.url(),
        1,
        1,
        &[("KAFKA_IDEMPOTENCE", "false")],
    )
    .await;
    let client = Client::new();
    let api = stack.api(0).to_owned();
    let token = create_application(&client, &api).await;
    let chats = 3u64;
    for _ in 0..chats {
        let (status, chat) = post(
            &client,
            format!("{api}/applications/{token}/chats"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{chat}");
    }
    let app_url = format!("{api}/applications/{token}");
    eventually("the chats stored before the workers stop", || {
        let (client, url) = (client.clone(), app_url.clone());
        async move {
            get(&client, url)
                .await
                .filter(|a| a["chats_count"] == chats)
        }
    })
    .await;

    // Workers stopped first: from here on an acknowledged event is in the broker and nowhere else.
    for worker in &mut stack.workers {
        worker.start_kill().expect("SIGKILL the worker");
        worker.wait().await.expect("worker ends");
    }
    stack.workers.clear();
    let per_chat = 40u64;
    let mut acknowledged = Vec::new();
    for i in 0..per_chat {
        for chat in 1..=chats {
            let body = format!("only in the broker: chat {chat} message {i}");
            let url = format!("{api}/applications/{token}/chats/{chat}/messages");
            let (status, message) = post(&client, url, json!({ "body": body })).await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "chat {chat} message {i}: {message}"
            );
            let number = message["number"].as_u64().expect("number");
            acknowledged.push((chat, number, body));
        }
    }
    // The premise of the test: nothing acknowledged above reached MySQL.
    for chat in 1..=chats {
        let url = format!("{api}/applications/{token}/chats/{chat}/messages");
        let listed = get(&client, url).await.expect("list");
        assert_eq!(
            numbers(&listed),
            Vec::<u64>::new(),
            "chat {chat}: no worker ran"
        );
    }

    let (dir, port) = broker.kill().await;
    let _broker = Broker::start(dir, port).await.expect("tansu restarts");
    stack.start_worker(0, 1);
    for chat in 1..=chats {
        let mine: Vec<&(u64, u64, String)> =
            acknowledged.iter().filter(|(c, _, _)| *c == chat).collect();
        let expected = mine.len();
        let url = format!("{api}/applications/{token}/chats/{chat}/messages?per_page=1000");
        let listed = eventually(
            "every event acknowledged before the broker died stored",
            || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    get(&client, url)
                        .await
                        .filter(|list| numbers(list).len() >= expected)
                }
            },
        )
        .await;
        assert_eq!(
            numbers(&listed),
            (1..=per_chat).collect::<Vec<_>>(),
            "chat {chat}: each acknowledged number once, nothing else"
        );
        let items = listed.as_array().expect("list");
        for (_, number, body) in &mine {
            let stored: &Value = &items[*number as usize - 1];
            assert_eq!(
                stored["body"].as_str(),
                Some(body.as_str()),
                "chat {chat} #{number}"
            );
        }
        let chat_url = format!("{api}/applications/{token}/chats/{chat}");
        eventually("messages_count equals the acknowledged messages", || {
            let (client, url) = (client.clone(), chat_url.clone());
            async move {
                get(&client, url)
                    .await
                    .filter(|c| c["messages_count"] == per_chat)
            }
        })
        .await;
    }
    stack.stop().await;
}
