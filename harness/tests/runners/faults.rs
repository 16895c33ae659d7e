//! The fault-injection runner (`harness/src/bin/faults`, RELIABILITY.md) in miniature: the embedded
//! shape, two `kill -9`s under load, then its checker. The full runs are in RELIABILITY.md.

use serde_json::Value;

#[tokio::test]
async fn the_fault_runner_finds_nothing_lost_or_duplicated_over_two_kills() {
    let test = "the_fault_runner_finds_nothing_lost_or_duplicated_over_two_kills";
    let why = "runs the embedded fault runner, as the embedded run did; the scaled one needs \
               private MariaDB, Redis and tansu servers and runs by hand (RELIABILITY.md)";
    if chat_harness::testing::embedded_only(test, why) {
        return;
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faults"))
        .args(["--shape", "embedded", "--faults", "2", "--writers", "4"])
        .args(["--max-pause-ms", "300", "--seed", "7", "--out"])
        .arg(out.path())
        .arg("--server-bin")
        .arg(crate::server_binary())
        .output()
        .await
        .expect("the runner starts");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let json = std::fs::read_to_string(out.path().join("embedded-seed7.json")).expect("results");
    let report: Value = serde_json::from_str(&json).expect("JSON results");
    assert_eq!(report["faults"]["injected"]["api"], 2, "{said}");
    let findings = &report["findings"];
    assert!(findings["acknowledged"].as_u64() > Some(0), "{said}");
    for zero in [
        "lost",
        "edits_lost",
        "chats_lost",
        "applications_lost",
        "duplicated",
        "order_violations",
        "count_mismatches",
    ] {
        assert_eq!(findings[zero], 0, "{zero}: {said}");
    }
    assert_eq!(
        report["faults"]["unexpected_exits"],
        serde_json::json!([]),
        "{said}"
    );
    assert_eq!(report["writer_failures"], serde_json::json!([]), "{said}");
}
