//! Issue #12's live-stream scenarios in the embedded shape (`--only streams`, and at the last
//! stage of a full run): Server-Sent Events subscribers on the lean client of `sse.rs`, one
//! tokio task each, beside posters on the load generator's keep-alive connections.
//!
//! - **(a) Fan-out**: N subscribers on one chat (from its current revision), then messages
//!   posted into it at a fixed rate (open loop). Each change must reach every subscriber once, in
//!   order; the latency of a delivery runs from the moment the poster read the POST's `201` to
//!   the moment the subscriber read the change (matched by revision). The server publishes a
//!   change before it answers, so a subscriber can read it first: that counts as 0 ms (and is
//!   counted as `early`); the latency from the POST's send is reported too.
//! - **(b) Under the create load**: 10 subscribers on each of 1 000 chats, the closed-loop create
//!   load in those chats; the create throughput beside the same load without subscribers,
//!   measured first (after a warm-up).
//! - **(c) Idle connections**: the server's RSS (`VmRSS`) before and after opening N idle streams
//!   over 1 000 chats, on a freshly started server each time; connections in batches, each from
//!   a loopback source address of its own range. Where it stops short (the open-file limits),
//!   it says how far it got and why. Two comparisons at the first N tell where the memory goes:
//!   every stream on one chat (what a watched chat costs by itself), and plain keep-alive
//!   connections after one `GET` of a chat (what the HTTP connection costs by itself).
//! - **(d) Reconnect storm**: clients over 100 chats open their streams from the chats' revision
//!   R and leave; 100 changes per chat are written; then every client reconnects at once with
//!   `Last-Event-ID: R`. Reported: how long until every client had all its changes.
//!
//! Every subscriber checks its revisions: a skipped one is a gap, one seen again a duplicate,
//! one never received before the deadline is missing. A stream the server ends (a slow client)
//! is resumed with `Last-Event-ID`, as `EventSource` does, and counted.
//!
//! The server, the bench and the machine's other users share its cores: each run records the
//! CPU seconds of the server and of the bench (`/proc/<pid>/stat`) and of everything else
//! (`/proc/stat` minus those two).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_harness::ChatSystem;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::RunArgs;
use crate::load::{histogram, Conn, Outcome};
use crate::report::Measurement;
use crate::scenario::{body, Check, Generator, Kind, Ledger, Plan, Req, Samples, Verdict};
use crate::scenario::{HOT_CHAT, SPREAD};
use crate::sse::{self, Event};
use crate::streams_report::{Cpu, FanOut, Idle, Storm, Streams, UnderLoad};

/// How big each scenario is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// (a): subscribers of the one chat, one run each.
    pub fanout: Vec<usize>,
    /// (a): posts/s, for this long.
    pub rate: f64,
    pub seconds: f64,
    /// (b): chats, subscribers per chat, seconds of each create run, its connections.
    pub chats: u64,
    pub per_chat: usize,
    pub load_seconds: f64,
    pub connections: usize,
    /// (c): idle connections, one run each.
    pub idle: Vec<usize>,
    /// (d): clients, chats, changes per chat.
    pub storm_clients: usize,
    pub storm_chats: u64,
    pub storm_changes: u64,
    /// How long subscribers may take to receive everything after the posts, and the storm.
    pub drain: Duration,
    /// How long the server is left to settle before a memory reading (and the storm's writes
    /// after its clients left).
    pub settle: Duration,
}

impl Sizes {
    pub fn new(args: &RunArgs, duration: f64, connections: usize) -> Self {
        if args.smoke {
            Self {
                fanout: vec![5, 20],
                rate: 20.0,
                seconds: 0.5,
                chats: 10,
                per_chat: 2,
                load_seconds: duration,
                connections,
                idle: vec![30],
                storm_clients: 20,
                storm_chats: 4,
                storm_changes: 10,
                drain: Duration::from_secs(20),
                settle: Duration::from_millis(100),
            }
        } else {
            Self {
                fanout: args.fanout_subscribers.clone(),
                rate: args.fanout_rate,
                seconds: args.fanout_seconds,
                chats: SPREAD,
                per_chat: 10,
                load_seconds: duration,
                connections,
                idle: args.idle_streams.clone(),
                storm_clients: 10_000,
                storm_chats: 100,
                storm_changes: 100,
                drain: Duration::from_secs(60),
                settle: Duration::from_secs(1),
            }
        }
    }
}

/// Streams opened per batch when connecting many (the listen backlog is 1 024).
const BATCH: usize = 500;
/// How long a stream may take to answer its `GET`.
const OPEN_WITHIN: Duration = Duration::from_secs(10);
/// Failed opens in a row before a subscriber gives up.
const ATTEMPTS: u32 = 5;
/// The streams' server: enough streams for every scenario, and idle streams kept.
pub const SERVER_ENV: [(&str, &str); 2] = [("MAX_STREAMS", "100000"), ("IDLE_TIMEOUT", "3600")];

/// What the streams scenarios work with: the binary, its arguments, the application, the
/// ledger of every number handed out.
pub struct Setup<'a> {
    pub system: &'a ChatSystem,
    pub serve: &'a [&'a str],
    pub log: &'a str,
    pub token: &'a str,
    pub ledger: Arc<Ledger>,
    /// Messages stored when the group starts.
    pub stored: u64,
}

pub async fn run(setup: &Setup<'_>, sizes: &Sizes) -> anyhow::Result<Streams> {
    let open_files_limit = raise_open_files();
    eprintln!(
        "bench: streams: open-file limit {} / {}",
        open_files_limit.0, open_files_limit.1
    );
    let mut system = setup.system.clone();
    for (name, value) in SERVER_ENV {
        system = system.set(name, value);
    }
    let server_log = system.log_path(setup.log);

    // (c) first, each on a freshly started server, so that no earlier scenario's freed memory
    // hides the connections' cost.
    // The first size again with plain keep-alive connections instead of streams: what of an
    // idle stream's cost is the HTTP connection's own.
    let mut idle = Vec::new();
    let first = sizes.idle.first().copied();
    let runs = (sizes.idle.iter().map(|&n| (n, true, sizes.chats, false)))
        .chain(first.map(|n| (n, true, 1, true)))
        .chain(first.map(|n| (n, false, sizes.chats, true)));
    for (i, (n, stream, chats, comparison)) in runs.enumerate() {
        let mut server = system.serve(setup.serve, setup.log).await?;
        let pid = server.pid().context("the server's pid")?;
        let scenario = 10 + i as u8;
        let measured = idle_connections(
            server.addr,
            pid,
            setup.token,
            IdleRun {
                n,
                stream,
                chats,
                comparison,
                scenario,
                limit: open_files_limit,
                settle: sizes.settle,
            },
            server_log.as_deref(),
        )
        .await;
        server.terminate().await?;
        idle.push(measured?);
    }

    let mut server = system.serve(setup.serve, setup.log).await?;
    let addr = server.addr;
    let ctx = Ctx {
        addr,
        token: setup.token.to_owned(),
        ledger: setup.ledger.clone(),
        pid: server.pid().context("the server's pid")?,
        stream_addrs: vec![addr],
    };
    let mut fanout = Vec::new();
    for (i, &n) in sizes.fanout.iter().enumerate() {
        fanout.push(one_chat(&ctx, HOT_CHAT, n, sizes, 20 + i as u8).await?);
    }
    let under_load = under_load(&ctx, sizes, setup.stored, 30).await?;
    let storm = storm(&ctx, sizes, 40).await?;
    server.terminate().await?;
    Ok(Streams {
        server_env: SERVER_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        open_files_limit,
        fanout,
        under_load: Some(under_load),
        idle,
        storm: Some(storm),
    })
}

/// Raises this process's open-file limit as far as it may (the server started afterwards
/// inherits it): first both limits to the kernel's maximum (which needs `CAP_SYS_RESOURCE`),
/// else the soft one to the hard one; (soft, hard) after.
pub fn raise_open_files() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, 0);
        }
        let wanted = libc::rlimit {
            rlim_cur: most.max(limit.rlim_max),
            rlim_max: most.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    (limit.rlim_cur, limit.rlim_max)
}

/// Descriptors the bench keeps for everything but the idle streams (its posters, `/proc`
/// reads, the runtime): the idle scenario opens at most its limit minus this.
const SPARE_FDS: usize = 256;

struct Ctx {
    addr: SocketAddr,
    token: String,
    ledger: Arc<Ledger>,
    /// The server's process, for its CPU time.
    pid: u32,
    /// Where the subscribers open their streams: subscriber `i` on `stream_addrs[i % len]`
    /// (the scaled shape splits them over its API processes).
    stream_addrs: Vec<SocketAddr>,
}

impl Ctx {
    fn stream_path(&self, chat: u64) -> String {
        format!("/applications/{}/chats/{chat}/stream", self.token)
    }

    /// Each chat's current revision.
    async fn revisions(&self, chats: &[u64]) -> anyhow::Result<HashMap<u64, u64>> {
        #[derive(Deserialize)]
        struct Chat {
            revision: u64,
        }
        let mut conn = Conn::connect(self.addr).await?;
        let mut out = HashMap::new();
        for &chat in chats {
            let path = format!("/applications/{}/chats/{chat}", self.token);
            let (status, body) = conn.send(Method::GET, &path, None).await?;
            anyhow::ensure!(status == StatusCode::OK, "{path} answered {status}");
            out.insert(chat, serde_json::from_slice::<Chat>(&body)?.revision);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Posting, and when each answer came.

/// The run's clock: microseconds since its start.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }

    fn at(self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.0).as_micros() as u64
    }
}

/// (chat, revision) → (sent, answered), in [`Clock`] µs.
type Times = HashMap<(u64, u64), (u64, u64)>;

/// The times of every POST answered `201`, by chat and revision.
struct Answers {
    clock: Clock,
    shards: Vec<Mutex<Times>>,
    first_sent: AtomicU64,
    last_answered: AtomicU64,
}

impl Answers {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            shards: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
            first_sent: AtomicU64::new(u64::MAX),
            last_answered: AtomicU64::new(0),
        }
    }

    fn shard(&self, chat: u64) -> std::sync::MutexGuard<'_, Times> {
        let shard = &self.shards[(chat % self.shards.len() as u64) as usize];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, chat: u64, revision: u64, sent: u64, answered: u64) {
        self.shard(chat).insert((chat, revision), (sent, answered));
        self.first_sent.fetch_min(sent, Ordering::Relaxed);
        self.last_answered.fetch_max(answered, Ordering::Relaxed);
    }

    fn get(&self, chat: u64, revision: u64) -> Option<(u64, u64)> {
        self.shard(chat).get(&(chat, revision)).copied()
    }

    /// The highest revision answered in each chat.
    fn finals(&self) -> HashMap<u64, u64> {
        let mut out: HashMap<u64, u64> = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for &(chat, revision) in shard.keys() {
                let top = out.entry(chat).or_default();
                *top = (*top).max(revision);
            }
        }
        out
    }

    fn count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum()
    }
}

/// How the posts are paced.
#[derive(Clone, Copy)]
enum Pace {
    /// `total` posts, post `i` due at `start + i / rate`; latency from its due time.
    Open { rate: f64, total: u64 },
    /// As fast as possible for this long.
    Closed(Duration),
    /// Exactly `total`, as fast as possible.
    Count(u64),
}

/// Which chat each post goes to.
#[derive(Clone, Copy)]
enum Pick {
    One(u64),
    /// At random in 1..=n.
    Random(u64),
    /// Post `i` into chat `1 + i % n`.
    Cycle(u64),
}

#[derive(Deserialize)]
struct Posted {
    chat_number: u64,
    revision: u64,
}

/// Posts messages on `connections` keep-alive connections; every answer is checked (its body,
/// a number never seen before) and, with `answers`, its revision and times recorded.
async fn post(
    ctx: &Ctx,
    answers: Option<Arc<Answers>>,
    pace: Pace,
    pick: Pick,
    connections: usize,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let plan = Plan::new(ctx.token.clone(), 0, Samples::new());
    let generator = Arc::new(Generator::new(Kind::CreateSpread, plan, ctx.ledger.clone()));
    let next = Arc::new(AtomicU64::new(0));
    // An open loop's first post is due a little after its connections start.
    let lead = match pace {
        Pace::Open { .. } => Duration::from_millis(20),
        _ => Duration::ZERO,
    };
    let start = Instant::now() + lead;
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        let (generator, next, answers) = (generator.clone(), next.clone(), answers.clone());
        let (addr, token) = (ctx.addr, ctx.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (connection as u64).wrapping_mul(7919));
            let mut conn: Option<Conn> = None;
            let mut outcome = Outcome::empty();
            loop {
                let (index, due) = match pace {
                    Pace::Open { rate, total } => {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= total {
                            break;
                        }
                        let due = start + Duration::from_secs_f64(index as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        (index, due)
                    }
                    Pace::Closed(duration) => {
                        if Instant::now() >= start + duration {
                            break;
                        }
                        (next.fetch_add(1, Ordering::Relaxed), Instant::now())
                    }
                    Pace::Count(total) => {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= total {
                            break;
                        }
                        (index, Instant::now())
                    }
                };
                let chat = match pick {
                    Pick::One(chat) => chat,
                    Pick::Random(n) => rng.random_range(1..=n),
                    Pick::Cycle(n) => 1 + index % n,
                };
                let text = body(&mut rng);
                let req = Req {
                    method: Method::POST,
                    path: format!("/applications/{token}/chats/{chat}/messages"),
                    body: Some(serde_json::json!({ "body": text }).to_string()),
                    check: Check::Message(text),
                };
                if conn.is_none() {
                    conn = Conn::connect(addr).await.ok();
                }
                let Some(live) = conn.as_mut() else {
                    outcome.errors += 1;
                    continue;
                };
                let sent = Instant::now();
                match live
                    .send(req.method.clone(), &req.path, req.body.as_deref())
                    .await
                {
                    Ok((status, bytes)) => {
                        let answered = Instant::now();
                        let micros = answered.duration_since(due).as_micros() as u64;
                        outcome.hist.saturating_record(micros.max(1));
                        match generator.check(&req, status, &bytes) {
                            Verdict::Ok => outcome.ok += 1,
                            Verdict::Error => {
                                outcome.errors += 1;
                                continue;
                            }
                            Verdict::Duplicate => {
                                outcome.ok += 1;
                                outcome.duplicates += 1;
                            }
                        }
                        if let Some(answers) = &answers {
                            match serde_json::from_slice::<Posted>(&bytes) {
                                Ok(p) => answers.insert(
                                    p.chat_number,
                                    p.revision,
                                    answers.clock.at(sent),
                                    answers.clock.at(answered),
                                ),
                                Err(_) => outcome.errors += 1,
                            }
                        }
                    }
                    Err(_) => {
                        outcome.errors += 1;
                        conn = None;
                    }
                }
            }
            outcome
        }));
    }
    let mut total = Outcome::empty();
    for task in tasks {
        total.append(&task.await.context("a poster panicked")?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Subscribers.

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    connected: bool,
    /// When its first stream opened, in the run's clock.
    opened_at: u64,
    delivered: u64,
    early: u64,
    unmatched: u64,
    gaps: u64,
    duplicates: u64,
    reconnects: u64,
    /// Opens that failed and were tried again.
    retries: u64,
    /// Given up (every attempt failed), or the chat deleted.
    errors: u64,
    first_error: Option<String>,
    last_received_at: u64,
    /// When it had every change up to its `until`.
    caught_up_at: Option<u64>,
}

/// Delivery latencies, from the POST's answer and from its send, in shards.
struct Latencies {
    shards: Vec<Mutex<(Histogram<u64>, Histogram<u64>)>>,
}

impl Latencies {
    fn new() -> Self {
        Self {
            shards: (0..16)
                .map(|_| Mutex::new((histogram(), histogram())))
                .collect(),
        }
    }

    fn record(&self, shard: usize, samples: &mut Vec<(u64, u64)>) {
        if samples.is_empty() {
            return;
        }
        let mut pair = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for &(answer, send) in samples.iter() {
            pair.0.saturating_record(answer.max(1));
            pair.1.saturating_record(send.max(1));
        }
        samples.clear();
    }

    fn merged(&self) -> (Histogram<u64>, Histogram<u64>) {
        let (mut a, mut s) = (histogram(), histogram());
        for shard in &self.shards {
            let pair = shard.lock().unwrap_or_else(|p| p.into_inner());
            let _ = a.add(&pair.0);
            let _ = s.add(&pair.1);
        }
        (a, s)
    }
}

/// A crowd of subscribers: one task each, their last revision readable while they run.
struct Crowd {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Seen>>,
    chats: Vec<u64>,
    since: Vec<u64>,
    lasts: Arc<Vec<AtomicU64>>,
    latencies: Arc<Latencies>,
}

/// Where one subscriber starts and stops.
#[derive(Clone, Copy)]
struct Sub {
    chat: u64,
    since: u64,
    /// Stop once this revision is received (the storm); `None`: when told.
    until: Option<u64>,
}

struct Shared {
    addrs: Vec<SocketAddr>,
    scenario: u8,
    paths: HashMap<u64, String>,
    answers: Option<Arc<Answers>>,
    lasts: Arc<Vec<AtomicU64>>,
    latencies: Arc<Latencies>,
    clock: Clock,
    settled: AtomicUsize,
}

impl Crowd {
    /// Starts a subscriber per `subs`, `batch` at a time (each batch's streams open before the
    /// next starts), or all at once when `batch` is `None`.
    async fn start(
        ctx: &Ctx,
        scenario: u8,
        subs: &[Sub],
        answers: Option<Arc<Answers>>,
        clock: Clock,
        batch: Option<usize>,
    ) -> Crowd {
        let lasts: Arc<Vec<AtomicU64>> =
            Arc::new(subs.iter().map(|s| AtomicU64::new(s.since)).collect());
        let latencies = Arc::new(Latencies::new());
        let paths = subs
            .iter()
            .map(|s| (s.chat, ctx.stream_path(s.chat)))
            .collect();
        let shared = Arc::new(Shared {
            addrs: ctx.stream_addrs.clone(),
            scenario,
            paths,
            answers,
            lasts: lasts.clone(),
            latencies: latencies.clone(),
            clock,
            settled: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(subs.len());
        let batched = batch.is_some();
        let batch = batch.unwrap_or(subs.len()).max(1);
        for (number, group) in subs.chunks(batch).enumerate() {
            for (offset, &sub) in group.iter().enumerate() {
                let index = number * batch + offset;
                let (shared, stopped) = (shared.clone(), stopped.clone());
                tasks.push(tokio::spawn(subscriber(shared, index, sub, stopped)));
            }
            if batched {
                // Wait for this batch's streams (or their failure) before the next.
                let end = (number + 1) * batch;
                let deadline = Instant::now() + OPEN_WITHIN * (ATTEMPTS + 1);
                while shared.settled.load(Ordering::Relaxed) < end.min(subs.len())
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        Crowd {
            stop,
            tasks,
            chats: subs.iter().map(|s| s.chat).collect(),
            since: subs.iter().map(|s| s.since).collect(),
            lasts,
            latencies,
        }
    }

    /// Waits until every subscriber has its chat's `finals` revision (or the deadline), then
    /// stops them all and gathers what they saw.
    async fn finish(self, finals: &HashMap<u64, u64>, within: Duration) -> anyhow::Result<Crowded> {
        let deadline = Instant::now() + within;
        let target = |i: usize| finals.get(&self.chats[i]).copied().unwrap_or(self.since[i]);
        loop {
            let behind = (0..self.chats.len())
                .filter(|&i| self.lasts[i].load(Ordering::Relaxed) < target(i))
                .count();
            if behind == 0 || Instant::now() >= deadline {
                if behind > 0 {
                    eprintln!("bench: streams: {behind} subscribers still behind at the deadline");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.stop.send(true);
        let mut seen = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            seen.push(task.await.context("a subscriber panicked")?);
        }
        let missing = (0..self.chats.len())
            .map(|i| {
                let expected = target(i).saturating_sub(self.since[i]);
                expected.saturating_sub(seen[i].delivered)
            })
            .sum();
        let expected = (0..self.chats.len())
            .map(|i| target(i).saturating_sub(self.since[i]))
            .sum();
        Ok(Crowded {
            seen,
            expected,
            missing,
            latencies: self.latencies,
        })
    }
}

/// What a crowd saw, together.
struct Crowded {
    seen: Vec<Seen>,
    expected: u64,
    missing: u64,
    latencies: Arc<Latencies>,
}

impl Crowded {
    fn sum(&self, f: impl Fn(&Seen) -> u64) -> u64 {
        self.seen.iter().map(f).sum()
    }

    fn first_error(&self) -> Option<String> {
        self.seen.iter().find_map(|s| s.first_error.clone())
    }

    /// The fan-out figures, with the posts' `answers` and `outcome`.
    fn fanout(&self, name: String, chats: u64, answers: &Answers, outcome: &Outcome) -> FanOut {
        let (from_answer, from_send) = self.latencies.merged();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let deliveries = self.sum(|s| s.delivered);
        let last = self
            .seen
            .iter()
            .map(|s| s.last_received_at)
            .max()
            .unwrap_or(0);
        let first_sent = answers.first_sent.load(Ordering::Relaxed);
        let last_answered = answers.last_answered.load(Ordering::Relaxed);
        let window = last.saturating_sub(first_sent) as f64 / 1e6;
        FanOut {
            name,
            chats,
            subscribers: self.seen.len(),
            connected: self.seen.iter().filter(|s| s.connected).count(),
            posts: answers.count(),
            offered_posts_per_s: None,
            posts_per_s: outcome.throughput(),
            deliveries,
            expected: self.expected,
            deliveries_per_s: if window > 0.0 {
                deliveries as f64 / window
            } else {
                0.0
            },
            p50_ms: ms(from_answer.value_at_quantile(0.5)),
            p90_ms: ms(from_answer.value_at_quantile(0.9)),
            p99_ms: ms(from_answer.value_at_quantile(0.99)),
            p999_ms: ms(from_answer.value_at_quantile(0.999)),
            max_ms: ms(from_answer.max()),
            from_send_p50_ms: ms(from_send.value_at_quantile(0.5)),
            from_send_p99_ms: ms(from_send.value_at_quantile(0.99)),
            early: self.sum(|s| s.early),
            unmatched: self.sum(|s| s.unmatched),
            drain_s: last.saturating_sub(last_answered) as f64 / 1e6,
            gaps: self.sum(|s| s.gaps),
            duplicates: self.sum(|s| s.duplicates),
            missing: self.missing,
            reconnects: self.sum(|s| s.reconnects),
            retries: self.sum(|s| s.retries),
            errors: self.sum(|s| s.errors) + outcome.errors,
            first_error: self.first_error(),
            offered_deliveries_per_s: None,
            cpu: None,
        }
    }
}

/// One subscriber: opens its stream from `sub.since`, reads until told to stop (or `until`),
/// and reopens it with `Last-Event-ID` when the server ends it.
async fn subscriber(
    shared: Arc<Shared>,
    index: usize,
    sub: Sub,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut last = sub.since;
    let path = &shared.paths[&sub.chat];
    let from = sse::source(shared.scenario, index);
    let addr = shared.addrs[index % shared.addrs.len()];
    let mut events = Vec::with_capacity(16);
    // Deliveries read before the POST's answer: (revision, when), matched later.
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut samples: Vec<(u64, u64)> = Vec::with_capacity(64);
    let mut failures = 0;
    let done = |last: u64| sub.until.is_some_and(|until| last >= until);
    'streams: while !*stop.borrow() && !done(last) {
        let opened = tokio::select! {
            opened = sse::open(addr, from, path, Some(last), OPEN_WITHIN) => opened,
            _ = stop.changed() => break,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => {
                seen.retries += 1;
                seen.first_error.get_or_insert_with(|| format!("{err:#}"));
                failures += 1;
                if failures >= ATTEMPTS {
                    seen.errors += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        failures = 0;
        if seen.connected {
            seen.reconnects += 1;
        } else {
            seen.connected = true;
            seen.opened_at = shared.clock.now();
            shared.settled.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            events.clear();
            let more = tokio::select! {
                more = stream.read(&mut events) => more,
                _ = stop.changed() => break 'streams,
            };
            let at = shared.clock.now();
            for &event in &events {
                let revision = match event {
                    Event::Change(revision) => revision,
                    Event::ChatDeleted => {
                        seen.errors += 1;
                        seen.first_error.get_or_insert("chat deleted".into());
                        break 'streams;
                    }
                };
                if revision <= last {
                    seen.duplicates += 1;
                    continue;
                }
                if revision != last + 1 {
                    seen.gaps += 1;
                }
                last = revision;
                seen.delivered += 1;
                seen.last_received_at = at;
                if let Some(answers) = &shared.answers {
                    match answers.get(sub.chat, revision) {
                        Some((sent, answered)) => {
                            samples.push((at.saturating_sub(answered), at.saturating_sub(sent)))
                        }
                        None => {
                            seen.early += 1;
                            pending.push((revision, at));
                        }
                    }
                }
            }
            shared.lasts[index].store(last, Ordering::Relaxed);
            if done(last) {
                seen.caught_up_at = Some(at);
                break 'streams;
            }
            if let Some(answers) = &shared.answers {
                resolve(answers, sub.chat, &mut pending, &mut samples, None);
            }
            if samples.len() >= 64 {
                shared.latencies.record(index, &mut samples);
            }
            match more {
                Ok(true) => {}
                Ok(false) | Err(_) => break, // the server ended it: reopen from `last`
            }
        }
    }
    if !seen.connected {
        shared.settled.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(answers) = &shared.answers {
        resolve(
            answers,
            sub.chat,
            &mut pending,
            &mut samples,
            Some(&mut seen.unmatched),
        );
    }
    shared.latencies.record(index, &mut samples);
    seen
}

/// Matches early deliveries with their POST's answer now known (a delivery before the answer
/// counts 0 ms from the answer); with `unmatched`, the rest are given up and counted.
fn resolve(
    answers: &Answers,
    chat: u64,
    pending: &mut Vec<(u64, u64)>,
    samples: &mut Vec<(u64, u64)>,
    unmatched: Option<&mut u64>,
) {
    pending.retain(|&(revision, at)| match answers.get(chat, revision) {
        Some((sent, answered)) => {
            samples.push((at.saturating_sub(answered), at.saturating_sub(sent)));
            false
        }
        None => true,
    });
    if let Some(unmatched) = unmatched {
        *unmatched += pending.len() as u64;
        pending.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// (a) `subscribers` on the hot chat, posts at `sizes.rate` for `sizes.seconds`.
async fn one_chat(
    ctx: &Ctx,
    chat: u64,
    subscribers: usize,
    sizes: &Sizes,
    scenario: u8,
) -> anyhow::Result<FanOut> {
    let since = ctx.revisions(&[chat]).await?[&chat];
    eprintln!("bench: streams: {subscribers} subscribers on chat {chat} (from revision {since})");
    let clock = Clock(Instant::now());
    let answers = Arc::new(Answers::new(clock));
    let subs = vec![
        Sub {
            chat,
            since,
            until: None
        };
        subscribers
    ];
    let crowd = Crowd::start(
        ctx,
        scenario,
        &subs,
        Some(answers.clone()),
        clock,
        Some(BATCH),
    )
    .await;
    let total = (sizes.rate * sizes.seconds).round().max(1.0) as u64;
    eprintln!(
        "bench: streams: posting {total} messages at {}/s into chat {chat}",
        sizes.rate
    );
    let pace = Pace::Open {
        rate: sizes.rate,
        total,
    };
    let cpu = CpuMark::now(ctx.pid);
    let connections = sizes.connections;
    let outcome = post(
        ctx,
        Some(answers.clone()),
        pace,
        Pick::One(chat),
        connections,
        0x5ee,
    )
    .await?;
    let crowded = crowd.finish(&answers.finals(), sizes.drain).await?;
    let name = format!(
        "1 chat, {subscribers} subscribers, {} posts/s for {} s",
        sizes.rate, sizes.seconds
    );
    let mut fanout = crowded.fanout(name, 1, &answers, &outcome);
    fanout.offered_posts_per_s = Some(sizes.rate);
    fanout.offered_deliveries_per_s = Some(sizes.rate * subscribers as f64);
    fanout.cpu = Some(cpu.since(ctx.pid));
    Ok(fanout)
}

/// The scaled shape's (a): `subscribers` on `chat`, split over the API processes at `apis`
/// (subscriber `i` on `apis[i % len]`), the posts through the first; `pid` is its process (the
/// CPU figures are that process's alone). Raise the open-file limit ([`raise_open_files`])
/// before starting the API processes, so that they inherit it.
pub async fn scaled_fanout(
    apis: &[SocketAddr],
    pid: u32,
    token: &str,
    ledger: Arc<Ledger>,
    chat: u64,
    subscribers: usize,
    sizes: &Sizes,
) -> anyhow::Result<FanOut> {
    let ctx = Ctx {
        addr: *apis.first().context("no API process")?,
        token: token.to_owned(),
        ledger,
        pid,
        stream_addrs: apis.to_vec(),
    };
    // A new chat is readable once the worker stored it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(err) = ctx.revisions(&[chat]).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "chat {chat} not readable: {err:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    one_chat(&ctx, chat, subscribers, sizes, 50).await
}

/// (b) `per_chat` subscribers on each of `chats` chats under the closed-loop create load in
/// them, beside the same load without subscribers (measured first, after a warm-up).
async fn under_load(
    ctx: &Ctx,
    sizes: &Sizes,
    stored: u64,
    scenario: u8,
) -> anyhow::Result<UnderLoad> {
    let duration = Duration::from_secs_f64(sizes.load_seconds);
    let pick = Pick::Random(sizes.chats);
    let c = sizes.connections;
    eprintln!(
        "bench: streams: create load in {} chats, warm-up",
        sizes.chats
    );
    post(ctx, None, Pace::Closed(duration / 4), pick, c, 1).await?;
    eprintln!("bench: streams: create load without subscribers ({c} connections)");
    let cpu = CpuMark::now(ctx.pid);
    let without = post(ctx, None, Pace::Closed(duration), pick, c, 2).await?;
    let cpu_without = cpu.since(ctx.pid);
    let chats: Vec<u64> = (1..=sizes.chats).collect();
    let revisions = ctx.revisions(&chats).await?;
    let subs: Vec<Sub> = (0..sizes.per_chat)
        .flat_map(|_| chats.iter())
        .map(|chat| Sub {
            chat: *chat,
            since: revisions[chat],
            until: None,
        })
        .collect();
    eprintln!(
        "bench: streams: {} subscribers over {} chats",
        subs.len(),
        sizes.chats
    );
    let clock = Clock(Instant::now());
    let answers = Arc::new(Answers::new(clock));
    let crowd = Crowd::start(
        ctx,
        scenario,
        &subs,
        Some(answers.clone()),
        clock,
        Some(BATCH),
    )
    .await;
    eprintln!("bench: streams: create load with them");
    let cpu = CpuMark::now(ctx.pid);
    let with = post(
        ctx,
        Some(answers.clone()),
        Pace::Closed(duration),
        pick,
        c,
        3,
    )
    .await?;
    let crowded = crowd.finish(&answers.finals(), sizes.drain).await?;
    let cpu_with = cpu.since(ctx.pid);
    let name = format!(
        "{} chats × {} subscribers, closed-loop creates",
        sizes.chats, sizes.per_chat
    );
    let mut fanout = crowded.fanout(name, sizes.chats, &answers, &with);
    fanout.cpu = Some(cpu_with.clone());
    let measured = |outcome: &Outcome| {
        Measurement::new(Kind::CreateSpread, "closed", c, None, stored, outcome)
    };
    Ok(UnderLoad {
        chats: sizes.chats,
        per_chat: sizes.per_chat,
        without: measured(&without),
        with: measured(&with),
        fanout,
        cpu_without,
        cpu_with,
    })
}

/// (d) Clients open their streams from their chats' revision R and leave; changes are written;
/// every client reconnects at once with `Last-Event-ID: R`.
async fn storm(ctx: &Ctx, sizes: &Sizes, scenario: u8) -> anyhow::Result<Storm> {
    let chats: Vec<u64> = (1..=sizes.storm_chats).collect();
    let revisions = ctx.revisions(&chats).await?;
    let chat_of = |i: usize| chats[i % chats.len()];
    let clients = sizes.storm_clients;
    eprintln!(
        "bench: streams: storm: {clients} clients over {} chats open from R",
        chats.len()
    );
    // They have seen R: their streams open (from R, nothing after it yet), then they leave.
    let clock = Clock(Instant::now());
    let subs: Vec<Sub> = (0..clients)
        .map(|i| Sub {
            chat: chat_of(i),
            since: revisions[&chat_of(i)],
            until: None,
        })
        .collect();
    let crowd = Crowd::start(ctx, scenario, &subs, None, clock, Some(BATCH)).await;
    let before = crowd.finish(&revisions, Duration::from_secs(1)).await?;
    let opened = before.seen.iter().filter(|s| s.connected).count();
    // Let the server see every close before the writes.
    tokio::time::sleep(sizes.settle).await;

    let total = sizes.storm_chats * sizes.storm_changes;
    eprintln!(
        "bench: streams: storm: writing {} changes per chat ({total})",
        sizes.storm_changes
    );
    let answers = Arc::new(Answers::new(clock));
    let written = post(
        ctx,
        Some(answers.clone()),
        Pace::Count(total),
        Pick::Cycle(sizes.storm_chats),
        sizes.connections,
        4,
    )
    .await?;
    let finals = answers.finals();
    let mut errors = written.errors + (clients - opened) as u64;
    for chat in &chats {
        let wanted = revisions[chat] + sizes.storm_changes;
        if finals.get(chat).copied() != Some(wanted) {
            eprintln!(
                "bench: streams: storm: chat {chat} ends at {:?}, not {wanted}",
                finals.get(chat)
            );
            errors += 1;
        }
    }

    eprintln!("bench: streams: storm: {clients} clients reconnect at once");
    let subs: Vec<Sub> = (0..clients)
        .map(|i| {
            let chat = chat_of(i);
            Sub {
                chat,
                since: revisions[&chat],
                until: Some(finals.get(&chat).copied().unwrap_or(revisions[&chat])),
            }
        })
        .collect();
    let listen = listen_counters();
    let cpu = CpuMark::now(ctx.pid);
    let clock = Clock(Instant::now());
    let crowd = Crowd::start(ctx, scenario + 1, &subs, None, clock, None).await;
    let crowded = crowd.finish(&finals, sizes.drain).await?;
    let cpu = cpu.since(ctx.pid);
    let listen_after = listen_counters();
    let (listen_overflows, listen_drops) = (
        listen_after.0.saturating_sub(listen.0),
        listen_after.1.saturating_sub(listen.1),
    );
    let secs = |micros: u64| micros as f64 / 1e6;
    let quantile = |mut values: Vec<u64>, q: f64| -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        values.sort_unstable();
        let at = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        secs(values[at])
    };
    let opens: Vec<u64> = crowded
        .seen
        .iter()
        .filter(|s| s.connected)
        .map(|s| s.opened_at)
        .collect();
    let caught: Vec<u64> = crowded.seen.iter().filter_map(|s| s.caught_up_at).collect();
    let caught_up = caught.len();
    let all_caught_up_s =
        (caught_up == clients).then(|| secs(caught.iter().copied().max().unwrap_or(0)));
    Ok(Storm {
        chats: sizes.storm_chats,
        clients,
        changes_per_chat: sizes.storm_changes,
        connected: opens.len(),
        caught_up,
        all_caught_up_s,
        deadline_s: sizes.drain.as_secs_f64(),
        connect_p50_s: quantile(opens.clone(), 0.5),
        connect_p99_s: quantile(opens.clone(), 0.99),
        connect_max_s: secs(opens.iter().copied().max().unwrap_or(0)),
        caught_up_p50_s: quantile(caught.clone(), 0.5),
        caught_up_p99_s: quantile(caught, 0.99),
        deliveries: crowded.sum(|s| s.delivered),
        gaps: crowded.sum(|s| s.gaps),
        duplicates: crowded.sum(|s| s.duplicates),
        missing: crowded.missing,
        reconnects: crowded.sum(|s| s.reconnects),
        retries: before.sum(|s| s.retries) + crowded.sum(|s| s.retries),
        errors: errors + crowded.sum(|s| s.errors),
        first_error: before.first_error().or_else(|| crowded.first_error()),
        store_queries_per_chat: None,
        store_queries_note: STORE_QUERIES.into(),
        listen_overflows,
        listen_drops,
        cpu,
    })
}

const STORE_QUERIES: &str = "Store queries per chat are not measured: the server counts no store queries (its `/metrics` has HTTP requests and write batches only), SQLite runs inside its process, and the bench does not change `src/`. From the code (`Service::stream`, `streams/follow.rs`), each reconnecting stream makes its own statements: the chat's row (its id cached), then the changes feed after its `Last-Event-ID` in pages of 1 000 (one page for 100 changes), then one more page whenever a live change skips a revision or its receiver lags; nothing is shared between the streams of one chat, so a storm of K clients per chat costs at least 2 × K statements per chat (200 with 100 clients per chat), none of which this bench could observe directly.";

/// One run of (c).
struct IdleRun {
    /// Connections wanted.
    n: usize,
    /// Streams; `false`: plain keep-alive connections after one `GET` of a chat.
    stream: bool,
    /// Spread over chats 1..=chats.
    chats: u64,
    /// Not the measure itself: a comparison that tells where the memory goes.
    comparison: bool,
    /// Their source addresses' range.
    scenario: u8,
    /// The bench's open-file limit (soft, hard).
    limit: (u64, u64),
    /// Left to the server before each reading.
    settle: Duration,
}

/// (c) `n` idle streams (or plain connections) over `chats` chats on the server `pid`, opened
/// `BATCH` at a time; the server's RSS before and after. Stops at the first batch with a
/// failure, or where the bench's own open-file limit would be reached, and says why.
async fn idle_connections(
    addr: SocketAddr,
    pid: u32,
    token: &str,
    run: IdleRun,
    server_log: Option<&Path>,
) -> anyhow::Result<Idle> {
    let IdleRun {
        n,
        stream,
        chats,
        comparison,
        scenario,
        limit: (soft, hard),
        settle,
    } = run;
    let what = if stream {
        "idle streams"
    } else {
        "plain keep-alive connections"
    };
    eprintln!("bench: streams: {n} {what} over {chats} chats, server pid {pid}");
    // Warm the server's paths once (a chat look-up, a stream opened and closed).
    let chat_path = |chat: u64| format!("/applications/{token}/chats/{chat}");
    let path = |chat: u64| {
        if stream {
            format!("{}/stream", chat_path(chat))
        } else {
            chat_path(chat)
        }
    };
    let warm = sse::source(scenario, n + 1);
    let stream_path = format!("{}/stream", chat_path(1));
    drop(sse::open(addr, warm, &stream_path, None, OPEN_WITHIN).await?);
    drop(sse::plain(addr, warm, &chat_path(1), OPEN_WITHIN).await?);
    tokio::time::sleep(settle).await;
    let rss_before_kb = rss_kb(pid)?;
    let cap = (soft as usize).saturating_sub(SPARE_FDS);
    let mut stopped = (n > cap).then(|| {
        format!(
            "the bench's open-file limit is {soft} (hard {hard}; raising the hard one needs CAP_SYS_RESOURCE, which this process lacks), so it opens at most {cap}; the server, its child, inherits the same limit"
        )
    });
    let n_opened = n.min(cap);
    let mut held = Vec::with_capacity(n_opened);
    let mut failed = None;
    let mut start = 0;
    while start < n_opened && failed.is_none() {
        let end = (start + BATCH).min(n_opened);
        let mut batch = Vec::with_capacity(end - start);
        for i in start..end {
            let chat = 1 + i as u64 % chats;
            let path = path(chat);
            batch.push(tokio::spawn(async move {
                let from = sse::source(scenario, i);
                if stream {
                    sse::open(addr, from, &path, None, OPEN_WITHIN)
                        .await
                        .map(|s| Box::new(s) as Held)
                } else {
                    sse::plain(addr, from, &path, OPEN_WITHIN)
                        .await
                        .map(|s| Box::new(s) as Held)
                }
            }));
        }
        for task in batch {
            match task.await.context("an open panicked")? {
                Ok(stream) => held.push(stream),
                Err(err) => {
                    failed.get_or_insert_with(|| format!("{err:#}"));
                }
            }
        }
        start = end;
    }
    let reached = held.len();
    eprintln!("bench: streams: {reached} {what} open");
    tokio::time::sleep(settle).await;
    let rss_after_kb = rss_kb(pid)?;
    let server_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let server_fd_limit = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default();
    drop(held);
    tokio::time::sleep(settle).await;
    let rss_closed_kb = rss_kb(pid)?;
    if let Some(mut reason) = failed {
        // What the server said about it, if anything.
        let said = server_log
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|log| {
                log.lines()
                    .rev()
                    .find(|l| l.contains("accept error") || l.contains("Too many open files"))
                    .map(|l| l.chars().take(200).collect::<String>())
            });
        if let Some(said) = said {
            reason.push_str(&format!("; server log: {said}"));
        }
        reason.push_str(&format!(
            "; server held {server_fds} descriptors, its limit {server_fd_limit}"
        ));
        stopped = Some(match stopped {
            Some(cap) => format!("{cap}; and a stream failed before that: {reason}"),
            None => reason,
        });
    }
    let per_connection_kb = if reached > 0 {
        rss_after_kb.saturating_sub(rss_before_kb) as f64 / reached as f64
    } else {
        0.0
    };
    Ok(Idle {
        stream,
        chats,
        comparison,
        wanted: n,
        reached,
        rss_before_kb,
        rss_after_kb,
        rss_closed_kb,
        per_connection_kb,
        server_fds,
        server_fd_limit,
        stopped,
    })
}

/// An idle connection, held only to keep it open.
type Held = Box<dyn std::any::Any + Send>;

/// `VmRSS` of process `pid`, in KB.
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// CPU time used so far by the server, by the bench, and by the whole machine.
struct CpuMark {
    server: f64,
    bench: f64,
    machine: f64,
    at: Instant,
}

impl CpuMark {
    fn now(server: u32) -> Self {
        Self {
            server: cpu_seconds(server),
            bench: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
            at: Instant::now(),
        }
    }

    /// CPU seconds each used since, over the wall-clock seconds.
    fn since(&self, server: u32) -> Cpu {
        let server_s = cpu_seconds(server) - self.server;
        let bench_s = cpu_seconds(std::process::id()) - self.bench;
        let machine = machine_busy_seconds() - self.machine;
        Cpu {
            wall_s: self.at.elapsed().as_secs_f64(),
            server_s,
            bench_s,
            others_s: (machine - server_s - bench_s).max(0.0),
        }
    }
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`: all but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / per_second
}

/// User and system CPU seconds of process `pid` (`/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command's closing parenthesis: state is the first, utime the 12th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / per_second
}

/// The kernel's `ListenOverflows` and `ListenDrops` (`/proc/net/netstat`): connections a full
/// accept queue turned away, for the whole machine.
fn listen_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else {
        return (0, 0);
    };
    let value = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (value("ListenOverflows"), value("ListenDrops"))
}
