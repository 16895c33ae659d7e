//! A scaled stack for tests: MariaDB, Redis and a Kafka-compatible broker named by the
//! `CHAT_TEST_*` variables, two API processes and two workers of the real binary, isolated from
//! other runs by a fresh database and a namespace for topics, groups and Redis keys.

use std::future::Future;
use std::time::Duration;

use chat_harness::mariadb::Database;
use rand::Rng;
use tokio::process::Child;

use crate::helpers::{spawn_binary, start_binary, Server};

/// The services a scaled test needs, or `None` (after saying `skipped`) when they are not
/// configured. Under `CI=true` a missing service fails the test instead.
pub use chat_harness::testing::{services, Services};

pub struct Stack {
    pub apis: Vec<Server>,
    pub workers: Vec<Child>,
    pub env: Vec<(String, String)>,
    pub namespace: String,
    pub redis: String,
    database: Database,
}

impl Stack {
    /// Migrates a fresh database and the topics, then starts `apis` API processes and
    /// `workers` worker processes.
    pub async fn start(services: &Services, apis: usize, workers: usize) -> Stack {
        Self::start_with(services, &services.kafka, apis, workers, &[]).await
    }

    pub async fn start_with(
        services: &Services,
        kafka: &str,
        apis: usize,
        workers: usize,
        extra: &[(&str, &str)],
    ) -> Stack {
        let id: u64 = rand::rng().random();
        let database = Database::fresh(&services.mysql, &format!("chat_test_{id:x}"))
            .await
            .expect("create database");
        let namespace = format!("t{id:x}.");
        let mut env =
            chat_harness::env::scaled(&database.url(), &services.redis, kafka, &namespace);
        env.push(("KAFKA_PARTITIONS".to_owned(), "4".to_owned()));
        env.extend(
            extra
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        let migrate = spawn_binary(&["migrate"], &env)
            .wait_with_output()
            .await
            .expect("migrate runs");
        assert!(migrate.status.success(), "migrate failed");
        let mut stack = Stack {
            apis: Vec::new(),
            workers: Vec::new(),
            env,
            namespace,
            redis: services.redis.clone(),
            database,
        };
        for index in 0..workers {
            stack.start_worker(index, workers);
        }
        for _ in 0..apis {
            let api =
                start_binary(&["serve", "--port", "0", "--host", "127.0.0.1"], &stack.env).await;
            stack.apis.push(api);
        }
        stack
    }

    /// Starts worker `index` of `count`. Workers take their partitions statically: the broker
    /// these tests run on (tansu) did not hand a killed member's partitions to the survivors.
    pub fn start_worker(&mut self, index: usize, count: usize) {
        let (index, count) = (index.to_string(), count.to_string());
        let args = [
            "worker",
            "all",
            "--worker-index",
            &index,
            "--worker-count",
            &count,
        ];
        self.workers.push(spawn_binary(&args, &self.env));
    }

    pub fn api(&self, index: usize) -> &str {
        &self.apis[index % self.apis.len()].address
    }

    /// Deletes every Redis key of this stack: what a Redis restarted empty looks like to it.
    pub async fn flush_redis(&self) {
        chat_harness::redis::flush_namespace(&self.redis, &self.namespace)
            .await
            .expect("Redis keys deleted");
    }

    /// Stops the processes (`kill -9`), drops the database and deletes the namespace's keys.
    pub async fn stop(mut self) {
        for child in self
            .apis
            .iter_mut()
            .map(|s| &mut s.child)
            .chain(self.workers.iter_mut())
        {
            let _ = chat_harness::kill9(child).await;
        }
        let _ = self.database.remove().await;
        let _ = chat_harness::redis::flush_namespace(&self.redis, &self.namespace).await;
    }
}

/// Polls `check` until it returns `Some`, for the visibility SPEC §4 allows (generously bounded
/// so that a loaded CI machine does not fail a correct system).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
