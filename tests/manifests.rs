//! The bundled appliance manifests and the demo set are valid and describe the appliance.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

use std::path::Path;

use archy::manifest::{load_dir, Policy};

/// A copy of the bundled manifests owned by the user running the test (load_dir refuses
/// manifests another user owns, and a checkout may belong to someone else than the tester).
fn appliance_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"));
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    dir
}

#[test]
fn appliance_manifests_validate() {
    let copy = appliance_copy();
    let loaded = load_dir(copy.path(), &Policy::default()).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut apps: Vec<&str> = loaded.apps.iter().map(|m| m.app.as_str()).collect();
    apps.sort_unstable();
    assert_eq!(
        apps,
        vec![
            "bitcoin-knots",
            "bitcoin-ui",
            "electrs-ui",
            "electrumx",
            "lnd",
            "lnd-ui"
        ]
    );
    let renderers: Vec<&str> = loaded
        .apps
        .iter()
        .flat_map(|m| m.configs.iter().map(|c| c.render.name()))
        .collect();
    for r in [
        "bitcoin.conf",
        "lnd.conf",
        "electrumx.env",
        "nginx-ui.conf",
        "containers.conf",
    ] {
        assert!(renderers.contains(&r), "{r} rendered by some app");
    }
    // Every app has a memory limit, and bitcoind is the last the OOM killer picks.
    let adj = |app: &str| {
        let r = loaded.get(app).and_then(|m| m.resources.clone()).unwrap();
        assert!(r.memory.is_some(), "{app} has a memory limit");
        r.oom_score_adj
            .map_or(0, archy::manifest::resources::OomScoreAdj::get)
    };
    let bitcoind = adj("bitcoin-knots");
    for app in ["bitcoin-ui", "electrs-ui", "electrumx", "lnd", "lnd-ui"] {
        assert!(adj(app) > bitcoind, "{app} is killed before bitcoind");
    }
    // Every app is probed; lnd and electrumx wait for a synced bitcoind.
    use archy::health::Probe;
    let probe = |app: &str| {
        loaded
            .get(app)
            .and_then(|m| m.health.as_ref())
            .map(archy::health::HealthSpec::probe)
    };
    for (app, expected) in [
        ("bitcoin-knots", "bitcoin_rpc 127.0.0.1:8332"),
        ("bitcoin-ui", "http http://127.0.0.1:8081/"),
        ("lnd-ui", "http http://127.0.0.1:8082/"),
        ("electrs-ui", "http http://127.0.0.1:8083/"),
        ("electrumx", "tcp 127.0.0.1:50001"),
        ("lnd", "lnd_state https://127.0.0.1:8080"),
    ] {
        assert_eq!(
            probe(app).map(|p| p.to_string()).as_deref(),
            Some(expected),
            "{app}"
        );
    }
    assert!(probe("bitcoin-knots").is_some_and(|p| matches!(p, Probe::BitcoinRpc { .. })));
    for app in ["lnd", "electrumx"] {
        let m = loaded.get(app).unwrap();
        assert_eq!(
            m.depends_on,
            vec![archy::manifest::Dependency {
                app: "bitcoin-knots".into(),
                condition: archy::manifest::Condition::Synced
            }],
            "{app}"
        );
    }
    // Every host path of the appliance (bind mounts, env files, config paths, build contexts)
    // lies under the roots the package ships on by default.
    let policy = Policy {
        allowed_volume_roots: shipped_volume_roots(),
        ..Policy::default()
    };
    let strict = load_dir(copy.path(), &policy).unwrap();
    assert!(strict.errors.is_empty(), "{:?}", strict.errors);
    assert_eq!(strict.apps.len(), loaded.apps.len());
}

/// `ARCHY_ALLOWED_VOLUME_ROOTS` as the package ships it: set (not commented out) in
/// /etc/default/archy, and the same in every unit's `Environment=` (on without the file).
fn shipped_volume_roots() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let setting = |text: &str, prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
    };
    let default = std::fs::read_to_string(root.join("packaging/debian/archy.default")).unwrap();
    let list = setting(&default, "ARCHY_ALLOWED_VOLUME_ROOTS=")
        .expect("/etc/default/archy sets ARCHY_ALLOWED_VOLUME_ROOTS");
    for entry in std::fs::read_dir(root.join("systemd-timers")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let unit = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                setting(&unit, "Environment=ARCHY_ALLOWED_VOLUME_ROOTS=").as_deref(),
                Some(list.as_str()),
                "{}",
                path.display()
            );
        }
    }
    std::env::split_paths(&list).collect()
}

#[test]
fn demo_manifests_validate_once_placed() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/manifests"
    ));
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path())
            .unwrap()
            .replace("@DEMO@", "/tmp/archy-demo");
        std::fs::write(dir.path().join(entry.file_name()), text).unwrap();
    }
    let loaded = load_dir(dir.path(), &Policy::default()).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.apps.len(), 3);
    assert!(
        loaded.apps.iter().all(|m| m.build.is_some()),
        "the demo needs no registry"
    );
}

/// A YAML bomb made only of keys a manifest knows (`command`), under the 256 KiB file limit:
/// the binary refuses it naming the file and the problem, in well under a second and 50 MB.
/// Before the expansion bound this file meant 3.9 GB of strings (11 s, 3.8 GB RSS measured).
#[test]
// The child is reaped by wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn yaml_bomb_of_known_keys_costs_the_binary_little() {
    use std::os::unix::process::ExitStatusExt as _;
    let root = tempfile::tempdir().unwrap();
    let manifests = root.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let x = "x".repeat(100 * 1024);
    let mut yaml = format!("app: bomb\nimage: i\ncommand: [&a \"{x}\"");
    while yaml.len() < 250 * 1024 {
        yaml.push_str(", *a");
    }
    yaml.push_str("]\n");
    let file = manifests.join("bomb.yaml");
    std::fs::write(&file, &yaml).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = root.path().join("out");
    let started = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_archy"))
        .arg("--manifests")
        .arg(&manifests)
        .arg("--state-dir")
        .arg(root.path().join("state"))
        .arg("--run-dir")
        .arg(root.path().join("run"))
        // render-config loads every manifest and needs no podman.
        .args(["--podman", "/bin/false", "render-config", "--dry-run"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(root.path().join("err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // wait4: this child's own peak RSS (getrusage's children figure would mix in others).
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &raw mut status, 0, &raw mut usage) };
    assert_eq!(pid, child.id() as i32);
    let elapsed = started.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    let text = std::fs::read_to_string(root.path().join("err")).unwrap()
        + &std::fs::read_to_string(&out).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(
        text.contains("YAML aliases expand this manifest past"),
        "{text}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "took {elapsed:?}"
    );
    // ru_maxrss is in KiB on Linux.
    assert!(
        usage.ru_maxrss < 50 * 1024,
        "peak RSS {} KiB",
        usage.ru_maxrss
    );
}
