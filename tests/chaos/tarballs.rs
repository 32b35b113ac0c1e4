//! Release tarballs for `verify-update --tarball`: path traversal, symlink escapes, device
//! nodes, a 10 GB sparse entry (checked from headers; the disk is not filled). The rules are unit
//! tested in src/update/tarball.rs; here the real binary judges real files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::support::*;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h
}

/// A clean release root plus whatever `extra` appends.
pub(crate) fn tarball(dir: &Path, name: &str, extra: impl FnOnce(&mut Tar)) -> PathBuf {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0),
        "./",
        &b""[..],
    )
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0),
        "web-ui/",
        &b""[..],
    )
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 6),
        "web-ui/index.html",
        &b"<html>"[..],
    )
    .unwrap();
    extra(&mut b);
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let path = dir.join(format!("{name}.tar.gz"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Write a raw name into a header (bypassing the tar crate's `..` refusal).
fn raw(b: &mut Tar, path: &str, kind: tar::EntryType, link: Option<&str>) {
    let mut h = header(kind, 0o644, 0);
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
}

type Tar = tar::Builder<flate2::write::GzEncoder<Vec<u8>>>;
/// One hostile tarball: (name, the entry the refusal names, what to append to a clean release).
pub(crate) type HostileTarball = (&'static str, &'static str, fn(&mut Tar));

/// The hostile release tarballs `verify-update --tarball` must refuse: (name, the entry the
/// refusal names, what to append to a clean release). Used here and by the soak.
pub(crate) const HOSTILE_TARBALLS: [HostileTarball; 3] = [
    ("trav", "../../etc/passwd", |b| {
        raw(b, "../../etc/passwd", tar::EntryType::Regular, None);
    }),
    ("sym", "web-ui/evil", |b| {
        raw(
            b,
            "web-ui/evil",
            tar::EntryType::Symlink,
            Some("../../../etc/shadow"),
        );
    }),
    ("dev", "web-ui/sda", |b| {
        raw(b, "web-ui/sda", tar::EntryType::Block, None);
    }),
];

fn judged(fault: &str, response: &str, (name, expect, build): (&str, &str, fn(&mut Tar))) {
    let mut case = Case::new(fault, response);
    let dir = tempfile::tempdir().unwrap();
    let path = tarball(dir.path(), name, build);
    case.run();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_archy"))
        .args(["verify-update", "--output", "json", "--tarball"])
        .arg(&path)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(expect), "expected {expect:?}: {stdout}");
    assert!(took.as_secs() < 10, "took {took:?}");
    // Nothing was extracted next to the tarball.
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    case.data_kept(entries == 1, "nothing extracted");
    case.pass();
}

#[test]
fn tarball_path_traversal() {
    judged(
        "tarball: path traversal (`../../etc/passwd`)",
        "refused (exit 1), names the entry",
        HOSTILE_TARBALLS[0],
    );
}

#[test]
fn tarball_symlink_escape() {
    judged(
        "tarball: symlink escaping the release root",
        "refused (exit 1), names the link",
        HOSTILE_TARBALLS[1],
    );
}

#[test]
fn tarball_device_node() {
    judged(
        "tarball: device node",
        "refused (exit 1), names the node",
        HOSTILE_TARBALLS[2],
    );
}

#[test]
fn tarball_huge_sparse_entry() {
    let mut case = Case::new(
        "tarball: 10 GB sparse entry",
        "checked from headers in well under a second; disk not filled",
    );
    let dir = tempfile::tempdir().unwrap();
    let logical: u64 = 10 * 1024 * 1024 * 1024;
    let path = tarball(dir.path(), "sparse", |b| {
        let mut h = header(tar::EntryType::GNUSparse, 0o644, 512);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.sparse[0].set_offset(logical - 512);
            gnu.sparse[0].set_length(512);
            gnu.set_real_size(logical);
        }
        h.set_path("web-ui/huge.img").unwrap();
        h.set_cksum();
        b.append(&h, &[7u8; 512][..]).unwrap();
    });
    case.run();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_archy"))
        .args(["verify-update", "--tarball"])
        .arg(&path)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "judged, not crashed: {out:?}"
    );
    assert!(took.as_secs() < 5, "took {took:?}");
    let used: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    case.data_kept(used < 1024 * 1024, "disk not filled");
    case.pass();
}
