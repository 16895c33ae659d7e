//! The ceilings: what axum alone does with the bench's requests, measured in the same run.
//!
//! The ceiling is this binary's hidden `ceiling-server` command, a child process on port 0 like
//! the server, with two routes: `POST …/messages` parses the create-message JSON and answers
//! `201` with a body as long as the real server's answer to that request, and `GET
//! …/messages/{number}` answers `200` with a body as long as the real read of one message. The
//! lengths are measured on a throwaway `chat-system serve` first (a Message JSON carrying a body
//! of the bench's length), so the ceiling pays for the same bytes on the wire as the server and
//! only skips the server's own work (numbering, storing, reading).

use std::path::Path;

use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_harness::{logs, ChatSystem, Server};
use hyper::Method;
use serde::Deserialize;

use crate::drive::{create_application, Bench};
use crate::load::Conn;
use crate::report::Measurement;
use crate::scenario::{body, seeded, Kind, Plan, Samples};

/// What the ceiling prints once it listens, before its address.
const LISTENING: &str = "ceiling listening on http://";

#[derive(Deserialize)]
struct Body {
    #[allow(dead_code)]
    body: String,
}

/// A JSON object of exactly `len` bytes (or of its 21 bytes when `len` is shorter).
fn answer_of(len: usize) -> String {
    let bare = r#"{"number":1,"pad":""}"#;
    let pad = len.saturating_sub(bare.len());
    format!(r#"{{"number":1,"pad":"{}"}}"#, "x".repeat(pad))
}

/// `bench ceiling-server CREATED READ`: answers of those lengths.
pub async fn serve(created: usize, read: usize) -> anyhow::Result<()> {
    let created = answer_of(created);
    let read = answer_of(read);
    const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];
    let app = Router::new()
        .route(
            "/applications/{token}/chats/{chat}/messages",
            post(
                move |Json(_body): Json<Body>| async move { (StatusCode::CREATED, JSON, created) },
            ),
        )
        .route(
            "/applications/{token}/chats/{chat}/messages/{number}",
            get(move || async move { (StatusCode::OK, JSON, read) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{LISTENING}{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The lengths of the real server's answers: creating a message with a body of the bench's
/// length (`201`), and reading it back (`200`). On a throwaway embedded server in `scratch`.
pub async fn real_lengths(binary: &Path, scratch: &Path) -> anyhow::Result<(usize, usize)> {
    let dir = scratch.join("ceiling-lengths");
    let data = dir.join("data");
    let system = ChatSystem::new(binary).logs_in(scratch).log_level("warn");
    let serve = ["--data-dir", data.to_str().context("a UTF-8 path")?];
    let mut server = system.serve(&serve, "ceiling-lengths.log").await?;
    let measured = async {
        let token = create_application(server.addr).await?;
        let mut conn = Conn::connect(server.addr).await?;
        let chats = format!("/applications/{token}/chats");
        let (status, _) = conn.send(Method::POST, &chats, Some("{}")).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "creating a chat: {status}");
        let text = serde_json::json!({ "body": body(&mut seeded(0)) }).to_string();
        let messages = format!("{chats}/1/messages");
        let (status, created) = conn.send(Method::POST, &messages, Some(&text)).await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating a message: {status}"
        );
        let (status, read) = conn
            .send(Method::GET, &format!("{messages}/1"), None)
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "reading the message: {status}");
        Ok((created.len(), read.len()))
    }
    .await;
    server.kill9().await?;
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// Starts the ceiling (its stderr to `log`) answering `lengths` (created, read), measures its
/// POST and its GET route in a closed loop, kills it: (POST, GET).
pub async fn measure(
    bench: &Bench,
    log: &Path,
    lengths: (usize, usize),
) -> anyhow::Result<(Measurement, Measurement)> {
    eprintln!(
        "bench: ceiling answers {} bytes to a creation, {} to a read (the server's lengths)",
        lengths.0, lengths.1
    );
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .arg("ceiling-server")
        .arg(lengths.0.to_string())
        .arg(lengths.1.to_string())
        .stderr(logs::append(log)?);
    let mut server = Server::listen(command, LISTENING, "the ceiling").await?;
    let dummy = Plan::new("ceiling".into(), 1, Samples::new());
    let post = bench.closed(server.addr, Kind::Ceiling, &dummy, 0).await?;
    let get = bench
        .closed(server.addr, Kind::CeilingRead, &dummy, 0)
        .await?;
    server.kill9().await?;
    Ok((post, get))
}
