//! The processes under test: the real `chat-system` binary and the axum ceiling, each a child
//! process on port 0, found by the "listening on" line it prints.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `chat-system serve` on a free port with `data_dir`; its logs go to `log`.
    pub async fn chat_system(binary: &Path, data_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--port", "0", "--host", "127.0.0.1", "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL");
        Self::spawn(command, "chat-system listening on http://", log).await
    }

    /// `chat-system serve` on a free port with exactly the backend variables in `env` (the
    /// scaled shape); its logs go to `log`.
    pub async fn chat_system_with(
        binary: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.args(["serve", "--port", "0", "--host", "127.0.0.1"]);
        with_env(&mut command, env);
        Self::spawn(command, "chat-system listening on http://", log).await
    }

    /// This binary's hidden `ceiling-server` command.
    pub async fn ceiling(log: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("ceiling-server");
        Self::spawn(command, "ceiling listening on http://", log).await
    }

    async fn spawn(mut command: Command, prefix: &str, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix(prefix) {
                    return Ok::<_, anyhow::Error>(Some(addr.trim().parse::<SocketAddr>()?));
                }
            }
            Ok(None)
        };
        let Some(addr) = tokio::time::timeout(Duration::from_secs(60), wait).await?? else {
            bail!("the server exited before listening");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, for the ceiling (it has no graceful shutdown to wait for).
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM (the server drains and flushes its writer), then wait for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child).await
    }
}

/// Variables the parent may have set that would point a child at other backends.
const BACKEND_VARIABLES: [&str; 9] = [
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BROKERS",
    "ELASTICSEARCH_URL",
    "NAMESPACE",
    "WORKER_INDEX",
    "WORKER_COUNT",
    "KAFKA_IDEMPOTENCE",
    "KAFKA_PARTITIONS",
];

/// Clears the backend variables of `command`, then sets `env`.
pub fn with_env(command: &mut Command, env: &[(String, String)]) {
    for name in BACKEND_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

/// SIGTERM, then wait (a minute at most) for a successful exit.
pub async fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    if !status.success() {
        bail!("the process exited with {status}");
    }
    Ok(())
}

#[derive(Deserialize)]
struct Body {
    #[allow(dead_code)]
    body: String,
}

/// The ceiling for any endpoint: axum parses a small JSON body and answers 201, nothing else.
pub async fn serve_ceiling() -> anyhow::Result<()> {
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
    println!("ceiling listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
