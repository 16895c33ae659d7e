//! The write load: writer tasks create messages, edit them, delete some of their own, create
//! chats and applications through the API processes (round robin), and record every
//! acknowledgement in the ledger (`ledger.rs`) with the instants its request started and ended.
//! Anything else (503, 408, a refused or cut connection, a client timeout) is counted and
//! retried later with a new body: it is never taken for an acknowledgement.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::ledger::{Ledger, Taken};
use crate::requests::Deletion;

/// How long one request may take before the client gives up on it (beyond the producer's
/// 5 s delivery timeout, so a slow broker answers 503 rather than being cut off).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The application and chats under load, and the API processes to reach them.
pub struct Target {
    pub client: reqwest::Client,
    /// Base URLs of the API processes; a restarted process replaces its entry.
    pub apis: RwLock<Vec<String>>,
    pub token: String,
    pub chats: Vec<u64>,
    next: AtomicUsize,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client can be built")
}

impl Target {
    /// Creates an application and `chats` chats, retrying while the service is starting.
    pub async fn create(apis: Vec<String>, chats: usize) -> anyhow::Result<Target> {
        let client = client();
        let api = apis.first().context("no API process")?.clone();
        let app = post_until_created(
            &client,
            &format!("{api}/applications"),
            json!({"name": "faults"}),
        )
        .await?;
        let token = app["token"].as_str().context("no token")?.to_owned();
        let mut numbers = Vec::new();
        for _ in 0..chats {
            let url = format!("{api}/applications/{token}/chats");
            let chat = post_until_created(&client, &url, json!({})).await?;
            numbers.push(chat["number"].as_u64().context("no chat number")?);
        }
        Ok(Target::new(client, apis, token, numbers))
    }

    /// The application `token` with its `chats`, reached through `apis`.
    pub fn new(client: reqwest::Client, apis: Vec<String>, token: String, chats: Vec<u64>) -> Self {
        Target {
            client,
            apis: RwLock::new(apis),
            token,
            chats,
            next: AtomicUsize::new(0),
        }
    }

    pub fn api(&self, index: usize) -> Option<String> {
        let apis = self.apis.read().ok()?;
        apis.get(index % apis.len().max(1)).cloned()
    }

    pub fn api_count(&self) -> usize {
        self.apis.read().map_or(0, |apis| apis.len())
    }

    pub fn replace_api(&self, index: usize, url: String) {
        if let Ok(mut apis) = self.apis.write() {
            apis[index] = url;
        }
    }

    fn next_api(&self) -> Option<String> {
        self.api(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

async fn post_until_created(
    client: &reqwest::Client,
    url: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.post(url).json(&body).send().await {
            if response.status() == StatusCode::CREATED {
                return response.json().await.context("unreadable 201");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("POST {url} never answered 201 within 60 s")
}

/// Out of 100 operations of a writer: message creations below 64, deletions of one of its own
/// acknowledged messages below 69, edits of one it sent a deletion for below 70 (a `404`
/// expected, or in the scaled shape a `200` while the deletion is on its way: either way the
/// message must end deleted if the deletion was acknowledged), edits of an acknowledged message
/// no deletion was sent for below 85, chat creations below 95, application creations for the
/// rest. Creations of messages dominate (they are what the order and count checks are about);
/// the others are frequent enough to be hit by every fault.
const MESSAGES: u32 = 64;
const DELETES: u32 = 69;
const EDITS_OF_DELETED: u32 = 70;
const EDITS: u32 = 85;
const CHATS: u32 = 95;

/// `writers` tasks until `stop`; writer `w` works in chat `w % chats` (creating messages in it,
/// deleting some of those it created, and editing any acknowledged message of it, so writers
/// sharing a chat edit concurrently), and creates chats and applications now and then. Each
/// writer draws its operations from its own generator seeded by `seed`.
pub fn spawn_writers(
    target: &Arc<Target>,
    ledger: &Arc<Ledger>,
    writers: usize,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..writers)
        .map(|writer| {
            let (target, ledger, stop) = (target.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (writer as u64).rotate_left(32));
                let chat = target.chats[writer % target.chats.len()];
                let mut sequence = 0u64;
                // This writer's acknowledged messages no deletion was sent for, and those one
                // was (each is deleted once at most).
                let (mut mine, mut deleted) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    sequence += 1;
                    let Some(api) = target.next_api() else { break };
                    let draw = rng.random_range(0..100u32);
                    let pick = rng.random_range(0..usize::MAX);
                    let done = match draw {
                        0..MESSAGES => {
                            let body = format!("writer {writer} message {sequence}");
                            let number = target.create_message(&ledger, &api, chat, body).await;
                            mine.extend(number);
                            number.is_some()
                        }
                        MESSAGES..DELETES if !mine.is_empty() => {
                            let number = mine.swap_remove(pick % mine.len());
                            match target.delete_message(&ledger, &api, (chat, number)).await {
                                Deletion::Acknowledged => {
                                    deleted.push(number);
                                    true
                                }
                                Deletion::Unknown => {
                                    deleted.push(number);
                                    false
                                }
                                Deletion::Refused => {
                                    mine.push(number);
                                    false
                                }
                            }
                        }
                        DELETES..EDITS_OF_DELETED if !deleted.is_empty() => {
                            let number = deleted[pick % deleted.len()];
                            let body = format!("writer {writer} edit {sequence}");
                            target
                                .edit_message(&ledger, &api, (chat, number), body)
                                .await
                        }
                        DELETES..EDITS => match ledger.message_of(chat, pick) {
                            Some(message) => {
                                let body = format!("writer {writer} edit {sequence}");
                                target.edit_message(&ledger, &api, message, body).await
                            }
                            // No acknowledged message to edit yet: nothing to do.
                            None => true,
                        },
                        EDITS..CHATS => target.create_chat(&ledger, &api).await,
                        CHATS.. => {
                            let name = format!("faults writer {writer} application {sequence}");
                            target.create_app(&ledger, &api, name).await
                        }
                        // A deletion before this writer has a message of its own: nothing to do.
                        _ => true,
                    };
                    if !done {
                        // Expected during a fault: back off a little, then go on.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect()
}

/// After a fault: polls every API process with a creation of its own (recorded like any
/// other) until each has answered `201`. The time from `killed` to the last of these is the
/// recovery time; `None` if it exceeds `bound`.
pub async fn probe(
    target: &Target,
    ledger: &Ledger,
    killed: Instant,
    bound: Duration,
    fault: usize,
) -> Option<Duration> {
    for index in 0..target.api_count() {
        let mut attempt = 0u64;
        loop {
            if killed.elapsed() > bound {
                return None;
            }
            attempt += 1;
            let api = target.api(index)?;
            let chat = target.chats[index % target.chats.len()];
            let body = format!("probe {fault} api {index} attempt {attempt}");
            if target
                .create_message(ledger, &api, chat, body)
                .await
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(killed.elapsed())
}

/// The load while it runs.
pub struct Running {
    pub target: Arc<Target>,
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long the writers may take to stop: each finishes its request in flight, which the
/// client gives up on after [`REQUEST_TIMEOUT`].
const STOP_WITHIN: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 10);

/// The load once stopped: what the ledger holds, and what became of the writers.
pub struct Finished {
    pub target: Arc<Target>,
    pub taken: Taken,
    /// Writers that panicked (with the panic's message) or did not stop in time.
    pub writer_failures: Vec<String>,
}

impl Running {
    pub fn start(target: Target, writers: usize, seed: u64) -> Running {
        let target = Arc::new(target);
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_writers(&target, &ledger, writers, seed, &stop);
        Running {
            target,
            ledger,
            stop,
            tasks,
        }
    }

    /// Stops the writers (each finishes its request in flight) and hands back the ledger. A
    /// writer that panicked (it stopped writing early, and the run is not what it claims) or
    /// that does not stop within [`STOP_WITHIN`] is reported, not ignored.
    pub async fn finish(self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + STOP_WITHIN;
        let mut writer_failures = Vec::new();
        for (writer, mut task) in self.tasks.into_iter().enumerate() {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.is_panic() => {
                    let message = panic_message(err.into_panic());
                    writer_failures.push(format!("writer {writer} panicked: {message}"));
                }
                Ok(Err(err)) => writer_failures.push(format!("writer {writer}: {err}")),
                Err(_) => {
                    task.abort();
                    writer_failures.push(format!(
                        "writer {writer} did not stop within {STOP_WITHIN:?}"
                    ));
                }
            }
        }
        Finished {
            target: self.target,
            taken: self.ledger.take(),
            writer_failures,
        }
    }
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(not a string)".to_owned(), |text| (*text).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_writer_is_reported_with_its_message() {
        let target = Arc::new(Target::new(client(), Vec::new(), String::new(), vec![1]));
        let running = Running {
            target,
            ledger: Arc::new(Ledger::default()),
            stop: Arc::new(AtomicBool::new(false)),
            tasks: vec![
                tokio::spawn(async {}),
                tokio::spawn(async { panic!("the ledger is inconsistent") }),
            ],
        };
        let finished = running.finish().await;
        assert_eq!(
            finished.writer_failures,
            vec!["writer 1 panicked: the ledger is inconsistent".to_owned()]
        );
    }
}
