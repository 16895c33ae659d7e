//! Bad input never crashes, never answers 5xx, and always answers in the error shape.

use reqwest::{Method, StatusCode};

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn wrong_methods_and_unknown_routes_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let response = app
        .request(Method::POST, &format!("/applications/{token}"), None)
        .await;
    assert!(response.headers().contains_key("allow"));
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let response = app.request(Method::POST, "/api/v1/search", None).await;
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let response = app.get("/nothing/here").await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_and_the_process_survives() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"body\": }".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"body\": \"\xff\"}".to_vec(),
        nested.into_bytes(),
        b"{\"body\": \"x\"} trailing".to_vec(),
    ];
    for body in bodies {
        let response = app
            .client
            .post(app.url(&path))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request"
        );
    }
    let not_object = app
        .client
        .post(app.url(&path))
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(not_object, StatusCode::UNPROCESSABLE_ENTITY).await,
        "validation_failed"
    );
    assert_eq!(app.create_message(&token, chat, "still alive").await, 1);
}

#[tokio::test]
async fn odd_paths_and_queries_never_answer_5xx() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    app.create_chat(&token).await;
    let long = "9".repeat(10_000);
    let paths = [
        format!("/applications/{token}/chats/%FF"),
        "/applications/%FF%FE/chats/1".to_owned(),
        format!("/applications/{token}/chats/1/messages/99999999999999999999999999"),
        format!("/applications/{token}/chats/1/messages/-5"),
        format!("/applications/{token}/chats/1/messages/{long}"),
        format!("/applications/{token}/chats?per_page=%FF"),
        format!("/applications/{token}/chats?after={long}"),
        format!("/search?application_token={token}&chat_number={long}&q=x"),
        "/applications/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ];
    for path in paths {
        let response = app.get(&path).await;
        let status = response.status();
        assert!(status.is_client_error(), "{path}: {status}");
        error_code(response, status).await;
    }
    // Invalid percent-encoding in a query value is decoded lossily (U+FFFD), as browsers do.
    let lossy = app
        .get(&format!(
            "/search?application_token={token}&chat_number=1&q=%FF%FF%FF"
        ))
        .await;
    assert_eq!(lossy.status(), StatusCode::OK);
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn huge_urls_and_headers_and_idle_connections_do_no_harm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let send = |request: Vec<u8>| {
        let address = address.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect");
            stream.write_all(&request).await.expect("write");
            let mut answer = vec![0u8; 512];
            let read = stream.read(&mut answer).await.unwrap_or(0);
            String::from_utf8_lossy(&answer[..read]).into_owned()
        }
    };
    // A 200 KB URL is refused by the HTTP layer itself (414, before any handler runs).
    let long = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(200_000));
    assert!(send(long.into_bytes()).await.starts_with("HTTP/1.1 414"));
    let header = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    let answer = send(header.into_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // A thousand idle connections: the service still answers.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect"),
        );
    }
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    let token = app.create_application("after idle").await;
    assert_eq!(app.create_chat(&token).await, 1);
    drop(idle);
}
