//! Test helpers: start the app on port 0 in a temporary directory, and speak JSON to it; start
//! the real binary as a child process (through the `chat-harness` crate).

use std::path::{Path, PathBuf};

use chat_harness::ChatSystem;
use chat_system::app::App;
use chat_system::config::{Config, LogFormat};
use chat_system::events::kafka::{KafkaBacklog, Topics};
use chat_system::events::Backlog;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// In the scaled shape: the processes, and the broker backlog that reads wait out.
    scaled: Option<(crate::stack::Stack, KafkaBacklog)>,
    turn: std::sync::atomic::AtomicUsize,
}

/// Whether this run drives the scaled shape (`CHAT_TEST_SHAPE=scaled`), and the skip of the
/// embedded-only tests in it.
pub use chat_harness::testing::{embedded_only, scaled};

pub fn config(data_dir: &Path) -> Config {
    Config {
        port: 0,
        host: "127.0.0.1".parse().expect("loopback address"),
        data_dir: data_dir.to_path_buf(),
        database_url: None,
        redis_url: None,
        kafka_brokers: None,
        elasticsearch_url: None,
        namespace: String::new(),
        kafka_partitions: 8,
        kafka_idempotence: true,
        worker_index: None,
        worker_count: None,
        sync_counts_every: 3600,
        rate_limit_per_client: 0,
        rate_limit_per_token: 0,
        request_timeout: 30,
        idle_timeout: 60,
        admin_key: None,
        max_streams: 10_000,
        stream_keepalive: 15,
        log_format: LogFormat::Text,
    }
}

/// Starts the server in this process on a random port with a fresh data directory; or, in the
/// scaled run, a stack of two API processes and two workers.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    if !scaled() {
        return spawn_app_in(dir).await;
    }
    // Not a skip: a scaled run without its services would test nothing of what it claims.
    let services = chat_harness::testing::configured_services()
        .unwrap_or_else(|unset| panic!("CHAT_TEST_SHAPE=scaled needs the services: {unset}"));
    // Two API processes (requests alternate between them) and two workers, as in production.
    let stack = crate::stack::Stack::start(&services, 2, 2).await;
    let backlog = KafkaBacklog::new(&services.kafka, Topics::new(&stack.namespace));
    TestApp {
        address: stack.api(0).to_owned(),
        client: reqwest::Client::new(),
        dir,
        stop: None,
        server: None,
        scaled: Some((stack, backlog)),
        turn: std::sync::atomic::AtomicUsize::new(0),
    }
}

pub async fn spawn_app_in(dir: TempDir) -> TestApp {
    spawn_app_with(dir, |_| {}).await
}

/// Starts the server in this process with a configuration changed by `adjust`.
pub async fn spawn_app_with(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = config(dir.path());
    adjust(&mut config);
    let app = App::build(&config).await.expect("app starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(chat_system::cli::serve(app, &config, listener, async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        dir,
        stop: Some(stop),
        server: Some(server),
        scaled: None,
        turn: std::sync::atomic::AtomicUsize::new(0),
    }
}

impl TestApp {
    /// Shuts the server down gracefully and hands back its data directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        std::mem::replace(&mut self.dir, dir)
    }

    /// The URL of `path`; in the scaled run, on each API process in turn.
    pub fn url(&self, path: &str) -> String {
        let address = match &self.scaled {
            Some((stack, _)) => {
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stack.api(turn).to_owned()
            }
            None => self.address.clone(),
        };
        format!("{address}{path}")
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// GET, after (in the scaled shape) the workers stored everything acknowledged so far:
    /// reads then see every earlier write, as in the embedded shape.
    pub async fn get(&self, path: &str) -> Response {
        if let Some((_, backlog)) = &self.scaled {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while !backlog.drained().await.unwrap_or(false) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the workers never caught up"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    /// GET that must answer 200; returns the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    pub async fn create_application(&self, name: &str) -> String {
        let response = self
            .post("/applications", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("JSON body");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn create_chat(&self, token: &str) -> u64 {
        let response = self
            .post(
                &format!("/applications/{token}/chats"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("JSON body");
        body["number"].as_u64().expect("number")
    }

    pub async fn create_message(&self, token: &str, chat: u64, body: &str) -> u64 {
        let path = format!("/applications/{token}/chats/{chat}/messages");
        let response = self.post(&path, serde_json::json!({ "body": body })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
        let json: Value = response.json().await.expect("JSON body");
        json["number"].as_u64().expect("number")
    }
}

/// Creates an application on the server at `base` (an address, not a `TestApp`) and returns
/// its token.
pub async fn create_application_at(client: &reqwest::Client, base: &str, name: &str) -> String {
    let response = client
        .post(format!("{base}/applications"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON body");
    body["token"].as_str().expect("token").to_owned()
}

/// Asserts the error shape `{"error": {"code", "message"}}` and returns the code.
pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("errors are JSON");
    let message = body["error"]["message"].as_str().expect("error.message");
    for leak in ["SELECT", "INSERT", "sqlite", "sqlx", "panicked", "src/"] {
        assert!(!message.contains(leak), "internal detail in {message:?}");
    }
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// Asserts that a resource carries exactly these keys (no internal id can hide among them).
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let mut found: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    found.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected);
}

/// The compiled binary, for tests that run it as a child process.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat-system"))
}

/// A `chat-system serve` child process and the address it listens on (`http://…`).
pub struct Server {
    pub child: Child,
    pub address: String,
}

/// The binary with exactly the backend variables in `env` (the parent's are removed); its logs
/// go to the test's stderr.
fn system(env: &[(String, String)]) -> ChatSystem {
    ChatSystem::new(binary()).with_env(env)
}

/// Runs the binary with `args` and `env` and waits for its "listening" line.
pub async fn start_binary(args: &[&str], env: &[(String, String)]) -> Server {
    let server = system(env).start(args, "").await.expect("a listening line");
    Server {
        address: server.url(),
        child: server.child,
    }
}

/// Starts the binary without waiting for anything (workers print no address).
pub fn spawn_binary(args: &[&str], env: &[(String, String)]) -> Child {
    system(env).spawn(args, "").expect("binary starts")
}
