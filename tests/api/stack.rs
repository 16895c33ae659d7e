//! A scaled stack for tests: MariaDB, Redis and a Kafka-compatible broker named by the
//! `CHAT_TEST_*` variables, two API processes and two workers of the real binary, isolated from
//! other runs by a fresh database and a namespace for topics, groups and Redis keys.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use sqlx::Connection;
use tokio::process::Child;

use crate::helpers::{spawn_binary, start_binary, Server};

/// The services a scaled test needs, or `None` (after saying `skipped`) when they are not
/// configured. Under `CI=true` a missing service fails the test instead.
pub struct Services {
    pub mysql: String,
    pub redis: String,
    pub kafka: String,
}

pub fn services(test: &str) -> Option<Services> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let found = (
        get("CHAT_TEST_MYSQL_URL"),
        get("CHAT_TEST_REDIS_URL"),
        get("CHAT_TEST_KAFKA_BROKERS"),
    );
    if let (Some(mysql), Some(redis), Some(kafka)) = found {
        return Some(Services {
            mysql: mysql.trim_end_matches('/').to_owned(),
            redis,
            kafka,
        });
    }
    let missing =
        "CHAT_TEST_MYSQL_URL, CHAT_TEST_REDIS_URL and CHAT_TEST_KAFKA_BROKERS must all be set";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {missing} when CI=true"
    );
    eprintln!("skipped {test}: {missing}");
    None
}

pub struct Stack {
    pub apis: Vec<Server>,
    pub workers: Vec<Child>,
    pub env: Vec<(String, String)>,
    pub namespace: String,
    pub redis: String,
    admin: String,
    database: String,
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
        let database = format!("chat_test_{id:x}");
        let mut admin = sqlx::MySqlConnection::connect(&services.mysql)
            .await
            .expect("MySQL reachable");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let namespace = format!("t{id:x}.");
        let mut env = vec![
            (
                "DATABASE_URL".to_owned(),
                format!("{}/{database}", services.mysql),
            ),
            ("REDIS_URL".to_owned(), services.redis.clone()),
            ("KAFKA_BROKERS".to_owned(), kafka.to_owned()),
            ("NAMESPACE".to_owned(), namespace.clone()),
            ("KAFKA_PARTITIONS".to_owned(), "4".to_owned()),
        ];
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
            admin: services.mysql.clone(),
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
        let client = redis::Client::open(self.redis.as_str()).expect("redis URL");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis reachable");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.namespace))
            .query_async(&mut redis)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await
                .expect("DEL");
        }
    }

    /// Stops the processes and drops the database.
    pub async fn stop(mut self) {
        for child in self
            .apis
            .iter_mut()
            .map(|s| &mut s.child)
            .chain(self.workers.iter_mut())
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        if let Ok(mut admin) = sqlx::MySqlConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE {}", self.database))
                .execute(&mut admin)
                .await;
        }
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
