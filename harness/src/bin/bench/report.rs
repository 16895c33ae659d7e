//! What a run measured, as JSON (`results.json`) and as Markdown tables (`tables.md`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::Outcome;
use crate::scenario::Kind;

/// Quantiles kept for the latency plot.
pub const QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999];

#[derive(Serialize, Clone)]
pub struct Measurement {
    pub scenario: Kind,
    pub name: &'static str,
    /// "closed" or "open".
    pub mode: &'static str,
    pub connections: usize,
    /// Open loop: the offered rate (requests/s).
    pub offered: Option<f64>,
    /// Messages stored when the run started.
    pub stored: u64,
    pub throughput: f64,
    pub ok: u64,
    pub errors: u64,
    pub duplicates: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (quantile, milliseconds) for [`QUANTILES`].
    pub quantiles: Vec<(f64, f64)>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Measurement {
    pub fn new(
        scenario: Kind,
        mode: &'static str,
        connections: usize,
        offered: Option<f64>,
        stored: u64,
        outcome: &Outcome,
    ) -> Self {
        let at = |q: f64| ms(outcome.hist.value_at_quantile(q));
        Self {
            scenario,
            name: scenario.name(),
            mode,
            connections,
            offered,
            stored,
            throughput: outcome.throughput(),
            ok: outcome.ok,
            errors: outcome.errors,
            duplicates: outcome.duplicates,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(outcome.hist.max()),
            quantiles: QUANTILES.iter().map(|&q| (q, at(q))).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_before: String,
    pub load_after: String,
    /// Other cargo/rustc processes seen at the start or end of the run (the machine is shared).
    pub builds_running: Vec<String>,
}

#[derive(Serialize)]
pub struct SqliteCeiling {
    pub batch: usize,
    pub rows_per_s: f64,
}

#[derive(Serialize)]
pub struct Target {
    pub name: String,
    pub wanted: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Serialize)]
pub struct Report {
    pub smoke: bool,
    pub duration_s: f64,
    pub machine: Machine,
    /// The POST ceiling (a create-message request, a Message-sized 201).
    pub ceiling: Measurement,
    /// The GET ceiling (a read-one-message request, a Message-sized 200).
    pub read_ceiling: Measurement,
    pub sqlite: Vec<SqliteCeiling>,
    /// Mean group-commit batch of the create-message (1000 chats) run, from `/metrics`.
    pub mean_batch: f64,
    /// The full suite at the largest stage.
    pub runs: Vec<Measurement>,
    /// Open-loop create-message runs at fractions of the closed-loop maximum.
    pub sweep: Vec<Measurement>,
    /// Create and read at every stage.
    pub growth: Vec<Measurement>,
    pub search_chat_messages: u64,
    /// History pages, the feed and deletions (issue #11); absent when not run.
    pub history: Option<History>,
    /// Live streams (issue #12); absent when not run.
    pub streams: Option<crate::streams_report::Streams>,
    pub targets: Vec<Target>,
}

/// Issue #11's scenarios, on the big chat (the search chat: a tenth of the stored messages,
/// numbered 1..=N with revision = number).
#[derive(Serialize)]
pub struct History {
    /// Messages in the big chat.
    pub chat_messages: u64,
    /// The first page (the baseline), the latest page, a deep page and the feed near the end,
    /// each closed loop, interleaved (see `history.rs`).
    pub reads: Vec<Measurement>,
    /// DELETE of messages at the closed-loop maximum, each once.
    pub deletes: Option<Measurement>,
    /// The create load in other chats while the big chat is deleted.
    pub chat_deletion: Option<ChatDeletion>,
}

impl History {
    /// `m`'s throughput over the first page's (the baseline of the same run).
    pub fn ratio(&self, m: &Measurement) -> Option<f64> {
        let first = self
            .reads
            .iter()
            .find(|r| r.scenario == Kind::HistoryFirst)?;
        Some(m.throughput / first.throughput.max(1e-9))
    }
}

#[derive(Serialize)]
pub struct ChatDeletion {
    /// Messages the deleted chat held.
    pub chat_messages: u64,
    /// Seconds of each of the two runs.
    pub window_s: f64,
    /// Create-message requests/s offered (half the closed-loop maximum), open loop.
    pub offered: f64,
    /// The open-loop create load alone, just before.
    pub without: Measurement,
    /// The same load during the `window_s` seconds from the chat's DELETE.
    pub during: Measurement,
    /// How long the DELETE took to answer (`204`).
    pub delete_answer_ms: f64,
    /// From the DELETE until the server marked the chat purged (its last message erased);
    /// `None`: not within the time the bench waited.
    pub purge_done_s: Option<f64>,
    /// Wrong answers around the deletion: the DELETE not `204`, or the chat or one of its
    /// messages still answering after it.
    pub check_errors: u64,
}

impl Report {
    pub fn find(&self, kind: Kind) -> Option<&Measurement> {
        self.runs.iter().find(|m| m.scenario == kind)
    }
}

/// The two ceilings of a run: reads are compared with the GET one, everything else (writes, the
/// mixed scenario) with the POST one.
#[derive(Clone, Copy)]
pub struct Ceilings {
    pub post: f64,
    pub get: f64,
}

impl Ceilings {
    pub fn of(post: &Measurement, get: &Measurement) -> Self {
        Self {
            post: post.throughput.max(1e-9),
            get: get.throughput.max(1e-9),
        }
    }

    /// `m`'s throughput as a fraction of its ceiling.
    pub fn ratio(&self, m: &Measurement) -> f64 {
        let reads = [
            Kind::ReadOne,
            Kind::ListPage,
            Kind::Search,
            Kind::CeilingRead,
            Kind::HistoryFirst,
            Kind::HistoryLatest,
            Kind::HistoryDeep,
            Kind::HistorySince,
        ];
        let ceiling = if reads.contains(&m.scenario) {
            self.get
        } else {
            self.post
        };
        m.throughput / ceiling
    }
}

/// One scenario's line of a table under [`HEADER`].
pub fn row(out: &mut String, m: &Measurement, ceiling: Ceilings) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
        m.name,
        m.stored,
        m.offered
            .map_or("closed".to_owned(), |o| format!("{o:.0}/s")),
        m.throughput,
        ceiling.ratio(m),
        m.p50_ms,
        m.p90_ms,
        m.p99_ms,
        m.p999_ms,
        m.errors,
        m.duplicates,
    );
}

pub const HEADER: &str = "| scenario | stored | offered | req/s | × ceiling | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | duplicates |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

/// A heading, then the targets with what was measured and whether each was met.
pub fn targets_table(out: &mut String, heading: &str, targets: &[Target]) {
    let _ = writeln!(
        out,
        "{heading}\n\n| target | wanted | measured | met |\n| --- | --- | --- | --- |"
    );
    for t in targets {
        let met = if t.met { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            t.name, t.wanted, t.measured
        );
    }
}

/// The tables of BENCHMARKS.md, generated so that no figure is copied by hand.
pub fn markdown(report: &Report) -> String {
    let ceiling = Ceilings::of(&report.ceiling, &report.read_ceiling);
    let mut out = String::new();
    targets_table(&mut out, "### Targets", &report.targets);
    let _ = writeln!(out, "\n### Ceilings (same run, same machine)\n");
    out.push_str(HEADER);
    row(&mut out, &report.ceiling, ceiling);
    row(&mut out, &report.read_ceiling, ceiling);
    let _ = writeln!(
        out,
        "\n| raw SQLite batch (rows per transaction) | rows/s | create message req/s ÷ this |\n| ---: | ---: | ---: |"
    );
    let create = report
        .find(Kind::CreateSpread)
        .map_or(0.0, |m| m.throughput);
    for s in &report.sqlite {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} |",
            s.batch,
            s.rows_per_s,
            create / s.rows_per_s.max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "\nMean group-commit batch during the create-message run: {:.1} messages.",
        report.mean_batch
    );
    let _ = writeln!(
        out,
        "\n### Scenarios ({} messages stored, search chat holds {})\n",
        report.runs.first().map_or(0, |m| m.stored),
        report.search_chat_messages
    );
    out.push_str(HEADER);
    for m in &report.runs {
        row(&mut out, m, ceiling);
    }
    let _ = writeln!(
        out,
        "\n### Open loop: create message at fractions of its maximum\n"
    );
    out.push_str(HEADER);
    for m in &report.sweep {
        row(&mut out, m, ceiling);
    }
    let _ = writeln!(out, "\n### Growth\n");
    out.push_str(HEADER);
    for m in &report.growth {
        row(&mut out, m, ceiling);
    }
    if let Some(history) = &report.history {
        history_markdown(&mut out, history, ceiling);
    }
    if let Some(streams) = &report.streams {
        crate::streams_report::markdown(&mut out, streams);
    }
    out
}

/// Issue #11's tables: the pages beside the first page, deletions, a chat deleted under load.
fn history_markdown(out: &mut String, history: &History, ceiling: Ceilings) {
    let _ = writeln!(
        out,
        "\n### History, feed and deletion (chat of {} messages, {} stored)\n",
        history.chat_messages,
        history.reads.first().map_or(0, |m| m.stored)
    );
    let _ = writeln!(
        out,
        "| scenario | req/s | × first page | p50 ms | p99 ms | p99.9 ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for m in &history.reads {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            m.name,
            m.throughput,
            history.ratio(m).unwrap_or(0.0),
            m.p50_ms,
            m.p99_ms,
            m.p999_ms,
            m.errors
        );
    }
    if let Some(deletes) = &history.deletes {
        let _ = writeln!(out, "\nDeleting messages (each once, closed loop):\n");
        out.push_str(HEADER);
        row(out, deletes, ceiling);
    }
    if let Some(d) = &history.chat_deletion {
        let _ = writeln!(
            out,
            "\nCreate message in other chats at {:.0}/s offered (half the maximum, open loop), {:.1} s each, without and from the DELETE of a chat of {} messages:\n",
            d.offered, d.window_s, d.chat_messages
        );
        let _ = writeln!(
            out,
            "| create load | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (label, m) in [
            ("without a deletion", &d.without),
            ("from the chat's DELETE", &d.during),
        ] {
            let _ = writeln!(
                out,
                "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                m.throughput, m.p50_ms, m.p99_ms, m.p999_ms, m.max_ms, m.errors
            );
        }
        let purge = d
            .purge_done_s
            .map_or("not within the wait".to_owned(), |s| format!("{s:.3} s"));
        let _ = writeln!(
            out,
            "\n| chat deletion | value |\n| --- | ---: |\n| DELETE answered in | {:.2} ms |\n| purge finished (chat marked purged) after the DELETE | {purge} |\n| wrong answers around the deletion | {} |",
            d.delete_answer_ms, d.check_errors
        );
    }
}

/// A plain-text table for the terminal.
pub fn print(report: &Report) {
    let ceiling = Ceilings::of(&report.ceiling, &report.read_ceiling);
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>7} {:>8} {:>8} {:>8} {:>9} {:>5} {:>5}",
        "scenario",
        "stored",
        "offered",
        "req/s",
        "x ceil",
        "p50ms",
        "p90ms",
        "p99ms",
        "p99.9ms",
        "err",
        "dup"
    );
    let all = [&report.ceiling, &report.read_ceiling]
        .into_iter()
        .chain(&report.runs)
        .chain(&report.sweep)
        .chain(&report.growth);
    for m in all {
        println!(
            "{:<34} {:>9} {:>9} {:>10.0} {:>7.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>5} {:>5}",
            m.name,
            m.stored,
            m.offered.map_or("closed".to_owned(), |o| format!("{o:.0}")),
            m.throughput,
            ceiling.ratio(m),
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.p999_ms,
            m.errors,
            m.duplicates
        );
    }
    if let Some(history) = &report.history {
        for m in &history.reads {
            println!(
                "{:<34} {:>10.0} req/s, x first page {:>5.2}, p99 {:>8.2} ms, err {}",
                m.name,
                m.throughput,
                history.ratio(m).unwrap_or(0.0),
                m.p99_ms,
                m.errors
            );
        }
        if let Some(m) = &history.deletes {
            println!(
                "{:<34} {:>10.0} req/s ({} deleted), p99 {:>8.2} ms, err {}",
                m.name, m.throughput, m.ok, m.p99_ms, m.errors
            );
        }
        if let Some(d) = &history.chat_deletion {
            println!(
                "chat of {} deleted under {:.0} creates/s: DELETE answered in {:.2} ms, purge done {}; creates p99 {:.2} ms, max {:.2} ms (without: p99 {:.2} ms, max {:.2} ms); {} wrong answers",
                d.chat_messages,
                d.offered,
                d.delete_answer_ms,
                d.purge_done_s
                    .map_or("not within the wait".to_owned(), |s| format!("after {s:.3} s")),
                d.during.p99_ms,
                d.during.max_ms,
                d.without.p99_ms,
                d.without.max_ms,
                d.check_errors
            );
        }
    }
    if let Some(streams) = &report.streams {
        crate::streams_report::print(streams);
    }
    for s in &report.sqlite {
        println!(
            "raw sqlite batch {:>5}: {:>10.0} rows/s",
            s.batch, s.rows_per_s
        );
    }
    for t in &report.targets {
        println!(
            "target {}: wanted {}, measured {} -> {}",
            t.name,
            t.wanted,
            t.measured,
            if t.met { "met" } else { "MISSED" }
        );
    }
}

/// The targets, judged on this run's figures.
pub fn targets(report: &Report, largest_stage: u64) -> Vec<Target> {
    let ceiling = report.ceiling.throughput.max(1e-9);
    let mut out = Vec::new();
    if let Some(create) = report.find(Kind::CreateSpread) {
        let ratio = create.throughput / ceiling;
        out.push(Target {
            name: "create-message throughput (full durability)".into(),
            wanted: ">= 0.40 x axum ceiling".into(),
            measured: format!(
                "{ratio:.2} x ({:.0} of {ceiling:.0} req/s)",
                create.throughput
            ),
            met: ratio >= 0.40,
        });
    }
    if let Some(half) = report.sweep.iter().find(|m| {
        m.offered
            .is_some_and(|o| (o / report.sweep_max() - 0.5).abs() < 0.01)
    }) {
        out.push(Target {
            name: "create-message p99 at half the maximum throughput".into(),
            wanted: "<= 10 ms".into(),
            measured: format!(
                "{:.2} ms at {:.0} req/s offered",
                half.p99_ms,
                half.offered.unwrap_or(0.0)
            ),
            met: half.p99_ms <= 10.0,
        });
    }
    if let Some(read) = report.find(Kind::ReadOne) {
        let get = report.read_ceiling.throughput.max(1e-9);
        let ratio = read.throughput / get;
        out.push(Target {
            name: "read-one-message throughput".into(),
            wanted: ">= 0.60 x axum GET ceiling".into(),
            measured: format!("{ratio:.2} x ({:.0} of {get:.0} req/s)", read.throughput),
            met: ratio >= 0.60,
        });
    }
    let search_open = report
        .runs
        .iter()
        .find(|m| m.scenario == Kind::Search && m.mode == "open");
    if let Some(search) = search_open {
        out.push(Target {
            name: format!(
                "search p99, chat of {} messages, {} stored",
                report.search_chat_messages, largest_stage
            ),
            wanted: "<= 20 ms (chat of 100 000, 1 000 000 stored)".into(),
            measured: format!(
                "{:.2} ms at {:.0} req/s offered (half its maximum)",
                search.p99_ms,
                search.offered.unwrap_or(0.0)
            ),
            met: search.p99_ms <= 20.0,
        });
    }
    if let Some(history) = &report.history {
        let stored = history.reads.first().map_or(0, |m| m.stored);
        for m in &history.reads {
            if m.scenario == Kind::HistoryFirst {
                continue;
            }
            let ratio = history.ratio(m).unwrap_or(0.0);
            out.push(Target {
                name: format!(
                    "{}, chat of {} messages, {stored} stored",
                    m.name, history.chat_messages
                ),
                wanted: ">= 0.90 x first page (same run; chat of 100 000, 1 000 000 stored)".into(),
                measured: format!(
                    "{ratio:.2} x ({:.0} req/s, p99 {:.2} ms)",
                    m.throughput, m.p99_ms
                ),
                met: ratio >= 0.90,
            });
        }
    }
    if let Some(streams) = &report.streams {
        crate::streams_report::targets(streams, &mut out);
    }
    out
}

impl Report {
    /// The closed-loop create-message maximum the sweep's offered rates are fractions of.
    pub fn sweep_max(&self) -> f64 {
        self.find(Kind::CreateSpread)
            .map_or(1.0, |m| m.throughput.max(1e-9))
    }
}
