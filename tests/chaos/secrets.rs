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
