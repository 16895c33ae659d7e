//! The scaled shape (`bench --shape scaled`): the embedded shape's scenarios against one API
//! process and one worker on MariaDB, Redis and a Kafka-compatible broker on loopback, beside
//! the axum ceiling measured in the same run; then the worker's persist rate (events waiting
//! in the broker, one worker started) beside raw multi-row INSERTs into the same MariaDB.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::MySqlConnection;

use crate::cli::{Only, RunArgs};
use crate::drive::{create_application, Bench};
use crate::mysql::{self, RawInsert};
use crate::report::Measurement;
use crate::scaled_report::{self, Drain, Persist, ScaledReport};
use crate::scenario::{Generator, Kind, Ledger, Plan, HOT_CHAT};
use crate::stack::{Broker, Services, Stack};
use crate::streams;
use crate::streams_report::{self, FanOut, Streams};
use crate::{ceiling, load, machine, plot};

/// Most events the worker stores in one transaction (`MAX_BATCH` of `src/worker.rs`).
const WORKER_BATCH: usize = 2000;
/// How long the worker may take to store what a scenario created.
const DRAIN_WITHIN: Duration = Duration::from_secs(600);

/// How big the run is.
struct Sizes {
    stored: u64,
    persist: u64,
    fractions: Vec<f64>,
}

pub async fn run(args: &RunArgs, binary: &Path, services: &Services) -> anyhow::Result<()> {
    if args.only == Some(Only::Streams) {
        return run_streams(args, binary, services).await;
    }
    let (sizes, duration, connections) = if args.smoke {
        let sizes = Sizes {
            stored: 2_000,
            persist: 500,
            fractions: vec![0.5, 1.0],
        };
        (sizes, 0.3, 4)
    } else {
        let sizes = Sizes {
            stored: args.scaled_stored,
            persist: args.persist_events,
            fractions: vec![0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2],
        };
        (sizes, args.duration, args.connections)
    };
    std::fs::create_dir_all(&args.out)?;
    plot::init_font()?;
    let scratch = std::env::temp_dir().join(format!("chat-bench-scaled-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let builds = machine::builds_running();
    let load_before = machine::load_average();
    let bench = Bench::new(Duration::from_secs_f64(duration), connections);

    // The lengths of a Message JSON from the embedded server: the scaled API answers the same.
    let lengths = ceiling::real_lengths(binary, &scratch).await?;
    let log = scratch.join("ceiling.log");
    let (ceiling, read_ceiling) = ceiling::measure(&bench, &log, lengths).await?;

    let broker = Broker::start(services, &scratch).await?;
    let measured = match Stack::create(binary, services, &broker.brokers, &scratch).await {
        Ok(mut stack) => {
            let measured = measure(&mut stack, &bench, &sizes).await;
            stack.teardown().await;
            measured
        }
        Err(err) => Err(err),
    };
    let broker_description = broker.description.clone();
    broker.stop().await;
    let measured = measured.with_context(|| format!("logs in {}", scratch.display()))?;

    let mut setup = vec![
        format!(
            "1 API process (`chat-system serve`) and 1 worker (`chat-system worker all \
             --worker-index 0 --worker-count 1`: it takes every partition itself), release \
             build, on the same {} cores as the load generator, MariaDB, Redis and the broker",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!("Broker: {broker_description}"),
        format!(
            "MariaDB at {}, a fresh database dropped at the end; Redis at {}, a fresh namespace",
            services.mysql, services.redis
        ),
    ];
    setup.extend(measured.notes);
    let mut report = ScaledReport {
        smoke: args.smoke,
        duration_s: duration,
        machine: machine::machine(load_before, builds),
        setup,
        mariadb: measured.mariadb,
        ceiling,
        read_ceiling,
        stored: measured.stored,
        search_chat_messages: measured.search_chat,
        runs: measured.runs,
        sweep: measured.sweep,
        drains: measured.drains,
        persist: measured.persist,
        targets: Vec::new(),
    };
    report.targets = scaled_report::targets(&report.persist);
    write_outputs(&report, &args.out)?;
    scaled_report::print(&report);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn write_outputs(report: &ScaledReport, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("scaled.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(
        out.join("scaled_tables.md"),
        scaled_report::markdown(report),
    )?;
    plot::latency_of(
        &report.ceiling,
        &report.runs,
        "Scaled shape: latency by percentile (closed loop unless marked open)",
        &out.join("scaled_latency.png"),
    )?;
    plot::sweep_of(&report.sweep, &out.join("scaled_throughput_vs_offered.png"))?;
    eprintln!("bench: wrote the scaled results in {}", out.display());
    Ok(())
}

struct Measured {
    notes: Vec<String>,
    mariadb: Vec<(String, String)>,
    stored: u64,
    search_chat: u64,
    runs: Vec<Measurement>,
    sweep: Vec<Measurement>,
    drains: Vec<Drain>,
    persist: Persist,
}

/// One run's scenarios against the stack: measures, then waits for the worker to catch up.
struct Session<'a> {
    bench: &'a Bench,
    addr: std::net::SocketAddr,
    plan: Plan,
    conn: MySqlConnection,
    preloaded: u64,
    drains: Vec<Drain>,
}

impl Session<'_> {
    fn stored(&self) -> u64 {
        self.preloaded + self.bench.ledger.messages()
    }

    /// Waits until the worker stored every message and chat created so far.
    async fn drain(&mut self, after: String) -> anyhow::Result<()> {
        let chats = HOT_CHAT + self.bench.ledger.chats();
        let messages = self.stored();
        let waited = mysql::wait_stored(&mut self.conn, messages, chats, DRAIN_WITHIN).await?;
        self.drains.push(Drain {
            after,
            seconds: waited.as_secs_f64(),
        });
        Ok(())
    }

    async fn closed(&mut self, kind: Kind) -> anyhow::Result<Measurement> {
        let stored = self.stored();
        let m = self
            .bench
            .closed(self.addr, kind, &self.plan, stored)
            .await?;
        if writes(kind) {
            self.drain(kind.name().to_owned()).await?;
        }
        Ok(m)
    }

    async fn open(&mut self, kind: Kind, rate: f64) -> anyhow::Result<Measurement> {
        let stored = self.stored();
        let m = self
            .bench
            .open(self.addr, kind, &self.plan, rate, stored)
            .await?;
        if writes(kind) {
            self.drain(format!("{} (open {rate:.0}/s)", kind.name()))
                .await?;
        }
        Ok(m)
    }
}

fn writes(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::CreateSpread | Kind::CreateHot | Kind::CreateChat | Kind::Mixed
    )
}

async fn measure(stack: &mut Stack, bench: &Bench, sizes: &Sizes) -> anyhow::Result<Measured> {
    stack.start_worker("worker.log")?;
    let addr = stack.start_api().await?;
    let token = create_application(addr).await?;
    eprintln!("bench: preloading {} messages into MariaDB", sizes.stored);
    let filled = mysql::preload(&stack.database_url, &token, sizes.stored, 0).await?;
    eprintln!("bench: recovering the Redis counters from the database (chat-system migrate)");
    stack.reset_counters().await?;
    let mut conn = mysql::connect(&stack.database_url).await?;
    let mariadb = mysql::durability(&mut conn).await?;
    let samples = mysql::samples(&mut conn, &token, filled.readable).await?;
    eprintln!(
        "bench: {} stored bodies sampled for the reads' check",
        samples.len()
    );
    let mut session = Session {
        bench,
        addr,
        plan: Plan::new(token.clone(), filled.readable, samples),
        conn,
        preloaded: filled.stored,
        drains: Vec::new(),
    };
    eprintln!("bench: API pid {:?} at {addr}", stack.api_pid());

    // Warm the caches and every chat's counter before measuring (another seed: other rows).
    let warm = bench.warm_up();
    warm.closed(addr, Kind::ReadOne, &session.plan, 0).await?;
    warm.closed(addr, Kind::CreateSpread, &session.plan, 0)
        .await?;
    session.drain("warm-up".into()).await?;

    let mut runs = vec![session.closed(Kind::CreateSpread).await?];
    let max = runs[0].throughput;
    for kind in [
        Kind::ReadOne,
        Kind::CreateHot,
        Kind::CreateChat,
        Kind::ListPage,
        Kind::Search,
    ] {
        runs.push(session.closed(kind).await?);
    }
    let search_max = runs.last().map_or(1.0, |m| m.throughput);
    runs.push(
        session
            .open(Kind::Search, (search_max / 2.0).max(1.0))
            .await?,
    );
    runs.push(session.closed(Kind::Mixed).await?);
    let mut sweep = Vec::new();
    for fraction in &sizes.fractions {
        let rate = (max * fraction).max(1.0);
        sweep.push(session.open(Kind::CreateSpread, rate).await?);
    }

    let persist = persist(stack, &mut session, sizes.persist).await?;
    let notes = vec![
        format!(
            "Preload: {} messages written directly with multi-row INSERTs ({} rows each), \
             counts recomputed, then the Redis counters rebuilt from the database by \
             `chat-system migrate` (the system's own recovery)",
            filled.stored,
            mysql::ROWS_PER_INSERT
        ),
        format!(
            "Search: no Elasticsearch, so MySQL `LIKE` over the search chat's {} messages",
            filled.search_chat
        ),
        "Before each scenario the bench waits until the worker stored everything created so far \
         (the catch-up table)"
            .to_owned(),
    ];
    Ok(Measured {
        notes,
        mariadb,
        stored: filled.stored,
        search_chat: filled.search_chat,
        runs,
        sweep,
        drains: session.drains,
        persist,
    })
}

/// Stops the worker, creates `events` messages through the API (they wait in the broker),
/// starts one worker and times it until all of them are in MariaDB; then the baselines.
async fn persist(
    stack: &mut Stack,
    session: &mut Session<'_>,
    events: u64,
) -> anyhow::Result<Persist> {
    stack.stop_worker().await?;
    let before = mysql::counted(&mut session.conn).await?;
    eprintln!("bench: {events} messages through the API, no worker running");
    let bench = session.bench;
    let generator = Arc::new(Generator::new(
        Kind::CreateSpread,
        session.plan.clone(),
        bench.ledger.clone(),
    ));
    let stored = session.stored();
    let outcome = load::count(
        session.addr,
        generator,
        bench.connections,
        events,
        bench.seed,
    )
    .await?;
    let api_create = Measurement::new(
        Kind::CreateSpread,
        "closed",
        bench.connections,
        None,
        stored,
        &outcome,
    );
    let expected = before + outcome.ok;
    eprintln!("bench: one worker stores them");
    let log = "worker-persist.log";
    let counters = mysql::statement_counters(&mut session.conn).await?;
    let start = Instant::now();
    stack.start_worker(log)?;
    let mut first_row = None;
    let within = DRAIN_WITHIN;
    loop {
        let counted = mysql::counted(&mut session.conn).await?;
        if counted > before && first_row.is_none() {
            first_row = Some(start.elapsed());
        }
        if counted >= expected {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "the worker stored {} of {} events in {within:?}",
            counted - before,
            expected - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let statements = mysql::delta(
        &counters,
        &mysql::statement_counters(&mut session.conn).await?,
    );
    let first_row_s = first_row.map_or(seconds, |d| d.as_secs_f64());
    // The counts agree with the rows (they are updated in the same transaction).
    session.drain("the persist-rate run".into()).await?;
    stack.stop_api().await?;
    stack.stop_worker().await?;
    // Read once the worker has exited: it logs a batch after committing it.
    let (batches, mean_batch) = stack.worker_batches(log)?;

    let mut sizes = vec![WORKER_BATCH];
    let observed = mean_batch.round() as usize;
    if observed > 0 && observed != WORKER_BATCH {
        sizes.push(observed);
    }
    let mut raw: Vec<RawInsert> = Vec::new();
    for (round, batch) in sizes.into_iter().enumerate() {
        eprintln!("bench: raw multi-row INSERT, {batch} rows per transaction");
        raw.push(
            mysql::raw_insert(
                &stack.database_url,
                &session.plan.token,
                outcome.ok,
                batch,
                round as u64,
            )
            .await?,
        );
    }
    let events_per_s = outcome.ok as f64 / seconds.max(1e-9);
    let ratio = events_per_s / raw.first().map_or(1e-9, |r| r.rows_per_s.max(1e-9));
    Ok(Persist {
        events: outcome.ok,
        api_create,
        seconds,
        first_row_s,
        events_per_s,
        steady_events_per_s: outcome.ok as f64 / (seconds - first_row_s).max(1e-9),
        batches,
        mean_batch,
        statements,
        raw,
        ratio,
    })
}

/// `--shape scaled --only streams`: live-stream fan-out (scenario (a) of `streams.rs`) on the
/// scaled stack: one worker, `--scaled-apis` API processes (the streams' settings of the
/// embedded shape), the subscribers of one fresh chat split over them, the posts through the
/// first. Writes `scaled_streams.json` and `scaled_streams_tables.md`.
async fn run_streams(args: &RunArgs, binary: &Path, services: &Services) -> anyhow::Result<()> {
    let (subscribers, rate, seconds) = if args.smoke {
        (vec![20], 20.0, 0.5)
    } else {
        (
            args.scaled_fanout_subscribers.clone(),
            args.scaled_fanout_rate,
            args.scaled_fanout_seconds,
        )
    };
    std::fs::create_dir_all(&args.out)?;
    let scratch = std::env::temp_dir().join(format!("chat-bench-scaled-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let open_files_limit = streams::raise_open_files();
    eprintln!(
        "bench: streams: open-file limit {} / {}",
        open_files_limit.0, open_files_limit.1
    );
    let broker = Broker::start(services, &scratch).await?;
    let measured = match Stack::create(binary, services, &broker.brokers, &scratch).await {
        Ok(mut stack) => {
            let measured = fanouts(&mut stack, args, &subscribers, rate, seconds).await;
            stack.teardown().await;
            measured
        }
        Err(err) => Err(err),
    };
    broker.stop().await;
    let fanout = measured.with_context(|| format!("logs in {}", scratch.display()))?;
    let report = Streams {
        server_env: streams::SERVER_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        open_files_limit,
        fanout,
        under_load: None,
        idle: Vec::new(),
        storm: None,
    };
    std::fs::write(
        args.out.join("scaled_streams.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut tables = String::new();
    streams_report::markdown(&mut tables, &report);
    std::fs::write(args.out.join("scaled_streams_tables.md"), tables)?;
    streams_report::print(&report);
    eprintln!(
        "bench: wrote the scaled streams results in {}",
        args.out.display()
    );
    let faulty = report
        .fanout
        .iter()
        .any(|f| f.gaps + f.duplicates + f.missing + f.errors > 0);
    if faulty {
        eprintln!(
            "bench: gaps, duplicates, missing or errors: logs kept in {}",
            scratch.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

async fn fanouts(
    stack: &mut Stack,
    args: &RunArgs,
    subscribers: &[usize],
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Vec<FanOut>> {
    stack.start_worker("worker.log")?;
    let apis = stack
        .start_stream_apis(args.scaled_apis.max(1), &streams::SERVER_ENV)
        .await?;
    let addrs: Vec<std::net::SocketAddr> = apis.iter().map(|(addr, _)| *addr).collect();
    eprintln!("bench: streams: API processes {apis:?}");
    let token = create_application(addrs[0]).await?;
    let ledger = Arc::new(Ledger::default());
    let sizes = streams::Sizes {
        fanout: subscribers.to_vec(),
        rate,
        seconds,
        chats: 0,
        per_chat: 0,
        load_seconds: 0.0,
        connections: 4,
        idle: Vec::new(),
        storm_clients: 0,
        storm_chats: 0,
        storm_changes: 0,
        drain: Duration::from_secs(if args.smoke { 20 } else { 60 }),
        settle: Duration::ZERO,
    };
    let mut out = Vec::new();
    for &n in subscribers {
        let chat = create_chat(addrs[0], &token).await?;
        out.push(
            streams::scaled_fanout(&addrs, apis[0].1, &token, ledger.clone(), chat, n, &sizes)
                .await?,
        );
    }
    Ok(out)
}

/// A new chat in the application: its number.
async fn create_chat(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<u64> {
    let mut conn = load::Conn::connect(addr).await?;
    let path = format!("/applications/{token}/chats");
    let (status, body) = conn.send(hyper::Method::POST, &path, None).await?;
    anyhow::ensure!(status.as_u16() == 201, "{path} answered {status}");
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value["number"]
        .as_u64()
        .with_context(|| format!("no chat number in {value}"))
}
