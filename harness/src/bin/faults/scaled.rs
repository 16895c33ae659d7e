//! The scaled shape on services of its own: a private MariaDB, Redis and tansu, `migrate`, two
//! API processes and two workers (static partition shares). Faults, in a seeded order and at
//! seeded points: `kill -9` of an API (restarted), of a worker (restarted with its index), of
//! Redis (restarted empty), of the broker (restarted on its storage), of MariaDB (restarted on
//! its data directory).

use std::path::Path;
use std::time::{Duration, Instant};

/// The server's bound on how long a drawn revision may stay in flight, with a margin.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(11);

use anyhow::Context;
use chat_harness::mariadb::{self, Database};
use chat_harness::service::locate;
use chat_harness::tansu::{self, Storage};
use chat_harness::{env, kill9, redis, ChatSystem, Server, Service};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::process::Child;

use crate::load::{probe, Running, Target};
use crate::report::{FaultLog, ShapeReport};
use crate::subscribers::Subscribers;
use crate::Options;
use crate::{check, streams};

pub const KINDS: [&str; 5] = ["api", "worker", "redis", "broker", "mariadb"];
const APIS: usize = 2;
const WORKERS: usize = 2;

struct Stack {
    system: ChatSystem,
    mariadb: Service,
    redis: Service,
    broker: Service,
    apis: Vec<Server>,
    workers: Vec<Child>,
}

fn dir(root: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = root.join(name);
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path)
}

impl Stack {
    async fn start(options: &Options) -> anyhow::Result<(Stack, Vec<String>)> {
        let root = dir(&options.work, "scaled")?;
        let tansu = locate("tansu").unwrap_or_else(|| "tansu".into());
        let mut mariadb = mariadb::server(&dir(&root, "mariadb")?).await?;
        let mut redis = redis::server(&dir(&root, "redis")?)?;
        let mut broker = tansu::broker(&tansu, &dir(&root, "tansu")?, Storage::Sqlite)?;
        mariadb.start().await?;
        redis.start().await?;
        broker.start().await?;
        let server = format!("mysql://root@127.0.0.1:{}", mariadb.port);
        let database = Database::fresh(&server, "chat").await?;
        let env = env::scaled(
            &database.url(),
            &format!("redis://127.0.0.1:{}", redis.port),
            &format!("127.0.0.1:{}", broker.port),
            "faults.",
        );
        let system = ChatSystem::new(&options.binary)
            .with_env(&env)
            .set("KAFKA_PARTITIONS", "4")
            // tansu 0.6 panics on a producer id from before its restart (README, "tansu").
            .set("KAFKA_IDEMPOTENCE", "false")
            .logs_in(&dir(&root, "logs")?);
        let mut migrated = system.run(&["migrate"], "migrate.log").await;
        for _ in 0..10 {
            if migrated.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            migrated = system.run(&["migrate"], "migrate.log").await;
        }
        migrated?;
        let mut stack = Stack {
            system,
            mariadb,
            redis,
            broker,
            apis: Vec::new(),
            workers: Vec::new(),
        };
        for index in 0..WORKERS {
            let worker = stack.start_worker(index)?;
            stack.workers.push(worker);
        }
        let mut urls = Vec::new();
        for index in 0..APIS {
            let api = stack.start_api(index).await?;
            urls.push(api.url());
            stack.apis.push(api);
        }
        Ok((stack, urls))
    }

    async fn start_api(&self, index: usize) -> anyhow::Result<Server> {
        self.system.serve(&[], &format!("api{index}.log")).await
    }

    fn start_worker(&self, index: usize) -> anyhow::Result<Child> {
        let (i, n) = (index.to_string(), WORKERS.to_string());
        let args = ["worker", "all", "--worker-index", &i, "--worker-count", &n];
        self.system.spawn(&args, &format!("worker{index}.log"))
    }

    /// `kill -9` and restart of every API process.
    async fn restart_apis(&mut self, target: &Target) -> anyhow::Result<()> {
        for (index, api) in self.apis.iter_mut().enumerate() {
            self.system.restart(api).await?;
            target.replace_api(index, api.url());
        }
        Ok(())
    }

    /// Restarts whatever died without being killed by the runner, and says so.
    async fn revive(&mut self, target: &Target, faults: &mut FaultLog) -> anyhow::Result<()> {
        for index in 0..self.apis.len() {
            if let Ok(Some(status)) = self.apis[index].child.try_wait() {
                faults
                    .unexpected_exits
                    .push(format!("api {index} exited by itself ({status})"));
                self.system.restart(&mut self.apis[index]).await?;
                target.replace_api(index, self.apis[index].url());
            }
        }
        for index in 0..self.workers.len() {
            if let Ok(Some(status)) = self.workers[index].try_wait() {
                faults
                    .unexpected_exits
                    .push(format!("worker {index} exited by itself ({status})"));
                self.workers[index] = self.start_worker(index)?;
            }
        }
        for service in [&mut self.mariadb, &mut self.redis, &mut self.broker] {
            if service.exited() {
                faults
                    .unexpected_exits
                    .push(format!("{} exited by itself", service.name));
                service.start().await?;
            }
        }
        Ok(())
    }

    /// Kills one part of the stack and starts it again; returns what exactly was killed.
    async fn inject(
        &mut self,
        kind: &str,
        rng: &mut StdRng,
        target: &Target,
    ) -> anyhow::Result<String> {
        match kind {
            "api" => {
                let index = rng.random_range(0..APIS);
                self.system.restart(&mut self.apis[index]).await?;
                target.replace_api(index, self.apis[index].url());
                Ok(format!("api {index}"))
            }
            "worker" => {
                let index = rng.random_range(0..WORKERS);
                kill9(&mut self.workers[index]).await?;
                self.workers[index] = self.start_worker(index)?;
                Ok(format!("worker {index}"))
            }
            _ => {
                let service = match kind {
                    "redis" => &mut self.redis,
                    "broker" => &mut self.broker,
                    _ => &mut self.mariadb,
                };
                service.kill9().await?;
                // Down for a moment, as a crashed service usually is before it is restarted.
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
                service.start().await?;
                Ok(service.name.to_owned())
            }
        }
    }

    async fn stop(mut self) {
        for api in &mut self.apis {
            let _ = api.kill9().await;
        }
        for worker in &mut self.workers {
            let _ = kill9(worker).await;
        }
        for service in [&mut self.broker, &mut self.redis, &mut self.mariadb] {
            let _ = service.kill9().await;
        }
    }
}

/// The fault kinds in turn: every round holds each kind once, in a seeded order.
fn plan(kinds: &[String], faults: usize, rng: &mut StdRng) -> Vec<String> {
    let mut plan = Vec::with_capacity(faults);
    while plan.len() < faults && !kinds.is_empty() {
        let mut round = kinds.to_vec();
        round.shuffle(rng);
        plan.extend(round.into_iter().take(faults - plan.len()));
    }
    plan
}

pub async fn run(options: &Options, rng: &mut StdRng) -> anyhow::Result<ShapeReport> {
    let started = Instant::now();
    let (mut stack, urls) = Stack::start(options).await?;
    let target = Target::create(urls, options.chats).await?;
    let load = Running::start(target, options.writers, options.seed);
    // With two subscribers per chat each chat has one on either API process first
    // (`subscribers.rs`): every API fault cuts some of them.
    let subscribers = Subscribers::start(&load.target, options.subscribers);
    let mut faults = FaultLog::default();
    for (fault, kind) in plan(&options.kinds, options.faults, rng).iter().enumerate() {
        tokio::time::sleep(options.pause(rng)).await;
        // Whatever died by itself since the last look is found before it is killed again (a
        // `kill -9` of a dead process only reaps it and would hide the crash).
        stack.revive(&load.target, &mut faults).await?;
        let killed = Instant::now();
        let what = stack.inject(kind, rng, &load.target).await?;
        eprintln!("  killed {what}");
        let recovery = probe(&load.target, &load.ledger, killed, options.bound, fault).await;
        faults.record(kind, recovery);
        stack.revive(&load.target, &mut faults).await?;
        if recovery.is_some() {
            continue;
        }
        // Stuck past the bound: do what an operator (or an orchestrator's health check) would
        // and restart the API processes, so the run goes on and shows what else holds. The
        // fault stays counted as unrecovered.
        let restarted = Instant::now();
        stack.restart_apis(&load.target).await?;
        let after = probe(&load.target, &load.ledger, restarted, options.bound, fault).await;
        faults
            .operator_restarts
            .push(after.map(|d| d.as_millis() as u64));
        match after {
            Some(after) => eprintln!(
                "  API processes restarted: answering again after {} ms",
                after.as_millis()
            ),
            None => {
                eprintln!("  API processes restarted: still not answering; no more faults");
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = load.finish().await;
    let target = finished.target.clone();
    let drained = check::drain(
        &target,
        &finished.taken,
        Duration::from_secs(20),
        Duration::from_secs(180),
    )
    .await?;
    // An API process killed between drawing a revision and publishing its change leaves that
    // revision in flight: readers of its chat (the feed, a stream's catch-up) stop below it
    // until it counts as abandoned, 10 s after it was drawn (`IN_FLIGHT_LIMIT` in the server's
    // `sequencer/redis.rs`). The checks read after that bound, as a client would see it.
    tokio::time::sleep(IN_FLIGHT_LIMIT).await;
    let streams = streams::check(&target, subscribers, &finished.taken).await?;
    let sync = stack.system.run(&["sync-counts"], "sync-counts.log");
    let findings = check::check(&target, &finished.taken, sync).await?;
    stack.revive(&target, &mut faults).await?;
    stack.stop().await;
    let mut report = ShapeReport::new(
        "scaled",
        options.seed,
        options.writers,
        options.bound,
        faults,
        (finished.taken.failures, finished.writer_failures),
        findings,
    );
    report.expected_refusals = finished.taken.expected;
    report.streams = streams;
    report.duration_s = started.elapsed().as_secs_f64();
    report.drain_s = drained.as_secs_f64();
    report.kinds = options.kinds.clone();
    Ok(report)
}
