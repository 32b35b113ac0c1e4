//! `archy render-config` and config-driven restarts, against real files and real podman.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn secret_password(root: &TestRoot) -> String {
    let text = std::fs::read_to_string(root.state_dir.join("secrets/bitcoin-rpc.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["password"].as_str().unwrap().to_string()
}

/// bitcoin + lnd + electrumx + a UI that consumes nothing, configs under `<root>/cfg`.
fn node_manifests(root: &TestRoot) -> PathBuf {
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let c = cfg.display();
    root.simple_manifest("bitcoin", &format!("configs:\n  - render: bitcoin.conf\n    path: {c}/bitcoin.conf\n    settings: {{txindex: 1}}\n"));
    root.simple_manifest(
        "lnd",
        &format!("depends_on: [bitcoin]\nconfigs:\n  - render: lnd.conf\n    path: {c}/lnd.conf\n"),
    );
    root.simple_manifest("electrumx", &format!("depends_on: [bitcoin]\nenv_files: [{c}/electrumx.env]\nconfigs:\n  - render: electrumx.env\n    path: {c}/electrumx.env\n    settings: {{COIN: Bitcoin}}\n"));
    root.simple_manifest("ui", "");
    cfg
}

/// A consumer's RPC password as archy derives it: HMAC-SHA256 keyed with the canonical password
/// over `archy-rpc-consumer:<app>` (computed here with Python's hmac, independently).
fn consumer_password(root: &TestRoot, app: &str) -> String {
    hmac_hex(&secret_password(root), &format!("archy-rpc-consumer:{app}"))
}

fn assert_no_secret(outputs: &[&Out], password: &str) {
    for out in outputs {
        assert!(!out.all().contains(password), "secret leaked: {out:?}");
    }
}

#[test]
fn hand_edited_rpcauth_is_detected_and_restored() {
    let root = TestRoot::empty();
    let cfg = node_manifests(&root);
    let first = root.archy(&["render-config"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("created"), "{first:?}");
    let conf = cfg.join("bitcoin.conf");
    let good = std::fs::read_to_string(&conf).unwrap();
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&conf).unwrap()) & 0o777;
    assert_eq!(mode, 0o600);
    let secrets_mode = std::os::unix::fs::MetadataExt::mode(
        &std::fs::metadata(root.state_dir.join("secrets")).unwrap(),
    ) & 0o777;
    assert_eq!(secrets_mode, 0o700);

    let drifted = good
        .lines()
        .map(|l| {
            if l.starts_with("rpcauth=") {
                "rpcauth=archy:deadbeef$0000"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&conf, &drifted).unwrap();
    let check = root.archy(&["render-config", "--check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stdout.contains("bitcoin.conf") && check.stdout.contains("differs"),
        "{check:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        drifted,
        "--check writes nothing"
    );

    let fix = root.archy(&["render-config"]);
    assert_eq!(fix.code, 0, "{fix:?}");
    assert!(fix.stdout.contains("written (drift)"), "{fix:?}");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        good,
        "restored byte for byte (stable salt)"
    );
    let again = root.archy(&["render-config"]);
    assert_eq!(again.code, 0);
    assert!(
        !again.stdout.contains("written (drift)") && again.stdout.contains("3 unchanged"),
        "{again:?}"
    );
    assert_eq!(root.archy(&["render-config", "--check"]).code, 0);
    let json = root.archy(&["render-config", "--check", "--output", "json", "-v"]);
    assert_no_secret(
        &[&first, &check, &fix, &again, &json],
        &secret_password(&root),
    );
    let lnd = std::fs::read_to_string(cfg.join("lnd.conf")).unwrap();
    assert!(lnd.contains(&format!(
        "bitcoind.rpcpass={}",
        consumer_password(&root, "lnd")
    )));
    assert!(lnd.contains("bitcoind.rpcuser=lnd"), "{lnd}");
    assert!(
        !lnd.contains(&secret_password(&root)),
        "lnd never gets the canonical password"
    );
    assert!(lnd.contains("bitcoind.rpchost=archy-bitcoin:8332"), "{lnd}");
}

#[test]
fn lost_secret_is_recreated_and_every_dependent_file_follows() {
    let root = TestRoot::empty();
    let cfg = node_manifests(&root);
    assert_eq!(root.archy(&["render-config"]).code, 0);
    let old = secret_password(&root);
    std::fs::remove_dir_all(root.state_dir.join("secrets")).unwrap();
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 0, "{out:?}");
    let new = secret_password(&root);
    assert_ne!(old, new);
    assert!(std::fs::read_to_string(cfg.join("lnd.conf"))
        .unwrap()
        .contains(&consumer_password(&root, "lnd")));
    assert!(std::fs::read_to_string(cfg.join("electrumx.env"))
        .unwrap()
        .contains(&format!(
            "electrumx:{}@archy-bitcoin:8332",
            consumer_password(&root, "electrumx")
        )));
    let conf = std::fs::read_to_string(cfg.join("bitcoin.conf")).unwrap();
    let line = conf.lines().find(|l| l.starts_with("rpcauth=")).unwrap();
    let (salt, mac) = line
        .trim_start_matches("rpcauth=archy:")
        .split_once('$')
        .unwrap();
    assert_eq!(
        mac,
        hmac_hex(salt, &new),
        "rpcauth verifies against the new secret"
    );
    assert!(!out.all().contains(&new) && !out.all().contains(&old));
}

fn hmac_hex(key: &str, message: &str) -> String {
    let out = std::process::Command::new("python3").args(["-c", "import hmac,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), 'sha256').hexdigest())", key, message]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn symlinked_or_parentless_target_is_an_error_for_that_file_only() {
    let root = TestRoot::empty();
    let cfg = node_manifests(&root);
    let elsewhere = root.dir.join("elsewhere.conf");
    std::fs::write(&elsewhere, "keep me").unwrap();
    std::os::unix::fs::symlink(&elsewhere, cfg.join("lnd.conf")).unwrap();
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("symlink"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep me");
    assert!(
        cfg.join("bitcoin.conf").exists(),
        "other files still rendered"
    );
}

#[test]
fn sigkill_during_render_never_leaves_a_torn_file() {
    let root = TestRoot::empty();
    let cfg = node_manifests(&root);
    assert_eq!(root.archy(&["render-config"]).code, 0);
    let complete = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        text.starts_with("# Generated by archy")
            && text.ends_with('\n')
            && text.lines().count() >= 3
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..25 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_micros(seed % 6000);
        let mut child = root
            .archy_cmd()
            .args(["render-config", "--rotate-secret"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        for file in ["bitcoin.conf", "lnd.conf", "electrumx.env"] {
            assert!(
                complete(&cfg.join(file)),
                "{file} torn after a kill at {delay:?}"
            );
        }
    }
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 0, "{out:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&cfg)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files of killed writes are swept: {leftovers:?}"
    );
    assert_eq!(
        root.archy(&["render-config", "--check"]).code,
        0,
        "converged after the kills"
    );
    let secret: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.state_dir.join("secrets/bitcoin-rpc.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        secret["password"].as_str().unwrap().len(),
        64,
        "secret file intact"
    );
}

#[test]
fn drift_restarts_only_the_consumers() {
    let root = TestRoot::new();
    let cfg = node_manifests(&root);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = |app: &str| root.container_id(&format!("archy-{app}"));
    let started = |app: &str| {
        root.podman_ok(&[
            "inspect",
            "--format",
            "{{.State.StartedAt}}",
            &format!("archy-{app}"),
        ])
    };
    let before: Vec<(String, String)> = ["bitcoin", "lnd", "electrumx", "ui"]
        .iter()
        .map(|a| (id(a), started(a)))
        .collect();

    // Hand edit of bitcoin.conf: restored byte for byte, and bitcoind restarted to re-read it.
    let conf = cfg.join("bitcoin.conf");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, good.replace("rpcauth=archy:", "rpcauth=evil:")).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), good);
    assert_ne!(
        started("bitcoin"),
        before[0].1,
        "bitcoind restarted: {out:?}"
    );
    assert_eq!(started("lnd"), before[1].1, "lnd untouched");
    assert_eq!(started("ui"), before[3].1, "ui untouched");

    // Rotation: every consumer follows the new secret (recreated: its files' hashes changed).
    let out = root.archy(&["render-config", "--rotate-secret"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_ne!(id("bitcoin"), before[0].0);
    assert_ne!(id("lnd"), before[1].0);
    assert_ne!(id("electrumx"), before[2].0);
    assert_eq!(
        id("ui"),
        before[3].0,
        "the app that consumes no config keeps its container"
    );
    let env = root.podman_ok(&["exec", "archy-electrumx", "env"]);
    assert!(env.contains(&format!(
        "DAEMON_URL=http://electrumx:{}@archy-bitcoin:8332/",
        consumer_password(&root, "electrumx")
    )));
    let out = root.archy(&["reconcile"]);
    assert!(out.stdout.contains("4 ok"), "converged: {out:?}");
    assert!(!out.all().contains(&secret_password(&root)));
    assert!(!out.all().contains(&consumer_password(&root, "electrumx")));
}

/// Every rpcauth user has its own salt (was: one shared by all), each line verifies against its
/// user's password with rpcauth.py's HMAC, and a second render keeps every salt (no drift).
#[test]
fn every_rpcauth_user_has_its_own_stable_salt() {
    let root = TestRoot::empty();
    let cfg = node_manifests(&root);
    assert_eq!(root.archy(&["render-config"]).code, 0);
    let conf = std::fs::read_to_string(cfg.join("bitcoin.conf")).unwrap();
    let lines: Vec<(String, String, String)> = conf
        .lines()
        .filter_map(|l| l.strip_prefix("rpcauth="))
        .map(|l| {
            let (user, rest) = l.split_once(':').unwrap();
            let (salt, mac) = rest.split_once('$').unwrap();
            (user.to_string(), salt.to_string(), mac.to_string())
        })
        .collect();
    assert!(lines.len() >= 3, "{conf}");
    let salts: std::collections::BTreeSet<&String> = lines.iter().map(|(_, s, _)| s).collect();
    assert_eq!(salts.len(), lines.len(), "one salt per user: {conf}");
    for (user, salt, mac) in &lines {
        let password = if user == "archy" {
            secret_password(&root)
        } else {
            consumer_password(&root, user)
        };
        assert_eq!(mac, &hmac_hex(salt, &password), "{user}");
    }
    let out = root.archy(&["render-config", "--check"]);
    assert_eq!(out.code, 0, "salts kept: {out:?}");
}
