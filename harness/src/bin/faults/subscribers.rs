//! Stream subscribers: tasks that follow chats the writers use over `GET …/stream` (SPEC.md §7)
//! as a real client would, through every fault, and record everything they receive for the
//! checker (`streams.rs`).
//!
//! Each holds one Server-Sent Events connection (HTTP/1.1, read chunk by chunk, `sse.rs`),
//! opened with `since=0` so that it receives the chat's whole history. When the connection
//! fails, is cut (its API process was killed), ends, or stays silent past [`IDLE`] (three
//! keep-alives missed), it reconnects with `Last-Event-ID: <the last id received>` after a
//! short backoff, to the next API process in the scaled shape, until it is stopped. An
//! `event: chat_deleted` ends it (the runner never deletes a chat, so the checker holds it as a
//! violation).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::feed::Item;
use crate::load::{panic_message, Target};
use crate::sse::{interpret, Parser, Received};

/// How long a connection attempt may take until its answer's headers.
const CONNECT: Duration = Duration::from_secs(10);
/// How long an open stream may stay silent (the server sends a keep-alive every 15 s).
const IDLE: Duration = Duration::from_secs(45);
/// The backoff before a reconnection: from the first, doubled after each failed attempt up to
/// the second; back to the first once a connection was opened.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// How long the subscribers may take to stop once told to.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// What one subscriber received and went through.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub chat: u64,
    /// Every change received, in the order received, across all its connections.
    pub events: Vec<Item>,
    /// The last id received (what a reconnection sends as `Last-Event-ID`).
    pub last: Option<u64>,
    /// Connections opened (`200`): the first, then the reconnections.
    pub connections: usize,
    /// Connection attempts that failed and connections that ended, by kind ("connect 503",
    /// "connect refused", "cut", "ended", "idle").
    pub disconnects: BTreeMap<String, u64>,
    /// Events that were not changes (malformed, or `chat_deleted`), in words.
    pub problems: Vec<String>,
}

impl Log {
    fn count(&mut self, kind: &str) {
        *self.disconnects.entry(kind.to_owned()).or_default() += 1;
    }
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    match log.lock() {
        Ok(log) => log,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The subscribers while they run.
pub struct Subscribers {
    logs: Vec<Arc<Mutex<Log>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The HTTP client of the streams: no overall timeout (a stream lasts the whole run); the
/// silence of an open stream is bounded by [`IDLE`] instead.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client can be built")
}

impl Subscribers {
    /// `count` subscribers, spread over the target's chats in turn (subscriber `k` follows chat
    /// `k % chats`); the `j`-th subscriber of chat `c` connects first to API process `c + j`
    /// (modulo their number), so that every API process holds subscribers of every chat when
    /// there are at least as many subscribers per chat as API processes.
    pub fn start(target: &Arc<Target>, count: usize) -> Subscribers {
        let (stop, stopped) = watch::channel(false);
        let client = client();
        let chats = target.chats.len().max(1);
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for k in 0..count {
            let chat = target.chats[k % chats];
            let log = Arc::new(Mutex::new(Log {
                chat,
                ..Log::default()
            }));
            let first_api = k % chats + k / chats;
            let task = subscribe(
                target.clone(),
                client.clone(),
                (chat, first_api),
                log.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(task));
            logs.push(log);
        }
        Subscribers { logs, stop, tasks }
    }

    pub fn len(&self) -> usize {
        self.logs.len()
    }

    /// The chats followed, each once.
    pub fn chats(&self) -> Vec<u64> {
        let mut chats: Vec<u64> = self.logs.iter().map(|log| lock(log).chat).collect();
        chats.sort_unstable();
        chats.dedup();
        chats
    }

    /// The last id received by each subscriber of `chat`.
    pub fn lasts(&self, chat: u64) -> Vec<Option<u64>> {
        self.logs
            .iter()
            .map(|log| lock(log))
            .filter(|log| log.chat == chat)
            .map(|log| log.last)
            .collect()
    }

    /// Stops every subscriber and hands back what each received; a subscriber task that
    /// panicked or did not stop in time is reported (with what it had recorded by then).
    pub async fn finish(self) -> (Vec<Log>, Vec<String>) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + STOP_WITHIN;
        let mut failures = Vec::new();
        for (k, mut task) in self.tasks.into_iter().enumerate() {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.is_panic() => {
                    let message = panic_message(err.into_panic());
                    failures.push(format!("subscriber {k} panicked: {message}"));
                }
                Ok(Err(err)) => failures.push(format!("subscriber {k}: {err}")),
                Err(_) => {
                    task.abort();
                    failures.push(format!(
                        "subscriber {k} did not stop within {STOP_WITHIN:?}"
                    ));
                }
            }
        }
        let logs = self.logs.iter().map(|log| lock(log).clone()).collect();
        (logs, failures)
    }
}

/// How a connection ended.
enum End {
    /// It was opened (`200`), then ended this way.
    Opened(&'static str),
    /// It was never opened: why.
    Failed(String),
    /// `event: chat_deleted`: the subscriber stops.
    ChatDeleted,
}

/// One subscriber until `stopped`: connects, reads, reconnects.
async fn subscribe(
    target: Arc<Target>,
    client: reqwest::Client,
    (chat, first_api): (u64, usize),
    log: Arc<Mutex<Log>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut api = first_api;
    let mut backoff = BACKOFF.0;
    loop {
        if *stopped.borrow() {
            return;
        }
        let end = tokio::select! {
            end = connection(&target, &client, (api, chat), &log) => end,
            _ = stopped.changed() => return,
        };
        match end {
            End::ChatDeleted => return,
            End::Opened(kind) => {
                lock(&log).count(kind);
                backoff = BACKOFF.0;
            }
            End::Failed(kind) => {
                lock(&log).count(&kind);
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
        // The next API process (the same one in the embedded shape).
        api += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One connection to API process `api`, read until it ends; every event goes into `log` as it
/// arrives.
async fn connection(
    target: &Target,
    client: &reqwest::Client,
    (api, chat): (usize, u64),
    log: &Mutex<Log>,
) -> End {
    let Some(base) = target.api(api) else {
        return End::Failed("connect no API".to_owned());
    };
    let url = format!(
        "{base}/applications/{}/chats/{chat}/stream?since=0",
        target.token
    );
    let mut request = client.get(url);
    if let Some(last) = lock(log).last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let mut response = match timeout(CONNECT, request.send()).await {
        Err(_) => return End::Failed("connect timeout".to_owned()),
        Ok(Err(_)) => return End::Failed("connect refused".to_owned()),
        Ok(Ok(response)) => response,
    };
    if response.status() != StatusCode::OK {
        return End::Failed(format!("connect {}", response.status().as_u16()));
    }
    lock(log).connections += 1;
    let mut parser = Parser::default();
    loop {
        let chunk = match timeout(IDLE, response.chunk()).await {
            Err(_) => return End::Opened("idle"),
            Ok(Err(_)) => return End::Opened("cut"),
            Ok(Ok(None)) => return End::Opened("ended"),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let events = parser.push(&chunk);
        if events.is_empty() {
            continue;
        }
        let mut log = lock(log);
        for event in events {
            match interpret(&event) {
                Received::Change(item) => {
                    log.last = Some(item.revision);
                    log.events.push(item);
                }
                Received::ChatDeleted => {
                    log.problems
                        .push(format!("chat {chat}: chat_deleted, but it never was"));
                    return End::ChatDeleted;
                }
                Received::Malformed(what) => {
                    // As `EventSource` does, an id it carried is the last id all the same.
                    if let Some(id) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                        log.last = Some(id);
                    }
                    log.problems.push(format!("chat {chat}: {what}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    use super::*;
    use crate::feed::Entry;
    use crate::load;

    /// A stream server that answers each connection with the changes after its
    /// `Last-Event-ID` (else `since=`) among revisions 1..=6, at most two per connection, then
    /// ends it: the subscriber must come back three times and get each once, in order.
    async fn server() -> String {
        let stream = |headers: axum::http::HeaderMap| async move {
            let last: u64 = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = String::from(": hello\n\n");
            for revision in (last + 1..=6).take(2) {
                body.push_str(&format!(
                    "id: {revision}\ndata: {{\"number\":{revision},\"revision\":{revision},\"body\":\"m{revision}\"}}\n\n"
                ));
            }
            ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
        };
        let app = Router::new().route("/applications/t/chats/1/stream", get(stream));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_subscriber_reconnects_with_its_last_id_and_misses_nothing() {
        let api = server().await;
        // The second API process is down: the subscriber tries it in turn and comes back.
        let apis = vec![api, "http://127.0.0.1:9".to_owned()];
        let target = Arc::new(Target::new(load::client(), apis, "t".into(), vec![1]));
        let subscribers = Subscribers::start(&target, 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while subscribers.lasts(1) != vec![Some(6)] && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A few more rounds: connections that bring nothing new change nothing.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (logs, failures) = subscribers.finish().await;
        assert!(failures.is_empty(), "{failures:?}");
        let log = &logs[0];
        let revisions: Vec<u64> = log.events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, vec![1, 2, 3, 4, 5, 6], "{log:?}");
        assert_eq!(log.events[2].entry, Entry::Live("m3".into()));
        assert!(log.connections >= 3, "{log:?}");
        assert!(log.disconnects["ended"] >= 3, "{log:?}");
        assert!(log.disconnects["connect refused"] >= 2, "{log:?}");
        assert!(log.problems.is_empty(), "{log:?}");
    }
}
