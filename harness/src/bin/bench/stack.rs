//! The scaled shape's processes for one run: a broker (tansu on memory storage, started here
//! unless one is given), a fresh MariaDB database and Redis namespace, `chat-system migrate`,
//! one API process and one worker. Everything the run created is removed by [`Stack::teardown`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chat_harness::mariadb::Database;
use chat_harness::tansu::{self, Storage};
use chat_harness::{env, redis, terminate, ChatSystem, Server, Service};
use tokio::process::Child;

/// Where the services are: MariaDB's server URL (no database), Redis, and the broker if one is
/// given (otherwise tansu is started with `tansu`).
pub struct Services {
    pub mysql: String,
    pub redis: String,
    pub kafka: Option<String>,
    pub tansu: PathBuf,
}

/// The Kafka-compatible broker: given, or a tansu of this run on memory storage.
pub struct Broker {
    tansu: Option<Service>,
    pub brokers: String,
    /// What it is, for the report.
    pub description: String,
}

impl Broker {
    pub async fn start(services: &Services, dir: &Path) -> anyhow::Result<Self> {
        if let Some(brokers) = &services.kafka {
            return Ok(Self {
                tansu: None,
                brokers: brokers.clone(),
                description: format!("given broker at {brokers}"),
            });
        }
        let mut broker = tansu::broker(&services.tansu, dir, Storage::Memory)?;
        broker
            .start()
            .await
            .context("install tansu, or give --kafka-brokers")?;
        Ok(Self {
            brokers: format!("127.0.0.1:{}", broker.port),
            tansu: Some(broker),
            description: format!(
                "{} (memory storage), started by the bench",
                tansu::version(&services.tansu).await
            ),
        })
    }

    pub async fn stop(mut self) {
        if let Some(tansu) = self.tansu.as_mut() {
            let _ = tansu.kill9().await;
        }
    }
}

/// The chat-system processes of the run, on their own database and namespace.
pub struct Stack {
    system: ChatSystem,
    database: Database,
    namespace: String,
    redis: String,
    pub database_url: String,
    api: Option<Server>,
    /// API processes started for the live streams (`start_stream_apis`).
    stream_apis: Vec<Server>,
    worker: Option<Child>,
}

/// The worker logs every batch it stores at debug level: the bench reads their sizes.
const WORKER_LOG_LEVEL: &str = "warn,chat_system::worker=debug";

impl Stack {
    /// A fresh database and namespace, migrated (schema, topics, counters); logs in `logs`.
    pub async fn create(
        binary: &Path,
        services: &Services,
        brokers: &str,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let id = std::process::id();
        let database = Database::fresh(&services.mysql, &format!("chat_bench_{id}")).await?;
        let namespace = format!("bench{id}.");
        let env = env::scaled(&database.url(), &services.redis, brokers, &namespace);
        let stack = Self {
            system: ChatSystem::new(binary)
                .with_env(&env)
                .logs_in(logs)
                .log_level("warn"),
            database_url: database.url(),
            database,
            namespace,
            redis: services.redis.clone(),
            api: None,
            stream_apis: Vec::new(),
            worker: None,
        };
        stack.migrate().await?;
        Ok(stack)
    }

    /// `chat-system migrate`: schema, topics, and the Redis counters (recovered from the
    /// database when Redis holds none for this namespace).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.system.run(&["migrate"], "migrate.log").await?;
        Ok(())
    }

    /// Makes Redis forget this namespace's counters and rebuilds them from the database with
    /// the system's own recovery (after rows were written directly).
    pub async fn reset_counters(&self) -> anyhow::Result<()> {
        redis::delete(&self.redis, &[format!("{}generation", self.namespace)]).await?;
        self.migrate().await
    }

    pub async fn start_api(&mut self) -> anyhow::Result<SocketAddr> {
        let server = self.system.serve(&[], "api.log").await?;
        let addr = server.addr;
        self.api = Some(server);
        Ok(addr)
    }

    /// `n` API processes for the live streams, each with `env` added (logs `api-stream-<i>.log`);
    /// their addresses and pids.
    pub async fn start_stream_apis(
        &mut self,
        n: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Vec<(SocketAddr, u32)>> {
        let mut system = self.system.clone();
        for (name, value) in env {
            system = system.set(name, value);
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let server = system.serve(&[], &format!("api-stream-{i}.log")).await?;
            out.push((server.addr, server.pid().context("the API's pid")?));
            self.stream_apis.push(server);
        }
        Ok(out)
    }

    /// `worker all`, taking every partition itself (static assignment: no group rebalance to
    /// wait for when it starts); logs to `log`.
    pub fn start_worker(&mut self, log: &str) -> anyhow::Result<()> {
        let args = [
            "worker",
            "all",
            "--worker-index",
            "0",
            "--worker-count",
            "1",
        ];
        let worker = self.system.clone().log_level(WORKER_LOG_LEVEL);
        self.worker = Some(worker.spawn(&args, log)?);
        Ok(())
    }

    /// The message batches the worker logged in `log` (`batch stored topic=…messages
    /// events=N`): how many, and their mean size.
    pub fn worker_batches(&self, log: &str) -> anyhow::Result<(u64, f64)> {
        let log = self.system.log_path(log).unwrap_or_else(|| log.into());
        let text = std::fs::read_to_string(&log)
            .with_context(|| format!("cannot read {}", log.display()))?;
        let sizes: Vec<u64> = text
            .lines()
            .filter(|line| line.contains("batch stored") && line.contains("messages "))
            .filter_map(|line| {
                let (_, rest) = line.split_once("events=")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .filter(|&n: &u64| n > 0)
            .collect();
        let total: u64 = sizes.iter().sum();
        Ok((
            sizes.len() as u64,
            total as f64 / (sizes.len().max(1)) as f64,
        ))
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
            Some(mut server) => server.terminate().await,
            None => Ok(()),
        }
    }

    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().and_then(Server::pid)
    }

    /// Stops the processes, drops the database and deletes the namespace's Redis keys.
    pub async fn teardown(mut self) {
        let _ = self.stop_api().await;
        for mut server in std::mem::take(&mut self.stream_apis) {
            let _ = server.terminate().await;
        }
        let _ = self.stop_worker().await;
        let _ = self.database.remove().await;
        let _ = redis::flush_namespace(&self.redis, &self.namespace).await;
    }
}
