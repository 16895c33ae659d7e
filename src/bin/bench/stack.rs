//! The scaled shape's processes for one run: a broker (tansu on memory storage, started here
//! unless one is given), a fresh MariaDB database and Redis namespace, `chat-system migrate`,
//! one API process and one worker. Everything the run created is removed by [`Stack::teardown`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::{Connection, MySqlConnection};
use tokio::process::{Child, Command};

use crate::server::{terminate, with_env, Server};

/// Where the services are: MariaDB's server URL (no database), Redis, and the broker if one is
/// given (otherwise tansu is started with `tansu`).
pub struct Services {
    pub mysql: String,
    pub redis: String,
    pub kafka: Option<String>,
    pub tansu: PathBuf,
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The Kafka-compatible broker: given, or a tansu of this run on memory storage.
pub struct Broker {
    child: Option<Child>,
    pub brokers: String,
    /// What it is, for the report.
    pub description: String,
}

impl Broker {
    pub async fn start(services: &Services, dir: &Path) -> anyhow::Result<Self> {
        if let Some(brokers) = &services.kafka {
            return Ok(Self {
                child: None,
                brokers: brokers.clone(),
                description: format!("given broker at {brokers}"),
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = log_file(&dir.join("tansu.log"))?;
        let child = Command::new(&services.tansu)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (install tansu, or give --kafka-brokers)",
                    services.tansu.display()
                )
            })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                bail!("tansu does not listen on {port} (see tansu.log)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child: Some(child),
            brokers: format!("127.0.0.1:{port}"),
            description: format!(
                "{} (memory storage), started by the bench",
                tansu_version(&services.tansu).await
            ),
        })
    }

    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

async fn tansu_version(tansu: &Path) -> String {
    let output = Command::new(tansu).arg("--version").output().await;
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The chat-system processes of the run, on their own database and namespace.
pub struct Stack {
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    admin: String,
    database: String,
    namespace: String,
    redis: String,
    pub database_url: String,
    api: Option<Server>,
    worker: Option<Child>,
}

/// The worker logs every batch it stores at debug level: the bench reads their sizes.
const WORKER_LOG_LEVEL: &str = "warn,chat_system::worker=debug";

impl Stack {
    /// A fresh database and namespace, migrated (schema, topics, counters).
    pub async fn create(
        binary: &Path,
        services: &Services,
        brokers: &str,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let id = std::process::id();
        let database = format!("chat_bench_{id}");
        let admin = services.mysql.trim_end_matches('/').to_owned();
        let mut conn = MySqlConnection::connect(&admin)
            .await
            .with_context(|| format!("cannot reach MariaDB at {admin}"))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await?;
        let namespace = format!("bench{id}.");
        let database_url = format!("{admin}/{database}");
        let env = [
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", services.redis.clone()),
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("NAMESPACE", namespace.clone()),
            ("NO_COLOR", "1".to_owned()),
        ];
        let stack = Self {
            binary: binary.to_owned(),
            env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
            logs: logs.to_owned(),
            admin,
            database,
            namespace,
            redis: services.redis.clone(),
            database_url,
            api: None,
            worker: None,
        };
        stack.migrate().await?;
        Ok(stack)
    }

    /// `chat-system migrate`: schema, topics, and the Redis counters (recovered from the
    /// database when Redis holds none for this namespace).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command.arg("migrate").env("RUST_LOG", "warn");
        with_env(&mut command, &self.env);
        let status = command
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(&self.logs.join("migrate.log"))?))
            .status()
            .await
            .context("cannot run chat-system migrate")?;
        if !status.success() {
            bail!("chat-system migrate failed (see migrate.log)");
        }
        Ok(())
    }

    /// Makes Redis forget this namespace's counters and rebuilds them from the database with
    /// the system's own recovery (after rows were written directly).
    pub async fn reset_counters(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.redis.as_str())?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        redis::cmd("DEL")
            .arg(format!("{}generation", self.namespace))
            .query_async::<()>(&mut redis)
            .await?;
        self.migrate().await
    }

    pub async fn start_api(&mut self) -> anyhow::Result<SocketAddr> {
        let mut env = self.env.clone();
        env.push(("RUST_LOG".into(), "warn".into()));
        let server =
            Server::chat_system_with(&self.binary, &env, &self.logs.join("api.log")).await?;
        let addr = server.addr;
        self.api = Some(server);
        Ok(addr)
    }

    /// `worker all`, taking every partition itself (static assignment: no group rebalance to
    /// wait for when it starts); logs to `log`.
    pub fn start_worker(&mut self, log: &str) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .args([
                "worker",
                "all",
                "--worker-index",
                "0",
                "--worker-count",
                "1",
            ])
            .env("RUST_LOG", WORKER_LOG_LEVEL);
        with_env(&mut command, &self.env);
        let child = command
            .stdout(Stdio::from(log_file(&self.logs.join(log))?))
            .stderr(Stdio::from(log_file(&self.logs.join(log))?))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start chat-system worker")?;
        self.worker = Some(child);
        Ok(())
    }

    pub fn worker_log(&self, log: &str) -> PathBuf {
        self.logs.join(log)
    }

    /// SIGTERM to the worker (it finishes its batch), and wait for it.
    pub async fn stop_worker(&mut self) -> anyhow::Result<()> {
        match self.worker.take() {
            Some(mut child) => terminate(&mut child).await,
            None => Ok(()),
        }
    }

    pub async fn stop_api(&mut self) -> anyhow::Result<()> {
        match self.api.take() {
            Some(server) => server.stop().await,
            None => Ok(()),
        }
    }

    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().and_then(Server::pid)
    }

    /// Stops the processes, drops the database and deletes the namespace's Redis keys.
    pub async fn teardown(mut self) {
        let _ = self.stop_api().await;
        let _ = self.stop_worker().await;
        if let Ok(mut conn) = MySqlConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE {}", self.database))
                .execute(&mut conn)
                .await;
        }
        let Ok(client) = redis::Client::open(self.redis.as_str()) else {
            return;
        };
        let Ok(mut redis) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.namespace))
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _ = redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await;
        }
    }
}
