//! `archy heal-podman` with **rootless** podman: a dedicated test user (created once, with
//! subordinate ids) runs podman and archy; its storage is that user's own (rootless podman 4.3
//! here ignores CONTAINERS_STORAGE_CONF), apart from the machine's rootful storage, and is reset
//! when the test ends. Covers the
//! rootless path derivation (runtime dir without `$XDG_RUNTIME_DIR` falls back to
//! `/tmp/podman-run-<uid>`, where runc keeps its state) on the "DB deleted under a running app"
//! case. Rootless networking needs /dev/net/tun, which this sandbox lacks, so the app uses
//! `network: host`.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{make_busybox_context, Out};

const USER: &str = "archy-rootless";
const IMAGE: &str = "localhost/archy-rootless-busybox:latest";

/// The test user, created when missing, with subordinate uid/gid ranges for user namespaces.
fn ensure_user() -> (u32, PathBuf) {
    if !Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success()
    {
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            let mut all = text;
            all.push_str(&format!("{USER}:300000:65536\n"));
            std::fs::write(file, all).unwrap();
        }
    }
    let uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", USER])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    (uid, PathBuf::from(format!("/home/{USER}")))
}

/// A rootless root: the test user's storage, plus this test's containers.conf, manifests and
/// archy dirs, all owned by the test user.
struct RootlessRoot {
    uid: u32,
    dir: PathBuf,
    home: PathBuf,
    archy: PathBuf,
}

impl RootlessRoot {
    fn new() -> Self {
        let (uid, home) = ensure_user();
        let dir = PathBuf::from(format!("/tmp/archy-rootless-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        make_busybox_context(&dir.join("ctx"));
        // The test binary may live under a directory the user cannot enter: give it a copy.
        let archy = dir.join("archy");
        std::fs::copy(env!("CARGO_BIN_EXE_archy"), &archy).unwrap();
        std::fs::set_permissions(&archy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let chown = Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}"), &dir.display().to_string()])
            .output()
            .unwrap();
        assert!(chown.status.success());
        let root = RootlessRoot {
            uid,
            dir,
            home,
            archy,
        };
        // Start from a clean user: an earlier aborted run may have left containers or processes.
        root.reset();
        root
    }

    fn reset(&self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        // The ghost's processes and podman's rootless pause process belong to the test user only.
        let _ = Command::new("pkill").args(["-KILL", "-u", USER]).output();
    }

    /// Run a program as the test user with this root's environment (no XDG_RUNTIME_DIR: podman
    /// falls back to /tmp/podman-run-<uid>, the case the fallback must get right).
    fn run(&self, program: &Path, args: &[&str]) -> Out {
        let d = self.dir.display();
        let out = Command::new("runuser")
            .args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("CONTAINERS_CONF={d}/containers.conf"))
            .arg(format!("ARCHY_MANIFESTS={d}/manifests"))
            .arg(format!("ARCHY_STATE_DIR={d}/state"))
            .arg(format!("ARCHY_RUN_DIR={d}/locks"))
            .arg(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        Out::from(out)
    }

    fn podman(&self, args: &[&str]) -> Out {
        self.run(Path::new("podman"), args)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert_eq!(out.code, 0, "podman {args:?}: {out:?}");
        out.stdout.trim().to_string()
    }

    fn archy(&self, args: &[&str]) -> Out {
        self.run(&self.archy.clone(), args)
    }
}

impl Drop for RootlessRoot {
    fn drop(&mut self) {
        self.reset();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Leave the machine as found: no test user, no subordinate id ranges.
        let _ = Command::new("userdel").args(["--remove", USER]).output();
        for file in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = std::fs::read_to_string(file) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{USER}:")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = std::fs::write(file, kept);
            }
        }
        let _ = std::fs::remove_dir_all(format!("/tmp/podman-run-{}", self.uid));
    }
}

#[test]
fn rootless_db_deleted_under_a_running_app_is_healed() {
    common::require_podman();
    let root = RootlessRoot::new();
    root.podman_ok(&[
        "build",
        "-q",
        "-t",
        IMAGE,
        &root.dir.join("ctx").display().to_string(),
    ]);
    std::fs::write(
        root.dir.join("manifests/app.yaml"),
        format!("app: app\nimage: {IMAGE}\npull: never\nnetwork: host\nstop_timeout: 1\nvolumes: [\"rl-data:/data\"]\n"),
    )
    .unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    root.podman_ok(&["exec", "archy-app", "sh", "-c", "echo precious > /data/f"]);
    let image = root.podman_ok(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);

    let healthy = root.archy(&["heal-podman"]);
    assert_eq!(healthy.code, 0, "a healthy rootless engine: {healthy:?}");
    assert!(healthy.stdout.contains("podman healthy"), "{healthy:?}");
    assert!(
        healthy.stdout.contains("/tmp/podman-run-"),
        "runtime root from the fallback: {healthy:?}"
    );

    std::fs::remove_file(
        root.home
            .join(".local/share/containers/storage/libpod/bolt_state.db"),
    )
    .unwrap();
    let out = root.archy(&["reconcile"]);
    assert_ne!(
        out.code, 0,
        "the name is still taken by the storage-only container: {out:?}"
    );

    let heal = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    let json = heal.json();
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str().or(s["name"].as_str()))
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("ghost")),
        "the ghost runc container is killed: {steps:?} {json}"
    );
    assert!(
        steps.iter().any(|s| s.contains("storage")),
        "the storage-only container is removed: {steps:?}"
    );

    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.podman_ok(&["exec", "archy-app", "cat", "/data/f"]),
        "precious",
        "volume data kept"
    );
    assert_eq!(
        root.podman_ok(&["image", "inspect", "--format", "{{.Id}}", IMAGE]),
        image,
        "image kept"
    );
    let again = root.archy(&["heal-podman"]);
    assert!(again.stdout.contains("podman healthy"), "{again:?}");
}
