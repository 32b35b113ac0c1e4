//! A podman that never answers (issue 15): every command archy runs has a time limit; on expiry
//! its process group is killed, the command is named, that app (or the run) fails with exit 1
//! and the others continue; SIGTERM ends archy's children and releases its locks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::*;

/// A podman wrapper that hangs (`sleep 1000`, its pid written to `<dir>/hung.pid`) for the
/// commands `pattern` (a shell `case` pattern over "$*") matches, and runs podman otherwise.
fn hanging_podman(root: &TestRoot, pattern: &str) -> PathBuf {
    let path = root.dir.join("podman-hangs");
    let d = root.dir.display();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  {pattern}) echo $$ >> '{d}/hung.pid'; exec sleep 1000 ;;\nesac\nexec podman \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn hung_pids(root: &TestRoot) -> Vec<u32> {
    std::fs::read_to_string(root.dir.join("hung.pid"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Every hung child is gone (SIGKILL lands asynchronously: allow it a moment).
fn assert_hung_children_killed(root: &TestRoot) {
    let pids = hung_pids(root);
    assert!(!pids.is_empty(), "the wrapper never hung");
    for _ in 0..100 {
        if !pids.iter().any(|p| alive(*p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("hung podman children survived: {pids:?}");
}

fn archy_with(root: &TestRoot, podman: &Path, args: &[&str]) -> Out {
    Out::from(
        root.archy_cmd()
            .args(args)
            .env("ARCHY_PODMAN", podman)
            .output()
            .unwrap(),
    )
}

#[test]
fn podman_hangs_starting_one_app() {
    let mut case = Case::new(
        "engine: podman hangs creating/starting one app's container",
        "that command is killed with its process group at the app's stop timeout + margin and named; that app fails (exit 1); the other apps converge",
    );
    let root = TestRoot::new();
    // The limit is the app's stop timeout plus the margin: 1 s + 1 s for the hanging app, 600 s
    // + 1 s for the other one, so a slow machine never times out its real podman.
    root.simple_manifest("slow", "");
    root.manifest(
        "fast",
        &format!("app: fast\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 600\ncommand: [\"/bin/sleep\", \"3600\"]\n"),
    );
    let wrapper = hanging_podman(&root, "run*archy-slow*|start*archy-slow*");
    case.run();
    let out = archy_with(
        &root,
        &wrapper,
        &["reconcile", "--timeout-stop-margin", "1s"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.all()
            .contains("did not finish within its start/stop time limit")
            && out.all().contains("archy-slow"),
        "{out:?}"
    );
    assert_eq!(root.state("archy-fast"), "running", "{out:?}");
    assert_hung_children_killed(&root);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-slow"), "running");
    case.pass();
}

#[test]
fn podman_never_answers() {
    let mut case = Case::new(
        "engine: podman never answers (every command hangs)",
        "reconcile and heal-podman end at the listing time limit naming the command (exit 1, lock released); the hung children are killed",
    );
    let root = TestRoot::new();
    root.simple_manifest("app", "");
    let wrapper = hanging_podman(&root, "*");
    case.run();
    for args in [
        vec!["reconcile", "--timeout-listing", "1s"],
        vec!["heal-podman", "--timeout-listing", "1s"],
    ] {
        let out = archy_with(&root, &wrapper, &args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(
            out.all()
                .contains("did not finish within its listing time limit"),
            "{args:?}: {out:?}"
        );
        assert_hung_children_killed(&root);
    }
    // The locks are free again: a normal run converges without waiting.
    let out = root.archy(&["reconcile", "--lock-wait", "0"]);
    assert_eq!(out.code, 0, "{out:?}");
    case.pass();
}

#[test]
fn sigterm_ends_archys_children_and_releases_its_locks() {
    let mut case = Case::new(
        "archy: SIGTERM while a podman child hangs",
        "archy kills its children's process groups and exits 143; its locks are free",
    );
    let root = TestRoot::new();
    root.simple_manifest("app", "");
    let wrapper = hanging_podman(&root, "*");
    case.run();
    for signal in ["TERM", "INT"] {
        let _ = std::fs::remove_file(root.dir.join("hung.pid"));
        let mut child = root
            .archy_cmd()
            .args(["reconcile"])
            .env("ARCHY_PODMAN", &wrapper)
            .spawn()
            .unwrap();
        for _ in 0..400 {
            if !hung_pids(&root).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!hung_pids(&root).is_empty(), "podman child never started");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = child.wait().unwrap().code();
        assert_eq!(code, Some(if signal == "TERM" { 143 } else { 130 }));
        assert_hung_children_killed(&root);
        let out = root.archy(&["reconcile", "--lock-wait", "0"]);
        assert_eq!(out.code, 0, "{signal}: {out:?}");
    }
    case.pass();
}

#[test]
fn status_when_podman_never_answers() {
    let mut case = Case::new(
        "engine: podman never answers when `archy status` runs",
        "status answers within one listing time limit: says podman did not answer, shows the records, ok: false (exit 1)",
    );
    let root = TestRoot::new();
    root.simple_manifest("app", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let wrapper = hanging_podman(&root, "*");
    case.run();
    let out = archy_with(
        &root,
        &wrapper,
        &["status", "--timeout-listing", "1s", "--output", "json"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["ok"], false);
    let error = doc["podman_error"].as_str().unwrap();
    assert!(error.starts_with("podman did not answer"), "{error}");
    assert_eq!(
        doc["last_reconcile"]["result"], "ok",
        "records still shown: {doc}"
    );
    let text = archy_with(&root, &wrapper, &["status", "--timeout-listing", "1s"]);
    assert_eq!(text.code, 1, "{text:?}");
    assert!(text.stdout.contains("podman did not answer"), "{text:?}");
    assert_hung_children_killed(&root);
    case.pass();
}
