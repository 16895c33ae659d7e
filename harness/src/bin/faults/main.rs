//! `faults`: the fault-injection runner of chat-system. See RELIABILITY.md.
//!
//! Under concurrent write load (message creations, edits and deletions, chat and application
//! creations) it `kill -9`s the parts of a shape in turn, at seeded random points, restarts them,
//! measures how long the service takes to answer again, and finally checks what was acknowledged
//! against what is stored: nothing lost (edits by the rule of `edits.rs`), no acknowledged
//! deletion undone (`deletions.rs`), nothing duplicated, numbers in acknowledgement order, the
//! changes feed in revision order and agreeing with the lists (`feed.rs`), counts equal to the
//! live rows after `sync-counts`. Stream subscribers (`subscribers.rs`) follow some of the chats
//! over Server-Sent Events through every fault, reconnecting with `Last-Event-ID` as a client
//! would; each must have received every acknowledged change of its chat once, in order, and end
//! with the store's state (`streams.rs`). A process that died by itself, or a writer task that
//! panicked, fails the run too.
//!
//! Everything it starts is its own: a temporary data directory (embedded), or a private
//! MariaDB, Redis and tansu on free ports (scaled). Killing them harms nothing else.
//!
//! ```sh
//! cargo build --release && target/release/faults --shape both --faults 20 --seed 1
//! ```
//!
//! The seed fixes the order of the faults, which process each one hits, and the pauses before
//! them; the interleaving of the writers with a fault is up to the machine.

mod check;
mod deletions;
mod edits;
mod embedded;
mod entities;
mod feed;
mod ledger;
mod load;
mod report;
mod requests;
mod scaled;
mod sse;
mod streams;
mod subscribers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    Embedded,
    Scaled,
    Both,
}

#[derive(Parser)]
#[command(about = "Fault-injection runner for chat-system: kill -9 under load, then check")]
struct Cli {
    /// Which deployment shape(s) to run.
    #[arg(long, value_enum, default_value = "both")]
    shape: Shape,
    /// Faults injected per shape.
    #[arg(long, default_value_t = 20)]
    faults: usize,
    /// Seed of the fault order, targets and timing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent writer tasks.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Chats the writers share (writer w writes to chat w % chats).
    #[arg(long, default_value_t = 4)]
    chats: usize,
    /// Stream subscribers (SSE), spread over the writers' chats in turn (the default, 8, is two
    /// per chat for the default 4 chats); 0: none.
    #[arg(long, default_value_t = 8)]
    subscribers: usize,
    /// Longest pause under load before a fault, in milliseconds (the pause is drawn from
    /// [max/4, max]).
    #[arg(long, default_value_t = 3000)]
    max_pause_ms: u64,
    /// Scaled shape: the fault kinds to inject, in turn (default: all five).
    #[arg(long, value_delimiter = ',', default_values_t = scaled::KINDS.map(str::to_owned))]
    kinds: Vec<String>,
    /// Seconds the service may take to answer again after a fault before it counts as a failure.
    #[arg(long, default_value_t = 60)]
    recovery_bound: u64,
    /// The chat-system binary (default: beside this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "reliability/results")]
    out: PathBuf,
    /// Keep the run's directory (data, service logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// What every shape's run needs.
pub struct Options {
    pub binary: PathBuf,
    pub work: PathBuf,
    pub faults: usize,
    pub writers: usize,
    pub chats: usize,
    pub subscribers: usize,
    pub seed: u64,
    pub bound: Duration,
    pub kinds: Vec<String>,
    max_pause_ms: u64,
}

impl Options {
    /// The seeded pause under load before the next fault.
    pub fn pause(&self, rng: &mut StdRng) -> Duration {
        let max = self.max_pause_ms.max(4);
        Duration::from_millis(rng.random_range(max / 4..=max))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let binary = match &cli.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .expect("the runner knows where it is")
            .with_file_name("chat-system"),
    };
    let work =
        std::env::temp_dir().join(format!("chat-faults-{}-{}", cli.seed, std::process::id()));
    let options = Options {
        binary,
        work: work.clone(),
        faults: cli.faults,
        writers: cli.writers.max(1),
        chats: cli.chats.max(1),
        subscribers: cli.subscribers,
        seed: cli.seed,
        bound: Duration::from_secs(cli.recovery_bound),
        kinds: cli.kinds.clone(),
        max_pause_ms: cli.max_pause_ms,
    };
    if let Some(unknown) = options
        .kinds
        .iter()
        .find(|k| !scaled::KINDS.contains(&k.as_str()))
    {
        eprintln!(
            "unknown fault kind {unknown:?}: use {}",
            scaled::KINDS.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let shapes: &[Shape] = match cli.shape {
        Shape::Both => &[Shape::Embedded, Shape::Scaled],
        Shape::Embedded => &[Shape::Embedded],
        Shape::Scaled => &[Shape::Scaled],
    };
    let mut reports = Vec::new();
    let mut ok = true;
    for &shape in shapes {
        // One generator per shape, so a shape's faults do not depend on which ran before it.
        let mut rng = StdRng::seed_from_u64(cli.seed);
        let name = if shape == Shape::Embedded {
            "embedded"
        } else {
            "scaled"
        };
        eprintln!(
            "{name}: {} faults, {} writers, {} stream subscribers, seed {}",
            options.faults, options.writers, options.subscribers, options.seed
        );
        let result = match shape {
            Shape::Embedded => embedded::run(&options, &mut rng).await,
            _ => scaled::run(&options, &mut rng).await,
        };
        match result {
            Ok(report) => {
                for example in &report.findings.examples {
                    eprintln!("  finding: {example}");
                }
                for example in &report.streams.examples {
                    eprintln!("  stream finding: {example}");
                }
                for exit in &report.faults.unexpected_exits {
                    eprintln!("  unexpected: {exit}");
                }
                for failure in &report.writer_failures {
                    eprintln!("  writer failure: {failure}");
                }
                match report::write_json(&cli.out, &report) {
                    Ok(path) => eprintln!("{name}: results in {}", path.display()),
                    Err(err) => eprintln!("{name}: {err:#}"),
                }
                ok &= report.passed();
                reports.push(report);
            }
            Err(err) => {
                eprintln!("{name}: the run failed: {err:#}");
                ok = false;
            }
        }
    }
    println!("{}", report::table(&reports));
    if cli.keep || !ok {
        eprintln!("run directory (data and logs) kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
