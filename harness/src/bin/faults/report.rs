//! What a run found, per shape: printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::check::Findings;
use crate::streams::StreamFindings;

/// The faults of one shape as they were injected, and how long the service took to answer
/// again after each.
#[derive(Debug, Default, Serialize)]
pub struct FaultLog {
    /// Faults injected, by kind ("api", "worker", "redis", "broker", "mariadb").
    pub injected: BTreeMap<String, usize>,
    /// In injection order: (kind, recovery in ms, or None if not within the bound).
    pub sequence: Vec<(String, Option<u64>)>,
    /// Processes found dead that the runner had not killed (restarted when found): each
    /// fails the run.
    pub unexpected_exits: Vec<String>,
    /// After each unrecovered fault the API processes are restarted (as an operator would):
    /// how long until the service answered after that restart (ms), or None.
    pub operator_restarts: Vec<Option<u64>>,
}

impl FaultLog {
    pub fn record(&mut self, kind: &str, recovery: Option<Duration>) {
        *self.injected.entry(kind.to_owned()).or_default() += 1;
        let ms = recovery.map(|d| d.as_millis() as u64);
        self.sequence.push((kind.to_owned(), ms));
        match ms {
            Some(ms) => eprintln!(
                "  fault {} {kind}: answering again after {ms} ms",
                self.sequence.len()
            ),
            None => eprintln!(
                "  fault {} {kind}: NOT answering within the bound",
                self.sequence.len()
            ),
        }
    }

    fn recoveries(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.sequence.iter().filter_map(|(_, ms)| *ms).collect();
        all.sort_unstable();
        all
    }

    pub fn unrecovered(&self) -> usize {
        self.sequence.iter().filter(|(_, ms)| ms.is_none()).count()
    }
}

#[derive(Debug, Serialize)]
pub struct ShapeReport {
    pub shape: String,
    /// The fault kinds this run drew from.
    pub kinds: Vec<String>,
    pub seed: u64,
    pub writers: usize,
    pub recovery_bound_s: u64,
    pub duration_s: f64,
    pub drain_s: f64,
    pub faults: FaultLog,
    pub recovery_ms_min: Option<u64>,
    pub recovery_ms_median: Option<u64>,
    pub recovery_ms_max: Option<u64>,
    /// Attempts that were not acknowledged, by operation and kind (status code, "connection",
    /// "timeout").
    pub unacknowledged_attempts: BTreeMap<String, u64>,
    /// Refusals the writers expected, by kind (an edit's `404` of a message a deletion was
    /// sent for): not failures.
    pub expected_refusals: BTreeMap<String, u64>,
    /// Writers that panicked (with the message) or did not stop: the load was not what it
    /// claims, so the run fails.
    pub writer_failures: Vec<String>,
    pub findings: Findings,
    /// What the stream subscribers received, held against the store and the ledger.
    pub streams: StreamFindings,
}

impl ShapeReport {
    pub fn new(
        shape: &str,
        seed: u64,
        writers: usize,
        bound: Duration,
        faults: FaultLog,
        finished: (BTreeMap<String, u64>, Vec<String>),
        findings: Findings,
    ) -> Self {
        let (failures, writer_failures) = finished;
        let recoveries = faults.recoveries();
        Self {
            shape: shape.to_owned(),
            kinds: vec!["api".to_owned()],
            seed,
            writers,
            recovery_bound_s: bound.as_secs(),
            duration_s: 0.0,
            drain_s: 0.0,
            recovery_ms_min: recoveries.first().copied(),
            recovery_ms_median: recoveries.get(recoveries.len() / 2).copied(),
            recovery_ms_max: recoveries.last().copied(),
            faults,
            unacknowledged_attempts: failures,
            expected_refusals: BTreeMap::new(),
            writer_failures,
            findings,
            streams: StreamFindings::default(),
        }
    }

    /// Nothing lost (messages, edits, chats, applications), no acknowledged deletion undone,
    /// nothing duplicated, in order, the changes feed consistent with itself and the other
    /// views, counts right, every fault recovered, no process died without being killed, no
    /// writer panicked, every stream subscriber got every change once and in order.
    pub fn passed(&self) -> bool {
        let f = &self.findings;
        f.lost == 0
            && f.deletes_undone == 0
            && f.feed_violations == 0
            && f.view_mismatches == 0
            && f.chats_lost == 0
            && f.applications_lost == 0
            && f.duplicated == 0
            && f.order_violations == 0
            && f.count_mismatches == 0
            && self.faults.unrecovered() == 0
            && self.faults.unexpected_exits.is_empty()
            && self.writer_failures.is_empty()
            && self.streams.passed()
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(
        || "-".to_owned(),
        |ms| format!("{:.2} s", ms as f64 / 1000.0),
    )
}

/// The summary table, one row per shape.
pub fn table(reports: &[ShapeReport]) -> String {
    let mut out = String::from(
        "| shape | faults (by kind) | acknowledged | lost | edits / chats / applications acknowledged (lost) | deletes acknowledged / unknown (undone) | feed entries (violations / view mismatches) | duplicated | order violations | count mismatches (before / after sync-counts) | stream subscribers / events / reconnects | stream violations / missing / store mismatches (behind) | recovery min / median / max | unrecovered | unexpected exits / writer failures | verdict |\n\
         | --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: | --- | --- |\n",
    );
    for r in reports {
        let kinds: Vec<String> = r
            .faults
            .injected
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let total: usize = r.faults.injected.values().sum();
        let f = &r.findings;
        out.push_str(&format!(
            "| {} | {total}: {} | {} | {} | {} ({}) / {} ({}) / {} ({}) | {} / {} ({}) | {} ({} / {}) | {} | {} | {} / {} | {} / {} / {} | {} / {} / {} ({}) | {} / {} / {} | {} | {} / {} | {} |\n",
            r.shape,
            kinds.join(", "),
            f.acknowledged,
            f.lost,
            f.edits_acknowledged,
            f.edits_lost,
            f.chats_acknowledged,
            f.chats_lost,
            f.applications_acknowledged,
            f.applications_lost,
            f.deletes_acknowledged,
            f.deletes_attempted - f.deletes_acknowledged,
            f.deletes_undone,
            f.feed_entries,
            f.feed_violations,
            f.view_mismatches,
            f.duplicated,
            f.order_violations,
            f.count_mismatches_before_sync,
            f.count_mismatches,
            r.streams.subscribers,
            r.streams.events,
            r.streams.reconnects,
            r.streams.violations,
            r.streams.missing,
            r.streams.mismatches,
            r.streams.behind,
            ms(r.recovery_ms_min),
            ms(r.recovery_ms_median),
            ms(r.recovery_ms_max),
            r.faults.unrecovered(),
            r.faults.unexpected_exits.len(),
            r.writer_failures.len(),
            if r.passed() { "pass" } else { "FAIL" },
        ));
    }
    out
}

pub fn write_json(dir: &Path, report: &ShapeReport) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let all = crate::scaled::KINDS.len();
    let name = if report.shape == "scaled" && report.kinds.len() < all {
        format!(
            "{}-{}-seed{}.json",
            report.shape,
            report.kinds.join("+"),
            report.seed
        )
    } else {
        format!("{}-seed{}.json", report.shape, report.seed)
    };
    let path = dir.join(name);
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, json + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
