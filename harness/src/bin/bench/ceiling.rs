//! The ceiling for any endpoint: axum parses a small JSON body and answers 201, nothing else.
//! It runs as this binary's hidden `ceiling-server` command, a child process on port 0 like the
//! server, and is measured with the create-message request.

use std::path::Path;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chat_harness::{logs, Server};
use serde::Deserialize;

use crate::drive::Bench;
use crate::report::Measurement;
use crate::scenario::{Kind, Plan};

/// What the ceiling prints once it listens, before its address.
const LISTENING: &str = "ceiling listening on http://";

#[derive(Deserialize)]
struct Body {
    #[allow(dead_code)]
    body: String,
}

/// `bench ceiling-server`.
pub async fn serve() -> anyhow::Result<()> {
    let app = Router::new().route(
        "/applications/{token}/chats/{chat}/messages",
        post(|Json(_body): Json<Body>| async {
            (
                StatusCode::CREATED,
                Json(serde_json::json!({ "number": 1 })),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{LISTENING}{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Starts the ceiling (its stderr to `log`), measures it in a closed loop, kills it.
pub async fn measure(bench: &Bench, log: &Path) -> anyhow::Result<Measurement> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.arg("ceiling-server").stderr(logs::append(log)?);
    let mut server = Server::listen(command, LISTENING, "the ceiling").await?;
    let dummy = Plan {
        token: "ceiling".into(),
        readable: 1,
    };
    let ceiling = bench.closed(server.addr, Kind::Ceiling, &dummy, 0).await?;
    server.kill9().await?;
    Ok(ceiling)
}
