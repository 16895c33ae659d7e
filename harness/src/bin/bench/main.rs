//! `bench`: the load harness of chat-system. See BENCHMARKS.md.
//!
//! One run, one machine. The embedded shape (`embedded.rs`, the default): the axum ceiling and
//! the real `chat-system` binary as child processes on port 0, the database preloaded directly
//! in SQLite up to each stage, every scenario over keep-alive HTTP/1.1, the raw SQLite ceiling
//! at the batch sizes the server used; `results.json`, `tables.md` and PNG plots.
//!
//! At the last stage it also runs issue #11's scenarios (`history.rs`): history pages and the
//! changes feed against the first page, deleting messages, deleting a chat under load;
//! `--only history` runs only those (and each stage's create and read). Then issue #12's live
//! streams (`streams.rs`, on the lean SSE client of `sse.rs`): fan-out to many subscribers,
//! subscribers under the create load, memory per idle connection, a reconnect storm, on a
//! server started with `MAX_STREAMS` and `IDLE_TIMEOUT` raised; `--only streams` runs only those.
//!
//! `--shape scaled` runs the same scenarios against the scaled shape instead (MariaDB, Redis
//! and a Kafka-compatible broker on loopback; `scaled.rs`), `--shape both` runs both. The
//! processes are started by the `chat-harness` library (`stack.rs` composes the scaled ones).
//!
//! ```sh
//! cargo build --release && target/release/bench            # full run, a few minutes
//! target/release/bench --smoke --out /tmp/smoke             # seconds: checks the harness works
//! target/release/bench --shape scaled --out bench/results/scaled
//! ```

mod ceiling;
mod cli;
mod db;
mod drive;
mod embedded;
mod history;
mod load;
mod machine;
mod mysql;
mod plot;
mod report;
mod scaled;
mod scaled_report;
mod scenario;
mod sse;
mod stack;
mod streams;
mod streams_report;

use std::process::ExitCode;

use chat_harness::service::locate;
use clap::Parser;

use cli::{Cli, Command, RunArgs, Shape};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CeilingServer { created, read }) => ceiling::serve(created, read).await,
        None => run(&cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The shapes asked for, the embedded one first.
async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let binary = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("chat-system"),
    };
    if args.shape != Shape::Scaled {
        embedded::run(args, &binary).await?;
    }
    if args.shape == Shape::Embedded {
        return Ok(());
    }
    let services = stack::Services {
        mysql: args.mysql_url.clone(),
        redis: args.redis_url.clone(),
        kafka: args.kafka_brokers.clone(),
        tansu: locate(&args.tansu).unwrap_or_else(|| args.tansu.clone()),
    };
    scaled::run(args, &binary, &services).await
}
