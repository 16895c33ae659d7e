//! What a scaled-shape run measured: `scaled.json` and `scaled_tables.md`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::mysql::RawInsert;
use crate::report::{row, targets_table, Ceilings, Machine, Measurement, Target, HEADER};

/// The worker's persist rate: N events waiting in the broker, one worker started.
#[derive(Serialize)]
pub struct Persist {
    /// Messages created through the API while no worker ran (they waited in the broker).
    pub events: u64,
    /// The API creating them with no worker running.
    pub api_create: Measurement,
    /// From the worker's start until all the events were in MariaDB.
    pub seconds: f64,
    /// From its start until the first of them was in MariaDB (connecting, fetching).
    pub first_row_s: f64,
    pub events_per_s: f64,
    /// Events per second from the first stored row to the last.
    pub steady_events_per_s: f64,
    /// Batches the worker stored meanwhile (from its debug log) and their mean size.
    pub batches: u64,
    pub mean_batch: f64,
    /// What MariaDB counted while the worker stored them (its polls by the bench included).
    pub statements: Vec<(String, u64)>,
    /// The raw multi-row INSERT baselines (first: the worker's configured batch).
    pub raw: Vec<RawInsert>,
    /// events_per_s ÷ the baseline at the worker's configured batch.
    pub ratio: f64,
}

/// Seconds the worker needed after a scenario to store what it created.
#[derive(Serialize)]
pub struct Drain {
    pub after: String,
    pub seconds: f64,
}

#[derive(Serialize)]
pub struct ScaledReport {
    pub smoke: bool,
    pub duration_s: f64,
    pub machine: Machine,
    /// What ran: processes, broker, services.
    pub setup: Vec<String>,
    /// MariaDB's version and durability settings.
    pub mariadb: Vec<(String, String)>,
    /// The POST ceiling (a create-message request, a Message-sized 201).
    pub ceiling: Measurement,
    /// The GET ceiling (a read-one-message request, a Message-sized 200).
    pub read_ceiling: Measurement,
    pub stored: u64,
    pub search_chat_messages: u64,
    pub runs: Vec<Measurement>,
    pub sweep: Vec<Measurement>,
    pub drains: Vec<Drain>,
    pub persist: Persist,
    pub targets: Vec<Target>,
}

pub fn targets(persist: &Persist) -> Vec<Target> {
    let raw = persist.raw.first().map_or(0.0, |r| r.rows_per_s);
    let batch = persist.raw.first().map_or(0, |r| r.batch);
    vec![Target {
        name: "worker persist rate (scaled shape)".into(),
        wanted: ">= 0.70 x raw multi-row INSERT into the same MariaDB".into(),
        measured: format!(
            "{:.2} x ({:.0} events/s of {raw:.0} rows/s at {batch} rows per transaction)",
            persist.ratio, persist.events_per_s
        ),
        met: persist.ratio >= 0.70,
    }]
}

/// The scaled tables of BENCHMARKS.md, generated.
pub fn markdown(report: &ScaledReport) -> String {
    let ceiling = Ceilings::of(&report.ceiling, &report.read_ceiling);
    let mut out = String::new();
    let _ = writeln!(out, "### Scaled shape: what ran\n");
    for line in &report.setup {
        let _ = writeln!(out, "- {line}");
    }
    let settings: Vec<String> = report
        .mariadb
        .iter()
        .map(|(k, v)| format!("`{k}` = {v}"))
        .collect();
    let _ = writeln!(out, "- MariaDB: {}", settings.join(", "));
    let _ = writeln!(
        out,
        "- Load average {} before, {} after.",
        report.machine.load_before, report.machine.load_after
    );
    targets_table(&mut out, "\n### Scaled shape: targets", &report.targets);
    let _ = writeln!(
        out,
        "\n### Scaled shape: scenarios ({} messages stored, search chat holds {})\n",
        report.stored, report.search_chat_messages
    );
    out.push_str(HEADER);
    row(&mut out, &report.ceiling, ceiling);
    row(&mut out, &report.read_ceiling, ceiling);
    for m in &report.runs {
        row(&mut out, m, ceiling);
    }
    let _ = writeln!(
        out,
        "\n### Scaled shape: open loop, create message at fractions of its maximum\n"
    );
    out.push_str(HEADER);
    for m in &report.sweep {
        row(&mut out, m, ceiling);
    }
    let _ = writeln!(
        out,
        "\n### Scaled shape: the worker catching up after each writing scenario\n\n| after | seconds until all stored |\n| --- | ---: |"
    );
    for d in &report.drains {
        let _ = writeln!(out, "| {} | {:.2} |", d.after, d.seconds);
    }
    persist_markdown(&mut out, &report.persist, ceiling);
    out
}

fn persist_markdown(out: &mut String, p: &Persist, ceiling: Ceilings) {
    let _ = writeln!(
        out,
        "\n### Scaled shape: worker persist rate\n\n{} messages created through the API with the worker stopped:\n",
        p.events
    );
    out.push_str(HEADER);
    row(out, &p.api_create, ceiling);
    let _ = writeln!(
        out,
        "\n| measure | value |\n| --- | ---: |\n\
         | worker: start to all {} stored | {:.2} s |\n\
         | worker: start to first stored | {:.2} s |\n\
         | worker persist rate (from its start) | {:.0} events/s |\n\
         | worker persist rate (first to last stored) | {:.0} events/s |\n\
         | batches stored, mean size | {}, {:.0} events |",
        p.events,
        p.seconds,
        p.first_row_s,
        p.events_per_s,
        p.steady_events_per_s,
        p.batches,
        p.mean_batch
    );
    let _ = writeln!(
        out,
        "\n| raw multi-row INSERT, rows per transaction | rows | seconds | rows/s | worker ÷ this |\n| ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &p.raw {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {:.2} |",
            r.batch,
            r.rows,
            r.seconds,
            r.rows_per_s,
            p.events_per_s / r.rows_per_s.max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "\nMariaDB's counters (`SHOW GLOBAL STATUS`) during each, per 1 000 rows stored \
         (the worker's include the bench's polls, one `SELECT` every 20 ms):\n"
    );
    let mut names: Vec<&str> = p.statements.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let _ = writeln!(out, "| work | {} |", names.join(" | "));
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(names.len()));
    let per_thousand = |counters: &[(String, u64)], rows: u64| -> String {
        names
            .iter()
            .map(|name| {
                let value = counters
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, v)| *v);
                format!("{:.1}", value as f64 * 1000.0 / rows.max(1) as f64)
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let _ = writeln!(
        out,
        "| worker | {} |",
        per_thousand(&p.statements, p.events)
    );
    for r in &p.raw {
        let _ = writeln!(
            out,
            "| raw INSERT, {} rows per transaction | {} |",
            r.batch,
            per_thousand(&r.statements, r.rows)
        );
    }
}

/// A plain-text summary for the terminal.
pub fn print(report: &ScaledReport) {
    let ceiling = Ceilings::of(&report.ceiling, &report.read_ceiling);
    println!("scaled shape ({} stored)", report.stored);
    let all = [&report.ceiling, &report.read_ceiling]
        .into_iter()
        .chain(&report.runs)
        .chain(&report.sweep)
        .chain(std::iter::once(&report.persist.api_create));
    for m in all {
        println!(
            "{:<34} {:>9} {:>10.0} {:>7.2} {:>8.2} {:>8.2} {:>5} {:>5}",
            m.name,
            m.offered.map_or("closed".to_owned(), |o| format!("{o:.0}")),
            m.throughput,
            ceiling.ratio(m),
            m.p50_ms,
            m.p99_ms,
            m.errors,
            m.duplicates
        );
    }
    let p = &report.persist;
    println!(
        "worker persist: {} events in {:.2} s = {:.0} events/s (mean batch {:.0})",
        p.events, p.seconds, p.events_per_s, p.mean_batch
    );
    for r in &p.raw {
        println!(
            "raw INSERT batch {:>5}: {:>10.0} rows/s",
            r.batch, r.rows_per_s
        );
    }
    for t in &report.targets {
        let verdict = if t.met { "met" } else { "MISSED" };
        println!(
            "target {}: wanted {}, measured {} -> {verdict}",
            t.name, t.wanted, t.measured
        );
    }
}
