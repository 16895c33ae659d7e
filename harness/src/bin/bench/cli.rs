//! The command line of the harness.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Load harness for chat-system: scenarios, ceilings, growth, plots")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// The axum ceiling server (started by the harness itself), answering bodies of these
    /// lengths to a creation and to a read.
    #[command(hide = true)]
    CeilingServer { created: usize, read: usize },
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Tiny scale, ~0.3 s per scenario: checks the harness works (CI), measures nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Connections of the closed-loop runs.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Stored-message stages; the full suite runs at the last one.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    pub stages: Vec<u64>,
    /// Where results.json, tables.md and the plots go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Embedded shape: run only these scenarios at the last stage (the ceilings and the create
    /// and read of every stage still run: the create's maximum sets the chat-deletion run's
    /// load).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Embedded shape: seconds of create load measured after a chat's DELETE (and without
    /// one, as its baseline).
    #[arg(long, default_value_t = 30.0)]
    pub purge_window: f64,
    /// Live streams (a): subscribers of the one chat, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000])]
    pub fanout_subscribers: Vec<usize>,
    /// Live streams (a): messages posted per second into the watched chat.
    #[arg(long, default_value_t = 50.0)]
    pub fanout_rate: f64,
    /// Live streams (a): seconds of posting.
    #[arg(long, default_value_t = 20.0)]
    pub fanout_seconds: f64,
    /// Live streams (c): idle connections whose memory is measured, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 50_000])]
    pub idle_streams: Vec<usize>,
    /// The chat-system binary (default: beside this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Which deployment shape to measure.
    #[arg(long, value_enum, default_value_t = Shape::Embedded)]
    pub shape: Shape,
    /// Scaled shape: the MariaDB server (a fresh database is created in it and dropped).
    #[arg(
        long,
        env = "BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306"
    )]
    pub mysql_url: String,
    /// Scaled shape: Redis (a fresh key namespace, deleted at the end).
    #[arg(
        long,
        env = "BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/11"
    )]
    pub redis_url: String,
    /// Scaled shape: a Kafka-compatible broker; unset: the bench starts tansu on memory storage.
    #[arg(long, env = "BENCH_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Scaled shape: the tansu binary started when no broker is given.
    #[arg(long, default_value = "tansu")]
    pub tansu: PathBuf,
    /// Scaled shape, `--only streams`: subscribers of the one chat (fan-out), one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize])]
    pub scaled_fanout_subscribers: Vec<usize>,
    /// Scaled shape, `--only streams`: messages posted per second into the watched chat.
    #[arg(long, default_value_t = 20.0)]
    pub scaled_fanout_rate: f64,
    /// Scaled shape, `--only streams`: seconds of posting.
    #[arg(long, default_value_t = 15.0)]
    pub scaled_fanout_seconds: f64,
    /// Scaled shape, `--only streams`: API processes the subscribers are split over.
    #[arg(long, default_value_t = 2)]
    pub scaled_apis: usize,
    /// Scaled shape: messages preloaded into MariaDB.
    #[arg(long, default_value_t = 100_000)]
    pub scaled_stored: u64,
    /// Scaled shape: events waiting in the broker when the worker's persist rate is measured.
    #[arg(long, default_value_t = 200_000)]
    pub persist_events: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    Embedded,
    Scaled,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// History pages, the changes feed, message deletion and chat deletion under load
    /// (issue #11).
    History,
    /// Live streams: fan-out to many subscribers, subscribers under the create load, memory
    /// per idle connection, a reconnect storm (issue #12).
    Streams,
}
