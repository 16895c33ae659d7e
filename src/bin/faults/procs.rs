//! The processes of one run, all private to it: the `chat-system` binary (API, worker, one-shot
//! commands) and the services of the scaled shape (MariaDB, Redis, tansu) on ports and
//! directories of their own, so that `kill -9` harms nothing else on the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Variables the parent may have set that would point a child at someone else's backends.
const BACKEND_VARIABLES: [&str; 8] = [
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BROKERS",
    "ELASTICSEARCH_URL",
    "NAMESPACE",
    "WORKER_INDEX",
    "WORKER_COUNT",
    "KAFKA_IDEMPOTENCE",
];

/// A free TCP port on the loopback interface (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls until something accepts connections on `port`.
pub async fn wait_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on port {port} after {within:?}")
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The `chat-system` binary with the environment of one shape.
#[derive(Clone)]
pub struct ChatSystem {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub logs: PathBuf,
}

impl ChatSystem {
    fn command(&self, args: &[&str], log: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(&self.binary);
        // The children log warnings unless the runner was given a RUST_LOG of its own.
        let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
        command
            .args(args)
            .env("RUST_LOG", log_level)
            .kill_on_drop(true);
        for name in BACKEND_VARIABLES {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.stderr(Stdio::from(log_file(&self.logs.join(log))?));
        Ok(command)
    }

    /// `serve` on a free port; returns the process and its base URL.
    pub async fn serve(&self, extra: &[&str], log: &str) -> anyhow::Result<(Child, String)> {
        let mut args = vec!["serve", "--port", "0", "--host", "127.0.0.1"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args, log)?
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("chat-system listening on ") {
                    return Ok::<_, anyhow::Error>(Some(url.trim().to_owned()));
                }
            }
            Ok(None)
        };
        let url = match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => bail!("the API exited before listening (see {log})"),
            Ok(Err(err)) => return Err(err),
            Err(_) => bail!("the API did not listen within 60 s (see {log})"),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((child, url))
    }

    /// A long-running command (a worker).
    pub fn spawn(&self, args: &[&str], log: &str) -> anyhow::Result<Child> {
        self.command(args, log)?
            .stdout(Stdio::from(log_file(&self.logs.join(log))?))
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))
    }

    /// A one-shot command (`migrate`, `sync-counts`); its stdout on success.
    pub async fn run(&self, args: &[&str], log: &str) -> anyhow::Result<String> {
        let output = self
            .command(args, log)?
            .stdout(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("cannot run {args:?}"))?;
        if !output.status.success() {
            bail!("{args:?} failed with {} (see {log})", output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// SIGKILL (`kill -9`) and reap.
pub async fn kill9(child: &mut Child) -> anyhow::Result<()> {
    if let Err(err) = child.start_kill() {
        // Already dead (it crashed by itself): reaping is all that is left.
        if child.try_wait().context("reap")?.is_none() {
            return Err(err).context("SIGKILL");
        }
    }
    child.wait().await.context("reap")?;
    Ok(())
}

/// A service of the scaled shape: one program, one port, one directory, restartable.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    program: String,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Service {
    pub fn new(
        name: &'static str,
        program: &str,
        args: Vec<String>,
        dir: PathBuf,
        port: u16,
    ) -> Self {
        Self {
            name,
            port,
            program: program.to_owned(),
            args,
            dir,
            child: None,
        }
    }

    /// Starts the program in its directory and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = log_file(&self.dir.join(format!("{}.log", self.name)))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.program))?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(60))
            .await
            .with_context(|| format!("{} did not start", self.name))
    }

    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        match self.child.as_mut() {
            Some(child) => kill9(child).await,
            None => Ok(()),
        }
    }

    /// Whether the process ended by itself (a crash the runner did not cause).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))))
    }
}

/// A private MariaDB: its own data directory (installed once), port and socket, no grant
/// tables, `--no-defaults` so that the machine's `my.cnf` plays no part.
pub async fn mariadb(dir: &Path) -> anyhow::Result<Service> {
    let data = dir.join("data");
    let status = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root",
        ])
        .stdout(Stdio::from(log_file(&dir.join("install.log"))?))
        .stderr(Stdio::from(log_file(&dir.join("install.log"))?))
        .status()
        .await
        .context("cannot run mariadb-install-db")?;
    if !status.success() {
        bail!("mariadb-install-db failed (see {})", dir.display());
    }
    let port = free_port()?;
    let args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", data.display()),
        format!("--port={port}"),
        format!("--socket={}", dir.join("sock").display()),
        format!("--pid-file={}", dir.join("pid").display()),
        "--bind-address=127.0.0.1".to_owned(),
        "--skip-grant-tables".to_owned(),
        "--user=root".to_owned(),
    ];
    Ok(Service::new(
        "mariadb",
        "mariadbd",
        args,
        dir.to_owned(),
        port,
    ))
}

/// A private Redis without persistence: a restart is a Redis that came back empty.
pub fn redis(dir: &Path) -> anyhow::Result<Service> {
    let port = free_port()?;
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec();
    Ok(Service::new(
        "redis",
        "redis-server",
        args,
        dir.to_owned(),
        port,
    ))
}

/// A private tansu broker on SQLite storage in `dir` (kept across restarts).
pub fn tansu(dir: &Path) -> anyhow::Result<Service> {
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let args = [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "sqlite://tansu.db",
    ]
    .map(str::to_owned)
    .to_vec();
    Ok(Service::new("tansu", "tansu", args, dir.to_owned(), port))
}
