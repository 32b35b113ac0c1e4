//! Migration from the old bash scripts on real podman: their containers `bitcoin-knots`, `lnd`
//! and `electrumx` (busybox stand-ins here) hold the names, host ports and named volumes the
//! shipped manifests use. A plain reconcile reports them and changes nothing; `--adopt` stops
//! each (its own stop timeout), removes it (never its volumes) and creates archy's on the same
//! ports with the data intact; a legacy container keeping its data in a volume under another
//! name is refused with the command that moves the data, and keeps running.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use std::path::{Path, PathBuf};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

/// (app, host port, volume, path in the container) of the shipped manifests.
const LEGACY: &[(&str, &str, &str, &str)] = &[
    (
        "bitcoin-knots",
        "8333",
        "bitcoin-data",
        "/home/bitcoin/.bitcoin",
    ),
    ("lnd", "9735", "lnd-data", "/root/.lnd"),
    ("electrumx", "50001", "electrumx-data", "/data"),
];

/// The shipped manifests of the three apps, on the test image (stops at once), with paths moved
/// under `<root>/node`.
fn place_manifests(root: &TestRoot) -> PathBuf {
    let prefix = root.dir.join("node");
    let p = prefix.display().to_string();
    std::fs::create_dir_all(prefix.join("etc/containers/containers.conf.d")).unwrap();
    for (app, ..) in LEGACY {
        let text = std::fs::read_to_string(Path::new(SHIPPED).join(format!("{app}.yaml")))
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("image:") {
                    format!("image: {TEST_IMAGE}\npull: never")
                } else if line.starts_with("command:") {
                    "command: [\"/bin/sleep\", \"3600\"]".to_string()
                } else if line.starts_with("stop_timeout:") {
                    "stop_timeout: 1".to_string()
                } else if line.starts_with("depends_on:") {
                    // The stand-ins serve no RPC, so `{bitcoin-knots: healthy}` would hold lnd
                    // and electrumx back (tests/health.rs covers that); here only the order.
                    "depends_on: [bitcoin-knots]".to_string()
                } else {
                    line.replace("/var/lib/archy", &format!("{p}/var/lib/archy"))
                        .replace("/etc/containers", &format!("{p}/etc/containers"))
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(&format!("container_name: {app}")), "{text}");
        root.manifest(app, &text);
    }
    prefix.join("var/lib/archy")
}

/// The old scripts' container: bare name, no archy labels, its own stop timeout, data written
/// into `volume` at `path`.
fn run_legacy(root: &TestRoot, app: &str, port: &str, volume: &str, path: &str) -> String {
    root.podman_ok(&[
        "run",
        "-d",
        "--name",
        app,
        "--stop-timeout",
        "3",
        "-p",
        &format!("{port}:{port}"),
        "-v",
        &format!("{volume}:{path}"),
        TEST_IMAGE,
        "sh",
        "-c",
        &format!("echo legacy-{app} > {path}/marker; exec sleep 3600"),
    ]);
    for _ in 0..100 {
        if root
            .podman(&["exec", app, "cat", &format!("{path}/marker")])
            .code
            == 0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    root.container_id(app)
}

fn host_ports(root: &TestRoot, name: &str) -> String {
    root.podman_ok(&["port", name])
}

#[test]
fn legacy_containers_are_reported_then_adopted_with_their_data_and_ports() {
    let root = TestRoot::new();
    let state = place_manifests(&root);
    let ids: Vec<String> = LEGACY
        .iter()
        .map(|(app, port, volume, path)| run_legacy(&root, app, port, volume, path))
        .collect();
    let run = |args: &[&str]| {
        Out::from(
            root.archy_cmd()
                .env("ARCHY_STATE_DIR", &state)
                .args(args)
                .output()
                .unwrap(),
        )
    };

    // Plain reconcile: each legacy container is reported, nothing changes.
    let out = run(&["reconcile"]);
    for (app, ..) in LEGACY {
        assert!(
            out.stdout
                .contains(&format!("unmanaged container {app} holds the name")),
            "{app}: {out:?}"
        );
    }
    assert!(out.all().contains("--adopt"), "{out:?}");
    for ((app, ..), id) in LEGACY.iter().zip(&ids) {
        assert_eq!(&root.container_id(app), id, "{app} left alone");
        assert_eq!(root.state(app), "running");
    }

    // --adopt: replaced, same ports, data intact.
    root.take_podman_calls();
    let out = run(&["reconcile", "--adopt"]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    for ((app, port, _, path), id) in LEGACY.iter().zip(&ids) {
        let c = root.container(app).unwrap();
        assert_ne!(c["Id"].as_str().unwrap(), id.as_str(), "{app} replaced");
        assert_eq!(c["Labels"]["io.archy.managed"], "true");
        assert_eq!(root.state(app), "running", "{app}: {out:?}");
        assert!(
            host_ports(&root, app).contains(&format!("0.0.0.0:{port}")),
            "{app} publishes {port}"
        );
        let marker = root.podman_ok(&["exec", app, "cat", &format!("{path}/marker")]);
        assert_eq!(marker, format!("legacy-{app}"), "{app}'s data survived");
        // Stopped with the legacy container's own stop timeout, removed without -v.
        assert!(
            calls.iter().any(|c| c == &format!("rm -f --time 3 {id}")),
            "{app}: {calls:?}"
        );
    }
    assert!(calls
        .iter()
        .all(|c| !c.contains(" -v ") || c.starts_with("run ")));
    let again = run(&["reconcile"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("3 ok"), "{again:?}");

    // A legacy electrumx keeping its data in a volume under another name: refused with the
    // command that moves the data; it keeps running; the others are untouched.
    root.podman_ok(&["rm", "-f", "--time", "0", "electrumx"]);
    let old_id = run_legacy(&root, "electrumx", "50001", "electrumx-old", "/data");
    let lnd_id = root.container_id("lnd");
    let out = run(&["reconcile", "--adopt"]);
    assert_eq!(out.code, 1, "{out:?}");
    let expected = "podman volume export electrumx-old | podman volume import electrumx-data -";
    assert!(out.stdout.contains(expected), "{out:?}");
    assert!(
        out.stdout.contains("electrumx-old") && out.stdout.contains("/data"),
        "{out:?}"
    );
    assert_eq!(root.container_id("electrumx"), old_id, "left alone");
    assert_eq!(root.state("electrumx"), "running");
    assert_eq!(root.container_id("lnd"), lnd_id, "others untouched");

    // The move, as printed, then adoption goes through with the data.
    let line = out.stdout.lines().find(|l| l.contains(expected)).unwrap();
    let command = &line[line.find("podman stop").expect("the full command")..];
    let moved = std::process::Command::new("sh")
        .args(["-c", command])
        .envs(root.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(moved.status.success(), "{command}: {moved:?}");
    let out = run(&["reconcile", "--adopt"]);
    assert_eq!(out.code, 0, "{out:?}");
    let marker = root.podman_ok(&["exec", "electrumx", "cat", "/data/marker"]);
    assert_eq!(marker, "legacy-electrumx");
    let volumes = root.podman_ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(
        volumes.lines().any(|v| v == "electrumx-old"),
        "never removed: {volumes}"
    );
}
