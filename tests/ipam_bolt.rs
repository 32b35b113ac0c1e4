//! archy's bbolt writer (src/heal/boltdb.rs), which releases podman's IPAM reservations, checked
//! by the real bbolt: Debian's go.etcd.io/bbolt 1.3.6 (golang-github-coreos-bbolt-dev, the
//! version podman 4.3 vendors; podman 5's 1.4 keeps the same file format) built into a small
//! tool (tests/fixtures/boltcheck/main.go). bbolt allocates as podman's `allocIPs` does
//! (containers/common `libnetwork/netavark/ipam.go`), archy releases, bbolt's `tx.Check()`
//! verifies every page and the freelist, and bbolt keeps allocating on top.
#![allow(clippy::disallowed_methods)] // the test builds and runs the Go tool

mod common;
use common::bolt::{go, networks};

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;

use archy::heal::boltdb::{Bucket, Db, Item};
use archy::heal::ipam;

/// The tree as boltcheck's `dump` prints it.
fn dump(bucket: &Bucket, path: &str, out: &mut String) {
    for (key, item) in &bucket.items {
        let here = format!("{path}/{}", hex::encode(key));
        match item {
            Item::Value(v) => out.push_str(&format!("{here}={}\n", hex::encode(v))),
            Item::Bucket(b) => {
                out.push_str(&format!("{here} seq={}\n", b.sequence));
                dump(b, &here, out);
            }
        }
    }
}

fn dumped(bucket: &Bucket) -> String {
    let mut out = String::new();
    dump(bucket, "", &mut out);
    out
}

fn read(file: &Path) -> Db {
    Db::parse(&std::fs::read(file).unwrap()).unwrap()
}

/// Release every reservation whose container is not in `known` (the heal step's edit), as
/// netsys does: the pages, then the meta. `with_meta: false` stops before the meta (a kill).
fn release(file: &Path, known: &BTreeSet<String>, with_meta: bool) -> (Bucket, usize) {
    let db = read(file);
    let leaks = ipam::leaks(&db.root, &networks(&db), known, &BTreeSet::new());
    let (tree, done) = ipam::without(&db.root, &leaks);
    let commit = db.commit(&tree).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    for (offset, bytes) in &commit.pages {
        f.write_all_at(bytes, *offset).unwrap();
    }
    if with_meta {
        f.write_all_at(&commit.meta.1, commit.meta.0).unwrap();
    }
    (tree, done.len())
}

/// Keep every third container id of the file's allocations (the rest are "forgotten").
fn every_third_id(db: &Db) -> BTreeSet<String> {
    ipam::allocated_ids(&db.root, &networks(db))
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, id)| id)
        .collect()
}

#[test]
fn releases_by_archy_pass_bbolts_own_check_and_bbolt_keeps_allocating_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ipam.db");
    let file_str = file.to_str().unwrap();
    let mut released_total = 0;
    for round in 0..8usize {
        // bbolt allocates on a few networks (inline buckets, single leaves, split leaves).
        let net = format!("net{}", round % 3);
        go(&["alloc", file_str, &net, &(5 + round * 90).to_string()]);
        go(&["check", file_str]);
        let before = read(&file);
        assert_eq!(
            dumped(&before.root),
            go(&["dump", file_str]),
            "round {round}: archy reads what bbolt wrote"
        );
        let known = every_third_id(&before);
        let (expected, released) = release(&file, &known, true);
        assert!(released > 0, "round {round}: something to release");
        released_total += released;
        // bbolt opens what archy wrote, finds every page and the freelist consistent, and
        // sees exactly the tree archy meant.
        go(&["check", file_str]);
        assert_eq!(go(&["dump", file_str]), dumped(&expected), "round {round}");
        assert_eq!(read(&file).txid(), before.txid() + 1);
    }
    assert!(released_total > 500, "{released_total}");
    // The file stays bounded: freed pages are reused, by bbolt and by archy.
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= 1 << 20, "ipam.db grew to {size} bytes");
}

#[test]
fn a_kill_between_the_pages_and_the_meta_leaves_what_bbolt_had() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ipam.db");
    let file_str = file.to_str().unwrap();
    go(&["alloc", file_str, "archy", "400"]);
    let before = go(&["dump", file_str]);
    let known = every_third_id(&read(&file));
    release(&file, &known, false);
    go(&["check", file_str]);
    assert_eq!(go(&["dump", file_str]), before, "the old meta still rules");
    // bbolt writes on top, then archy's release goes through.
    go(&["alloc", file_str, "archy", "3"]);
    let known = every_third_id(&read(&file));
    let (expected, _) = release(&file, &known, true);
    go(&["check", file_str]);
    assert_eq!(go(&["dump", file_str]), dumped(&expected));
}
