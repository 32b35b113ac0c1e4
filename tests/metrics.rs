//! Prometheus metrics against real podman: `archy status --output prometheus` and
//! `archy reconcile --metrics-file` on a converged and on a broken node, each checked by
//! Debian's `promtool check metrics` (package prometheus); the file is replaced atomically
//! (a reader never sees half of it) and a no-op tick with the file still makes one podman call.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The value of one sample line (`name{labels} value`).
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| l[series.len() + 1..].to_string())
}

fn metrics_file(root: &TestRoot) -> std::path::PathBuf {
    let dir = root.dir.join("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("archy.prom")
}

// A scenario test: its steps read top to bottom, each checking what the one before left.
#[allow(clippy::too_many_lines)]
#[test]
fn converged_and_broken_nodes_pass_promtool() {
    let root = TestRoot::new();
    root.simple_manifest("alpha", "");
    root.simple_manifest("beta", "");
    let file = metrics_file(&root);
    let file_arg = file.to_str().unwrap();

    // Converged: reconcile writes the file after its tick; status prints the same families.
    let out = root.archy(&["reconcile", "--metrics-file", file_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_promtool_clean(&written);
    for app in ["alpha", "beta"] {
        assert_eq!(
            sample(&written, &format!("archy_app_up{{app=\"{app}\"}}")).as_deref(),
            Some("1"),
            "{written}"
        );
        assert_eq!(
            sample(&written, &format!("archy_app_healthy{{app=\"{app}\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &written,
                &format!("archy_app_restarts_total{{app=\"{app}\"}}")
            )
            .as_deref(),
            Some("0"),
            "a first create is no restart"
        );
    }
    assert_eq!(
        sample(&written, "archy_converged").as_deref(),
        Some("1"),
        "{written}"
    );
    assert_eq!(
        sample(&written, "archy_reconcile_last_result{result=\"ok\"}").as_deref(),
        Some("1")
    );
    let duration: f64 = sample(&written, "archy_reconcile_last_duration_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration > 0.0 && duration < 600.0, "{duration}");
    let stamp: i64 = sample(&written, "archy_reconcile_last_timestamp_seconds")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - stamp).abs() < 120, "{stamp} vs {now}");

    let out = root.archy(&["status", "--output", "prometheus"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_promtool_clean(&out.stdout);
    assert_eq!(
        sample(&out.stdout, "archy_app_up{app=\"alpha\"}").as_deref(),
        Some("1")
    );
    assert_eq!(sample(&out.stdout, "archy_converged").as_deref(), Some("1"));

    // Broken: alpha stopped, beta drifted from its manifest, an invalid manifest, a failed heal,
    // an armed update and a release that failed its boot check.
    root.podman_ok(&["stop", "-t", "0", "archy-alpha"]);
    root.simple_manifest("beta", "env: {DRIFT: \"1\"}\n");
    root.manifest("broken", "app: broken\nimage: [not, a, string]\n");
    let status_dir = root.state_dir.join("status");
    std::fs::write(
        status_dir.join("heal-podman.json"),
        r#"{"ok": false, "at": "2026-11-27T10:00:00Z"}"#,
    )
    .unwrap();
    let update = root.state_dir.join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(
        update.join("pending.json"),
        r#"{"version": "1.7.41", "previous": "1.7.40", "armed_at": "2026-11-27T10:00:00Z"}"#,
    )
    .unwrap();
    std::fs::write(update.join("bad-versions"), "1.7.39\n").unwrap();

    let out = root.archy(&["status", "--output", "prometheus"]);
    assert_eq!(out.code, 1, "not converged: {out:?}");
    let broken = out.stdout.clone();
    assert_promtool_clean(&broken);
    assert_eq!(
        sample(&broken, "archy_app_up{app=\"alpha\"}").as_deref(),
        Some("0"),
        "{broken}"
    );
    assert_eq!(
        sample(&broken, "archy_app_healthy{app=\"alpha\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&broken, "archy_app_spec_drift{app=\"beta\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&broken, "archy_app_up{app=\"beta\"}").as_deref(),
        Some("1"),
        "drifted but running"
    );
    assert_eq!(
        sample(&broken, "archy_app_healthy{app=\"beta\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&broken, "archy_manifests_invalid").as_deref(),
        Some("1")
    );
    assert_eq!(sample(&broken, "archy_converged").as_deref(), Some("0"));
    assert_eq!(
        sample(&broken, "archy_podman_heal_last_result{result=\"failed\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&broken, "archy_update_pending").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&broken, "archy_update_pending_info{version=\"1.7.41\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&broken, "archy_update_bad_version_info{version=\"1.7.39\"}").as_deref(),
        Some("1")
    );

    // The tick repairs alpha (start) and beta (recreate); the file describes the node after it.
    let out = root.archy(&["reconcile", "--metrics-file", file_arg]);
    assert_eq!(out.code, 2, "the invalid manifest: {out:?}");
    let after = std::fs::read_to_string(&file).unwrap();
    assert_promtool_clean(&after);
    for app in ["alpha", "beta"] {
        assert_eq!(
            sample(&after, &format!("archy_app_up{{app=\"{app}\"}}")).as_deref(),
            Some("1"),
            "{after}"
        );
        assert_eq!(
            sample(&after, &format!("archy_app_spec_drift{{app=\"{app}\"}}")).as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(
                &after,
                &format!("archy_app_restarts_total{{app=\"{app}\"}}")
            )
            .as_deref(),
            Some("1"),
            "{after}"
        );
    }
    assert_eq!(
        sample(&after, "archy_reconcile_last_result{result=\"failed\"}").as_deref(),
        Some("1"),
        "exit 2 is a failed tick"
    );
    assert_eq!(
        sample(&after, "archy_manifests_invalid").as_deref(),
        Some("1")
    );
    // What the file said matches what status says now.
    let out = root.archy(&["status", "--output", "prometheus"]);
    for app in ["alpha", "beta"] {
        let series = format!("archy_app_up{{app=\"{app}\"}}");
        assert_eq!(sample(&out.stdout, &series), sample(&after, &series));
    }
}

#[test]
fn the_file_is_replaced_atomically_and_a_no_op_tick_still_lists_once() {
    let root = TestRoot::new();
    root.simple_manifest("alpha", "");
    let file = metrics_file(&root);
    let file_arg = file.to_str().unwrap().to_string();
    let out = root.archy(&["reconcile", "--metrics-file", &file_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    let first = std::fs::read_to_string(&file).unwrap();
    assert_promtool_clean(&first);

    // A reader reads the file as fast as it can while ticks replace it; every read must be a
    // whole file (it ends with the last family), and no other *.prom ever appears next to it
    // (node_exporter reads every *.prom in the directory).
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let file = file.clone();
        std::thread::spawn(move || {
            let (mut reads, mut torn, mut strays) = (0u64, Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    reads += 1;
                    if !text.ends_with("archy_update_bad_versions 0\n") {
                        torn.push(text);
                    }
                }
                for entry in std::fs::read_dir(file.parent().unwrap()).unwrap().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let prom = std::path::Path::new(&name)
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("prom"));
                    if name != "archy.prom" && prom {
                        strays.push(name);
                    }
                }
            }
            (reads, torn, strays)
        })
    };
    root.take_podman_calls();
    for _ in 0..8 {
        // A reader that opened the file before the tick keeps reading the whole old file; the
        // path names a new one afterwards.
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::read_to_string(&file).unwrap();
        let mut held = std::fs::File::open(&file).unwrap();
        let out = root.archy(&["reconcile", "--metrics-file", &file_arg]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_ne!(
            held.metadata().unwrap().ino(),
            std::fs::metadata(&file).unwrap().ino(),
            "each tick renames a new file into place"
        );
        let mut old = String::new();
        held.read_to_string(&mut old).unwrap();
        assert_eq!(old, before, "an open reader keeps the whole old file");
    }
    let calls = root.take_podman_calls();
    stop.store(true, Ordering::Relaxed);
    let (reads, torn, strays) = reader.join().unwrap();
    assert!(reads > 0);
    assert!(
        torn.is_empty(),
        "{} torn reads, e.g. {:?}",
        torn.len(),
        torn.first()
    );
    assert!(strays.is_empty(), "{strays:?}");
    assert_eq!(
        calls.len(),
        8,
        "one podman listing per no-op tick: {calls:?}"
    );
    assert!(calls.iter().all(|c| c.starts_with("ps ")), "{calls:?}");
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        [std::ffi::OsString::from("archy.prom")],
        "no temporary file left"
    );
    eprintln!("{reads} reads during 8 ticks");
}

#[test]
fn bad_metrics_targets_are_refused_before_anything_runs() {
    let root = TestRoot::empty();
    root.simple_manifest("alpha", "");
    // A path without a directory is a usage error, found before anything runs.
    let out = root.archy(&["reconcile", "--metrics-file", "archy.prom"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("has no directory"), "{out:?}");
    assert!(root.take_podman_calls().is_empty(), "nothing ran");
    let out = root.archy(&["reconcile", "--output", "prometheus"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("only for `archy status`"), "{out:?}");
}

/// A metrics file that cannot be written (its directory gone, e.g. after node_exporter was
/// purged, or a directory where the file goes) never stops a tick from converging: the stopped
/// app is started, the tick exits 0, the trouble is a warning here and in `archy status` until
/// a write succeeds again.
#[test]
fn an_unwritable_metrics_file_is_a_warning_after_converging() {
    let root = TestRoot::new();
    root.simple_manifest("alpha", "");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    root.podman_ok(&["stop", "-t", "0", "archy-alpha"]);
    let missing = root.dir.join("node-exporter/archy.prom");
    let out = root.archy(&["reconcile", "--metrics-file", missing.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-alpha"), "running", "converged first");
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains("node-exporter"),
        "{out:?}"
    );
    let status = root.archy(&["status", "--output", "json"]);
    let doc = status.json();
    assert_eq!(doc["ok"], true, "a warning, not a failure: {status:?}");
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains("node-exporter"),
        "{doc}"
    );
    assert!(root.archy(&["status"]).stdout.contains("warning: "));

    // A directory where the file goes: the same.
    std::fs::create_dir_all(&missing).unwrap();
    let out = root.archy(&["reconcile", "--metrics-file", missing.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("is a directory"), "{out:?}");

    // Written again: the warning goes.
    std::fs::remove_dir(&missing).unwrap();
    let out = root.archy(&["reconcile", "--metrics-file", missing.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(std::fs::read_to_string(&missing)
        .unwrap()
        .contains("archy_converged 1"));
    let doc = root.archy(&["status", "--output", "json"]).json();
    assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
}

/// `nobody`, able to write the textfile directory's parent, swaps the textfile directory for a
/// symlink to a root-owned directory: root's tick must not write `archy.prom` there, nor into a
/// directory `nobody` made in its place. The textfile directory itself may be another user's,
/// and its parent too as long as the textfile directory is root's (Debian's layout:
/// /var/lib/prometheus is prometheus's, node-exporter root's).
#[test]
fn the_metrics_write_never_follows_a_symlinked_directory_a_user_planted() {
    use std::os::unix::fs::PermissionsExt;
    let root = TestRoot::new();
    root.simple_manifest("alpha", "");
    let base = root.dir.join("textfile-base");
    let victim = root.dir.join("root-only");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(base.join("prometheus/node-exporter")).unwrap();
    let chown = |path: &Path| {
        let ok = Command::new("chown")
            .args(["nobody:nogroup", path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    // The textfile directory owned by nobody (as node_exporter's user might own it): allowed.
    chown(&base.join("prometheus/node-exporter"));
    let file = base.join("prometheus/node-exporter/archy.prom");
    let out = root.archy(&["reconcile", "--metrics-file", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        file.exists(),
        "written into the textfile directory nobody owns: {out:?}"
    );

    // Debian's layout: the parent is the daemon user's, the textfile directory root's.
    let ok = Command::new("chown")
        .args([
            "root:root",
            base.join("prometheus/node-exporter").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    chown(&base.join("prometheus"));
    std::fs::remove_file(&file).unwrap();
    let out = root.archy(&["reconcile", "--metrics-file", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(file.exists(), "Debian's layout is written: {out:?}");

    // nobody, owning the parent, plants the symlink.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let planted = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
            &format!(
                "mv {0}/prometheus/node-exporter {0}/prometheus/moved && ln -s {1} {0}/prometheus/node-exporter",
                base.display(),
                victim.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(planted.status.success(), "{planted:?}");
    let out = root.archy(&["reconcile", "--metrics-file", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written through the symlink: {out:?}"
    );
    assert!(out.stderr.contains("symlink"), "{out:?}");

    // Even a real directory nobody made there is refused: its parent is nobody's.
    let planted = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
            &format!(
                "rm {0}/prometheus/node-exporter && mkdir {0}/prometheus/node-exporter",
                base.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(planted.status.success(), "{planted:?}");
    let out = root.archy(&["reconcile", "--metrics-file", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!file.exists(), "{out:?}");
    assert!(
        out.stderr.contains("owned by uid") && out.stderr.contains("lies below"),
        "{out:?}"
    );
}

/// `archy_app_healthy` is the health probe's verdict where an app has one (0 while `starting`
/// or `unhealthy`, even when the app is converged), and `converged` where it has none.
#[test]
fn app_healthy_follows_the_health_probe() {
    let root = TestRoot::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    root.simple_manifest(
        "passing",
        &format!("health:\n  tcp: 127.0.0.1:{open}\n  start_period: 0\n"),
    );
    root.simple_manifest(
        "failing",
        &format!("health:\n  tcp: 127.0.0.1:{closed}\n  failures: 1\n  start_period: 0\n"),
    );
    root.simple_manifest("plain", "");
    let file = metrics_file(&root);
    let file_arg = file.to_str().unwrap();
    let healthy =
        |text: &str, app: &str| sample(text, &format!("archy_app_healthy{{app=\"{app}\"}}"));
    let up = |text: &str, app: &str| sample(text, &format!("archy_app_up{{app=\"{app}\"}}"));

    // Tick 1 creates all three: converged, but the probed ones are `starting` (no probe counted
    // yet on a container this tick created).
    let out = root.archy(&["reconcile", "--metrics-file", file_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    let first = std::fs::read_to_string(&file).unwrap();
    assert_promtool_clean(&first);
    for app in ["passing", "failing", "plain"] {
        assert_eq!(up(&first, app).as_deref(), Some("1"), "{first}");
    }
    assert_eq!(healthy(&first, "passing").as_deref(), Some("0"), "{first}");
    assert_eq!(healthy(&first, "failing").as_deref(), Some("0"));
    assert_eq!(
        healthy(&first, "plain").as_deref(),
        Some("1"),
        "no probe: converged"
    );

    // Tick 2 probes: one passes, one finds nothing listening (unhealthy, restarted) while its
    // container runs.
    let out = root.archy(&["reconcile", "--metrics-file", file_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("failing: health:"), "{out:?}");
    let second = std::fs::read_to_string(&file).unwrap();
    assert_promtool_clean(&second);
    assert_eq!(
        healthy(&second, "passing").as_deref(),
        Some("1"),
        "{second}"
    );
    assert_eq!(healthy(&second, "failing").as_deref(), Some("0"));
    assert_eq!(
        up(&second, "failing").as_deref(),
        Some("1"),
        "running, not healthy"
    );
    assert_eq!(healthy(&second, "plain").as_deref(), Some("1"));

    // status says the same from the recorded health (and exits 1: an app is unhealthy).
    let out = root.archy(&["status", "--output", "prometheus"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_promtool_clean(&out.stdout);
    for app in ["passing", "failing", "plain"] {
        assert_eq!(healthy(&out.stdout, app), healthy(&second, app), "{app}");
    }
    drop(listener);
}
