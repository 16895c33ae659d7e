//! `bench`: the load harness of chat-system. See BENCHMARKS.md.
//!
//! One run, one machine: it starts the axum ceiling and the real `chat-system` binary as child
//! processes on port 0, preloads the database directly in SQLite (server stopped) up to each
//! stage, drives every scenario over keep-alive HTTP/1.1, measures the raw SQLite ceiling at the
//! batch sizes the server used, and writes `results.json`, `tables.md` and PNG plots.
//!
//! ```sh
//! cargo build --release && target/release/bench            # full run, a few minutes
//! target/release/bench --smoke --out /tmp/smoke             # seconds: checks the harness works
//! ```

mod db;
mod load;
mod plot;
mod report;
mod scenario;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hyper::Method;

use load::Conn;
use report::{Machine, Measurement, Report, SqliteCeiling};
use scenario::{Generator, Kind, Ledger, Plan};
use server::Server;

#[derive(Parser)]
#[command(about = "Load harness for chat-system: scenarios, ceilings, growth, plots")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// The axum ceiling server (started by the harness itself).
    #[command(hide = true)]
    CeilingServer,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Tiny scale, ~0.3 s per scenario: checks the harness works (CI), measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Connections of the closed-loop runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stored-message stages; the full suite runs at the last one.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    stages: Vec<u64>,
    /// Where results.json, tables.md and the plots go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// The chat-system binary (default: beside this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CeilingServer) => server::serve_ceiling().await,
        None => run(cli.run).await,
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

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Other compilers on the machine (it is shared): they make a run noisy.
fn builds_running() -> Vec<String> {
    let Ok(out) = std::process::Command::new("pgrep")
        .args(["-a", "cargo|rustc"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.chars().take(100).collect())
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default()
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
    let mut builds = builds_running();
    let load_before = load_average();
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

    builds.extend(builds_running());
    let mut report = Report {
        smoke: args.smoke,
        duration_s: duration,
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_before,
            load_after: load_average(),
            builds_running: builds,
        },
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
