//! archy itself killed: SIGKILL at random points during reconcile, render-config and rollback;
//! concurrent reconciles.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::install::Install;
use crate::common::*;
use crate::support::*;

const APPS: [&str; 3] = ["k1", "k2", "k3"];

#[test]
fn sigkill_during_reconcile() {
    let mut case = Case::new(
        "archy: SIGKILL at a random point during `reconcile`",
        "next run converges; exactly one container per app; volumes intact",
    );
    let root = TestRoot::new();
    let data: Vec<String> = APPS.iter().map(|a| app_with_data(&root, a, "")).collect();
    let image = root.image_id(TEST_IMAGE).unwrap();
    let mut rng = Rng::new("sigkill_during_reconcile");
    for i in 0..iterations(3, 24) {
        case.run();
        // Give the run work to do: remove every container, or change every spec (recreate).
        if i % 2 == 0 {
            for app in APPS {
                root.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
            }
        } else {
            for (app, _) in APPS.iter().zip(&data) {
                root.simple_manifest(
                    app,
                    &format!("volumes: [\"{app}-data:/data\"]\nenv: {{ROUND: \"{i}\"}}\n"),
                );
            }
        }
        let delay = Duration::from_millis(rng.below(1500));
        let mut child = root
            .archy_cmd()
            .arg("reconcile")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let out = root.archy(&["reconcile", "--lock-wait", "60s"]);
        assert_eq!(out.code, 0, "kill #{i} after {delay:?}: {out:?}");
        for (app, content) in APPS.iter().zip(&data) {
            assert_eq!(
                root.state(&format!("archy-{app}")),
                "running",
                "#{i} {delay:?}: {out:?}"
            );
            assert_eq!(
                containers_of(&root, app),
                1,
                "#{i} {delay:?}: one container for {app}"
            );
            case.data_kept(
                volume_file(&root, app).as_deref() == Some(content.as_str()),
                app,
            );
        }
        case.data_kept(
            root.image_id(TEST_IMAGE).as_deref() == Some(image.as_str()),
            "image",
        );
        let again = root.archy(&["reconcile"]);
        assert!(
            again.stdout.contains("3 ok"),
            "#{i}: second run is a no-op: {again:?}"
        );
        eprintln!("kill #{i} after {delay:?}: converged");
        case.pass();
    }
}

/// Found by the chaos soak (`ARCHY_SOAK_SEED=7 ARCHY_SOAK_KINDS=kill-reconcile`, fault #3): archy
/// SIGKILLed while a recreate's `podman rm -f --time N` waits for the old container to stop.
/// That podman dies of SIGPIPE when it writes its "resorting to SIGKILL" warning into archy's
/// closed pipe and leaves the container `stopping`. The next run's `rm -f` used to drop it from
/// podman's database without stopping it: its process and conmon lived on holding the published
/// port, and every later run failed with "address already in use".
#[test]
fn sigkill_while_a_recreate_stops_the_old_container() {
    let mut case = Case::new(
        "archy: SIGKILL while a recreate's `podman rm -f` waits for the old container to stop",
        "the orphaned podman dies mid-stop (container left `stopping`); the next run finishes the stop and recreates; no ghost holds the port",
    );
    let root = TestRoot::new();
    let port = converged_web(&root);
    let web = |round: usize| web_manifest(port, round);
    for i in 0..iterations(1, 3) {
        case.run();
        root.manifest("web", &web(i + 1));
        leave_stopping(&root, &format!("#{i}"));
        let out = root.archy(&["reconcile"]);
        assert_eq!(out.code, 0, "#{i}: {out:?}");
        assert_eq!(root.state("archy-web"), "running", "#{i}: {out:?}");
        let id = root.container_id("archy-web");
        assert_eq!(
            runc_ids_under(&root.dir),
            vec![id],
            "#{i}: a ghost survived"
        );
        assert_eq!(conmons_under(&root.dir).len(), 1, "#{i}: one conmon");
        let mut answered = false;
        for _ in 0..40 {
            if crate::soak::http_get(port, "/bin/busybox").is_ok_and(|(status, _)| status == 200) {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(answered, "#{i}: the new container answers on {port}");
        case.pass();
    }
}

/// An httpd app on `port` whose env names `round` (each round is a spec change); httpd as PID 1
/// ignores SIGTERM, so every stop waits out `stop_timeout`.
fn web_manifest(port: u16, round: usize) -> String {
    format!(
        "app: web\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 3\ncommand: [\"/bin/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\nports: [\"127.0.0.1:{port}:80\"]\nenv: {{ROUND: \"{round}\"}}\n"
    )
}

/// `web_manifest` round 0 on a free port, converged; returns the port.
fn converged_web(root: &TestRoot) -> u16 {
    let port = free_port();
    root.manifest("web", &web_manifest(port, 0));
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    port
}

/// Start a reconcile that recreates `archy-web` (its manifest changed) and SIGKILL it while its
/// `podman rm -f` waits out the stop timeout: the orphaned podman dies mid-stop and leaves the
/// container `stopping`.
fn leave_stopping(root: &TestRoot, label: &str) {
    let calls = root.dir.join("podman-calls.log");
    let _ = std::fs::remove_file(&calls);
    let mut child = root
        .archy_cmd()
        .arg("reconcile")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // httpd as PID 1 ignores SIGTERM: `rm -f --time 3` waits 3 s before its SIGKILL.
    let until = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&calls).is_ok_and(|t| t.contains("rm -f")) {
        assert!(Instant::now() < until, "{label}: archy never ran podman rm");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let until = Instant::now() + Duration::from_secs(15);
    while root.state("archy-web") == "running" && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        root.state("archy-web"),
        "stopping",
        "{label}: the orphaned podman rm died mid-stop (the premise of this case)"
    );
}

#[test]
fn a_stopping_container_removed_meanwhile_is_created_anew() {
    let mut case = Case::new(
        "archy: the orphaned `podman rm -f` of a killed recreate finishes the removal between the next run's listing and its stop",
        "the container listed `stopping` is gone when archy stops it (\"no such container\"): archy creates it anew, exit 0, the port answers",
    );
    let root = TestRoot::new();
    let port = converged_web(&root);
    let web = |round: usize| web_manifest(port, round);
    case.run();
    root.manifest("web", &web(1));
    leave_stopping(&root, "setup");
    // The race, made certain: a podman that, just before archy's stop, does what the orphaned
    // `rm -f` does when it lives on: finishes the stop and removes the container.
    let racing = root.dir.join("podman-racing");
    std::fs::write(
        &racing,
        "#!/bin/sh\nif [ \"$1\" = stop ]; then eval last=\\${$#}; podman stop \"$last\" >/dev/null 2>&1; podman rm \"$last\" >/dev/null 2>&1; fi\nexec podman \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&racing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Out::from(
        root.archy_cmd()
            .arg("--podman")
            .arg(&racing)
            .arg("reconcile")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("removed meanwhile"), "{out:?}");
    assert_eq!(root.state("archy-web"), "running", "{out:?}");
    let id = root.container_id("archy-web");
    assert_eq!(runc_ids_under(&root.dir), vec![id], "a ghost survived");
    let answered = (0..40).any(|_| {
        let ok = crate::soak::http_get(port, "/bin/busybox").is_ok_and(|(status, _)| status == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(250));
        }
        ok
    });
    assert!(answered, "the new container answers on {port}");
    case.pass();
}

fn node_configs(root: &TestRoot) -> PathBuf {
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let c = cfg.display();
    root.simple_manifest(
        "bitcoin",
        &format!("configs:\n  - render: bitcoin.conf\n    path: {c}/bitcoin.conf\n"),
    );
    root.simple_manifest(
        "lnd",
        &format!("configs:\n  - render: lnd.conf\n    path: {c}/lnd.conf\n"),
    );
    root.simple_manifest("electrumx", &format!("configs:\n  - render: electrumx.env\n    path: {c}/electrumx.env\n    settings: {{COIN: Bitcoin}}\n"));
    cfg
}

fn complete(p: &Path) -> bool {
    std::fs::read_to_string(p).is_ok_and(|t| {
        t.starts_with("# Generated by archy") && t.ends_with('\n') && t.lines().count() >= 3
    })
}

#[test]
fn sigkill_during_render_config() {
    let mut case = Case::new(
        "archy: SIGKILL at a random point during `render-config --rotate-secret`",
        "no torn file; temp files swept; next run converges (`--check` clean)",
    );
    let root = TestRoot::empty();
    let cfg = node_configs(&root);
    assert_eq!(root.archy(&["render-config"]).code, 0);
    let mut rng = Rng::new("sigkill_during_render_config");
    for i in 0..iterations(5, 30) {
        case.run();
        let delay = Duration::from_micros(rng.below(8000));
        let mut child = root
            .archy_cmd()
            .args(["render-config", "--rotate-secret"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        for f in ["bitcoin.conf", "lnd.conf", "electrumx.env"] {
            case.data_kept(
                complete(&cfg.join(f)),
                &format!("{f} complete after kill #{i} at {delay:?}"),
            );
        }
        let secret = std::fs::read_to_string(root.state_dir.join("secrets/bitcoin-rpc.json"));
        let parsed: Option<serde_json::Value> =
            secret.ok().and_then(|s| serde_json::from_str(&s).ok());
        case.data_kept(
            parsed.is_some_and(|v| v["password"].as_str().is_some_and(|p| p.len() == 64)),
            "secret file whole",
        );
        let out = root.archy(&["render-config"]);
        assert_eq!(out.code, 0, "#{i}: {out:?}");
        assert_eq!(root.archy(&["render-config", "--check"]).code, 0, "#{i}");
        let leftovers = std::fs::read_dir(&cfg)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0, "#{i}: temp files swept");
        case.pass();
    }
}

/// Releases 1 and 2, `current -> releases/2`, `previous -> releases/1`, a restart command that
/// sleeps (a window to be killed in).

#[test]
fn sigkill_during_rollback() {
    let mut case = Case::new(
        "archy: SIGKILL at a random point during `rollback`",
        "`current` always a whole release; next run finishes (switch + restart)",
    );
    let mut rng = Rng::new("sigkill_during_rollback");
    for i in 0..iterations(4, 20) {
        case.run();
        let install = Install::with_restart_delay(Some("0.2"));
        let mut child = install
            .command(&["rollback"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        } else {
            let until = Instant::now() + Duration::from_secs(10);
            while install.restarts() == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let current = install.current();
        assert!(
            current == "releases/1" || current == "releases/2",
            "#{i}: {current}"
        );
        case.data_kept(
            install.root.join("current/web-ui/index.html").exists(),
            "current release",
        );
        case.data_kept(
            install.root.join("releases/2/web-ui/index.html").exists(),
            "release 2",
        );
        let out = install.command(&["rollback"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "#{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(install.current(), "releases/1", "#{i}");
        assert!(install.restarts() >= 1, "#{i}: the restart ran");
        case.pass();
    }
}

fn concurrent(n: usize) {
    let mut case = Case::new(
        &format!("archy: {n} concurrent `reconcile` runs"),
        "serialised by the lock; each container created exactly once",
    );
    let root = TestRoot::new();
    for app in ["c1", "c2", "c3"] {
        root.simple_manifest(app, "");
    }
    case.run();
    let children: Vec<_> = (0..n)
        .map(|_| {
            root.archy_cmd()
                .args(["reconcile", "--lock-wait", "60s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = root
        .take_podman_calls()
        .iter()
        .filter(|c| c.starts_with("run "))
        .count();
    assert_eq!(runs, 3, "each container created exactly once");
    assert_eq!(root.containers().len(), 3);
    case.pass();
}

#[test]
fn two_concurrent_reconciles() {
    concurrent(2);
}

#[test]
fn five_concurrent_reconciles() {
    concurrent(5);
}
