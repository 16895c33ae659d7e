//! The load harness still works: `bench --smoke` runs every scenario for a fraction of a second
//! at tiny scale against the real binary and writes its results. No timing is asserted.

use serde_json::Value;

#[tokio::test]
async fn bench_smoke_runs_every_scenario_without_duplicates() {
    let out = tempfile::tempdir().expect("temporary directory");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(out.path())
        .arg("--server-bin")
        .arg(crate::server_binary())
        .status()
        .await
        .expect("bench starts");
    assert!(status.success(), "bench --smoke failed: {status}");

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let report: Value = serde_json::from_str(&text).expect("results.json is JSON");
    let runs = report["runs"].as_array().expect("runs");
    let scenarios: Vec<&str> = runs.iter().filter_map(|m| m["scenario"].as_str()).collect();
    for wanted in [
        "create_spread",
        "create_hot",
        "create_chat",
        "read_one",
        "list_page",
        "search",
        "mixed",
    ] {
        assert!(
            scenarios.contains(&wanted),
            "{wanted} missing from {scenarios:?}"
        );
    }
    let all = [&report["ceiling"], &report["read_ceiling"]]
        .into_iter()
        .chain(runs)
        .chain(report["sweep"].as_array().expect("sweep"))
        .chain(report["growth"].as_array().expect("growth"));
    for m in all {
        assert!(
            m["ok"].as_u64().unwrap_or(0) > 0,
            "no successful request: {m}"
        );
        assert_eq!(m["errors"], 0, "errors: {m}");
        assert_eq!(m["duplicates"], 0, "duplicate numbers: {m}");
    }
    // Issue #11: history pages, the feed, deleting messages, deleting a chat under load.
    let history = &report["history"];
    let reads = history["reads"].as_array().expect("history reads");
    let kinds: Vec<&str> = reads
        .iter()
        .filter_map(|m| m["scenario"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "history_first",
            "history_latest",
            "history_deep",
            "history_since"
        ]
    );
    let deletion = &history["chat_deletion"];
    for m in reads.iter().chain([
        &history["deletes"],
        &deletion["without"],
        &deletion["during"],
    ]) {
        assert!(
            m["ok"].as_u64().unwrap_or(0) > 0,
            "no successful request: {m}"
        );
        assert_eq!(m["errors"], 0, "errors: {m}");
        assert_eq!(m["duplicates"], 0, "duplicate numbers: {m}");
    }
    assert_eq!(deletion["check_errors"], 0, "{deletion}");
    assert!(deletion["delete_answer_ms"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        deletion["purge_done_s"].is_f64(),
        "purge not seen: {deletion}"
    );
    // Issue #12: live streams. Every change reached every subscriber once, in order.
    let streams = &report["streams"];
    let fanout = streams["fanout"].as_array().expect("stream fan-out runs");
    assert!(!fanout.is_empty(), "no fan-out run: {streams}");
    let under_load = &streams["under_load"];
    for f in fanout.iter().chain([&under_load["fanout"]]) {
        assert!(
            f["deliveries"].as_u64().unwrap_or(0) > 0,
            "no delivery: {f}"
        );
        assert_eq!(f["deliveries"], f["expected"], "deliveries: {f}");
        assert_eq!(f["connected"], f["subscribers"], "streams not opened: {f}");
        for field in ["errors", "gaps", "duplicates", "missing", "unmatched"] {
            assert_eq!(f[field], 0, "{field}: {f}");
        }
    }
    for m in [&under_load["without"], &under_load["with"]] {
        assert!(
            m["ok"].as_u64().unwrap_or(0) > 0,
            "no successful request: {m}"
        );
        assert_eq!(m["errors"], 0, "errors: {m}");
        assert_eq!(m["duplicates"], 0, "duplicate numbers: {m}");
    }
    let idle = streams["idle"].as_array().expect("idle runs");
    assert!(!idle.is_empty());
    for i in idle {
        assert_eq!(
            i["reached"], i["wanted"],
            "idle streams not all opened: {i}"
        );
        assert!(i["rss_after_kb"].as_u64().unwrap_or(0) > 0, "{i}");
    }
    let storm = &streams["storm"];
    assert_eq!(storm["caught_up"], storm["clients"], "storm: {storm}");
    assert!(storm["all_caught_up_s"].is_f64(), "storm: {storm}");
    for field in ["errors", "gaps", "duplicates", "missing"] {
        assert_eq!(storm[field], 0, "storm {field}: {storm}");
    }
    assert!(!report["sqlite"].as_array().expect("sqlite").is_empty());
    assert!(!report["targets"].as_array().expect("targets").is_empty());
    for file in [
        "tables.md",
        "latency.png",
        "throughput_vs_offered.png",
        "growth.png",
    ] {
        let size = std::fs::metadata(out.path().join(file)).map_or(0, |m| m.len());
        assert!(size > 0, "{file} was not written");
    }
}

/// The scaled shape's smoke: the same scenarios against an API process and a worker on the
/// `CHAT_TEST_*` services (the bench uses that broker instead of starting tansu), and the
/// worker's persist rate beside the raw INSERT baseline. Zero errors and zero duplicates; no
/// timing is asserted.
#[tokio::test]
async fn bench_scaled_smoke_runs_every_scenario_without_duplicates() {
    let Some(services) = chat_harness::testing::services("bench_scaled_smoke") else {
        return;
    };
    let out = tempfile::tempdir().expect("temporary directory");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--shape", "scaled", "--smoke", "--out"])
        .arg(out.path())
        .arg("--server-bin")
        .arg(crate::server_binary())
        .args(["--mysql-url", &services.mysql])
        .args(["--redis-url", &services.redis])
        .args(["--kafka-brokers", &services.kafka])
        .status()
        .await
        .expect("bench starts");
    assert!(
        status.success(),
        "bench --shape scaled --smoke failed: {status}"
    );

    let text = std::fs::read_to_string(out.path().join("scaled.json")).expect("scaled.json");
    let report: Value = serde_json::from_str(&text).expect("scaled.json is JSON");
    let runs = report["runs"].as_array().expect("runs");
    let scenarios: Vec<&str> = runs.iter().filter_map(|m| m["scenario"].as_str()).collect();
    for wanted in [
        "create_spread",
        "create_hot",
        "create_chat",
        "read_one",
        "list_page",
        "search",
        "mixed",
    ] {
        assert!(
            scenarios.contains(&wanted),
            "{wanted} missing from {scenarios:?}"
        );
    }
    let persist = &report["persist"];
    let all = [&report["ceiling"], &report["read_ceiling"]]
        .into_iter()
        .chain(runs)
        .chain(report["sweep"].as_array().expect("sweep"))
        .chain(std::iter::once(&persist["api_create"]));
    for m in all {
        assert!(
            m["ok"].as_u64().unwrap_or(0) > 0,
            "no successful request: {m}"
        );
        assert_eq!(m["errors"], 0, "errors: {m}");
        assert_eq!(m["duplicates"], 0, "duplicate numbers: {m}");
    }
    assert!(persist["events"].as_u64().unwrap_or(0) > 0, "{persist}");
    assert!(!persist["raw"].as_array().expect("raw").is_empty());
    assert!(!report["targets"].as_array().expect("targets").is_empty());
    for file in ["scaled_tables.md", "scaled_latency.png"] {
        let size = std::fs::metadata(out.path().join(file)).map_or(0, |m| m.len());
        assert!(size > 0, "{file} was not written");
    }
}
