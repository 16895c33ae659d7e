//! Revisions, deletion and streams in the scaled shape, across processes: concurrent edits
//! through two API processes end with the same body everywhere; deletions survive a Redis reset
//! without a number reused; a stream on one API process sees writes made through another,
//! survives its own process being killed (the client resumes on another), and catches up when
//! the Redis pub/sub carrying changes between processes is cut.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::scaled::{create_application, get, post};
use crate::stack::{eventually, services, Stack};
use crate::streams::Sse;

async fn request(
    client: &Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An application with chat 1 holding `count` stored messages, created through API 0.
async fn chat_with_messages(client: &Client, stack: &Stack, count: u64) -> String {
    let token = create_application(client, stack.api(0)).await;
    let (status, _) = post(
        client,
        format!("{}/applications/{token}/chats", stack.api(0)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for i in 1..=count {
        let (status, _) = post(
            client,
            format!("{}/applications/{token}/chats/1/messages", stack.api(0)),
            json!({ "body": format!("message {i}") }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let url = format!("{}/applications/{token}/chats/1", stack.api(1));
    eventually("the messages are stored", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let chat = get(&client, url).await?;
            (chat["messages_count"] == count).then_some(())
        }
    })
    .await;
    token
}

#[tokio::test]
async fn concurrent_edits_through_two_api_processes_end_with_the_higher_revision_everywhere() {
    let Some(services) = services(
        "concurrent_edits_through_two_api_processes_end_with_the_higher_revision_everywhere",
    ) else {
        return;
    };
    let stack = Stack::start(&services, 2, 2).await;
    let client = Client::new();
    let token = chat_with_messages(&client, &stack, 1).await;
    let message =
        |api: usize| format!("{}/applications/{token}/chats/1/messages/1", stack.api(api));
    for round in 0..10 {
        let (a, b) = tokio::join!(
            request(
                &client,
                reqwest::Method::PUT,
                message(0),
                Some(json!({ "body": format!("alpha{round}") }))
            ),
            request(
                &client,
                reqwest::Method::PUT,
                message(1),
                Some(json!({ "body": format!("bravo{round}") }))
            ),
        );
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
        let (ra, rb) = (
            a.1["revision"].as_u64().expect("revision"),
            b.1["revision"].as_u64().expect("revision"),
        );
        assert_ne!(ra, rb, "two changes never share a revision");
        let winner = if ra > rb { &a.1 } else { &b.1 };
        let (body, revision) = (
            winner["body"].as_str().expect("body").to_owned(),
            ra.max(rb),
        );
        // The store, read through either process, ends with the higher revision's body ...
        for api in 0..2 {
            let url = message(api);
            let stored = eventually("the higher revision is stored", || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let m = get(&client, url).await?;
                    (m["revision"] == revision).then_some(m)
                }
            })
            .await;
            assert_eq!(stored["body"], body.as_str(), "round {round}, api {api}");
        }
        // ... the feed shows it once, in that state (once settled: see `domain::settled`) ...
        let feed_url = format!(
            "{}/applications/{token}/chats/1/messages?since=0",
            stack.api(0)
        );
        let feed = eventually("the feed shows the edited message", || {
            let (client, url) = (client.clone(), feed_url.clone());
            async move {
                let feed = get(&client, url).await?;
                (feed.as_array()?.len() == 1).then_some(feed)
            }
        })
        .await;
        assert_eq!(feed[0]["body"], body.as_str(), "{feed}");
        assert_eq!(feed[0]["revision"], revision, "{feed}");
        // ... and search finds the winner's word only.
        let loser = if ra > rb {
            format!("bravo{round}")
        } else {
            format!("alpha{round}")
        };
        let search = |term: String| {
            get(
                &client,
                format!(
                    "{}/applications/{token}/chats/1/messages/search?q={term}",
                    stack.api(1)
                ),
            )
        };
        assert_eq!(
            search(body.clone())
                .await
                .expect("search")
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(
            search(loser)
                .await
                .expect("search")
                .as_array()
                .map(Vec::len),
            Some(0)
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn deletions_survive_a_redis_reset_and_numbers_continue_after_the_deleted() {
    let Some(services) =
        services("deletions_survive_a_redis_reset_and_numbers_continue_after_the_deleted")
    else {
        return;
    };
    let stack = Stack::start(&services, 2, 1).await;
    let client = Client::new();
    let token = chat_with_messages(&client, &stack, 5).await;
    let (status, _) = post(
        &client,
        format!("{}/applications/{token}/chats", stack.api(0)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let chat2 = format!("{}/applications/{token}/chats/2", stack.api(1));
    eventually("chat 2 is stored", || {
        let (client, url) = (client.clone(), chat2.clone());
        async move { get(&client, url).await }
    })
    .await;
    // The highest message and the highest chat go.
    let (status, _) = request(
        &client,
        reqwest::Method::DELETE,
        format!("{}/applications/{token}/chats/1/messages/5", stack.api(1)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = request(&client, reqwest::Method::DELETE, chat2.clone(), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let chat1 = format!("{}/applications/{token}/chats/1", stack.api(0));
    let before = eventually("the deletions are stored", || {
        let (client, chat1, chat2) = (client.clone(), chat1.clone(), chat2.clone());
        async move {
            let chat = get(&client, chat1).await?;
            let gone = get(&client, chat2).await.is_none();
            (gone && chat["messages_count"] == 4).then_some(chat)
        }
    })
    .await;
    let revision_before = before["revision"].as_u64().expect("revision");
    assert_eq!(revision_before, 6, "5 creations and a deletion");
    stack.flush_redis().await;
    let created = eventually("creation resumes after the reset", || {
        let (client, url) = (
            client.clone(),
            format!("{}/applications/{token}/chats/1/messages", stack.api(0)),
        );
        async move {
            let (status, message) = post(&client, url, json!({ "body": "after the reset" })).await;
            (status == StatusCode::CREATED).then_some(message)
        }
    })
    .await;
    assert_eq!(
        created["number"], 6,
        "the deleted message's number is not reused"
    );
    assert_eq!(
        created["revision"],
        revision_before + 1,
        "revisions continue"
    );
    let (status, chat) = post(
        &client,
        format!("{}/applications/{token}/chats", stack.api(1)),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(chat["number"], 3, "the deleted chat's number is not reused");
    let (status, _) = post(
        &client,
        format!("{chat2}/messages"),
        json!({ "body": "into the deleted chat" }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_follows_writes_through_another_process_and_resumes_on_another_after_a_kill() {
    let Some(services) = services(
        "a_stream_follows_writes_through_another_process_and_resumes_on_another_after_a_kill",
    ) else {
        return;
    };
    let mut stack = Stack::start(&services, 2, 2).await;
    let client = Client::new();
    let token = chat_with_messages(&client, &stack, 0).await;
    let stream = |api: &str| format!("{api}/applications/{token}/chats/1/stream");
    let mut sse = Sse::open_url(&client, format!("{}?since=0", stream(stack.api(0))), None).await;
    let messages = format!("{}/applications/{token}/chats/1/messages", stack.api(1));
    let post_via = |i: u64| {
        post(
            &client,
            messages.clone(),
            json!({ "body": format!("m{i}") }),
        )
    };
    for i in 1..=10 {
        assert_eq!(post_via(i).await.0, StatusCode::CREATED);
    }
    let mut last = 0;
    for expected in 1..=10 {
        let (revision, _) = sse.change().await;
        assert_eq!(revision, expected, "in order, each once, across processes");
        last = revision;
    }
    // The client's process dies; it reconnects to the other one with its last id.
    let _ = chat_harness::kill9(&mut stack.apis[0].child).await;
    for i in 11..=20 {
        assert_eq!(post_via(i).await.0, StatusCode::CREATED);
    }
    let mut resumed = Sse::open_url(&client, stream(stack.api(1)), Some(last)).await;
    for expected in 11..=20 {
        assert_eq!(
            resumed.change().await.0,
            expected,
            "nothing missed, nothing twice"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn streams_catch_up_from_the_store_when_the_pubsub_between_processes_is_cut() {
    let Some(services) =
        services("streams_catch_up_from_the_store_when_the_pubsub_between_processes_is_cut")
    else {
        return;
    };
    let stack = Stack::start(&services, 2, 2).await;
    let client = Client::new();
    let token = chat_with_messages(&client, &stack, 0).await;
    let mut sse = Sse::open_url(
        &client,
        format!(
            "{}/applications/{token}/chats/1/stream?since=0",
            stack.api(0)
        ),
        None,
    )
    .await;
    let redis = redis::Client::open(services.redis.as_str()).expect("Redis URL");
    let mut redis = redis
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    const COUNT: u64 = 60;
    let writes = async {
        for i in 1..=COUNT {
            let (status, _) = post(
                &client,
                format!("{}/applications/{token}/chats/1/messages", stack.api(1)),
                json!({ "body": format!("m{i}") }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
            if i % 20 == 10 {
                // Every subscriber connection of Redis dropped: what a Redis restart does to them.
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut redis)
                    .await;
            }
        }
    };
    let reads = async {
        for expected in 1..=COUNT {
            let (revision, _) = sse.change().await;
            assert_eq!(revision, expected, "in order, each once, through the cuts");
        }
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join(writes, reads),
    )
    .await
    .expect("every change arrived in time");
    stack.stop().await;
}
