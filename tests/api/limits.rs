//! Rate limits (429 with Retry-After) and the request timeout (a client too slow to send its
//! body gets 408), in the error shape.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{embedded_only, error_code, spawn_app_with};

/// Why the scaled run leaves these tests out.
const CONFIGURED: &str = "needs an in-process server with its limits configured \
                          (spawn_app_with), as the embedded run had; the limits are the same \
                          HTTP layer in the scaled API processes";

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_token_and_per_client() {
    let test = "rate_limits_answer_429_with_retry_after_per_token_and_per_client";
    if embedded_only(test, CONFIGURED) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_with(dir, |config| config.rate_limit_per_token = 5).await;
    let busy = app.create_application("busy").await;
    let quiet = app.create_application("quiet").await;
    let mut limited = None;
    for _ in 0..30 {
        let response = app.get(&format!("/applications/{busy}")).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the busy token was limited");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(limited, StatusCode::TOO_MANY_REQUESTS).await,
        "rate_limited"
    );
    assert_eq!(
        app.get(&format!("/applications/{quiet}")).await.status(),
        StatusCode::OK,
        "other tokens are not limited"
    );

    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_with(dir, |config| config.rate_limit_per_client = 5).await;
    let statuses: Vec<StatusCode> = health_statuses(&app, 30).await;
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::OK));
}

async fn health_statuses(app: &crate::helpers::TestApp, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(app.get("/health").await.status());
    }
    statuses
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_body_gets_408() {
    if embedded_only("a_client_too_slow_to_send_its_body_gets_408", CONFIGURED) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_with(dir, |config| config.request_timeout = 1).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = "POST /applications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"na";
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answered within its timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    if embedded_only(
        "silent_connections_are_closed_after_the_idle_timeout",
        CONFIGURED,
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_with(dir, |config| config.idle_timeout = 1).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // One connection says nothing; another stops in the middle of its headers.
    let mut silent = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let mut halfway = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    halfway
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    for stream in [&mut silent, &mut halfway] {
        let mut buffer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
        assert!(closed.is_ok(), "the server closed the connection");
    }
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}
