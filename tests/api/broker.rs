//! The scaled shape with its broker killed: creations answer 503 while it is down, reads go on,
//! and nothing acknowledged is lost once it is back.

use chat_harness::service::locate;
use chat_harness::tansu::{self, Storage};
use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::scaled::{create_application, get, post};
use crate::stack::{eventually, services, Stack};

#[tokio::test]
async fn with_the_broker_down_creations_answer_503_and_nothing_acknowledged_is_lost() {
    let test = "with_the_broker_down_creations_answer_503_and_nothing_acknowledged_is_lost";
    let Some(services) = services(test) else {
        return;
    };
    let Some(tansu) = locate("tansu") else {
        chat_harness::testing::missing(test, "tansu is not on PATH (nor in ~/.cargo/bin)");
        return;
    };
    // A broker of this test's own (tansu with its SQLite storage), so it can be killed.
    let dir = tempfile::tempdir().expect("dir");
    let mut broker = tansu::broker(&tansu, dir.path(), Storage::Sqlite).expect("a free port");
    broker.start().await.expect("tansu starts");
    let port = broker.port;
    // tansu 0.6 panics on a producer id from before its restart, which stops its storage:
    // this broker restarts, so the producer here runs without idempotence (README, "tansu").
    let broker_url = format!("127.0.0.1:{port}");
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
    broker.kill9().await.expect("broker ends");
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

    broker.start().await.expect("tansu restarts");
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
