//! The package's `postrm purge` run directly in a scratch root (`DPKG_ROOT`), for the state
//! directories tests/deb.rs cannot set up on a shared machine: a mount point, a symlink to
//! another disk, a non-default `ARCHY_STATE_DIR`. Purge must remove the contents (the RPC
//! secret above all), exit 0 so dpkg does not leave the package half-purged, clean `/run/archy`
//! and `/etc/archy`, and say exactly what it kept.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    said: String,
}

fn script() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian/postrm");
    let text = std::fs::read_to_string(&path).unwrap();
    // Never run a script that would act on this machine's own /var/lib/archy.
    assert!(
        text.contains("DPKG_ROOT"),
        "postrm does not honour DPKG_ROOT: refusing to run it outside a scratch root"
    );
    path
}

/// `sh postrm ARG` in `root`, optionally after a shell `setup` (in the same private mount
/// namespace, so a tmpfs it mounts goes with the run).
fn postrm(root: &Path, arg: &str, setup: &str) -> Run {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("set -e; {setup}\nsh \"$0\" \"$1\"; rc=$?; echo \"ls: $(ls -A \"$DPKG_ROOT/var/lib/archy\" 2>&1 | tr '\\n' ' ')\" >&2; exit $rc"))
        .arg(script())
        .arg(arg)
        .env("DPKG_ROOT", root)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        said: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// archy's state as a run leaves it, in `dir`.
fn state_in(dir: &Path) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/bitcoin-rpc.json"), "{\"password\":\"x\"}").unwrap();
    std::fs::create_dir_all(dir.join("status")).unwrap();
    std::fs::write(dir.join("status/reconcile.json"), "{}").unwrap();
    std::fs::create_dir_all(dir.join("bitcoin")).unwrap();
    std::fs::write(dir.join("bitcoin/bitcoin.conf"), "rpcauth=x").unwrap();
}

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for d in ["run/archy", "etc/archy/manifests", "var/lib"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("run/archy/reconcile.lock"), "").unwrap();
    (dir, root)
}

fn assert_rest_cleaned(root: &Path, run: &Run) {
    assert!(!root.join("run/archy").exists(), "{}", run.said);
    assert!(!root.join("etc/archy").exists(), "{}", run.said);
}

#[test]
fn a_plain_state_directory_is_purged() {
    let (_keep, root) = scratch();
    state_in(&root.join("var/lib/archy"));
    let run = postrm(&root, "purge", "");
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(!root.join("var/lib/archy").exists(), "{}", run.said);
    assert!(run.said.contains("purged /var/lib/archy"), "{}", run.said);
    assert_rest_cleaned(&root, &run);
}

/// A mount point: emptied (the secret gone), kept, exit 0 (was: EBUSY, exit 1, the package
/// left half-purged with /run/archy and /etc/archy not cleaned).
#[test]
fn a_mount_point_is_emptied_and_kept_and_purge_succeeds() {
    let (_keep, root) = scratch();
    let dir = root.join("var/lib/archy");
    std::fs::create_dir_all(&dir).unwrap();
    let setup = format!(
        "mount -t tmpfs archy-test {0}; mkdir {0}/secrets {0}/status; echo s > {0}/secrets/bitcoin-rpc.json",
        dir.display()
    );
    let run = postrm(&root, "purge", &setup);
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(
        run.said
            .contains("a mount point: emptied, the directory kept"),
        "{}",
        run.said
    );
    assert!(
        run.said.contains("ls: \n") || run.said.contains("ls:  \n"),
        "emptied: {}",
        run.said
    );
    assert_rest_cleaned(&root, &run);
}

/// A symlink to another disk: the state there goes (the secret above all), then the link
/// (was: only the link went, the secret survived while postrm said it purged it).
#[test]
fn a_symlinked_state_directory_is_purged_where_it_points() {
    let (_keep, root) = scratch();
    let disk = root.join("disk2/archy-state");
    state_in(&disk);
    std::os::unix::fs::symlink(&disk, root.join("var/lib/archy")).unwrap();
    let run = postrm(&root, "purge", "");
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(
        !disk.join("secrets/bitcoin-rpc.json").exists(),
        "{}",
        run.said
    );
    assert!(!disk.exists(), "{}", run.said);
    assert!(
        std::fs::symlink_metadata(root.join("var/lib/archy")).is_err(),
        "{}",
        run.said
    );
    assert!(run.said.contains("is a symlink to"), "{}", run.said);
    assert_rest_cleaned(&root, &run);
}

/// A non-default ARCHY_STATE_DIR: `remove` notes it (dpkg deletes /etc/default/archy before
/// `postrm purge` runs), `purge` removes it. A directory without archy's state is kept, said.
#[test]
fn a_configured_state_directory_is_purged_too() {
    let (_keep, root) = scratch();
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(
        root.join("etc/default/archy"),
        "# site\nARCHY_STATE_DIR=\"/srv/node/archy\"\n",
    )
    .unwrap();
    let state = root.join("srv/node/archy");
    state_in(&state);
    let run = postrm(&root, "remove", "");
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(
        state.join("secrets/bitcoin-rpc.json").exists(),
        "remove keeps it"
    );
    std::fs::remove_file(root.join("etc/default/archy")).unwrap();
    let run = postrm(&root, "purge", "");
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(!state.exists(), "{}", run.said);
    assert!(run.said.contains("purged /srv/node/archy"), "{}", run.said);
    assert!(!root.join("var/lib/archy").exists(), "{}", run.said);

    // Not archy's: kept, and said so.
    let (_keep, root) = scratch();
    let other = root.join("var/lib/archy");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("family-photos.tar"), "x").unwrap();
    let run = postrm(&root, "purge", "");
    assert_eq!(run.code, 0, "{}", run.said);
    assert!(other.join("family-photos.tar").exists());
    assert!(run.said.contains("kept /var/lib/archy"), "{}", run.said);
}
