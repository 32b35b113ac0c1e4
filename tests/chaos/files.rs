//! Rendered-file faults: edited by hand, deleted, replaced by a symlink, made read-only; the
//! state dir on a full file system.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::support::*;

/// One app consuming a rendered bitcoin.conf under `<root>/cfg`.
fn lnd(root: &TestRoot) -> PathBuf {
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    root.simple_manifest(
        "lnd",
        &format!(
            "configs:\n  - render: bitcoin.conf\n    path: {}/bitcoin.conf\n",
            cfg.display()
        ),
    );
    cfg.join("bitcoin.conf")
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Converge, damage the file, reconcile: the file is back byte for byte with mode 0600 and the
/// consumer runs.
fn restored(fault: &str, response: &str, damage: impl Fn(&Path)) {
    let mut case = Case::new(fault, response);
    let root = TestRoot::new();
    let file = lnd(&root);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let good = std::fs::read(&file).unwrap();
    case.run();
    damage(&file);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    case.data_kept(
        std::fs::read(&file).ok().as_deref() == Some(&good[..]),
        "rendered config",
    );
    assert_eq!(mode(&file), 0o600, "mode restored");
    assert_eq!(root.state("archy-lnd"), "running");
    assert_eq!(root.archy(&["render-config", "--check"]).code, 0);
    case.pass();
}

#[test]
fn config_edited_by_hand() {
    restored(
        "file: rendered config edited by hand",
        "rewritten atomically; consumer restarted",
        |f| {
            std::fs::write(f, "[Bitcoind]\nbitcoind.rpcpass=guess\n").unwrap();
        },
    );
}

#[test]
fn config_deleted() {
    restored(
        "file: rendered config deleted",
        "rendered again; consumer restarted",
        |f| {
            std::fs::remove_file(f).unwrap();
        },
    );
}

#[test]
fn config_made_read_only() {
    restored(
        "file: rendered config made read-only (chmod 0400)",
        "replaced by rename with mode 0600",
        |f| std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o400)).unwrap(),
    );
}

#[test]
fn config_read_only_and_edited() {
    restored(
        "file: rendered config edited and made read-only (0400)",
        "replaced by rename: content and mode 0600 restored",
        |f| {
            std::fs::write(f, "tampered\n").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o400)).unwrap();
        },
    );
}

#[test]
fn config_replaced_by_a_symlink() {
    let mut case = Case::new(
        "file: rendered config replaced by a symlink to elsewhere",
        "not written through; clear error for that file; converges once the link is removed",
    );
    let root = TestRoot::new();
    let file = lnd(&root);
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    let elsewhere = root.dir.join("elsewhere.conf");
    std::fs::write(&elsewhere, "keep me").unwrap();
    case.run();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.all().contains("symlink"), "{out:?}");
    assert!(
        out.all().contains(&file.display().to_string()),
        "error names the file: {out:?}"
    );
    case.data_kept(
        std::fs::read_to_string(&elsewhere).unwrap() == "keep me",
        "symlink target",
    );
    assert!(std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_file(&file).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-lnd"), "running");
    case.pass();
}

#[test]
fn state_dir_on_a_full_file_system() {
    let mut case = Case::new(
        "file: state dir on a full file system (64 KiB tmpfs, filled)",
        "clear error (No space left on device); previous secret and configs intact; converges once space is freed",
    );
    let root = TestRoot::empty();
    let _mount = Tmpfs::mount(&root.state_dir, "size=64k");
    let cfg = root.state_dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    root.simple_manifest(
        "bitcoin",
        &format!(
            "configs:\n  - render: bitcoin.conf\n    path: {}/bitcoin.conf\n",
            cfg.display()
        ),
    );
    root.simple_manifest(
        "lnd",
        &format!(
            "configs:\n  - render: lnd.conf\n    path: {}/lnd.conf\n",
            cfg.display()
        ),
    );
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 0, "{out:?}");
    let secret_path = root.state_dir.join("secrets/bitcoin-rpc.json");
    let before: Vec<(PathBuf, Vec<u8>)> = [
        secret_path.clone(),
        cfg.join("bitcoin.conf"),
        cfg.join("lnd.conf"),
    ]
    .into_iter()
    .map(|p| {
        let b = std::fs::read(&p).unwrap();
        (p, b)
    })
    .collect();
    // Fill the file system to the last byte.
    case.run();
    let filler = root.state_dir.join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=1k",
            "count=1024",
        ])
        .output();
    let out = root.archy(&["render-config", "--rotate-secret"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.all().contains("No space left on device"),
        "clear error: {out:?}"
    );
    for (p, b) in &before {
        case.data_kept(
            std::fs::read(p).ok().as_ref() == Some(b),
            &p.display().to_string(),
        );
    }
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 0, "nothing to write, nothing fails: {out:?}");
    std::fs::remove_file(&filler).unwrap();
    let out = root.archy(&["render-config", "--rotate-secret"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.archy(&["render-config", "--check"]).code, 0);
    let leftovers: Vec<_> = std::fs::read_dir(&cfg)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    case.pass();
}
