//! The line a server prints on its stdout once it listens, read with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// What `chat-system serve` prints once its socket is bound (`src/cli.rs`), before the address.
pub const CHAT_SYSTEM: &str = "chat-system listening on http://";

/// How long a server may take to listen (a scaled API first reaches its broker and Redis).
pub const STARTUP: Duration = Duration::from_secs(60);

/// Reads `child`'s (piped) stdout up to the line `prefix` ADDR and returns ADDR. Fails when the
/// child closes its stdout first (it exited) or prints no such line within `within`. The rest
/// of stdout is drained in the background, so the child never blocks on a full pipe.
pub async fn read_address(
    child: &mut Child,
    prefix: &str,
    within: Duration,
) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("its stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix(prefix) {
                let addr = addr.trim().parse::<SocketAddr>();
                return Ok::<_, anyhow::Error>(Some(addr.with_context(|| line.clone())?));
            }
        }
        Ok(None)
    };
    let addr = match tokio::time::timeout(within, wait).await {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!("it exited before listening"),
        Ok(Err(err)) => return Err(err.context("reading its stdout")),
        Err(_) => bail!("it did not listen within {within:?}"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use tokio::process::{Child, Command};

    use super::*;

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sh starts")
    }

    #[tokio::test]
    async fn the_address_is_read_from_its_line_among_others() {
        let mut child =
            sh("echo starting; echo 'chat-system listening on http://127.0.0.1:4321'; sleep 5");
        let addr = read_address(&mut child, CHAT_SYSTEM, STARTUP)
            .await
            .unwrap();
        assert_eq!(addr, "127.0.0.1:4321".parse().unwrap());
    }

    #[tokio::test]
    async fn a_child_that_exits_first_is_an_error_at_once() {
        let mut child = sh("echo 'something else'");
        let err = read_address(&mut child, CHAT_SYSTEM, STARTUP)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("exited before listening"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn a_silent_child_fails_at_the_deadline() {
        let mut child = sh("sleep 10");
        let started = Instant::now();
        let within = Duration::from_millis(200);
        let err = read_address(&mut child, CHAT_SYSTEM, within)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("did not listen"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
