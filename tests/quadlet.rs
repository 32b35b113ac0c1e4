//! `archy quadlet`: the units it writes are accepted by the real Quadlet generator (podman 5.x's
//! `quadlet -dryrun`, fetched by `.ci/fetch-quadlet`) for targets before and after 5.3, and the
//! generated `ExecStart` carries everything the manifest asks for. Reconcile checks the unit.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = "app: web
image: localhost/web:1
owner: systemd
command: [\"/bin/httpd\", \"-f\", \"-h\", \"/srv/www root\"]
env: {GREETING: \"hello world\", PLAIN: \"1\"}
env_files: [ENVFILE]
ports: [\"127.0.0.1:8081:80\"]
volumes: [\"web-data:/data\"]
restart: unless-stopped
stop_timeout: 7
logging: {max_size: 2m}
resources: {memory: 64m, memory_reservation: 32m, cpus: 0.5, pids_limit: 64, oom_score_adj: 300}
";

/// The real Quadlet generator: $ARCHY_QUADLET_BIN, else what `.ci/fetch-quadlet` provides.
/// Not finding it is a failure, not a skip.
fn quadlet_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_quadlet).clone()
}

fn find_quadlet() -> PathBuf {
    let bin = fetched_tool("ARCHY_QUADLET_BIN", "fetch-quadlet");
    assert!(bin.is_file(), "fetch-quadlet printed {}", bin.display());
    bin
}

struct Setup {
    _tmp: tempfile::TempDir,
    manifests: PathBuf,
    env_file: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let env_file = root.join("web.env");
    std::fs::write(&env_file, "SECRETLESS=1\n").unwrap();
    std::fs::write(
        manifests.join("web.yaml"),
        MANIFEST.replace("ENVFILE", &env_file.display().to_string()),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        manifests,
        env_file,
        root,
    }
}

fn archy(s: &Setup, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_archy"))
        .args(args)
        .env("ARCHY_MANIFESTS", &s.manifests)
        .env("ARCHY_STATE_DIR", s.root.join("state"))
        .env("ARCHY_RUN_DIR", s.root.join("run"))
        .env("ARCHY_SUBNET", "10.89.0.0/24")
        .env("ARCHY_NETWORK", "archy")
        .env_remove("ARCHY_PODMAN_VERSION")
        .env_remove("ARCHY_QUADLET_DIR")
        .output()
        .unwrap()
}

/// Run the real generator on a directory; returns its dry-run output (the generated services).
fn generate(dir: &Path) -> String {
    let out = Command::new(quadlet_bin())
        .arg("-dryrun")
        .env("QUADLET_UNIT_DIRS", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "quadlet -dryrun failed:\n{stdout}\n{stderr}"
    );
    for bad in ["unsupported", "error", "Error", "converting"] {
        assert!(
            !stderr.contains(bad),
            "quadlet complained ({bad}):\n{stderr}"
        );
    }
    assert!(stdout.contains("---web.service---"), "{stdout}\n{stderr}");
    stdout
}

fn exec_start(generated: &str) -> String {
    generated
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in:\n{generated}"))
        .to_string()
}

fn assert_carries_the_manifest(exec: &str, s: &Setup) {
    for part in [
        "--name archy-web",
        "--network archy",
        "--publish 127.0.0.1:8081:80",
        "-v web-data:/data",
        "--env \"GREETING=hello world\"",
        "--env PLAIN=1",
        &format!("--env-file {}", s.env_file.display()),
        "--label io.archy.managed=true",
        "--label io.archy.app=web",
        "--label io.archy.spec-hash=",
        " localhost/web:1 /bin/httpd -f -h \"/srv/www root\"",
        "--memory=64m",
        "--memory-reservation=32m",
        "--cpus=0.5",
        "--pids-limit=64",
        "--oom-score-adj=300",
    ] {
        assert!(exec.contains(part), "ExecStart lacks `{part}`:\n{exec}");
    }
}

#[test]
fn units_for_podman_5_3_use_add_host_and_the_real_generator_accepts_them() {
    let s = setup();
    let out_dir = s.root.join("units");
    let out = archy(
        &s,
        &[
            "quadlet",
            "--podman-version",
            "5.3",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("written"));
    let unit = std::fs::read_to_string(out_dir.join("web.container")).unwrap();
    assert!(
        unit.contains("\nAddHost=host.archipelago:10.89.0.1\n"),
        "{unit}"
    );
    assert!(!unit.contains("PodmanArgs=--add-host"), "{unit}");
    assert!(
        unit.contains("\nLogDriver=k8s-file\nLogOpt=max-size=2m\n"),
        "{unit}"
    );

    let generated = generate(&out_dir);
    let exec = exec_start(&generated);
    assert_carries_the_manifest(&exec, &s);
    assert!(
        exec.contains("--add-host host.archipelago:10.89.0.1"),
        "{exec}"
    );
    assert!(exec.contains("--stop-timeout 7"), "{exec}");
    assert!(
        exec.contains("--log-driver k8s-file --log-opt max-size=2m"),
        "{exec}"
    );
    assert!(generated.contains("\nRestart=always\n"), "{generated}");

    // A second run changes nothing.
    let before = std::fs::metadata(out_dir.join("web.container"))
        .unwrap()
        .modified()
        .unwrap();
    let out = archy(
        &s,
        &[
            "quadlet",
            "--podman-version",
            "5.3",
            "--out",
            out_dir.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["units"][0]["status"], "unchanged", "{doc}");
    let after = std::fs::metadata(out_dir.join("web.container"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "an unchanged unit is not rewritten");
}

#[test]
fn units_for_podman_before_5_3_pass_hosts_through_podman_args() {
    let s = setup();
    let out_dir = s.root.join("units");
    let out = archy(
        &s,
        &[
            "quadlet",
            "web",
            "--podman-version",
            "4.9",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let unit = std::fs::read_to_string(out_dir.join("web.container")).unwrap();
    assert!(!unit.contains("AddHost="), "{unit}");
    assert!(
        unit.contains("\nPodmanArgs=--add-host=host.archipelago:10.89.0.1\n"),
        "{unit}"
    );
    let exec = exec_start(&generate(&out_dir));
    assert_carries_the_manifest(&exec, &s);
    assert!(
        exec.contains("--add-host=host.archipelago:10.89.0.1"),
        "{exec}"
    );
    assert!(exec.contains("--stop-timeout=7"), "{exec}");
    // 4.9's Quadlet knows LogDriver= (4.5) but not LogOpt= (5.2).
    assert!(unit.contains("\nLogDriver=k8s-file\n"), "{unit}");
    assert!(
        exec.contains("--log-driver k8s-file") && exec.contains("--log-opt=max-size=2m"),
        "{exec}"
    );
}

#[test]
fn dry_run_writes_nothing_and_podman_without_quadlet_is_invalid_input() {
    let s = setup();
    let out_dir = s.root.join("units");
    let out = archy(
        &s,
        &[
            "quadlet",
            "--podman-version",
            "5.3",
            "--out",
            out_dir.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("would-write"));
    assert!(!out_dir.join("web.container").exists());

    let out = archy(
        &s,
        &[
            "quadlet",
            "--podman-version",
            "4.3",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("podman 4.3 has no Quadlet"), "{stderr}");
}

#[test]
fn reconcile_leaves_systemd_apps_alone_but_reports_a_missing_or_stale_unit() {
    let root = TestRoot::empty();
    let units = root.dir.join("quadlet");
    let units_str = units.to_str().unwrap().to_string();
    root.manifest(
        "web",
        "app: web\nimage: localhost/web:1\nowner: systemd\nenv: {A: \"1\"}\n",
    );
    let reconcile = |dry: bool| {
        let mut args = vec!["reconcile", "--quadlet-dir", &units_str];
        if dry {
            args.push("--dry-run");
        }
        root.archy(&args)
    };
    let out = reconcile(false);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("archy quadlet web"), "{out:?}");
    assert_eq!(root.state("archy-web"), "missing", "archy never runs it");

    let out = root.archy(&["quadlet", "--podman-version", "5.3", "--out", &units_str]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = reconcile(false);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-web"), "missing", "archy never runs it");

    root.manifest(
        "web",
        "app: web\nimage: localhost/web:1\nowner: systemd\nenv: {A: \"2\"}\n",
    );
    let out = reconcile(true);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("is out of date"), "{out:?}");
}

/// An `exec` probe becomes podman's healthcheck: the real generator turns the keys (5.x) and the
/// `PodmanArgs=` fallback (4.4) into the same `--health-*` flags, argv kept as a JSON array.
#[test]
fn exec_probe_becomes_a_podman_healthcheck_in_the_generated_service() {
    let s = setup();
    let manifest = s.manifests.join("web.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}health:\n  exec: [\"/bin/wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"]\n  failures: 4\n  start_period: 1m\n"),
    )
    .unwrap();
    for version in ["5.3", "4.4"] {
        let out_dir = s.root.join(format!("units-{version}"));
        let out = archy(
            &s,
            &[
                "quadlet",
                "--podman-version",
                version,
                "--out",
                out_dir.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let unit = std::fs::read_to_string(out_dir.join("web.container")).unwrap();
        assert!(unit.contains("# Health: `exec /bin/wget"), "{unit}");
        let exec = exec_start(&generate(&out_dir));
        for part in [
            r#"--health-cmd "[\"/bin/wget\",\"-q\",\"-O\",\"/dev/null\",\"http://127.0.0.1/\"]""#,
            "--health-retries 4",
            "--health-interval 30s",
            "--health-start-period 60s",
            "--health-timeout 10s",
        ] {
            // 4.4's `PodmanArgs=--health-cmd=…` is quoted as one word by the generator.
            let alt = if part.starts_with("--health-cmd ") {
                format!(
                    "\"--health-cmd={}\"",
                    &part["--health-cmd \"".len()..part.len() - 1]
                )
            } else {
                part.replacen(' ', "=", 1)
            };
            assert!(
                exec.contains(part) || exec.contains(&alt),
                "{version}: ExecStart lacks `{part}`:\n{exec}"
            );
        }
    }
}
