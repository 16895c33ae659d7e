//! A service of the scaled shape as a child process: one program, one port, one directory (its
//! working directory, its data if any, and its log `NAME.log`), restartable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::logs;
use crate::process::kill9;

/// How long a service may take to accept connections after it was started.
pub const STARTUP: Duration = Duration::from_secs(60);

pub struct Service {
    pub name: &'static str,
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Not started yet: see [`Service::start`].
    pub fn new(
        name: &'static str,
        program: impl Into<PathBuf>,
        args: Vec<String>,
        dir: &Path,
        port: u16,
    ) -> Self {
        Self {
            name,
            port,
            program: program.into(),
            args,
            dir: dir.to_owned(),
            child: None,
        }
    }

    /// Starts the program in its directory and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = logs::append(&self.log())?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        wait_port(self.port, STARTUP)
            .await
            .with_context(|| format!("{} did not start (see {})", self.name, self.log().display()))
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// `kill -9` (nothing when it is not running).
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        match self.child.as_mut() {
            Some(child) => kill9(child).await,
            None => Ok(()),
        }
    }

    /// `kill -9`, then started again on the same port and directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9().await?;
        self.start().await
    }

    /// Whether the process ended by itself (a crash nobody here caused).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))))
    }
}

/// A free TCP port on the loopback interface (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls until something accepts connections on the loopback `port`.
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

/// Where `program` is: itself when it is a path, else the first of the `PATH` entries and
/// cargo's bin directory (where `cargo install` puts it) that holds it.
pub fn locate(program: impl AsRef<Path>) -> Option<PathBuf> {
    let program = program.as_ref();
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    std::env::split_paths(&path)
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
