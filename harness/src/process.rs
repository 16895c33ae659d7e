//! `chat-system` as a child process: its arguments, its environment (the parent's backend
//! variables removed, the shape's set), its log files, and the ways it ends: `kill -9`,
//! SIGTERM (it drains and exits), restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::env::BACKEND_VARIABLES;
use crate::listening::{self, read_address};
use crate::logs;

/// The `chat-system` binary with the environment of one shape.
#[derive(Clone, Debug)]
pub struct ChatSystem {
    pub binary: PathBuf,
    /// The shape's variables, set on every child after [`BACKEND_VARIABLES`] are removed
    /// (a `RUST_LOG` here wins over [`ChatSystem::log_level`]).
    pub env: Vec<(String, String)>,
    /// The directory of the children's log files (stderr, and a worker's stdout), one file per
    /// name given, without colours; `None`: the children write to this process's stderr.
    pub logs: Option<PathBuf>,
    /// `RUST_LOG` of the children.
    pub log_level: String,
}

impl ChatSystem {
    /// The binary with no backend variables (the embedded shape), logging to this process's
    /// stderr at this process's `RUST_LOG` (`warn` when unset).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            env: Vec::new(),
            logs: None,
            log_level: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        }
    }

    /// Adds these variables (a later one of the same name wins).
    pub fn with_env(mut self, env: &[(String, String)]) -> Self {
        self.env.extend_from_slice(env);
        self
    }

    /// Sets one variable.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Log files in `dir`.
    pub fn logs_in(mut self, dir: &Path) -> Self {
        self.logs = Some(dir.to_owned());
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Where the log named `log` goes, when the children log to files.
    pub fn log_path(&self, log: &str) -> Option<PathBuf> {
        self.logs.as_ref().map(|dir| dir.join(log))
    }

    /// " (see PATH)" for an error message, when there is a log file to see.
    fn see(&self, log: &str) -> String {
        self.log_path(log)
            .map(|path| format!(" (see {})", path.display()))
            .unwrap_or_default()
    }

    /// The command, its environment and its stderr; stdout is discarded unless the caller
    /// sets it. The child is killed if its handle is dropped.
    pub fn command(&self, args: &[&str], log: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(&self.binary);
        command.args(args).kill_on_drop(true).stdout(Stdio::null());
        for name in BACKEND_VARIABLES {
            command.env_remove(name);
        }
        command.env("RUST_LOG", &self.log_level);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match self.log_path(log) {
            Some(path) => command.env("NO_COLOR", "1").stderr(logs::append(&path)?),
            None => command.stderr(Stdio::inherit()),
        };
        Ok(command)
    }

    /// `serve` on a free loopback port, with `extra` arguments.
    pub async fn serve(&self, extra: &[&str], log: &str) -> anyhow::Result<Server> {
        let mut args = vec!["serve", "--port", "0", "--host", "127.0.0.1"];
        args.extend_from_slice(extra);
        self.start(&args, log).await
    }

    /// Any command that serves: started, then its address read from its "listening" line.
    pub async fn start(&self, args: &[&str], log: &str) -> anyhow::Result<Server> {
        let mut command = self.command(args, log)?;
        command.stdout(Stdio::piped());
        let what = format!(
            "{} {}{}",
            self.binary.display(),
            args.join(" "),
            self.see(log)
        );
        let mut server = Server::listen(command, listening::CHAT_SYSTEM, &what).await?;
        server.args = args.iter().map(|a| a.to_string()).collect();
        server.log = log.to_owned();
        Ok(server)
    }

    /// `kill -9` of `server`, then the same command again (on a new port).
    pub async fn restart(&self, server: &mut Server) -> anyhow::Result<()> {
        server.kill9().await?;
        let args: Vec<&str> = server.args.iter().map(String::as_str).collect();
        *server = self.start(&args, &server.log).await?;
        Ok(())
    }

    /// A long-running command that prints no address (a worker); its stdout goes to the log.
    pub fn spawn(&self, args: &[&str], log: &str) -> anyhow::Result<Child> {
        let mut command = self.command(args, log)?;
        if let Some(path) = self.log_path(log) {
            command.stdout(logs::append(&path)?);
        }
        command
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))
    }

    /// A one-shot command (`migrate`, `sync-counts`); its stdout when it succeeds.
    pub async fn run(&self, args: &[&str], log: &str) -> anyhow::Result<String> {
        // Not `Command::output`, which would capture stderr instead of leaving it to the log.
        let output = self
            .command(args, log)?
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {} {args:?}", self.binary.display()))?
            .wait_with_output()
            .await?;
        if !output.status.success() {
            bail!("{args:?} failed with {}{}", output.status, self.see(log));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A child process that said on its stdout where it listens.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The `chat-system` arguments and log it was started with ([`ChatSystem::restart`]).
    args: Vec<String>,
    log: String,
}

impl Server {
    /// Starts `command` (stdout piped) and waits, [`listening::STARTUP`] at most, for its line
    /// `prefix` ADDR; `what` names it in errors.
    pub async fn listen(mut command: Command, prefix: &str, what: &str) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let addr = read_address(&mut child, prefix, listening::STARTUP)
            .await
            .with_context(|| what.to_owned())?;
        Ok(Self {
            child,
            addr,
            args: Vec::new(),
            log: String::new(),
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        kill9(&mut self.child).await
    }

    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        terminate(&mut self.child).await
    }
}

/// SIGKILL (`kill -9`) and reap; a child that already died by itself is only reaped.
pub async fn kill9(child: &mut Child) -> anyhow::Result<()> {
    if let Err(err) = child.start_kill() {
        if child.try_wait().context("reap")?.is_none() {
            return Err(err).context("SIGKILL");
        }
    }
    child.wait().await.context("reap")?;
    Ok(())
}

/// How long a process may take to exit after SIGTERM (the server drains and flushes its writer).
pub const DRAIN: Duration = Duration::from_secs(60);

/// SIGTERM without waiting.
pub fn sigterm(child: &Child) -> anyhow::Result<()> {
    let Some(pid) = child.id() else {
        return Ok(()); // already reaped
    };
    let pid = libc::pid_t::try_from(pid).context("pid")?;
    // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIGTERM");
    }
    Ok(())
}

/// SIGTERM, then wait ([`DRAIN`] at most) for a successful exit.
pub async fn terminate(child: &mut Child) -> anyhow::Result<()> {
    sigterm(child)?;
    let status = tokio::time::timeout(DRAIN, child.wait())
        .await
        .context("no exit after SIGTERM")??;
    if !status.success() {
        bail!("the process exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// `sh` stands in for the binary.
    fn system(logs: &Path) -> ChatSystem {
        ChatSystem::new("sh")
            .logs_in(logs)
            .set("NAMESPACE", "mine.")
    }

    #[tokio::test]
    async fn a_child_gets_the_shape_variables_and_none_of_the_parents() {
        let dir = tempfile::tempdir().unwrap();
        let command = system(dir.path()).command(&[], "x.log").unwrap();
        let envs: HashMap<String, Option<String>> = command
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into(),
                    v.map(|v| v.to_string_lossy().into()),
                )
            })
            .collect();
        for name in BACKEND_VARIABLES {
            let expected = (name == "NAMESPACE").then(|| "mine.".to_owned());
            assert_eq!(envs[name], expected, "{name}");
        }
        assert_eq!(
            envs["NO_COLOR"].as_deref(),
            Some("1"),
            "log files without colours"
        );
        let said = system(dir.path())
            .run(&["-c", "echo \"[$NAMESPACE] [$DATABASE_URL]\""], "x.log")
            .await
            .unwrap();
        assert_eq!(said.trim(), "[mine.] []");
    }

    #[tokio::test]
    async fn a_failed_command_names_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let err = system(dir.path())
            .run(&["-c", "echo broken >&2; exit 3"], "failing.log")
            .await
            .unwrap_err();
        assert!(format!("{err}").contains("failing.log"), "{err}");
        let log = std::fs::read_to_string(dir.path().join("failing.log")).unwrap();
        assert_eq!(log, "broken\n");
    }

    #[tokio::test]
    async fn a_server_is_restarted_with_its_command_and_terminated() {
        let dir = tempfile::tempdir().unwrap();
        let script = "trap 'exit 0' TERM; echo 'chat-system listening on http://127.0.0.1:80'; \
                      while :; do sleep 0.05; done";
        let system = system(dir.path());
        let mut server = system.start(&["-c", script], "server.log").await.unwrap();
        let first = server.pid();
        assert_eq!(server.url(), "http://127.0.0.1:80");
        system.restart(&mut server).await.unwrap();
        assert_ne!(server.pid(), first);
        server.terminate().await.unwrap();
    }
}
