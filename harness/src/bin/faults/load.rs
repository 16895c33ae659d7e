//! The write load and its ledger: writer tasks create messages through the API processes
//! (round robin) and record every `201` with the instants its request started and ended.
//! Anything else (503, 408, a refused or cut connection, a client timeout) is counted and
//! retried later with a new body: it is never taken for an acknowledgement.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// How long one request may take before the client gives up on it (beyond the producer's
/// 5 s delivery timeout, so a slow broker answers 503 rather than being cut off).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// One acknowledged creation.
#[derive(Clone, Debug)]
pub struct Ack {
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub start: Instant,
    pub end: Instant,
}

#[derive(Default)]
pub struct Ledger {
    pub acks: Mutex<Vec<Ack>>,
    /// Failed attempts by kind ("503", "conn", "timeout", …).
    pub failures: Mutex<BTreeMap<String, u64>>,
}

impl Ledger {
    fn fail(&self, kind: String) {
        if let Ok(mut failures) = self.failures.lock() {
            *failures.entry(kind).or_default() += 1;
        }
    }
}

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
        Ok(Target {
            client,
            apis: RwLock::new(apis),
            token,
            chats: numbers,
            next: AtomicUsize::new(0),
        })
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

    /// One creation through `api`; a `201` goes into the ledger. True if acknowledged.
    pub async fn create_message(
        &self,
        ledger: &Ledger,
        api: &str,
        chat: u64,
        body: String,
    ) -> bool {
        let url = format!("{api}/applications/{}/chats/{chat}/messages", self.token);
        let start = Instant::now();
        let sent = self
            .client
            .post(url)
            .json(&json!({ "body": body }))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                ledger.fail(
                    if err.is_timeout() {
                        "timeout"
                    } else {
                        "connection"
                    }
                    .to_owned(),
                );
                return false;
            }
        };
        let status = response.status();
        if status != StatusCode::CREATED {
            ledger.fail(status.as_u16().to_string());
            return false;
        }
        // The answer is complete once its body is read: that is the acknowledgement.
        let Ok(message) = response.json::<Value>().await else {
            ledger.fail("201 without a readable body".to_owned());
            return false;
        };
        let end = Instant::now();
        let Some(number) = message["number"].as_u64() else {
            ledger.fail("201 without a number".to_owned());
            return false;
        };
        if let Ok(mut acks) = ledger.acks.lock() {
            acks.push(Ack {
                chat,
                number,
                body,
                start,
                end,
            });
        }
        true
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

/// `writers` tasks creating messages until `stop`; writer `w` writes to chat `w % chats`.
pub fn spawn_writers(
    target: &Arc<Target>,
    ledger: &Arc<Ledger>,
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..writers)
        .map(|writer| {
            let (target, ledger, stop) = (target.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let chat = target.chats[writer % target.chats.len()];
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sequence += 1;
                    let Some(api) = target.next_api() else { break };
                    let body = format!("writer {writer} message {sequence}");
                    if !target.create_message(&ledger, &api, chat, body).await {
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
            if target.create_message(ledger, &api, chat, body).await {
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

impl Running {
    pub fn start(target: Target, writers: usize) -> Running {
        let target = Arc::new(target);
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_writers(&target, &ledger, writers, &stop);
        Running {
            target,
            ledger,
            stop,
            tasks,
        }
    }

    /// Stops the writers (each finishes its request in flight) and hands back the ledger.
    pub async fn finish(self) -> (Arc<Target>, Vec<Ack>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let acks = self
            .ledger
            .acks
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let failures = self
            .ledger
            .failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        (self.target, acks, failures)
    }
}
