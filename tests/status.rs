//! `archy status` against real podman: a health check that is 0 only when converged.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

#[test]
fn converged_after_reconcile_and_not_after_a_container_is_stopped() {
    let root = TestRoot::new();
    root.simple_manifest("alpha", "");
    root.simple_manifest("beta", "");

    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "nothing runs yet: {out:?}");
    assert_eq!(app(&out.json(), "alpha")["state"], "missing");

    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    root.take_podman_calls();
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["converged"], true, "{doc}");
    for name in ["alpha", "beta"] {
        let a = app(&doc, name);
        assert_eq!(a["state"], "running", "{a}");
        assert_eq!(a["actual"], "running", "{a}");
        assert_eq!(a["owner"], "archy", "{a}");
        assert_eq!(a["image"], TEST_IMAGE, "{a}");
        assert_eq!(a["spec_hash_match"], true, "{a}");
        assert!(a["uptime_seconds"].as_u64().is_some(), "{a}");
        assert!(a["started_at"].as_str().is_some(), "{a}");
    }
    assert_eq!(doc["last_reconcile"]["result"], "ok", "{doc}");
    assert!(doc["last_reconcile"]["at"].as_str().is_some(), "{doc}");
    let calls = root.take_podman_calls();
    assert!(
        calls.iter().all(|c| c.starts_with("ps ")),
        "status only lists: {calls:?}"
    );

    // Text view: one line per app, then the summary.
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("status: converged"), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("alpha ") && l.contains(" running ")),
        "{out:?}"
    );

    root.podman_ok(&["stop", "-t", "0", "archy-alpha"]);
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["converged"], false);
    let a = app(&doc, "alpha");
    assert_eq!(a["state"], "exited", "{a}");
    assert_eq!(a["converged"], false, "{a}");
    assert_eq!(app(&doc, "beta")["state"], "running");
    assert_eq!(
        root.state("archy-alpha"),
        "exited",
        "status changes nothing"
    );

    // An orphan (manifest removed) is reported and keeps status non-zero.
    root.podman_ok(&["start", "archy-alpha"]);
    std::fs::remove_file(root.manifests.join("beta.yaml")).unwrap();
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(app(&out.json(), "beta")["state"], "orphan");
}

#[test]
fn pending_update_and_failed_heal_are_shown() {
    let root = TestRoot::empty();
    std::fs::create_dir_all(root.state_dir.join("update")).unwrap();
    std::fs::create_dir_all(root.state_dir.join("status")).unwrap();
    std::fs::write(
        root.state_dir.join("update/pending.json"),
        r#"{"version": "1.2.3"}"#,
    )
    .unwrap();
    std::fs::write(
        root.state_dir.join("status/heal-podman.json"),
        r#"{"exit_code": 1, "at": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "a failed heal is not healthy: {out:?}");
    let doc = out.json();
    assert_eq!(doc["pending_update"]["version"], "1.2.3");
    assert_eq!(doc["podman"]["result"], "failed");
    let out = root.archy(&["status"]);
    assert!(out.stdout.contains("pending 1.2.3"), "{out:?}");
    assert!(
        out.stdout
            .contains("last heal failed (at 2026-01-01T00:00:00Z)"),
        "{out:?}"
    );
}

/// A full reconcile recorded while the clock ran an hour ahead (an RTC-less board before NTP,
/// or a wrong manual setting), then the clock set right and reconcile stopped: status must
/// call it overdue, not read the future record's age as 0 forever.
#[test]
fn a_reconcile_record_dated_in_the_future_is_overdue() {
    let root = TestRoot::empty();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = |secs: u64| {
        let mut cmd = root.archy_cmd();
        cmd.env("ARCHY_NOW", secs.to_string());
        cmd
    };
    let out = Out::from(at(now + 3600).arg("reconcile").output().unwrap());
    assert_eq!(out.code, 0, "{out:?}");
    let out = Out::from(
        at(now)
            .args(["status", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    let overdue = out.json()["reconcile_overdue"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(overdue.contains("in the future"), "{overdue}");
    // A reconcile at the right time makes it current again.
    assert_eq!(
        Out::from(at(now).arg("reconcile").output().unwrap()).code,
        0
    );
    let out = Out::from(at(now + 30).arg("status").output().unwrap());
    assert_eq!(out.code, 0, "{out:?}");
}

/// Extreme `ARCHY_NOW` values are refused as bad input (exit 2, naming the variable), never a
/// panic.
#[test]
fn extreme_clock_overrides_are_refused_not_a_panic() {
    let root = TestRoot::empty();
    for value in [
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "-1",
        "9999999999999",
    ] {
        for args in [&["status"][..], &["reconcile"][..]] {
            let out = Out::from(
                root.archy_cmd()
                    .env("ARCHY_NOW", value)
                    .args(args)
                    .output()
                    .unwrap(),
            );
            assert_eq!(out.code, 2, "ARCHY_NOW={value} {args:?}: {out:?}");
            assert!(
                out.stderr.contains("ARCHY_NOW") && !out.stderr.contains("panicked"),
                "{out:?}"
            );
        }
    }
}
