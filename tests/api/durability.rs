//! Durability beyond a process crash, and SIGTERM with writes in flight.
//!
//! `kill -9` leaves the page cache alone, so the crash tests in `crash.rs` would still pass if a
//! `201` were sent before the commit reached the disk. Here the real binary runs under `strace`
//! and the trace must show, for each write request, an `fsync`/`fdatasync` of the database (or
//! its WAL) between the read of the request and the write of its answer. The same run under
//! `eatmydata` (fsync made a no-op) must be reported by the checker, so the checker is shown to
//! catch faked durability. The SIGTERM test keeps 32 writers busy while the signal arrives.
//!
//! Processes are spawned here rather than through `helpers.rs` because the server has to run
//! under a wrapper (`strace`, `eatmydata`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// The bound on every wait of these tests: start-up, one request, an exit, a join.
const DEADLINE: Duration = Duration::from_secs(60);

struct Process {
    child: Child,
    address: String,
}

/// Starts `prefix... chat-system serve` on a random port over `data` and waits for its address.
async fn serve(prefix: &[String], data: &Path) -> Process {
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

async fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

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
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {missing:?} not on PATH (CI=true: .ci/run installs strace and eatmydata)"
    );
    eprintln!("skipped {test}: needs strace and eatmydata");
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
        let mut fields = line.splitn(3, ' ');
        let (Some(pid), Some(_time), Some(rest)) = (fields.next(), fields.next(), fields.next())
        else {
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
                if call.contains("TCP")
                    && (call.contains("\"POST /") || call.contains("\"PUT /")) =>
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

#[tokio::test]
async fn every_write_is_fsynced_before_its_answer() {
    let test = "every_write_is_fsynced_before_its_answer";
    if crate::helpers::embedded_only(test) || !have_tools(test, &["strace", "eatmydata"]) {
        return;
    }
    let trace = traced_writes(false).await;
    if let Err(missing) = check_trace(&trace, 4) {
        panic!("{missing}");
    }
}

#[tokio::test]
async fn the_fsync_check_catches_eatmydata() {
    let test = "the_fsync_check_catches_eatmydata";
    if crate::helpers::embedded_only(test) || !have_tools(test, &["strace", "eatmydata"]) {
        return;
    }
    let trace = traced_writes(true).await;
    let report = check_trace(&trace, 4).expect_err("eatmydata's no-op fsync must be reported");
    assert!(
        report.starts_with("4 of 4 writes answered with no fsync"),
        "{report}"
    );
}

/// What a writer saw: the messages answered `201`, and whether it was refused at the end.
type Acknowledged = Arc<Mutex<Vec<(u64, u64, String)>>>;

/// One of 32 writers: posts until the server refuses it. A refusal is a transport error (the
/// connection refused, reset or closed) once shutdown has begun; anything else fails the test:
/// an error before SIGTERM, a timeout (a hang), or any status but `201` (the server drains its
/// in-flight requests on SIGTERM, so it has no reason to answer 503).
async fn writer(
    writer: u64,
    address: String,
    token: String,
    chats: u64,
    stopping: Arc<AtomicBool>,
    acknowledged: Acknowledged,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    for i in 0.. {
        let chat = 1 + (writer + i) % chats;
        let body = format!("writer {writer} message {i}");
        let url = format!("{address}/applications/{token}/chats/{chat}/messages");
        let shutting_down = stopping.load(Ordering::SeqCst);
        let response = match client.post(url).json(&json!({ "body": body })).send().await {
            Ok(response) => response,
            Err(error) if shutting_down && !error.is_timeout() => return,
            Err(error) => {
                panic!("writer {writer}: no answer (shutdown begun: {shutting_down}): {error:?}")
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_else(|error| {
            panic!("writer {writer}: {status} with an unreadable body: {error:?}")
        });
        assert_eq!(status, StatusCode::CREATED, "writer {writer}: {text}");
        let message: Value = serde_json::from_str(&text).expect("a JSON message");
        let number = message["number"].as_u64().expect("a number");
        acknowledged
            .lock()
            .expect("lock")
            .push((chat, number, body));
    }
}

/// Every message under `chat_url`, page by page.
async fn list(client: &reqwest::Client, chat_url: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all
            .last()
            .map_or(0, |m| m["number"].as_u64().expect("a number"));
        let page: Vec<Value> = client
            .get(format!("{chat_url}/messages?per_page=1000&after={after}"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("a JSON list");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test]
async fn sigterm_with_32_writers_in_flight_stores_every_answered_write() {
    let test = "sigterm_with_32_writers_in_flight_stores_every_answered_write";
    if crate::helpers::embedded_only(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = serve(&[], dir.path()).await;
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let url = format!("{}/applications", server.address);
    let response = client
        .post(url)
        .json(&json!({ "name": "term" }))
        .send()
        .await;
    let app: Value = response
        .expect("create an application")
        .json()
        .await
        .expect("JSON");
    let token = app["token"].as_str().expect("a token").to_owned();
    let chats = 4u64;
    for _ in 0..chats {
        let url = format!("{}/applications/{token}/chats", server.address);
        let response = client.post(url).send().await.expect("create a chat");
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let stopping = Arc::new(AtomicBool::new(false));
    let acknowledged: Acknowledged = Arc::default();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (address, token) = (server.address.clone(), token.clone());
            let task = writer(
                w,
                address,
                token,
                chats,
                stopping.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    // SIGTERM once the writers are well under way, so requests are in flight when it lands.
    timeout(DEADLINE, async {
        while acknowledged.lock().expect("lock").len() < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("300 writes acknowledged within the deadline");
    stopping.store(true, Ordering::SeqCst);
    terminate(server.child.id().expect("the server runs")).await;
    let exit = timeout(DEADLINE, server.child.wait())
        .await
        .expect("the server exited within the deadline after SIGTERM")
        .expect("wait for the server");
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    for (w, task) in writers.into_iter().enumerate() {
        let joined = timeout(DEADLINE, task).await;
        let joined = joined.unwrap_or_else(|_| panic!("writer {w} still running after the exit"));
        if let Err(error) = joined {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let restarted = serve(&[], dir.path()).await;
    let mut stored: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for chat in 1..=chats {
        let mut bodies = BTreeSet::new();
        let chat_url = format!("{}/applications/{token}/chats/{chat}", restarted.address);
        for message in list(&client, &chat_url).await {
            let body = message["body"].as_str().expect("a body").to_owned();
            assert!(
                bodies.insert(body.clone()),
                "chat {chat}: {body:?} stored twice"
            );
            let number = message["number"].as_u64().expect("a number");
            stored.insert((chat, number), body);
        }
    }
    for (chat, number, body) in &acknowledged {
        assert_eq!(
            stored.get(&(*chat, *number)),
            Some(body),
            "chat {chat} message {number}, answered 201, after the restart"
        );
    }
    let answered: BTreeSet<(u64, u64)> = acknowledged.iter().map(|(c, n, _)| (*c, *n)).collect();
    assert_eq!(
        answered.len(),
        acknowledged.len(),
        "no number answered twice"
    );
    eprintln!(
        "{test}: {} writes answered before the exit",
        acknowledged.len()
    );
}
