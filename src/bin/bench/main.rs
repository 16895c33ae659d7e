//! `bench`: the load harness of chat-system. See BENCHMARKS.md.
//!
//! One run, one machine: it starts the axum ceiling and the real `chat-system` binary as child
//! processes on port 0, preloads the database directly in SQLite (server stopped) up to each
//! stage, drives every scenario over keep-alive HTTP/1.1, measures the raw SQLite ceiling at the
//! batch sizes the server used, and writes `results.json`, `tables.md` and PNG plots.
//!
//! `--shape scaled` runs the same scenarios against the scaled shape instead (MariaDB, Redis
//! and a Kafka-compatible broker on loopback; see `scaled.rs`), `--shape both` runs both.
//!
//! ```sh
//! cargo build --release && target/release/bench            # full run, a few minutes
//! target/release/bench --smoke --out /tmp/smoke             # seconds: checks the harness works
//! target/release/bench --shape scaled --out bench/results/scaled
//! ```

mod cli;
mod db;
mod load;
mod machine;
mod mysql;
mod plot;
mod report;
mod scaled;
mod scaled_report;
mod scenario;
mod server;
mod stack;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hyper::Method;

use cli::{Cli, Command, RunArgs, Shape};
use load::Conn;
use report::{Measurement, Report, SqliteCeiling};
use scenario::{Generator, Kind, Ledger, Plan};
use server::Server;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CeilingServer) => server::serve_ceiling().await,
        None => run_shapes(cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

struct Bench {
    duration: Duration,
    connections: usize,
    ledger: Arc<Ledger>,
}

impl Bench {
    async fn closed(
        &self,
        addr: SocketAddr,
        kind: Kind,
        plan: &Plan,
        stored: u64,
    ) -> anyhow::Result<Measurement> {
        eprintln!(
            "bench: {} (closed, {} connections)",
            kind.name(),
            self.connections
        );
        let generator = Arc::new(Generator::new(kind, plan.clone(), self.ledger.clone()));
        let outcome = load::closed(addr, generator, self.connections, self.duration).await?;
        Ok(Measurement::new(
            kind,
            "closed",
            self.connections,
            None,
            stored,
            &outcome,
        ))
    }

    async fn open(
        &self,
        addr: SocketAddr,
        kind: Kind,
        plan: &Plan,
        rate: f64,
        stored: u64,
    ) -> anyhow::Result<Measurement> {
        eprintln!("bench: {} (open, {rate:.0}/s)", kind.name());
        let connections = self.connections * 2;
        let generator = Arc::new(Generator::new(kind, plan.clone(), self.ledger.clone()));
        let outcome = load::open(addr, generator, rate, connections, self.duration).await?;
        Ok(Measurement::new(
            kind,
            "open",
            connections,
            Some(rate),
            stored,
            &outcome,
        ))
    }
}

async fn create_application(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::connect(addr).await?;
    let (status, body) = conn
        .send(Method::POST, "/applications", Some(r#"{"name":"bench"}"#))
        .await?;
    anyhow::ensure!(
        status.as_u16() == 201,
        "creating the application answered {status}"
    );
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the answer")
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

async fn run_shapes(args: RunArgs) -> anyhow::Result<()> {
    if args.shape != Shape::Scaled {
        run(args.clone()).await?;
    }
    if args.shape == Shape::Embedded {
        return Ok(());
    }
    let binary = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("chat-system"),
    };
    let services = stack::Services {
        mysql: args.mysql_url.clone(),
        redis: args.redis_url.clone(),
        kafka: args.kafka_brokers.clone(),
        tansu: tansu_binary(&args.tansu),
    };
    scaled::run(&args, &binary, &services).await
}

/// `tansu` as given, or in cargo's bin directory when it is not on the PATH.
fn tansu_binary(given: &Path) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(given).is_file()));
    if given.components().count() > 1 || on_path {
        return given.to_owned();
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin").join(given))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| given.to_owned())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (duration, connections, stages) = if args.smoke {
        (0.3, 4, vec![2_000, 3_000])
    } else {
        (args.duration, args.connections, args.stages.clone())
    };
    anyhow::ensure!(!stages.is_empty(), "give at least one stage");
    let binary = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("chat-system"),
    };
    std::fs::create_dir_all(&args.out)?;
    plot::init_font()?;
    let scratch = std::env::temp_dir().join(format!("chat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let log = scratch.join("server.log");
    let builds = machine::builds_running();
    let load_before = machine::load_average();
    let bench = Bench {
        duration: Duration::from_secs_f64(duration),
        connections,
        ledger: Arc::new(Ledger::default()),
    };

    // The axum ceiling, with the create-message request.
    let ceiling_server = Server::ceiling(&log).await?;
    let dummy = Plan {
        token: "ceiling".into(),
        readable: 1,
    };
    let ceiling = bench
        .closed(ceiling_server.addr, Kind::Ceiling, &dummy, 0)
        .await?;
    ceiling_server.kill().await?;

    // chat-system: one application, chats 1..=1002 stored directly.
    let data = scratch.join("data");
    let db_path = data.join("chat.db");
    let server = Server::chat_system(&binary, &data, &log).await?;
    let token = create_application(server.addr).await?;
    server.stop().await?;
    db::ensure_chats(&db_path, &token).await?;

    let mut runs = Vec::new();
    let mut sweep = Vec::new();
    let mut growth = Vec::new();
    let mut mean_batch = 0.0;
    let mut search_chat_messages = 0;
    for (i, &stage) in stages.iter().enumerate() {
        eprintln!("bench: preloading to {stage} messages");
        let filled = db::fill(&db_path, &token, stage, i as u64).await?;
        search_chat_messages = filled.search_chat;
        let server = Server::chat_system(&binary, &data, &log).await?;
        // The preload's messages are indexed for search in the background: let that finish, so
        // that no scenario measures the indexer's catch-up instead of itself.
        db::wait_indexed(&db_path).await?;
        eprintln!(
            "bench: chat-system pid {:?} at {}",
            server.pid(),
            server.addr
        );
        let addr = server.addr;
        let plan = Plan {
            token: token.clone(),
            readable: filled.readable,
        };
        let base = bench.ledger.messages();
        let stored = |bench: &Bench| filled.stored + bench.ledger.messages() - base;
        // Warm the caches (ids, pages) before measuring.
        let warm = Bench {
            duration: bench.duration / 4,
            connections,
            ledger: bench.ledger.clone(),
        };
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
            for kind in [
                Kind::CreateHot,
                Kind::CreateChat,
                Kind::ListPage,
                Kind::Search,
            ] {
                runs.push(bench.closed(addr, kind, &plan, stored(&bench)).await?);
            }
            let search_max = runs.last().map_or(1.0, |m| m.throughput);
            runs.push(
                bench
                    .open(
                        addr,
                        Kind::Search,
                        &plan,
                        (search_max / 2.0).max(1.0),
                        stored(&bench),
                    )
                    .await?,
            );
            runs.push(
                bench
                    .closed(addr, Kind::Mixed, &plan, stored(&bench))
                    .await?,
            );
            let fractions: &[f64] = if args.smoke {
                &[0.5, 1.0]
            } else {
                &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2]
            };
            for fraction in fractions {
                let rate = (max * fraction).max(1.0);
                sweep.push(
                    bench
                        .open(addr, Kind::CreateSpread, &plan, rate, stored(&bench))
                        .await?,
                );
            }
        }
        server.stop().await?;
    }

    let mut batches = vec![1usize, 16, 128, mean_batch.round().max(1.0) as usize];
    batches.sort_unstable();
    batches.dedup();
    let mut sqlite = Vec::new();
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
        sqlite,
        mean_batch,
        runs,
        sweep,
        growth,
        search_chat_messages,
        targets: Vec::new(),
    };
    report.targets = report::targets(&report, *stages.last().unwrap_or(&0));
    write_outputs(&report, &args.out)?;
    report::print(&report);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
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
