//! Issue 14, cases 5–10: what a local user who is not root (the real `nobody`, via `setpriv`)
//! or a manifest can steer: archy's locks, its paths, the processes heal-podman acts on, and
//! the smaller input cases.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const NOBODY: u32 = 65534;

/// `setpriv` argv prefix running the rest as `nobody` (no supplementary groups).
fn as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--reset-env",
    ]);
    cmd
}

/// Kills the child it wraps, and that child's own children (`flock` runs its command as one),
/// when dropped (also when the test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (bounded) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_local_user_cannot_hold_archys_locks_silently() {
    let mut case = Case::hostile(
        "#05",
        "locks: `nobody` holds `reconcile.lock` (`flock -x … sleep`); planted `reconcile.lock -> /elsewhere`; run dir world-writable or owned by `nobody`",
        "run dir 0700 and lock files 0600 (nobody cannot open them); a lock nobody opened earlier is reported with pid, user and command, exit 1 (not 75); symlink not followed; unsafe run dir refused naming mode and owner (exit 2)",
    );
    case.run();
    let root = TestRoot::empty();
    // A fresh run dir: 0700, lock files 0600, and `nobody` cannot take the lock.
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lock = root.run_dir.join("reconcile.lock");
    assert_eq!(mode(&root.run_dir), 0o700);
    assert_eq!(mode(&lock), 0o600);
    let attempt = as_nobody()
        .args(["flock", "-n", "-x"])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(!attempt.status.success(), "nobody took the lock");

    // An older archy's 0755 run dir and 0644 lock file, opened and locked by `nobody`.
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let holder = Reaped(
        as_nobody()
            .args(["flock", "-x"])
            .arg(&lock)
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let held = || {
        !Command::new("flock")
            .args(["-n", "-x"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    wait_for("nobody to hold the lock", held);
    let out = root.archy(&["reconcile", "--lock-wait", "200ms"]);
    assert_eq!(
        out.code, 1,
        "a foreign holder is a failure, not exit 75: {out:?}"
    );
    let pid = holder.0.id();
    for expected in [
        format!("held by pid {pid} (user nobody, uid {NOBODY}"),
        format!("command `flock -x {} sleep 1000`", lock.display()),
        "not an archy run".to_string(),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}: {out:?}");
    }
    // archy narrowed the old lock file on the way (nobody keeps only what it opened before).
    assert_eq!(mode(&lock), 0o600);
    drop(holder);

    // A planted symlink: not followed, its target never created.
    std::fs::remove_file(&lock).unwrap();
    let elsewhere = root.dir.join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("is a symlink; refusing to follow it"),
        "{out:?}"
    );
    assert!(!elsewhere.exists());
    std::fs::remove_file(&lock).unwrap();

    // A run dir others can write, or owned by another user: refused, naming mode and owner.
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "lock directory {} is 0777 (drwxrwxrwx) owned by root (uid 0)",
            root.run_dir.display()
        )),
        "{out:?}"
    );
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&root.run_dir, Some(NOBODY), None).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("0700 (drwx------) owned by nobody (uid 65534)"),
        "{out:?}"
    );
    std::os::unix::fs::chown(&root.run_dir, Some(0), None).unwrap();
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    case.pass();
}
