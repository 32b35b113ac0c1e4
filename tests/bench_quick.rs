//! `scripts/bench --quick` runs end to end on real podman and writes its table. Never a timed
//! test: nothing here looks at a duration or a ratio.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;

use std::process::Command;

#[test]
fn bench_quick_completes_and_writes_the_table() {
    common::require_podman();
    let out_dir = tempfile::tempdir().unwrap();
    let report = out_dir.path().join("BENCHMARKS.md");
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench"))
        .args(["--quick", "--apps", "3", "--no-compose", "--archy"])
        .arg(env!("CARGO_BIN_EXE_archy"))
        .arg("--output")
        .arg(&report)
        .output()
        .expect("run scripts/bench");
    assert!(
        output.status.success(),
        "scripts/bench --quick failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for row in [
        "| no-op podman invocations (every run) | [1] |",
        "(a) no-op `archy reconcile`, 3 apps",
        "(c) archy peak RSS with fake podman",
        "(d) cold converge `archy reconcile --jobs 1`",
        "(e) one drifted app among 3",
        "(f) no-op `archy reconcile`, 3 apps each with an http or tcp probe",
        "| no-op with 3 http/tcp probes: podman invocations (every run) | [1] |",
        "| measurement | runs | min | median | max | unit |",
    ] {
        assert!(text.contains(row), "no `{row}` in:\n{text}");
    }
}
