//! Durability beyond a process crash, and SIGTERM with writes in flight.
//!
//! `kill -9` leaves the page cache alone, so the crash tests in `crash.rs` would still pass if a
//! `201` were sent before the commit reached the disk. Here the real binary runs under `strace`
//! and the trace must show, for each write request, an `fsync`/`fdatasync` of the database (or
//! its WAL) between the read of the request and the write of its answer. The same run under
//! `eatmydata` (fsync made a no-op) must be reported by the checker, so the checker is shown to
//! catch faked durability.
//!
//! Processes are spawned here rather than through `helpers.rs` because the server has to run
//! under a wrapper (`strace`, `eatmydata`); `shutdown.rs` starts its server the same way.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// The bound on every wait of these tests: start-up, one request, an exit, a join.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Process {
    pub child: Child,
    pub address: String,
}

/// Starts `prefix... chat-system serve` on a random port over `data` and waits for its address.
pub async fn serve(prefix: &[String], data: &Path) -> Process {
    let binary = env!("CARGO_BIN_EXE_chat-system");
    let (program, wrapper) = match prefix.split_first() {
        Some((program, rest)) => (program.as_str(), rest),
        None => (binary, &[][..]),
    };
    let mut command = Command::new(program);
    command.args(wrapper);
    if !prefix.is_empty() {
        command.arg(binary);
    }
    command
        .args(["serve", "--port", "0", "--host", "127.0.0.1", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // The embedded shape: no backend from the environment of the test run.
    for name in [
        "DATABASE_URL",
        "REDIS_URL",
        "KAFKA_BROKERS",
        "ELASTICSEARCH_URL",
    ] {
        command.env_remove(name);
    }
    let mut child = command.spawn().expect("spawn the server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(address) = line.strip_prefix("chat-system listening on ") {
                return address.to_owned();
            }
        }
        panic!("the server exited before printing its address");
    })
    .await
    .expect("the server printed its address within the deadline");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Process { child, address }
}

pub async fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// What the fsync check needs on PATH.
const STRACE: [&str; 2] = ["strace", "eatmydata"];

/// Why the scaled run leaves the fsync check out.
const UNDER_STRACE: &str = "traces the embedded binary's fsyncs of SQLite, as the embedded run \
                            did; a scaled 201 waits for the broker's acks=all, not an fsync \
                            of its own";

/// Whether `tools` are on PATH; if not, the test says it is skipped, or fails under `CI=true`.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{} not on PATH", missing.join(" and "));
    chat_harness::testing::missing(test, &reason);
    false
}

/// The syscalls the checker reads: the socket reads and writes, and every way to sync.
const TRACED: &str = "trace=read,readv,recvfrom,recvmsg,write,writev,sendto,sendmsg,\
                      fsync,fdatasync,sync_file_range,msync";

/// Runs the server under `strace` (and `eatmydata` when `fake_fsync`), sends one of each write
/// one at a time, stops it with SIGTERM, and returns the trace.
async fn traced_writes(fake_fsync: bool) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let trace = dir.path().join("strace.log");
    let mut prefix: Vec<String> = ["strace", "-f", "-tt", "-yy", "-s", "96", "-e", TRACED, "-o"]
        .map(String::from)
        .into();
    prefix.push(trace.display().to_string());
    if fake_fsync {
        prefix.push("eatmydata".into());
    }
    let mut server = serve(&prefix, &dir.path().join("data")).await;
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let base = server.address.clone();
    let send = |method: reqwest::Method, path: String, body: Value, expected: StatusCode| {
        let request = client.request(method, format!("{base}{path}")).json(&body);
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status();
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(status, expected, "{path}: {body}");
            body
        }
    };
    use reqwest::Method;
    let app = send(
        Method::POST,
        "/applications".into(),
        json!({ "name": "durable" }),
        StatusCode::CREATED,
    )
    .await;
    let token = app["token"].as_str().expect("a token").to_owned();
    let chats = format!("/applications/{token}/chats");
    send(Method::POST, chats.clone(), json!({}), StatusCode::CREATED).await;
    let messages = format!("{chats}/1/messages");
    let body = json!({ "body": "on disk" });
    send(Method::POST, messages.clone(), body, StatusCode::CREATED).await;
    let body = json!({ "body": "edited, on disk" });
    send(Method::PUT, format!("{messages}/1"), body, StatusCode::OK).await;

    // strace's own child is the server (eatmydata execs it); strace exits after it, with the
    // trace complete.
    let strace = server.child.id().expect("strace runs");
    let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
        .expect("strace's children");
    let pid: u32 = children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the traced server's pid");
    terminate(pid).await;
    let exit = timeout(DEADLINE, server.child.wait())
        .await
        .expect("strace exited within the deadline")
        .expect("wait for strace");
    assert!(exit.success(), "the traced server exits cleanly: {exit:?}");
    std::fs::read_to_string(&trace).expect("read the trace")
}

/// Whether a call's first argument is a socket: `-yy` names it `TCP:[…]`, or `socket:[inode]`
/// when strace could not ask the kernel for the addresses.
fn is_socket(call: &str) -> bool {
    call.split_once(", ")
        .is_some_and(|(fd, _)| fd.contains("<TCP") || fd.contains("<socket:["))
}

/// Checks an `strace -f -yy` trace: every HTTP write request read from a client socket is
/// followed, before its `HTTP/1.1 20x` answer is written, by a completed fsync of the database
/// or its WAL. `Err` lists the exchanges without one. File order is the order of events across
/// threads: a line is written when its syscall completes (an interrupted one is joined with its
/// `resumed` line and placed there), and the answer is written after the commit returned.
fn check_trace(trace: &str, expected: usize) -> Result<(), String> {
    let mut pending: HashMap<&str, &str> = HashMap::new();
    let mut open: Option<(String, bool)> = None;
    let mut exchanges = Vec::new();
    for line in trace.lines() {
        // `PID  TIME CALL`: strace pads the pid column, so short pids are followed by more
        // than one space.
        let Some((pid, after_pid)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((_time, rest)) = after_pid.trim_start().split_once(' ') else {
            continue;
        };
        let call = if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, start);
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, tail)| tail);
            format!("{}{tail}", pending.remove(pid).unwrap_or_default())
        } else {
            rest.to_owned()
        };
        let name = call.split('(').next().unwrap_or_default();
        match name {
            "read" | "readv" | "recvfrom" | "recvmsg"
                if is_socket(&call) && (call.contains("\"POST /") || call.contains("\"PUT /")) =>
            {
                let request = call.split('"').nth(1).unwrap_or_default();
                let request = request.split("\\r\\n").next().unwrap_or_default();
                if let Some((previous, _)) = open.replace((request.to_owned(), false)) {
                    return Err(format!("{previous:?} was read but never answered"));
                }
            }
            "fsync" | "fdatasync" | "sync_file_range"
                if call.ends_with("= 0")
                    && (call.contains("/chat.db>") || call.contains("/chat.db-wal>")) =>
            {
                if let Some((_, synced)) = open.as_mut() {
                    *synced = true;
                }
            }
            "write" | "writev" | "sendto" | "sendmsg" if call.contains("\"HTTP/1.1 20") => {
                if let Some(exchange) = open.take() {
                    exchanges.push(exchange);
                }
            }
            _ => {}
        }
    }
    let unsynced: Vec<&str> = exchanges
        .iter()
        .filter(|(_, synced)| !synced)
        .map(|(request, _)| request.as_str())
        .collect();
    if exchanges.len() != expected {
        return Err(format!(
            "{} answered write requests in the trace, {expected} sent: {exchanges:?}",
            exchanges.len()
        ));
    }
    if !unsynced.is_empty() {
        return Err(format!(
            "{} of {expected} writes answered with no fsync of the database between reading \
             the request and writing the answer: {unsynced:?}",
            unsynced.len()
        ));
    }
    Ok(())
}

/// Keeps a failed test's trace (the temporary directory goes) and says where.
fn keep(test: &str, trace: &str) -> String {
    let path = std::env::temp_dir().join(format!("{test}.strace.log"));
    match std::fs::write(&path, trace) {
        Ok(()) => path.display().to_string(),
        Err(error) => format!("not kept: {error}"),
    }
}

#[tokio::test]
async fn every_write_is_fsynced_before_its_answer() {
    let test = "every_write_is_fsynced_before_its_answer";
    if crate::helpers::embedded_only(test, UNDER_STRACE) || !have_tools(test, &STRACE) {
        return;
    }
    let trace = traced_writes(false).await;
    if let Err(missing) = check_trace(&trace, 4) {
        panic!("{missing}; the trace: {}", keep(test, &trace));
    }
}

#[tokio::test]
async fn the_fsync_check_catches_eatmydata() {
    let test = "the_fsync_check_catches_eatmydata";
    if crate::helpers::embedded_only(test, UNDER_STRACE) || !have_tools(test, &STRACE) {
        return;
    }
    let trace = traced_writes(true).await;
    let report = match check_trace(&trace, 4) {
        Ok(()) => panic!(
            "eatmydata's no-op fsync not reported: {}",
            keep(test, &trace)
        ),
        Err(report) => report,
    };
    assert!(
        report.starts_with("4 of 4 writes answered with no fsync"),
        "{report}; the trace: {}",
        keep(test, &trace)
    );
}

/// The checker reads strace's padded pid column (a 4-digit pid is followed by two spaces; CI
/// once failed on that) and `writev` answers.
#[test]
fn the_trace_checker_reads_padded_pids_and_writev() {
    let read = r#"3518  22:53:54.564058 recvfrom(52<TCP:[127.0.0.1:1->127.0.0.1:2]>, "POST /applications HTTP/1.1\r\nhost: x\r\n"..., 8192, 0, NULL, NULL) = 137"#;
    let sync = "3520  22:53:54.565000 fdatasync(7</tmp/d/chat.db-wal>) = 0";
    let answer = r#"3518  22:53:54.570839 writev(52<TCP:[127.0.0.1:1->127.0.0.1:2]>, [{iov_base="HTTP/1.1 201 Created\r\n"..., iov_len=114}], 2) = 277"#;
    assert_eq!(check_trace(&[read, sync, answer].join("\n"), 1), Ok(()));
    let unsynced = check_trace(&[read, answer].join("\n"), 1).unwrap_err();
    assert!(
        unsynced.starts_with("1 of 1 writes answered with no fsync"),
        "{unsynced}"
    );
}
