//! Pins the `--output json` of reconcile, status and render-config, byte for byte, for one fixed
//! situation against real podman: a bitcoind with bitcoin.conf, an lnd with lnd.conf that
//! depends on it, a plain UI app, an app whose env file is missing (it fails), a systemd-owned
//! app without its Quadlet unit (delegated, failed), then an orphan and a hand-edited config.
//!
//! Only what truly varies between runs is normalised: the test root's path, network name,
//! subnet and gateway, times (`at`, `started_at`, `uptime_seconds`), free space (`free_bytes`,
//! `size_bytes`, `free_percent`). Everything else (keys,
//! key order, statuses, outcomes, reasons, errors) must stay identical; the expected text lives
//! in `tests/fixtures/json-pin.txt`. `ARCHY_BLESS=1` rewrites it (only for a deliberate change
//! of the output, which is then visible in the diff).
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use serde_json::Value;

fn normalise(root: &TestRoot, out: &Out) -> String {
    let text = out
        .stdout
        .replace(&root.dir.display().to_string(), "<root>")
        .replace(&root.subnet, "<subnet>")
        .replace(&root.gateway, "<gateway>")
        .replace(&root.network, "<network>");
    let mut doc: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if matches!(
                        key.as_str(),
                        "at" | "started_at"
                            | "uptime_seconds"
                            | "duration_ms"
                            | "free_bytes"
                            | "size_bytes"
                            | "free_percent"
                    ) && !value.is_null()
                    {
                        *value = Value::String("<time>".into());
                    } else {
                        walk(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut doc);
    format!(
        "exit {}\n{}\n",
        out.code,
        serde_json::to_string_pretty(&doc).unwrap()
    )
}

#[test]
fn json_output_of_reconcile_status_and_render_config_is_pinned() {
    let root = TestRoot::new();
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let c = cfg.display();
    let quadlet = root.dir.join("quadlet");
    root.simple_manifest(
        "bitcoin",
        &format!("configs:\n  - render: bitcoin.conf\n    path: {c}/bitcoin.conf\n    settings: {{txindex: 1}}\n"),
    );
    root.simple_manifest(
        "lnd",
        &format!("depends_on: [bitcoin]\nconfigs:\n  - render: lnd.conf\n    path: {c}/lnd.conf\n"),
    );
    root.simple_manifest("ui", "");
    root.simple_manifest("broken", &format!("env_files: [{c}/missing.env]\n"));
    root.manifest(
        "sysd",
        &format!("app: sysd\nimage: {TEST_IMAGE}\nowner: systemd\n"),
    );

    let mut transcript = String::new();
    let mut step = |name: &str, args: &[&str]| {
        let mut argv = args.to_vec();
        let q = quadlet.display().to_string();
        argv.extend(["--output", "json", "--quadlet-dir"]);
        argv.push(&q);
        let out = root.archy(&argv);
        transcript.push_str(&format!("### {name}: archy {}\n", args.join(" ")));
        transcript.push_str(&normalise(&root, &out));
    };

    step(
        "render-config check before anything",
        &["render-config", "--check"],
    );
    step("reconcile dry run", &["reconcile", "--dry-run"]);
    step("status before", &["status"]);
    step("reconcile", &["reconcile"]);
    step("reconcile again", &["reconcile"]);
    step("render-config", &["render-config"]);
    step("status converged but for the failing apps", &["status"]);

    // An orphan and a hand-edited config.
    std::fs::remove_file(root.manifests.join("ui.yaml")).unwrap();
    std::fs::write(cfg.join("lnd.conf"), "hand edited\n").unwrap();
    step("status with an orphan and drift", &["status"]);
    step(
        "render-config check with drift",
        &["render-config", "--check"],
    );
    step(
        "reconcile dry run with orphan and drift",
        &["reconcile", "--dry-run"],
    );
    step("reconcile with orphan and drift", &["reconcile"]);
    step("status after", &["status"]);
    step("targeted reconcile", &["reconcile", "lnd"]);

    let expected_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json-pin.txt");
    if std::env::var_os("ARCHY_BLESS").is_some() {
        std::fs::write(&expected_path, &transcript).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert!(
        transcript == expected,
        "JSON output changed; diff tests/fixtures/json-pin.txt against:\n{transcript}"
    );
}
