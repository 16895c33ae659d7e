//! The command line: `serve` (the default), `migrate`, `sync-counts`, `reindex` and
//! `worker [chats|messages|all]`, each with `--help`. The commands themselves are in
//! [`commands`]; this file parses and dispatches.

mod commands;

pub use commands::{serve, shutdown_signal};

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "chat-system",
    version,
    about = "A chat backend: applications, numbered chats, numbered messages, search."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default when no command is given).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Recompute chats_count and messages_count from the stored rows (safe while serving).
    SyncCounts,
    /// Rebuild the Elasticsearch index from the database (safe while traffic flows).
    Reindex,
    /// Consume chat and/or message events from Kafka and store them (scaled shape).
    Worker {
        /// Which topic to consume.
        #[arg(value_enum, default_value_t = WorkerTopics::All)]
        topics: WorkerTopics,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerTopics {
    Chats,
    Messages,
    All,
}

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Connections the kernel may queue before they are accepted (capped by `net.core.somaxconn`).
/// tokio's default, 1 024, overflowed when 10 000 stream clients reconnected at once
/// (BENCHMARKS.md, the reconnect storm): the overflow leaves clients on TCP retransmit timers.
const LISTEN_BACKLOG: u32 = 8192;

/// Binds `address` (with `SO_REUSEADDR`, as `TcpListener::bind` does) and listens with
/// [`LISTEN_BACKLOG`].
fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    config.validate()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = crate::app::App::build(&config).await?;
            let listener =
                listen(std::net::SocketAddr::new(config.host, config.port)).map_err(|err| {
                    anyhow::anyhow!("cannot listen on {}:{}: {err}", config.host, config.port)
                })?;
            let address = listener.local_addr()?;
            tracing::info!(%address, "listening");
            // Tests and scripts read this line to learn the port when PORT=0.
            println!("chat-system listening on http://{address}");
            serve(app, &config, listener, shutdown_signal()).await?;
        }
        Command::Migrate => {
            commands::migrate(&config).await?;
            println!("migrations applied");
        }
        Command::Worker { topics } => {
            let chats = matches!(topics, WorkerTopics::Chats | WorkerTopics::All);
            let messages = matches!(topics, WorkerTopics::Messages | WorkerTopics::All);
            commands::work(&config, chats, messages).await?;
        }
        Command::Reindex => {
            let indexed = commands::reindex(&config).await?;
            println!("reindexed {indexed} messages");
        }
        Command::SyncCounts => {
            let report = commands::sync_counts(&config).await?;
            println!(
                "counts synchronised: {} applications and {} chats corrected",
                report.applications_fixed, report.chats_fixed
            );
        }
    }
    Ok(())
}
