//! The canonical secret never leaks: every subcommand, with `-v`, `--output json`, `--dry-run`
//! and forced errors; all output and every state-dir file outside `secrets/` grepped for it.

use std::path::Path;

use crate::common::*;
use crate::support::*;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

// A scenario test: its steps read top to bottom, each checking what the one before left.
#[allow(clippy::too_many_lines)]
#[test]
fn secret_never_in_output_or_state_files() {
    let mut case = Case::new(
        "secrets: every subcommand with -v, --output json, --dry-run and forced errors",
        "the password appears in no output and no state-dir file outside secrets/",
    );
    let root = TestRoot::new();
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let c = cfg.display();
    root.simple_manifest(
        "bitcoin",
        &format!("configs:\n  - render: bitcoin.conf\n    path: {c}/bitcoin.conf\n"),
    );
    root.simple_manifest(
        "lnd",
        &format!("owner: systemd\nconfigs:\n  - render: lnd.conf\n    path: {c}/lnd.conf\n"),
    );
    root.simple_manifest("electrumx", &format!("env_files: [{c}/electrumx.env]\nconfigs:\n  - render: electrumx.env\n    path: {c}/electrumx.env\n"));
    root.simple_manifest(
        "ui",
        &format!("configs:\n  - render: nginx-ui.conf\n    path: {c}/default.conf\n    settings: {{rpc_path: /rpc}}\n"),
    );
    assert_eq!(root.archy(&["render-config"]).code, 0);
    let secret: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.state_dir.join("secrets/bitcoin-rpc.json")).unwrap(),
    )
    .unwrap();
    let password = secret["password"].as_str().unwrap().to_string();
    // Consumers carry passwords derived from it; those must not leak either.
    let lnd_conf = std::fs::read_to_string(cfg.join("lnd.conf")).unwrap();
    let lnd_password = lnd_conf
        .lines()
        .find_map(|l| l.strip_prefix("bitcoind.rpcpass="))
        .expect("sanity: lnd.conf carries a password")
        .to_string();
    assert_eq!(lnd_password.len(), 64);
    let install = tempfile::tempdir().unwrap();
    let not_gzip = root.dir.join("notes.tar.gz");
    std::fs::write(&not_gzip, &password).unwrap();
    let commands: Vec<Vec<String>> = [
        "reconcile",
        "reconcile --dry-run",
        "build-image",
        "build-image --dry-run",
        "render-config",
        "render-config --dry-run",
        "render-config --check",
        "heal-podman --dry-run",
        "heal-podman",
        "verify-update",
        "verify-update --arm",
        "rollback --dry-run",
        "rollback",
        "status",
        "quadlet --dry-run",
    ]
    .iter()
    .map(|s| s.split(' ').map(String::from).collect())
    .chain(std::iter::once(vec![
        "verify-update".into(),
        "--tarball".into(),
        not_gzip.display().to_string(),
    ]))
    .collect();
    let mut outputs = Vec::new();
    let mut run_all = |label: &str, extra_env: &[(&str, &str)]| {
        for cmd in &commands {
            for flags in [&[][..], &["-v", "-v"][..], &["--output", "json"][..]] {
                let mut c = root.archy_cmd();
                c.args(cmd)
                    .args(flags)
                    .env("ARCHY_INSTALL_ROOT", install.path());
                for (k, v) in extra_env {
                    c.env(k, v);
                }
                let o = c.output().unwrap();
                outputs.push((
                    format!("{label}: {cmd:?} {flags:?}"),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                ));
            }
        }
    };
    case.run();
    run_all("normal", &[]);
    // Forced errors: drift + a symlinked target, podman failing, a lock held, a bad manifest.
    std::fs::write(
        cfg.join("bitcoin.conf"),
        format!("rpcpassword={password}\n"),
    )
    .unwrap();
    std::fs::remove_file(cfg.join("lnd.conf")).unwrap();
    std::os::unix::fs::symlink(cfg.join("electrumx.env"), cfg.join("lnd.conf")).unwrap();
    root.manifest(
        "broken",
        &format!("app: broken\nimage: i\nenv: {{\"{password}\": x}}\n"),
    );
    run_all("forced errors", &[]);
    run_all("podman failing", &[("ARCHY_PODMAN", "/bin/false")]);
    for (label, text) in &outputs {
        // The bad manifest's own key is quoted back to the operator; that's the manifest's text,
        // not the secret file's. Everything else must not carry it.
        let text = text.replace(&format!("`{password}`"), "");
        assert!(
            !text.contains(&password),
            "secret leaked in {label}: {text}"
        );
        assert!(
            !text.contains(&lnd_password),
            "derived secret leaked in {label}: {text}"
        );
    }
    let mut files = Vec::new();
    walk(&root.state_dir, &mut files);
    let secrets_dir = root.state_dir.join("secrets");
    let mut checked = 0;
    for f in files.iter().filter(|f| !f.starts_with(&secrets_dir)) {
        let bytes = std::fs::read(f).unwrap_or_default();
        case.data_kept(true, "");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&password)
                && !String::from_utf8_lossy(&bytes).contains(&lnd_password),
            "secret leaked into {}",
            f.display()
        );
        checked += 1;
    }
    eprintln!(
        "{} outputs and {checked} state files checked",
        outputs.len()
    );
    case.pass();
}

/// Issue 15: rotation with an app filter used to rewrite only that app's files; the other
/// consumers kept the old credentials. Now a filter is refused, and a rotation re-renders every
/// consumer's files and reconcile restarts every consumer.
#[test]
fn rotation_refuses_an_app_filter_and_reaches_every_consumer() {
    let mut case = Case::new(
        "secrets: `render-config --rotate-secret APP` (an app filter with rotation)",
        "refused (exit 2, says why, nothing rotated); a rotation re-renders every consumer's files and reconcile restarts every consumer",
    );
    case.run();
    let root = TestRoot::new();
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let c = cfg.display();
    root.simple_manifest(
        "bitcoin",
        &format!("configs:\n  - render: bitcoin.conf\n    path: {c}/bitcoin.conf\n"),
    );
    root.simple_manifest(
        "lnd",
        &format!("depends_on: [bitcoin]\nconfigs:\n  - render: lnd.conf\n    path: {c}/lnd.conf\n"),
    );
    root.simple_manifest("electrumx", &format!("depends_on: [bitcoin]\nenv_files: [{c}/electrumx.env]\nconfigs:\n  - render: electrumx.env\n    path: {c}/electrumx.env\n    settings: {{COIN: Bitcoin}}\n"));
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let before = secret_password(&root);
    let files = ["bitcoin.conf", "lnd.conf", "electrumx.env"];
    let contents = |cfg: &std::path::Path| -> Vec<String> {
        files
            .iter()
            .map(|f| std::fs::read_to_string(cfg.join(f)).unwrap())
            .collect()
    };
    let old_files = contents(&cfg);
    let started = |root: &TestRoot, app: &str| {
        root.podman_ok(&[
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &format!("archy-{app}"),
        ])
    };
    let old_started: Vec<String> = ["bitcoin", "lnd", "electrumx"]
        .iter()
        .map(|a| started(&root, a))
        .collect();

    let refused = root.archy(&["render-config", "--rotate-secret", "bitcoin"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.all().contains("does not take apps"), "{refused:?}");
    assert_eq!(secret_password(&root), before, "nothing rotated");
    assert_eq!(contents(&cfg), old_files);

    let out = root.archy(&["render-config", "--rotate-secret"]);
    assert_eq!(out.code, 0, "{out:?}");
    let after = secret_password(&root);
    assert_ne!(after, before);
    for (file, (old, new)) in files.iter().zip(old_files.iter().zip(contents(&cfg))) {
        assert_ne!(old, &new, "{file} not re-rendered");
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    for (app, old) in ["bitcoin", "lnd", "electrumx"].iter().zip(old_started) {
        assert_ne!(
            started(&root, app),
            old,
            "{app} not restarted with the new secret"
        );
    }
    for o in [&refused, &out] {
        assert!(!o.all().contains(&after), "secret leaked: {o:?}");
    }
    case.pass();
}

fn secret_password(root: &TestRoot) -> String {
    let text = std::fs::read_to_string(root.state_dir.join("secrets/bitcoin-rpc.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["password"].as_str().unwrap().to_string()
}
