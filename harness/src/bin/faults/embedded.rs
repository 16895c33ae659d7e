//! The embedded shape: one `chat-system serve` on a private data directory, killed with
//! `kill -9` at random points under load and restarted on the same directory.
//!
//! A server found dead when the runner comes to kill it (or at the end of the run) died by
//! itself: that is recorded as an unexpected exit and fails the run; `kill -9` alone would
//! only reap it and hide the crash.

use std::time::{Duration, Instant};

use anyhow::Context;
use chat_harness::{ChatSystem, Server};
use rand::rngs::StdRng;

use crate::load::{probe, Running, Target};
use crate::report::{FaultLog, ShapeReport};
use crate::subscribers::Subscribers;
use crate::Options;
use crate::{check, streams};

pub async fn run(options: &Options, rng: &mut StdRng) -> anyhow::Result<ShapeReport> {
    let started = Instant::now();
    let dir = options.work.join("embedded");
    std::fs::create_dir_all(&dir).context("cannot create the run directory")?;
    let data = dir.join("data");
    let data = data.to_str().context("a UTF-8 path")?.to_owned();
    let system = ChatSystem::new(&options.binary).logs_in(&dir);
    let serve = ["--data-dir", data.as_str()];
    let mut api = system.serve(&serve, "api.log").await?;
    let target = Target::create(vec![api.url()], options.chats).await?;
    let load = Running::start(target, options.writers, options.seed);
    let subscribers = Subscribers::start(&load.target, options.subscribers);
    let mut faults = FaultLog::default();
    for fault in 0..options.faults {
        tokio::time::sleep(options.pause(rng)).await;
        let killed = Instant::now();
        already_dead(
            &mut api,
            &mut faults,
            &format!("before fault {}", fault + 1),
        );
        system.restart(&mut api).await?;
        load.target.replace_api(0, api.url());
        let recovery = probe(&load.target, &load.ledger, killed, options.bound, fault).await;
        faults.record("api", recovery);
        if recovery.is_none() {
            break;
        }
    }
    // A little load after the last fault, so its aftermath is under load too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = load.finish().await;
    let streams = streams::check(&finished.target, subscribers, &finished.taken).await?;
    let sync_args = ["sync-counts", "--data-dir", data.as_str()];
    let sync = system.run(&sync_args, "sync-counts.log");
    let findings = check::check(&finished.target, &finished.taken, sync).await?;
    already_dead(&mut api, &mut faults, "at the end of the run");
    api.kill9().await?;
    let mut report = ShapeReport::new(
        "embedded",
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
    Ok(report)
}

/// Records an unexpected exit when the server is no longer running.
fn already_dead(api: &mut Server, faults: &mut FaultLog, when: &str) {
    if let Ok(Some(status)) = api.child.try_wait() {
        let exit = format!("api exited by itself ({status}), found {when}");
        eprintln!("  unexpected: {exit}");
        faults.unexpected_exits.push(exit);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::check::Findings;

    #[tokio::test]
    async fn a_server_that_died_by_itself_fails_the_run() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = "echo 'chat-system listening on http://127.0.0.1:80'; exit 3";
        let system = ChatSystem::new("sh").logs_in(dir.path());
        let mut api = system
            .start(&["-c", script], "api.log")
            .await
            .expect("it says where it listens");
        let mut faults = FaultLog::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while faults.unexpected_exits.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            already_dead(&mut api, &mut faults, "before fault 1");
        }
        assert_eq!(faults.unexpected_exits.len(), 1, "{faults:?}");
        assert!(faults.unexpected_exits[0].contains("exit status: 3"));
        let report = ShapeReport::new(
            "embedded",
            7,
            1,
            Duration::from_secs(1),
            faults,
            (BTreeMap::new(), Vec::new()),
            Findings::default(),
        );
        assert!(!report.passed(), "an unexpected exit fails the run");
    }
}
