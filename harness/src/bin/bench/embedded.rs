//! The embedded shape (`bench`, the default): the axum ceiling and the real `chat-system serve`
//! as child processes on port 0; the database preloaded directly in SQLite (server stopped) up
//! to each stage; every scenario over keep-alive HTTP/1.1 at the last stage; the raw SQLite
//! ceiling at the batch sizes the server used; `results.json`, `tables.md` and PNG plots.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chat_harness::ChatSystem;
use hyper::Method;

use crate::cli::{Only, RunArgs};
use crate::drive::{create_application, Bench};
use crate::load::Conn;
use crate::report::{History, Measurement, Report, SqliteCeiling};
use crate::scenario::{Kind, Plan};
use crate::{ceiling, db, history, machine, plot, report, streams};

pub async fn run(args: &RunArgs, binary: &Path) -> anyhow::Result<()> {
    let (duration, connections, stages, purge_window) = if args.smoke {
        (0.3, 4, vec![2_000, 3_000], 0.5)
    } else {
        (
            args.duration,
            args.connections,
            args.stages.clone(),
            args.purge_window,
        )
    };
    // `--only`: the ceilings and each stage's create and read, then only that group.
    let run_history = args.only != Some(Only::Streams);
    let run_streams = args.only != Some(Only::History);
    let run_suite = args.only.is_none();
    anyhow::ensure!(!stages.is_empty(), "give at least one stage");
    std::fs::create_dir_all(&args.out)?;
    plot::init_font()?;
    let scratch = std::env::temp_dir().join(format!("chat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let log = "server.log";
    let system = ChatSystem::new(binary).logs_in(&scratch).log_level("warn");
    let builds = machine::builds_running();
    let load_before = machine::load_average();
    let bench = Bench::new(Duration::from_secs_f64(duration), connections);

    // The axum ceilings, answering as many bytes as the server does.
    let lengths = ceiling::real_lengths(binary, &scratch).await?;
    let (ceiling, read_ceiling) = ceiling::measure(&bench, &scratch.join(log), lengths).await?;

    // chat-system: one application, chats 1..=1002 stored directly.
    let data = scratch.join("data");
    let db_path = data.join("chat.db");
    let serve = ["--data-dir", data.to_str().context("a UTF-8 path")?];
    let mut server = system.serve(&serve, log).await?;
    let token = create_application(server.addr).await?;
    server.terminate().await?;
    db::ensure_chats(&db_path, &token).await?;

    let mut runs = Vec::new();
    let mut sweep = Vec::new();
    let mut growth = Vec::new();
    let mut mean_batch = 0.0;
    let mut search_chat_messages = 0;
    let mut history = None;
    let mut streams = None;
    let mut stored_last = 0;
    for (i, &stage) in stages.iter().enumerate() {
        eprintln!("bench: preloading to {stage} messages");
        let filled = db::fill(&db_path, &token, stage, i as u64).await?;
        search_chat_messages = filled.search_chat;
        let mut server = system.serve(&serve, log).await?;
        // The preload's messages are indexed for search in the background: let that finish, so
        // that no scenario measures the indexer's catch-up instead of itself.
        db::wait_indexed(&db_path).await?;
        eprintln!(
            "bench: chat-system pid {:?} at {}",
            server.pid(),
            server.addr
        );
        let addr = server.addr;
        let samples = db::samples(&db_path, &token, filled.readable).await?;
        eprintln!(
            "bench: {} stored bodies sampled for the reads' check",
            samples.len()
        );
        let plan =
            Plan::new(token.clone(), filled.readable, samples).with_history(filled.search_chat);
        let base = bench.ledger.messages();
        let stored = |bench: &Bench| filled.stored + bench.ledger.messages() - base;
        // Warm the caches (ids, pages) before measuring, on other rows than the measured run's.
        let warm = bench.warm_up();
        warm.closed(addr, Kind::ReadOne, &plan, 0).await?;
        let read = bench
            .closed(addr, Kind::ReadOne, &plan, stored(&bench))
            .await?;
        // The first writes after a restart initialise each chat's counter: warm those too.
        warm.closed(addr, Kind::CreateSpread, &plan, 0).await?;
        let before = batch_totals(addr).await?;
        let create = bench
            .closed(addr, Kind::CreateSpread, &plan, stored(&bench))
            .await?;
        let after = batch_totals(addr).await?;
        growth.push(create.clone());
        growth.push(read.clone());
        if i + 1 == stages.len() {
            mean_batch = (after.0 - before.0) / (after.1 - before.1).max(1.0);
            let max = create.throughput;
            runs.push(create);
            runs.push(read);
            // The pages first, near the stage's size; the indexer's backlog from the creates
            // drained, so that it does not run during some of them only.
            db::wait_indexed(&db_path).await?;
            let reads = if run_history {
                history::reads(&bench, addr, &plan, stored(&bench)).await?
            } else {
                Vec::new()
            };
            if run_suite {
                suite(
                    &bench, addr, &plan, &mut runs, &mut sweep, max, args.smoke, &stored,
                )
                .await?;
            }
            if !run_history {
                stored_last = stored(&bench);
                server.terminate().await?;
                break;
            }
            // Deletions last: they remove messages the other scenarios read.
            let plan = plan.with_doomed(history::doomed(&bench, filled.readable));
            let deletes = history::deletes(&bench, addr, &plan, stored(&bench)).await?;
            let chat_deletion = history::chat_deletion(
                &bench,
                addr,
                &plan,
                &db_path,
                history::Deletion {
                    rate: (max / 2.0).max(1.0),
                    window: Duration::from_secs_f64(purge_window),
                    wait: Duration::from_secs(if args.smoke { 30 } else { 300 }),
                    messages: filled.search_chat,
                },
                || stored(&bench),
            )
            .await?;
            history = Some(History {
                chat_messages: filled.search_chat,
                reads,
                deletes: Some(deletes),
                chat_deletion: Some(chat_deletion),
            });
        }
        stored_last = stored(&bench);
        server.terminate().await?;
    }
    if run_streams {
        // Issue #12, on its own servers (streams and idle connections allowed) over the same
        // data. The history group, when it ran, deleted messages and the search chat; the
        // streams start from each chat's current revision, which that does not disturb.
        let setup = streams::Setup {
            system: &system,
            serve: &serve,
            log,
            token: &token,
            ledger: bench.ledger.clone(),
            stored: stored_last,
        };
        let sizes = streams::Sizes::new(args, duration, connections);
        streams = Some(streams::run(&setup, &sizes).await?);
    }

    let mut batches = vec![1usize, 16, 128, mean_batch.round().max(1.0) as usize];
    batches.sort_unstable();
    batches.dedup();
    let mut sqlite = Vec::new();
    if args.only.is_some() {
        batches.clear();
    }
    for batch in batches {
        eprintln!("bench: raw SQLite, {batch} rows per transaction");
        let rows_per_s = db::ceiling(&scratch, batch, bench.duration).await?;
        sqlite.push(SqliteCeiling { batch, rows_per_s });
    }

    let mut report = Report {
        smoke: args.smoke,
        duration_s: duration,
        machine: machine::machine(load_before, builds),
        ceiling,
        read_ceiling,
        sqlite,
        mean_batch,
        runs,
        sweep,
        growth,
        search_chat_messages,
        history,
        streams,
        targets: Vec::new(),
    };
    report.targets = report::targets(&report, *stages.last().unwrap_or(&0));
    write_outputs(&report, &args.out)?;
    report::print(&report);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The rest of the suite at the last stage: hot chat, create chat, list page, search (closed,
/// then open at half its maximum), mixed, and the open-loop create sweep.
#[allow(clippy::too_many_arguments)]
async fn suite(
    bench: &Bench,
    addr: SocketAddr,
    plan: &Plan,
    runs: &mut Vec<Measurement>,
    sweep: &mut Vec<Measurement>,
    max: f64,
    smoke: bool,
    stored: &impl Fn(&Bench) -> u64,
) -> anyhow::Result<()> {
    for kind in [
        Kind::CreateHot,
        Kind::CreateChat,
        Kind::ListPage,
        Kind::Search,
    ] {
        runs.push(bench.closed(addr, kind, plan, stored(bench)).await?);
    }
    let search_max = runs.last().map_or(1.0, |m| m.throughput);
    let half = (search_max / 2.0).max(1.0);
    runs.push(
        bench
            .open(addr, Kind::Search, plan, half, stored(bench))
            .await?,
    );
    runs.push(bench.closed(addr, Kind::Mixed, plan, stored(bench)).await?);
    let fractions: &[f64] = if smoke {
        &[0.5, 1.0]
    } else {
        &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2]
    };
    for fraction in fractions {
        let rate = (max * fraction).max(1.0);
        sweep.push(
            bench
                .open(addr, Kind::CreateSpread, plan, rate, stored(bench))
                .await?,
        );
    }
    Ok(())
}

/// Mean group-commit batch so far, from the server's `/metrics`: (sum, count).
async fn batch_totals(addr: SocketAddr) -> anyhow::Result<(f64, f64)> {
    let mut conn = Conn::connect(addr).await?;
    let (_, body) = conn.send(Method::GET, "/metrics", None).await?;
    let text = String::from_utf8_lossy(&body);
    let value = |suffix: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(&format!("chat_write_batch_size_{suffix} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((value("sum"), value("count")))
}

fn write_outputs(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("tables.md"), report::markdown(report))?;
    plot::latency(report, &out.join("latency.png"))?;
    plot::sweep(report, &out.join("throughput_vs_offered.png"))?;
    plot::growth(report, &out.join("growth.png"))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}
