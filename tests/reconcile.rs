//! `archy reconcile` against real podman, each test in its own isolated podman root.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

#[test]
fn from_empty_apps_come_up_and_a_second_run_does_nothing() {
    let root = TestRoot::new();
    for app in ["alpha", "beta", "gamma"] {
        root.simple_manifest(app, "");
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    for app in ["alpha", "beta", "gamma"] {
        assert_eq!(root.state(&format!("archy-{app}")), "running", "{out:?}");
    }
    let c = root.container("archy-alpha").unwrap();
    assert_eq!(c["Labels"]["io.archy.managed"], "true");
    assert_eq!(c["Labels"]["io.archy.app"], "alpha");
    assert_eq!(
        c["Labels"]["io.archy.spec-hash"].as_str().unwrap().len(),
        64
    );
    let ids: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|a| root.container_id(&format!("archy-{a}")))
        .collect();
    root.take_podman_calls();

    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    assert_eq!(
        calls,
        vec!["ps -a --format json --filter label=io.archy.managed=true".to_string()],
        "a no-op run makes exactly one podman call"
    );
    let ids_after: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|a| root.container_id(&format!("archy-{a}")))
        .collect();
    assert_eq!(ids, ids_after, "no container was recreated");
    assert!(out.stdout.contains("3 ok"), "{out:?}");
}

#[test]
fn changing_one_apps_env_recreates_only_that_app() {
    let root = TestRoot::new();
    root.simple_manifest("one", "env: {MODE: a}\n");
    root.simple_manifest("two", "env: {MODE: a}\n");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    let (one, two) = (
        root.container_id("archy-one"),
        root.container_id("archy-two"),
    );
    root.simple_manifest("two", "env: {MODE: b}\n");
    root.take_podman_calls();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let verbs: Vec<String> = root
        .take_podman_calls()
        .iter()
        .map(|c| c.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        verbs,
        vec!["ps", "rm", "run"],
        "drift costs the listing, the removal and the run, nothing more"
    );
    assert!(out.stdout.contains("recreated"), "{out:?}");
    assert_eq!(
        root.container_id("archy-one"),
        one,
        "untouched app keeps its container"
    );
    assert_ne!(
        root.container_id("archy-two"),
        two,
        "changed app was recreated"
    );
    let env = root.podman_ok(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "archy-two",
    ]);
    assert!(env.lines().any(|l| l == "MODE=b"), "{env}");
}

// `podman stop`, `kill` and `rm -f` repaired by the next run, volume data kept:
// tests/chaos/containers.rs (part of the default test run).

#[test]
fn broken_manifest_is_reported_and_good_apps_still_converge() {
    let root = TestRoot::new();
    root.simple_manifest("good", "");
    root.manifest("bad", "app: bad\nimage: x\nportz: [80]\n");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.all().contains("bad.yaml"), "{out:?}");
    assert!(out.all().contains("unknown field `portz`"), "{out:?}");
    assert!(out.all().contains("line 3"), "{out:?}");
    assert_eq!(root.state("archy-good"), "running");
    let json = root.archy(&["reconcile", "--output", "json"]).json();
    assert_eq!(json["exit_code"], 2);
    assert!(json["manifest_errors"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("bad.yaml"));
}

#[test]
fn unmanaged_container_holding_the_name_is_left_alone_unless_adopting() {
    let root = TestRoot::new();
    // The old bash scripts' container: same name, no archy labels, data in a named volume.
    root.podman_ok(&[
        "run",
        "-d",
        "--name",
        "archy-legacy",
        "-v",
        "legacy-data:/data",
        TEST_IMAGE,
        "sh",
        "-c",
        "echo precious > /data/file; sleep 3600",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let old_id = root.container_id("archy-legacy");
    root.simple_manifest("legacy", "volumes: [\"legacy-data:/data\"]\n");

    let dry = root.archy(&["reconcile", "--dry-run"]);
    assert!(dry.stdout.contains("conflict"), "{dry:?}");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.all().contains("--adopt"), "{out:?}");
    assert_eq!(root.container_id("archy-legacy"), old_id, "left alone");

    let out = root.archy(&["reconcile", "--adopt"]);
    assert_eq!(out.code, 0, "{out:?}");
    let c = root.container("archy-legacy").unwrap();
    assert_ne!(c["Id"], old_id.as_str());
    assert_eq!(c["Labels"]["io.archy.managed"], "true");
    let data = root.podman_ok(&["exec", "archy-legacy", "cat", "/data/file"]);
    assert_eq!(
        data, "precious",
        "the named volume's data survived adoption"
    );
}

// Concurrent reconciles (2 and 5 at once, each container created once): tests/chaos/archy_kills.rs.

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let root = TestRoot::new();
    root.simple_manifest("d1", "");
    root.simple_manifest("d2", "");
    assert_eq!(root.archy(&["reconcile", "d1"]).code, 0);
    root.podman_ok(&["stop", "-t", "0", "archy-d1"]);
    root.take_podman_calls();
    let out = root.archy(&["reconcile", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("would start"), "{out:?}");
    assert!(out.stdout.contains("would create"), "{out:?}");
    let calls = root.take_podman_calls();
    assert!(
        calls.iter().all(|c| c.starts_with("ps ")),
        "dry run only lists: {calls:?}"
    );
    assert_eq!(root.state("archy-d1"), "exited");
    assert_eq!(root.state("archy-d2"), "missing");
    let json = root
        .archy(&["reconcile", "--dry-run", "--output", "json"])
        .json();
    let actions: Vec<&str> = json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["start", "create"]);
}

#[test]
fn orphans_are_reported_and_pruned_only_on_request() {
    let root = TestRoot::new();
    root.simple_manifest("keep", "");
    let gone = root.simple_manifest("gone", "");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    std::fs::remove_file(gone).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("orphan"), "{out:?}");
    assert_eq!(
        root.state("archy-gone"),
        "running",
        "not removed without --prune"
    );
    let out = root.archy(&["reconcile", "--prune"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-gone"), "missing");
    assert_eq!(root.state("archy-keep"), "running");
}

#[test]
fn failed_app_skips_its_dependents_and_others_still_converge() {
    let root = TestRoot::new();
    root.manifest(
        "base",
        "app: base\nimage: localhost/does-not-exist:1\npull: never\n",
    );
    root.simple_manifest("child", "depends_on: [base]\n");
    root.simple_manifest("solo", "");
    let out = root.archy(&["reconcile", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let json = out.json();
    let result = |app: &str| {
        json["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == app)
            .unwrap()["result"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(result("base"), "failed");
    assert_eq!(result("child"), "skipped");
    assert_eq!(result("solo"), "changed");
    assert!(
        json["apps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("pull policy is `never`"),
        "{json}"
    );
    assert_eq!(root.state("archy-solo"), "running");
}

#[test]
fn network_is_created_with_subnet_and_host_alias() {
    let root = TestRoot::new();
    root.simple_manifest("net", "");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    let subnet = root.podman_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .Subnets}}{{.Subnet}}{{end}}",
        &root.network,
    ]);
    assert_eq!(subnet, root.subnet);
    let hosts = root.podman_ok(&["exec", "archy-net", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("{}\thost.archipelago", root.gateway))
            || hosts.contains(&format!("{} host.archipelago", root.gateway)),
        "{hosts}"
    );
}

#[test]
fn held_lock_gives_exit_75_for_an_archy_run_and_1_for_anything_else() {
    let root = TestRoot::empty();
    root.simple_manifest("x", "");
    // A first reconcile holds the lock while its first podman call waits at a gate.
    let d = root.dir.display();
    let gate = root.dir.join("podman-gate");
    std::fs::write(
        &gate,
        format!("#!/bin/sh\nif [ ! -e '{d}/gate-open' ]; then touch '{d}/gate-waiting'; while [ ! -e '{d}/gate-open' ]; do sleep 0.05; done; fi\nexec podman \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&gate, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut first = root
        .archy_cmd()
        .args(["reconcile"])
        .env("ARCHY_PODMAN", &gate)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !root.dir.join("gate-waiting").exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = root.archy(&["reconcile", "--lock-wait", "300ms"]);
    std::fs::write(root.dir.join("gate-open"), "").unwrap();
    first.wait().unwrap();
    assert_eq!(out.code, 75, "{out:?}");
    assert!(out.stderr.contains("reconcile.lock"), "{out:?}");
    assert!(out.stderr.contains("another archy run, pid"), "{out:?}");
    // The same lock held by a process that is not archy (this test) is a failure naming it.
    let lock = std::fs::File::open(root.run_dir.join("reconcile.lock")).unwrap();
    lock.lock().unwrap();
    let out = root.archy(&["reconcile", "--lock-wait", "300ms"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("held by pid {} (user root", std::process::id())),
        "{out:?}"
    );
    assert!(out.stderr.contains("not an archy run"), "{out:?}");
}

#[test]
fn changing_the_subnet_moves_the_network_and_every_container_with_it() {
    let root = TestRoot::new();
    root.simple_manifest("m1", "volumes: [\"m1-data:/data\"]\n");
    root.simple_manifest("m2", "");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    root.podman_ok(&["exec", "archy-m1", "sh", "-c", "echo kept > /data/f"]);
    // 10.230-249.x.0/24 is never a TestRoot subnet.
    let octets: Vec<&str> = root.subnet.split('.').collect();
    let third = octets[2];
    let second = 230 + octets[1].parse::<u32>().unwrap() % 20;
    let (subnet, gateway) = (
        format!("10.{second}.{third}.0/24"),
        format!("10.{second}.{third}.1"),
    );
    let out = Out::from(
        root.archy_cmd()
            .args(["reconcile"])
            .env("ARCHY_SUBNET", &subnet)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let actual = root.podman_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .Subnets}}{{.Subnet}}{{end}}",
        &root.network,
    ]);
    assert_eq!(actual, subnet);
    for app in ["m1", "m2"] {
        let hosts = root.podman_ok(&["exec", &format!("archy-{app}"), "cat", "/etc/hosts"]);
        assert!(
            hosts.contains(&gateway) && hosts.contains("host.archipelago"),
            "{app}: {hosts}"
        );
    }
    assert_eq!(
        root.podman_ok(&["exec", "archy-m1", "cat", "/data/f"]),
        "kept"
    );
    let again = Out::from(
        root.archy_cmd()
            .args(["reconcile"])
            .env("ARCHY_SUBNET", &subnet)
            .output()
            .unwrap(),
    );
    assert!(again.stdout.contains("2 ok"), "converged: {again:?}");
    // Back to the root's own subnet, so the harness cleans up what it knows.
    assert_eq!(root.archy(&["reconcile"]).code, 0);
}
