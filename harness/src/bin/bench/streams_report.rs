//! What the live-stream scenarios (issue #12, `streams.rs`) measured: JSON, Markdown, the
//! terminal, and the targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{Measurement, Target};

#[derive(Serialize)]
pub struct Streams {
    /// The settings the streams' server ran with (besides the defaults).
    pub server_env: Vec<(String, String)>,
    /// The bench's open-file limit (soft, hard) after raising the soft one to the hard one;
    /// the server, its child, inherits it.
    pub open_files_limit: (u64, u64),
    /// (a) one chat, N subscribers, posts at a fixed rate.
    pub fanout: Vec<FanOut>,
    /// (b) subscribers over many chats under the closed-loop create load in those chats.
    pub under_load: Option<UnderLoad>,
    /// (c) the server's memory per idle connection.
    pub idle: Vec<Idle>,
    /// (d) every client reconnecting at once with `Last-Event-ID`.
    pub storm: Option<Storm>,
}

/// Deliveries of one run: every subscriber against every change posted while it watched.
#[derive(Serialize, Clone, Default)]
pub struct FanOut {
    pub name: String,
    pub chats: u64,
    pub subscribers: usize,
    /// Subscribers whose stream opened.
    pub connected: usize,
    /// Messages posted (`201`).
    pub posts: u64,
    /// Open loop: the posts/s offered.
    pub offered_posts_per_s: Option<f64>,
    pub posts_per_s: f64,
    /// Changes received (each revision once per subscriber).
    pub deliveries: u64,
    /// What every subscriber should have received.
    pub expected: u64,
    /// Deliveries over the time from the first POST sent to the last delivery.
    pub deliveries_per_s: f64,
    /// From the moment the poster read the POST's `201` to the moment a subscriber read the
    /// change (0 when it came first: see `early`).
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// From the moment the POST was sent (commit included).
    pub from_send_p50_ms: f64,
    pub from_send_p99_ms: f64,
    /// Deliveries read before the poster had read the POST's answer (counted as 0 ms above).
    pub early: u64,
    /// Deliveries whose revision no POST answer named (a POST that failed after its commit).
    pub unmatched: u64,
    /// From the last POST's answer to the last delivery.
    pub drain_s: f64,
    /// A revision skipped (must be 0), seen twice (must be 0), never received (must be 0).
    pub gaps: u64,
    pub duplicates: u64,
    pub missing: u64,
    /// Streams the server ended (a slow client) that the subscriber resumed with
    /// `Last-Event-ID`, as an `EventSource` does.
    pub reconnects: u64,
    /// Opens that failed (no answer in time, refused) and were tried again.
    pub retries: u64,
    /// Subscribers that gave up opening, POSTs that failed, chats deleted.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Open loop: subscribers × posts/s offered.
    pub offered_deliveries_per_s: Option<f64>,
    /// CPU used from the first POST to the end of the deliveries.
    pub cpu: Option<Cpu>,
}

/// CPU seconds the server and the bench (the load generator and every subscriber) used over a
/// period: the two share the machine's cores.
#[derive(Serialize, Clone, Default)]
pub struct Cpu {
    pub wall_s: f64,
    pub server_s: f64,
    pub bench_s: f64,
    /// Every other process on the (shared) machine.
    pub others_s: f64,
}

impl Cpu {
    /// "server 1.20, bench 0.70, others 0.05 cores".
    pub fn cores(&self) -> String {
        let wall = self.wall_s.max(1e-9);
        format!(
            "server {:.2}, bench {:.2}, others {:.2} cores",
            self.server_s / wall,
            self.bench_s / wall,
            self.others_s / wall
        )
    }
}

#[derive(Serialize)]
pub struct UnderLoad {
    pub chats: u64,
    pub per_chat: usize,
    /// The closed-loop create load alone (measured first).
    pub without: Measurement,
    /// The same load with the subscribers watching.
    pub with: Measurement,
    pub fanout: FanOut,
    pub cpu_without: Cpu,
    pub cpu_with: Cpu,
}

#[derive(Serialize)]
pub struct Idle {
    /// Streams; `false`: plain keep-alive connections (after one `GET` of a chat).
    pub stream: bool,
    /// Spread over this many chats.
    pub chats: u64,
    /// A comparison that tells where the memory goes (plain connections, or every stream on
    /// one chat), not the measure itself.
    pub comparison: bool,
    /// Connections asked for.
    pub wanted: usize,
    /// Connections opened (streams answered `200`) and held.
    pub reached: usize,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// After every connection was closed again.
    pub rss_closed_kb: u64,
    /// (after − before) ÷ reached.
    pub per_connection_kb: f64,
    /// The server's open descriptors with the connections open, and its `Max open files`.
    pub server_fds: usize,
    pub server_fd_limit: String,
    /// Why it stopped short of `wanted`.
    pub stopped: Option<String>,
}

#[derive(Serialize)]
pub struct Storm {
    pub chats: u64,
    pub clients: usize,
    pub changes_per_chat: u64,
    /// Clients whose stream reopened.
    pub connected: usize,
    /// Clients that received all their changes before the deadline.
    pub caught_up: usize,
    /// From the moment every client started reconnecting to the moment the last one had all
    /// its changes; `None` when not all did within the deadline.
    pub all_caught_up_s: Option<f64>,
    pub deadline_s: f64,
    /// Per client, from the start of the storm: stream open, and all changes received.
    pub connect_p50_s: f64,
    pub connect_p99_s: f64,
    pub connect_max_s: f64,
    pub caught_up_p50_s: f64,
    pub caught_up_p99_s: f64,
    pub deliveries: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub missing: u64,
    pub reconnects: u64,
    /// Opens that failed (no answer within 10 s) and were tried again at once.
    pub retries: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Store queries per chat during the storm: not measurable from outside (see the note).
    pub store_queries_per_chat: Option<f64>,
    pub store_queries_note: String,
    /// The kernel's counters of connections turned away by a full accept queue during the storm
    /// (machine-wide).
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub cpu: Cpu,
}

fn fanout_row(out: &mut String, f: &FanOut) {
    let offered = f
        .offered_deliveries_per_s
        .map_or("closed loop".to_owned(), |o| format!("{o:.0}"));
    let _ = writeln!(
        out,
        "| {} | {} / {} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        f.name,
        f.connected,
        f.subscribers,
        f.posts_per_s,
        offered,
        f.deliveries_per_s,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.max_ms,
        f.from_send_p50_ms,
        f.from_send_p99_ms,
    );
}

fn fanout_checks(out: &mut String, f: &FanOut) {
    let _ = writeln!(
        out,
        "| {} | {} | {} / {} | {} | {:.2} | {} / {} / {} | {} / {} | {} | {} |",
        f.name,
        f.posts,
        f.deliveries,
        f.expected,
        f.early,
        f.drain_s,
        f.gaps,
        f.duplicates,
        f.missing,
        f.reconnects,
        f.retries,
        f.errors,
        f.cpu.as_ref().map_or("—".to_owned(), Cpu::cores),
    );
}

const FANOUT_HEADER: &str = "| run | subscribers open | posts/s | deliveries/s offered | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | from send p50 ms | from send p99 ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

const CHECKS_HEADER: &str = "| run | posts | deliveries / expected | early | drain s | gaps / dup / missing | reconnects / open retries | errors | CPU used (cores) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";

pub fn markdown(out: &mut String, s: &Streams) {
    let env: Vec<String> = s
        .server_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        out,
        "\n### Live streams (issue #12)\n\nServer settings: {}; open-file limit {} (soft) / {} (hard).\n",
        env.join(", "),
        s.open_files_limit.0,
        s.open_files_limit.1
    );
    let _ = writeln!(
        out,
        "Fan-out (latency: from the poster reading the POST's `201` to the subscriber reading the change):\n"
    );
    let runs: Vec<&FanOut> = s
        .fanout
        .iter()
        .chain(s.under_load.as_ref().map(|u| &u.fanout))
        .collect();
    out.push_str(FANOUT_HEADER);
    for f in &runs {
        fanout_row(out, f);
    }
    let _ = writeln!(
        out,
        "\nEvery delivery checked (early: read before the poster had the `201`, counted 0 ms above; drain: last `201` to last delivery):\n"
    );
    out.push_str(CHECKS_HEADER);
    for f in &runs {
        fanout_checks(out, f);
    }
    if let Some(u) = &s.under_load {
        let _ = writeln!(
            out,
            "\nThe create load of that run ({} chats, closed loop), without subscribers (first) and with {} per chat:\n",
            u.chats, u.per_chat
        );
        let _ = writeln!(
            out,
            "| create load | req/s | p50 ms | p99 ms | p99.9 ms | errors | duplicates | CPU used |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for (label, m, cpu) in [
            ("without subscribers", &u.without, &u.cpu_without),
            ("with subscribers (until delivered)", &u.with, &u.cpu_with),
        ] {
            let _ = writeln!(
                out,
                "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                m.throughput,
                m.p50_ms,
                m.p99_ms,
                m.p999_ms,
                m.errors,
                m.duplicates,
                cpu.cores()
            );
        }
        let _ = writeln!(
            out,
            "\nWith subscribers ÷ without: {:.2}.",
            u.with.throughput / u.without.throughput.max(1e-9)
        );
    }
    if !s.idle.is_empty() {
        let _ = writeln!(
            out,
            "\nIdle connections, each run on a freshly started server (its RSS from `/proc/<pid>/status`); the comparisons: every stream on one chat, and plain keep-alive connections after one `GET` of a chat (no stream):\n\n| connections | wanted | opened | RSS before | RSS with them | RSS after closing | KB per connection | server fds | server open-file limit (soft / hard) | stopped because |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
        );
        for i in &s.idle {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} KB | {} KB | {} KB | {:.1} | {} | {} | {} |",
                match (i.stream, i.comparison) {
                    (false, _) => format!("plain keep-alive over {} chats (comparison)", i.chats),
                    (true, true) => format!("SSE streams on {} chat (comparison)", i.chats),
                    (true, false) => format!("SSE streams over {} chats", i.chats),
                },
                i.wanted,
                i.reached,
                i.rss_before_kb,
                i.rss_after_kb,
                i.rss_closed_kb,
                i.per_connection_kb,
                i.server_fds,
                i.server_fd_limit,
                i.stopped.as_deref().unwrap_or("—")
            );
        }
    }
    if let Some(st) = &s.storm {
        let all = st
            .all_caught_up_s
            .map_or("not within the deadline".to_owned(), |s| {
                format!("{s:.2} s")
            });
        let _ = writeln!(
            out,
            "\nReconnect storm: {} clients over {} chats, {} changes per chat written while they were away, all reconnecting at once with `Last-Event-ID`:\n\n| measure | value |\n| --- | ---: |\n| every client had all its changes after | {all} |\n| clients reconnected / caught up | {} / {} |\n| stream open after, p50 / p99 / max | {:.2} / {:.2} / {:.2} s |\n| all changes received after, p50 / p99 | {:.2} / {:.2} s |\n| deliveries | {} |\n| gaps / duplicates / missing | {} / {} / {} |\n| reconnects / open retries / errors | {} / {} / {} |\n| accept queue overflows / drops (kernel, machine-wide) | {} / {} |\n| CPU used | {} |\n| store queries per chat | {} |",
            st.clients,
            st.chats,
            st.changes_per_chat,
            st.connected,
            st.caught_up,
            st.connect_p50_s,
            st.connect_p99_s,
            st.connect_max_s,
            st.caught_up_p50_s,
            st.caught_up_p99_s,
            st.deliveries,
            st.gaps,
            st.duplicates,
            st.missing,
            st.reconnects,
            st.retries,
            st.errors,
            st.listen_overflows,
            st.listen_drops,
            st.cpu.cores(),
            st.store_queries_per_chat
                .map_or("not measured (see below)".to_owned(), |q| format!("{q:.1}")),
        );
        let _ = writeln!(out, "\n{}", st.store_queries_note);
    }
}

pub fn print(s: &Streams) {
    for f in s
        .fanout
        .iter()
        .chain(s.under_load.as_ref().map(|u| &u.fanout))
    {
        println!(
            "stream {}: {} of {} subscribers, {} posts ({:.0}/s), {}/{} deliveries, {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from send p99 {:.2} ms), gaps {}, dup {}, missing {}, reconnects {}, errors {}; {}",
            f.name,
            f.connected,
            f.subscribers,
            f.posts,
            f.posts_per_s,
            f.deliveries,
            f.expected,
            f.deliveries_per_s,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.from_send_p99_ms,
            f.gaps,
            f.duplicates,
            f.missing,
            f.reconnects,
            f.errors,
            f.cpu.as_ref().map_or(String::new(), Cpu::cores)
        );
    }
    if let Some(u) = &s.under_load {
        println!(
            "creates with {} subscribers: {:.0} req/s (p99 {:.2} ms), without: {:.0} req/s (p99 {:.2} ms)",
            u.fanout.subscribers,
            u.with.throughput,
            u.with.p99_ms,
            u.without.throughput,
            u.without.p99_ms
        );
    }
    for i in &s.idle {
        println!(
            "idle {} over {} chats: {} of {} opened, RSS {} -> {} KB, {:.1} KB per connection{}",
            if i.stream {
                "streams"
            } else {
                "plain keep-alive connections"
            },
            i.chats,
            i.reached,
            i.wanted,
            i.rss_before_kb,
            i.rss_after_kb,
            i.per_connection_kb,
            i.stopped
                .as_ref()
                .map_or(String::new(), |s| format!(" (stopped: {s})"))
        );
    }
    if let Some(st) = &s.storm {
        println!(
            "reconnect storm: {} clients, {} chats, {} changes each: all caught up {}; {} reconnected, {} caught up, gaps {}, dup {}, missing {}, open retries {}, errors {}; accept queue overflows {}; {}",
            st.clients,
            st.chats,
            st.changes_per_chat,
            st.all_caught_up_s
                .map_or("NOT within the deadline".to_owned(), |s| format!("after {s:.2} s")),
            st.connected,
            st.caught_up,
            st.gaps,
            st.duplicates,
            st.missing,
            st.retries,
            st.errors,
            st.listen_overflows,
            st.cpu.cores()
        );
    }
}

/// Issue #12's targets for the embedded shape.
pub fn targets(s: &Streams, out: &mut Vec<Target>) {
    for f in s
        .fanout
        .iter()
        .chain(s.under_load.as_ref().map(|u| &u.fanout))
    {
        let whole = f.gaps == 0 && f.missing == 0 && f.duplicates == 0 && f.errors == 0;
        // The open loop's rate is set by the bench (subscribers × posts/s): the measured rate of
        // a run that delivered everything differs from it only by the edges of the window.
        let rate = f.offered_deliveries_per_s.unwrap_or(f.deliveries_per_s);
        out.push(Target {
            name: format!("stream delivery p99, {}", f.name),
            wanted: "<= 50 ms at >= 50 000 deliveries/s, every change delivered".into(),
            measured: format!(
                "p99 {:.2} ms at {:.0} deliveries/s{}; {} of {} delivered",
                f.p99_ms,
                f.deliveries_per_s,
                f.offered_deliveries_per_s
                    .map_or(String::new(), |o| format!(" ({o:.0} offered)")),
                f.deliveries,
                f.expected
            ),
            met: f.p99_ms <= 50.0 && rate >= 50_000.0 && whole,
        });
    }
    for i in s.idle.iter().filter(|i| !i.comparison) {
        out.push(Target {
            name: format!("memory per idle stream, {} wanted", i.wanted),
            wanted: "<= 20 KB per connection".into(),
            measured: format!(
                "{:.1} KB over {} connections{}",
                i.per_connection_kb,
                i.reached,
                if i.reached < i.wanted {
                    " (fewer than wanted)"
                } else {
                    ""
                }
            ),
            met: i.reached > 0 && i.per_connection_kb <= 20.0,
        });
    }
    if let Some(st) = &s.storm {
        out.push(Target {
            name: format!(
                "reconnect storm: {} clients, {} chats, {} changes each",
                st.clients, st.chats, st.changes_per_chat
            ),
            wanted: "every client caught up within 10 s".into(),
            measured: st.all_caught_up_s.map_or_else(
                || {
                    format!(
                        "{} of {} caught up within {:.0} s",
                        st.caught_up, st.clients, st.deadline_s
                    )
                },
                |t| format!("{t:.2} s"),
            ),
            met: st.all_caught_up_s.is_some_and(|t| t <= 10.0) && st.missing == 0,
        });
    }
}
