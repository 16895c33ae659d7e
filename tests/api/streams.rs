//! Live streams over real sockets (SPEC §7): SSE and WebSocket, the start position, resume,
//! exactly-once in order under concurrent writers, deletion, a client that stops reading, the
//! stream limit, shutdown. Every wait has a deadline. In the scaled run requests alternate
//! between two API processes, so a stream and the writes it reports go through different ones.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;

use crate::helpers::{embedded_only, error_code, spawn_app, spawn_app_with, TestApp};

/// Longest wait for any one event.
const WAIT: Duration = Duration::from_secs(10);

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<u64>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// A client of one SSE response: reads events from the body as they arrive.
pub(crate) struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(app: &TestApp, path: &str, last_event_id: Option<u64>) -> Sse {
        // In the scaled run this first waits until the workers stored every earlier write (as
        // every read of the suite does): the chat exists before its stream is asked for.
        assert_eq!(app.get("/health").await.status(), StatusCode::OK);
        Self::open_url(&app.client, app.url(path), last_event_id).await
    }

    /// A stream at `url` (any API process), from `last_event_id` if given.
    pub(crate) async fn open_url(
        client: &reqwest::Client,
        url: String,
        last_event_id: Option<u64>,
    ) -> Sse {
        let path = url.clone();
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = timeout(WAIT, request.send())
            .await
            .expect("stream answered in time")
            .expect("stream request");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "GET {path}"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut fields = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.parse().expect("numeric id"));
                        fields = true;
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = Some(name.to_owned());
                        fields = true;
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                        fields = true;
                    }
                }
                if fields {
                    return Some(event);
                }
                continue;
            }
            let chunk = timeout(WAIT, self.response.chunk())
                .await
                .expect("an event (or the end) in time")
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next change: (revision, JSON).
    pub(crate) async fn change(&mut self) -> (u64, Value) {
        let event = self.next().await.expect("a change, not the end");
        assert_eq!(event.event, None, "{event:?}");
        let json: Value = serde_json::from_str(&event.data).expect("JSON data");
        let id = event.id.expect("an id");
        assert_eq!(json["revision"], id, "the id is the revision");
        (id, json)
    }
}

async fn post_message(app: &TestApp, token: &str, chat: u64, body: &str) -> Value {
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let response = app.post(&path, json!({ "body": body })).await;
    assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
    response.json().await.expect("JSON")
}

fn stream_path(token: &str, chat: u64) -> String {
    format!("/applications/{token}/chats/{chat}/stream")
}

#[tokio::test]
async fn sse_sends_the_backlog_then_live_changes_each_once_in_order() {
    let app = spawn_app().await;
    let token = app.create_application("streams").await;
    let chat = app.create_chat(&token).await;
    for body in ["one", "two", "three"] {
        post_message(&app, &token, chat, body).await;
    }
    let mut sse = Sse::open(
        &app,
        &format!("{}?since=0", stream_path(&token, chat)),
        None,
    )
    .await;
    for expected in 1..=3 {
        let (revision, json) = sse.change().await;
        assert_eq!(revision, expected);
        assert_eq!(json["number"], expected);
    }
    post_message(&app, &token, chat, "four").await;
    let (revision, json) = sse.change().await;
    assert_eq!((revision, json["body"].as_str()), (4, Some("four")));
    // An edit and a deletion, made through the API (in the scaled run: another process).
    app.get_json(&format!("/applications/{token}/chats/{chat}/messages/1"))
        .await;
    let path = format!("/applications/{token}/chats/{chat}/messages/1");
    let edited = app
        .request(Method::PUT, &path, Some(json!({ "body": "one, edited" })))
        .await;
    assert_eq!(edited.status(), StatusCode::OK);
    let (revision, json) = sse.change().await;
    assert_eq!((revision, json["number"].as_u64()), (5, Some(1)));
    assert_eq!(json["body"], "one, edited");
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/applications/{token}/chats/{chat}/messages/2"),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (revision, json) = sse.change().await;
    assert_eq!(revision, 6);
    assert_eq!(json["deleted"], true);
    assert_eq!(json["number"], 2);
    assert!(
        json.get("body").is_none(),
        "a tombstone has no body: {json}"
    );
}

#[tokio::test]
async fn last_event_id_wins_over_since_and_no_position_means_from_now() {
    let app = spawn_app().await;
    let token = app.create_application("resume").await;
    let chat = app.create_chat(&token).await;
    for body in ["a", "b", "c"] {
        post_message(&app, &token, chat, body).await;
    }
    // A reconnecting EventSource: Last-Event-ID 2 beats since=0; revision 3 comes first.
    let mut resumed = Sse::open(
        &app,
        &format!("{}?since=0", stream_path(&token, chat)),
        Some(2),
    )
    .await;
    assert_eq!(resumed.change().await.0, 3);
    // Without a position the stream starts now: the next change is the first event.
    let mut fresh = Sse::open(&app, &stream_path(&token, chat), None).await;
    post_message(&app, &token, chat, "d").await;
    assert_eq!(fresh.change().await.0, 4);
    assert_eq!(resumed.change().await.0, 4);
}

#[tokio::test]
async fn a_deleted_chat_ends_its_streams_with_chat_deleted() {
    let app = spawn_app().await;
    let token = app.create_application("ending").await;
    let chat = app.create_chat(&token).await;
    post_message(&app, &token, chat, "hello").await;
    let mut sse = Sse::open(
        &app,
        &format!("{}?since=0", stream_path(&token, chat)),
        None,
    )
    .await;
    assert_eq!(sse.change().await.0, 1);
    app.get_json(&format!("/applications/{token}/chats/{chat}"))
        .await;
    let response = app
        .request(
            Method::DELETE,
            &format!("/applications/{token}/chats/{chat}"),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let event = sse.next().await.expect("chat_deleted");
    assert_eq!(event.event.as_deref(), Some("chat_deleted"));
    let data: Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(data, json!({ "chat_number": chat, "deleted": true }));
    assert_eq!(sse.next().await, None, "the stream ends");
    // And a new stream of it is a 404 in the error shape, before any stream.
    let response = app.get(&stream_path(&token, chat)).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn unknown_chats_and_bad_positions_answer_json_before_any_stream() {
    let app = spawn_app().await;
    let token = app.create_application("errors").await;
    let response = app.get(&stream_path(&token, 9)).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let response = app.get(&stream_path("nope", 1)).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let chat = app.create_chat(&token).await;
    let response = app
        .get(&format!("{}?since=-1", stream_path(&token, chat)))
        .await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
    let url = app
        .url(&stream_path(&token, 9))
        .replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
        }
        other => panic!("a WebSocket to an unknown chat must be refused with 404: {other:?}"),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON, or a close frame as `{"close": code}` (pings skipped).
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            tungstenite::Message::Text(text) => {
                return Some(serde_json::from_str::<Value>(&text).expect("JSON"))
            }
            tungstenite::Message::Close(close) => {
                return close.map(|c| json!({ "close": u16::from(c.code) }))
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn websocket_sends_the_same_json_and_closes_with_1000_when_the_chat_is_deleted() {
    let app = spawn_app().await;
    let token = app.create_application("ws").await;
    let chat = app.create_chat(&token).await;
    post_message(&app, &token, chat, "before").await;
    // Scaled run: wait until the workers stored the chat, as every read of the suite does.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    let url = app
        .url(&format!("{}?since=0", stream_path(&token, chat)))
        .replacen("http://", "ws://", 1);
    let (mut socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connected in time")
        .expect("WebSocket handshake");
    let mut frames = Vec::new();
    frames.push(next_frame(&mut socket).await.expect("the backlog"));
    post_message(&app, &token, chat, "live").await;
    frames.push(next_frame(&mut socket).await.expect("a live change"));
    assert_eq!(frames[0]["revision"], 1);
    assert_eq!(frames[0]["body"], "before");
    assert_eq!(frames[1]["revision"], 2);
    assert_eq!(frames[1]["body"], "live");
    app.get_json(&format!("/applications/{token}/chats/{chat}"))
        .await;
    let response = app
        .request(
            Method::DELETE,
            &format!("/applications/{token}/chats/{chat}"),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let deleted = next_frame(&mut socket).await.expect("chat_deleted");
    assert_eq!(deleted, json!({ "chat_number": chat, "deleted": true }));
    let close = next_frame(&mut socket).await.expect("a close frame");
    assert_eq!(close, json!({ "close": 1000 }));
    let _ = socket.close(None).await;
}

#[tokio::test]
async fn concurrent_subscribers_receive_every_change_of_concurrent_writers_once_in_order() {
    let app = spawn_app().await;
    let token = app.create_application("many").await;
    let chat = app.create_chat(&token).await;
    let path = format!("{}?since=0", stream_path(&token, chat));
    let mut subscribers = Vec::new();
    for _ in 0..4 {
        subscribers.push(Sse::open(&app, &path, None).await);
    }
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let writes = futures::future::join_all((0..WRITERS).map(|w| {
        let (app, token) = (&app, token.clone());
        async move {
            for i in 0..EACH {
                post_message(app, &token, chat, &format!("w{w} m{i}")).await;
            }
        }
    }));
    timeout(Duration::from_secs(60), writes)
        .await
        .expect("writers finished in time");
    let total = (WRITERS * EACH) as u64;
    for (s, subscriber) in subscribers.iter_mut().enumerate() {
        let mut numbers = std::collections::BTreeSet::new();
        for expected in 1..=total {
            let (revision, json) = subscriber.change().await;
            assert_eq!(revision, expected, "subscriber {s}: in order, none missing");
            assert!(
                numbers.insert(json["number"].as_u64().expect("number")),
                "subscriber {s}: a message twice"
            );
        }
        assert_eq!(numbers.len() as u64, total);
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_resumes_without_loss_nor_slowing_others() {
    if embedded_only(
        "streams::a_client_that_stops_reading_is_cut_off_and_resumes_without_loss_nor_slowing_others",
        "18 MB of bodies through the workers take long; the slow-client rule is the same code in both shapes",
    ) {
        return;
    }
    let app = spawn_app().await;
    let token = app.create_application("slow").await;
    let chat = app.create_chat(&token).await;
    let path = format!("{}?since=0", stream_path(&token, chat));
    let mut stuck = Sse::open(&app, &path, None).await;
    let mut reader = Sse::open(&app, &path, None).await;
    // Far more than the socket buffers and the stream's own buffer hold together: the stuck
    // client's stream must fill up.
    let body = "x".repeat(60_000);
    const COUNT: u64 = 600;
    let reading = async {
        for expected in 1..=COUNT {
            assert_eq!(
                reader.change().await.0,
                expected,
                "the reader is not held back"
            );
        }
    };
    let writing = async {
        for _ in 0..COUNT {
            post_message(&app, &token, chat, &body).await;
        }
    };
    timeout(
        Duration::from_secs(120),
        futures::future::join(reading, writing),
    )
    .await
    .expect("writes and the reader finished in time");
    // Long enough for the server to give up on the stuck client (`streams::follow::SLOW`).
    tokio::time::sleep(Duration::from_secs(7)).await;
    // The stuck client now reads: a gap-free prefix, then the end (it was cut off) ...
    let mut last = 0;
    while let Some(event) = timeout(Duration::from_secs(30), stuck.next())
        .await
        .expect("the stuck stream yields or ends")
    {
        let id = event.id.expect("an id");
        assert_eq!(id, last + 1, "no gap, no repeat");
        last = id;
    }
    assert!(
        last < COUNT,
        "the stuck client was disconnected ({last} of {COUNT} sent)"
    );
    // ... and resumes with its last id, missing nothing and seeing nothing twice.
    let mut resumed = Sse::open(&app, &stream_path(&token, chat), Some(last)).await;
    for expected in last + 1..=COUNT {
        assert_eq!(resumed.change().await.0, expected);
    }
}

#[tokio::test]
async fn past_max_streams_a_stream_is_503_with_retry_after_and_shutdown_ends_streams() {
    if embedded_only(
        "streams::past_max_streams_a_stream_is_503_with_retry_after_and_shutdown_ends_streams",
        "sets MAX_STREAMS and stops the in-process server",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let app = spawn_app_with(dir, |config| {
        config.max_streams = 2;
        // Keep-alives carry the stream past the idle timeout.
        config.idle_timeout = 1;
        config.stream_keepalive = 1;
    })
    .await;
    let token = app.create_application("limits").await;
    let chat = app.create_chat(&token).await;
    let mut first = Sse::open(&app, &stream_path(&token, chat), None).await;
    let _second = Sse::open(&app, &stream_path(&token, chat), None).await;
    let refused = app.get(&stream_path(&token, chat)).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(refused, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    // Three idle timeouts later the stream is still there and still live.
    tokio::time::sleep(Duration::from_secs(3)).await;
    post_message(&app, &token, chat, "after a quiet while").await;
    assert_eq!(first.change().await.0, 1);
    // Shutting down ends the streams, so that the server stops and clients reconnect.
    let stopping = tokio::spawn(app.stop());
    assert_eq!(first.next().await, None, "the stream ended");
    timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped in time")
        .expect("stop");
}

#[tokio::test]
async fn idle_streams_send_keep_alives_sse_comments_and_websocket_pings() {
    if embedded_only(
        "streams::idle_streams_send_keep_alives_sse_comments_and_websocket_pings",
        "sets STREAM_KEEPALIVE on the in-process server; the scaled processes use the same code",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let app = spawn_app_with(dir, |config| config.stream_keepalive = 1).await;
    let token = app.create_application("quiet").await;
    let chat = app.create_chat(&token).await;
    // SSE: a comment line (":") arrives on an idle stream.
    let mut response = app
        .client
        .get(app.url(&stream_path(&token, chat)))
        .send()
        .await
        .expect("stream");
    let mut seen = String::new();
    while !seen.lines().any(|line| line.starts_with(':')) {
        let chunk = timeout(WAIT, response.chunk())
            .await
            .expect("a keep-alive in time")
            .expect("body")
            .expect("not the end");
        seen.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    // WebSocket: a ping frame arrives on an idle socket (answered by the client library).
    let url = app
        .url(&stream_path(&token, chat))
        .replacen("http://", "ws://", 1);
    let (mut socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connected in time")
        .expect("handshake");
    loop {
        let frame = timeout(WAIT, socket.next())
            .await
            .expect("a ping in time")
            .expect("open")
            .expect("a frame");
        if matches!(frame, tungstenite::Message::Ping(_)) {
            break;
        }
    }
}
