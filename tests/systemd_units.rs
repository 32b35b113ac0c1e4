//! The shipped systemd units (`systemd-timers/`): `systemd-analyze verify` accepts them without
//! a single warning, and they keep the contract the timers rely on.

use std::path::PathBuf;
use std::process::Command;

const UNITS: &[&str] = &[
    "archy-reconcile.service",
    "archy-reconcile.timer",
    "archy-heal-podman.service",
    "archy-render-config.service",
    "archy-verify-update.service",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unit(name: &str) -> String {
    let path = repo().join("systemd-timers").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `Key=value` lines of a unit (comments skipped), in order.
fn entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn value(text: &str, key: &str) -> Option<String> {
    entries(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn seconds(text: &str) -> u64 {
    archy::cmd::parse_duration(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .as_secs()
}

#[test]
fn the_directory_holds_exactly_the_units() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("systemd-timers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = UNITS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn systemd_analyze_verify_accepts_every_unit_without_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let man8 = tmp.path().join("man/man8");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(&man8).unwrap();
    // verify needs ExecStart's binary to exist: point it at the binary under test.
    let binary = env!("CARGO_BIN_EXE_archy");
    for name in UNITS {
        let text = unit(name).replace("/usr/bin/archy", binary);
        std::fs::write(units.join(name), text).unwrap();
    }
    // archipelago.service belongs to the appliance, not to archy: a stub stands in for it.
    std::fs::write(
        units.join("archipelago.service"),
        "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    // verify looks up every Documentation=man: page: serve the committed man pages.
    for entry in std::fs::read_dir(repo().join("man")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), man8.join(entry.file_name())).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.iter().map(|u| units.join(u)))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .env("MANPATH", tmp.path().join("man"))
        .current_dir(&units)
        .output()
        .expect("systemd-analyze is required (.ci/run installs systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("archy") || l.contains(&*units.to_string_lossy()))
        .collect();
    assert!(ours.is_empty(), "warnings about our units:\n{text}");
}

#[test]
fn services_are_oneshot_documented_and_log_level_is_an_environment_setting() {
    for name in UNITS {
        let text = unit(name);
        let doc = value(&text, "Documentation").unwrap_or_default();
        assert!(doc.contains("man:archy(8)"), "{name}: Documentation={doc}");
        if name.ends_with(".service") {
            assert_eq!(value(&text, "Type").as_deref(), Some("oneshot"), "{name}");
            let exec = value(&text, "ExecStart").unwrap();
            assert!(exec.starts_with("/usr/bin/archy "), "{name}: {exec}");
            assert_eq!(
                value(&text, "Environment").as_deref(),
                Some("ARCHY_LOG=info"),
                "{name}: verbosity is a drop-in-overridable Environment="
            );
        }
    }
}

#[test]
fn timer_ticks_every_30s_and_ordering_matches_the_boot_sequence() {
    let timer = unit("archy-reconcile.timer");
    assert!(value(&timer, "OnBootSec").is_some());
    assert_eq!(value(&timer, "OnUnitActiveSec").as_deref(), Some("30s"));
    assert_eq!(value(&timer, "AccuracySec").as_deref(), Some("1s"));

    let reconcile = unit("archy-reconcile.service");
    assert_eq!(
        value(&reconcile, "SuccessExitStatus").as_deref(),
        Some("75")
    );
    let after = value(&reconcile, "After").unwrap();
    assert!(after.contains("archy-heal-podman.service"), "{after}");
    // Health's start periods and back-offs, and status ages, read the wall clock: the first
    // tick waits for it to be set where a time-sync service says so (RTC-less boards).
    assert!(after.contains("time-sync.target"), "{after}");
    assert!(value(&unit("archy-verify-update.service"), "After")
        .unwrap()
        .contains("time-sync.target"));
    assert!(after.contains("archy-render-config.service"), "{after}");
    assert!(
        value(&reconcile, "WantedBy").is_none(),
        "the timer starts it"
    );

    for name in ["archy-heal-podman.service", "archy-render-config.service"] {
        let text = unit(name);
        let before = value(&text, "Before").unwrap_or_default();
        assert!(before.contains("archy-reconcile.service"), "{name}");
        assert_eq!(
            value(&text, "WantedBy").as_deref(),
            Some("multi-user.target")
        );
    }

    let verify = unit("archy-verify-update.service");
    assert!(value(&verify, "After")
        .unwrap()
        .contains("archipelago.service"));
    let timeout = seconds(&value(&verify, "TimeoutStartSec").unwrap());
    assert!(
        timeout > 90,
        "TimeoutStartSec={timeout}s must exceed verify-update's 90 s"
    );
}

#[test]
fn units_that_run_podman_avoid_namespaces_it_cannot_live_in() {
    for name in [
        "archy-reconcile.service",
        "archy-heal-podman.service",
        "archy-verify-update.service",
    ] {
        let keys: Vec<String> = entries(&unit(name)).into_iter().map(|(k, _)| k).collect();
        for forbidden in [
            "PrivateTmp",
            "ProtectHome",
            "ProtectSystem",
            "PrivateDevices",
            "SystemCallFilter",
            "NoNewPrivileges",
        ] {
            assert!(!keys.iter().any(|k| k == forbidden), "{name}: {forbidden}");
        }
    }
    let render = unit("archy-render-config.service");
    for key in ["NoNewPrivileges", "PrivateTmp", "ProtectHome"] {
        assert_eq!(value(&render, key).as_deref(), Some("yes"), "{key}");
    }
}

/// podman leaves conmon in the calling unit's cgroup whenever `$INVOCATION_ID` is set (issue
/// 23: three journal warnings per container per tick); the units that start containers unset it
/// so conmon gets a scope of its own, and keep `KillMode=process` for a conmon podman could not
/// move. tests/node.rs checks the journal of a booted node.
#[test]
fn units_that_start_containers_let_conmon_leave_their_cgroup() {
    for name in [
        "archy-reconcile.service",
        "archy-heal-podman.service",
        "archy-verify-update.service",
    ] {
        let text = unit(name);
        assert_eq!(
            value(&text, "UnsetEnvironment").as_deref(),
            Some("INVOCATION_ID"),
            "{name}"
        );
        assert_eq!(
            value(&text, "KillMode").as_deref(),
            Some("process"),
            "{name}"
        );
    }
}
