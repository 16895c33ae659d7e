//! The protocol edges, over a raw socket: half-closed requests are answered, and the errors the
//! HTTP layer produces before any handler runs are as documented (JSON where the stack lets us).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp};

/// Sends `request` on a fresh connection (then shuts the write side down when `half_close`) and
/// returns what the server wrote until it closed the connection or went quiet for 5 s.
async fn exchange(app: &TestApp, request: Vec<u8>, half_close: bool) -> String {
    let address = app.address.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        // The server may answer and close before reading all of an oversized request.
        let _ = stream.write_all(&request);
        if half_close {
            stream
                .shutdown(Shutdown::Write)
                .expect("shut down the write side");
        }
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&chunk[..read]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("socket task")
}

/// The JSON body of a `Connection: close` or content-length answer.
fn json_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {answer}"))
}

fn error_code_of(answer: &str) -> String {
    json_body(answer)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {answer}"))
        .to_owned()
}

#[tokio::test]
async fn a_half_closed_get_is_answered() {
    let app = spawn_app().await;
    let answer = exchange(
        &app,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        true,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(json_body(&answer)["status"], "ok");
}

#[tokio::test]
async fn a_half_closed_post_is_answered_and_stored() {
    let app = spawn_app().await;
    let token = app.create_application("half").await;
    let chat = app.create_chat(&token).await;
    let body = r#"{"body":"sent, then the write side shut"}"#;
    let request = format!(
        "POST /applications/{token}/chats/{chat}/messages HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&app, request.into_bytes(), true).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer:?}");
    let number = json_body(&answer)["number"].as_u64().expect("a number");
    let stored = app
        .get_json(&format!(
            "/applications/{token}/chats/{chat}/messages/{number}"
        ))
        .await;
    assert_eq!(stored["body"], "sent, then the write side shut");
}

#[tokio::test]
async fn keep_alive_still_serves_several_requests_on_one_connection() {
    let app = spawn_app().await;
    let two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange(&app, two.to_vec(), true).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer:?}");
}

#[tokio::test]
async fn a_long_uri_is_414_in_the_error_shape() {
    let app = spawn_app().await;
    let request = format!(
        "GET /applications/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = exchange(&app, request.into_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:?}");
    assert_eq!(error_code_of(&answer), "uri_too_long");
    // Past hyper's own limit (65 534 bytes) hyper answers by itself: a bare 414, no body.
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let answer = exchange(&app, request.into_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:?}");
}

#[tokio::test]
async fn large_headers_are_431_in_the_error_shape() {
    let app = spawn_app().await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    let answer = exchange(&app, request.into_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(error_code_of(&answer), "headers_too_large");
    // More than 100 headers: hyper's parser refuses them itself, a bare 431.
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let answer = exchange(&app, request.into_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

#[tokio::test]
async fn a_bad_request_line_is_400_from_the_http_layer() {
    let app = spawn_app().await;
    // hyper answers a head it cannot parse itself, with no hook: a bare 400 and no body.
    for request in [
        &b"NOT A REQUEST\r\n\r\n"[..],
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let answer = exchange(&app, request.to_vec(), false).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    }
    assert!(exchange(
        &app,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        true
    )
    .await
    .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn per_page_is_accepted_within_its_declared_int32_bounds_only() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    let list = format!("/applications/{token}/chats/{chat}/messages");
    for ok in ["1", "1000", "1001", "2147483647"] {
        let response = app.get(&format!("{list}?per_page={ok}")).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK, "per_page={ok}");
    }
    for bad in ["0", "2147483648", "-1", "1.5", "99999999999999999999"] {
        let response = app.get(&format!("{list}?per_page={bad}")).await;
        crate::helpers::error_code(response, reqwest::StatusCode::BAD_REQUEST).await;
    }
    for bad in ["page=9223372036854775808", "after=9223372036854775808"] {
        let response = app.get(&format!("{list}?{bad}")).await;
        crate::helpers::error_code(response, reqwest::StatusCode::BAD_REQUEST).await;
    }
    let document = app.get_json("/openapi.json").await;
    let per_page = document["paths"]["/applications/{token}/chats/{chat_number}/messages"]["get"]
        ["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "per_page")
        .expect("per_page")["schema"]
        .clone();
    assert_eq!(per_page["format"], "int32");
    assert_eq!(per_page["minimum"], 1);
}

#[tokio::test]
async fn patch_is_in_the_openapi_document_where_it_is_served() {
    let app = spawn_app().await;
    let document = app.get_json("/openapi.json").await;
    for path in [
        "/applications/{token}",
        "/applications/{token}/chats/{chat_number}/messages/{number}",
    ] {
        let item = &document["paths"][path];
        assert!(item["put"].is_object(), "{path}: put");
        assert!(item["patch"].is_object(), "{path}: patch");
    }
}
