//! Clock and probe faults (issue 29): the wall clock stepped forward and set back under the
//! health ladder and `archy status`, and an `exec:` probe that never ends.

use std::net::TcpListener;

use crate::common::*;
use crate::support::*;

fn reconcile_at(root: &TestRoot, wall: u64, boot: u64) -> Out {
    Out::from(
        root.archy_cmd()
            .env("ARCHY_NOW", wall.to_string())
            .env("ARCHY_BOOTTIME", boot.to_string())
            .args(["reconcile", "--output", "json"])
            .output()
            .unwrap(),
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn clock_stepped_forward_then_set_back() {
    let mut case = Case::new(
        "clock: stepped forward (NTP on an RTC-less board) during a start period, later set back",
        "start period and back-off move with the step (boot id + CLOCK_BOOTTIME): no restart at the step; a completion dated in the future makes status exit 1 until a tick at the right time",
    );
    let root = TestRoot::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    root.simple_manifest(
        "svc",
        &format!("health:\n  tcp: 127.0.0.1:{port}\n  failures: 1\n  start_period: 10m\n"),
    );
    for step in [600u64, 3_600, 86_400].into_iter().take(iterations(1, 3)) {
        case.run();
        let _ = root.podman(&["rm", "-f", "-t", "0", "archy-svc"]);
        let _ = std::fs::remove_dir_all(root.state_dir.join("health"));
        let t0 = now_secs() - 86_400 * 2;
        let action = |out: &Out| {
            assert_eq!(out.code, 0, "{out:?}");
            app(&out.json(), "svc")["action"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(action(&reconcile_at(&root, t0, 100)), "create");
        assert_eq!(action(&reconcile_at(&root, t0 + 30, 130)), "ok");
        assert_eq!(
            action(&reconcile_at(&root, t0 + step + 60, 160)),
            "ok",
            "step {step}: not restarted at the step"
        );
        assert_eq!(
            action(&reconcile_at(&root, t0 + step + 620, 720)),
            "restart",
            "step {step}: acted on once 10 real minutes passed"
        );
        // The clock ran ahead for the last tick; set right, the completion is in the future.
        let ahead = now_secs() + step;
        assert_eq!(
            Out::from(
                root.archy_cmd()
                    .env("ARCHY_NOW", ahead.to_string())
                    .arg("reconcile")
                    .output()
                    .unwrap()
            )
            .code,
            0
        );
        let status = root.archy(&["status", "--output", "json"]);
        assert_eq!(status.code, 1, "{status:?}");
        assert!(
            status.json()["reconcile_overdue"]
                .as_str()
                .unwrap_or_default()
                .contains("in the future"),
            "{status:?}"
        );
        assert_eq!(root.archy(&["reconcile"]).code, 0);
        let status = root.archy(&["status", "--output", "json"]);
        assert!(status.json()["reconcile_overdue"].is_null(), "{status:?}");
        case.pass();
    }
}

#[test]
fn exec_probe_never_ends() {
    let mut case = Case::new(
        "health: an `exec:` probe that never ends (`sleep 1000`), every tick",
        "at its 10 s deadline the exec session's process is killed too (found through its conmon), and none starts beside a live one: `podman top` shows no probe left, no exec conmon stays",
    );
    let root = TestRoot::new();
    root.simple_manifest(
        "slow",
        "health:\n  exec: [\"/bin/sleep\", \"1000\"]\n  failures: 100\n  start_period: 0\n",
    );
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    let conmons = conmons_under(&root.dir).len();
    for tick in 0..iterations(3, 6) {
        case.run();
        let out = root.archy(&["reconcile"]);
        assert_eq!(out.code, 0, "{out:?}");
        let top = root.podman_ok(&["top", "archy-slow", "args"]);
        assert!(!top.contains("sleep 1000"), "tick {tick}: {top}");
        // The session's conmon exits once its process is gone (after podman's cleanup).
        let mut left = conmons_under(&root.dir).len();
        for _ in 0..100 {
            if left == conmons {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            left = conmons_under(&root.dir).len();
        }
        assert_eq!(left, conmons, "tick {tick}: an exec conmon stayed");
        case.pass();
    }
}
