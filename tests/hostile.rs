//! Hostile findings on the IPAM release (heal-podman `release-ipam-leaks`) and the
//! last-known-good rollback (issue 26). Each test states what a user would expect; the ones
//! that fail today are `#[ignore]`d with the finding, so the branch stays green.
#![allow(clippy::disallowed_methods)] // the tests make FIFOs and files directly

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use archy::heal::boltdb::{Bucket, Item};
use archy::heal::ipam;
use archy::images::lkg::{self, GoodImage, ImageRecord, Seen};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn bucket(mut items: Vec<(Vec<u8>, Item)>) -> Bucket {
    items.sort_by(|x, y| x.0.cmp(&y.0));
    Bucket::new(0, items)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(ToString::to_string).collect()
}

/// A network `archy` whose subnet holds one address for container A, keyed by `key`.
fn one_reservation(subnet: &str, key: Vec<u8>) -> Bucket {
    let net = bucket(vec![
        (
            subnet.as_bytes().to_vec(),
            Item::Bucket(bucket(vec![(key, Item::Value(A.as_bytes().to_vec()))])),
        ),
        (
            b"ids".to_vec(),
            Item::Bucket(bucket(vec![(
                A.as_bytes().to_vec(),
                Item::Value(b"[]".to_vec()),
            )])),
        ),
    ]);
    bucket(vec![(b"archy".to_vec(), Item::Bucket(net))])
}

/// Every reservation `leaks` reports must be one `without` can release: otherwise heal-podman
/// plans `release-ipam-leaks` on every run for ever and never converges.
#[test]
fn every_reported_ipam_leak_is_releasable_even_an_ipv4_mapped_key() {
    let mut mapped = vec![0u8; 10];
    mapped.extend_from_slice(&[0xff, 0xff, 10, 89, 0, 7]);
    let root = one_reservation("::ffff:10.89.0.0/120", mapped);
    let found = ipam::leaks(&root, &set(&["archy"]), &BTreeSet::new(), &BTreeSet::new());
    assert_eq!(found.len(), 1, "{found:?}");
    let (after, done) = ipam::without(&root, &found);
    assert_eq!(done.len(), 1, "reported {found:?}, released {done:?}");
    assert!(
        ipam::leaks(&after, &set(&["archy"]), &BTreeSet::new(), &BTreeSet::new()).is_empty(),
        "still reported after the release"
    );
}

/// IPv6 reservations (a dual-stack network) are released like IPv4 ones.
#[test]
fn an_ipv6_reservation_of_a_forgotten_container_is_released() {
    let v6: IpAddr = "fd00:89::7".parse().unwrap();
    let IpAddr::V6(v6) = v6 else { unreachable!() };
    let root = one_reservation("fd00:89::/64", v6.octets().to_vec());
    let found = ipam::leaks(&root, &set(&["archy"]), &BTreeSet::new(), &BTreeSet::new());
    assert_eq!(found.len(), 1, "{found:?}");
    let (after, done) = ipam::without(&root, &found);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(ipam::leaks(&after, &set(&["archy"]), &BTreeSet::new(), &BTreeSet::new()).is_empty());
}

/// A reservation whose container id is not UTF-8 is never reported nor touched, and another
/// network holding the same container id is left alone.
#[test]
fn a_non_utf8_id_and_another_networks_entries_are_left_alone() {
    let mut root = one_reservation("10.89.0.0/24", vec![10, 89, 0, 9]);
    let net = root.bucket_mut(b"archy").unwrap();
    let subnet = net.bucket_mut(b"10.89.0.0/24").unwrap();
    subnet
        .items
        .push((vec![10, 89, 0, 10], Item::Value(vec![0xff, 0xfe, 0x00])));
    let other = one_reservation("10.90.0.0/24", vec![10, 90, 0, 9]);
    let (_, web) = other.items[0].clone();
    root.items.push((b"web".to_vec(), web));
    let found = ipam::leaks(&root, &set(&["archy"]), &BTreeSet::new(), &BTreeSet::new());
    assert_eq!(found.len(), 1, "{found:?}");
    let (after, _) = ipam::without(&root, &found);
    assert_eq!(after.bucket(b"web"), root.bucket(b"web"));
    let subnet = after
        .bucket(b"archy")
        .unwrap()
        .bucket(b"10.89.0.0/24")
        .unwrap();
    assert!(subnet.get(&[10, 89, 0, 10]).is_some());
}

/// `ipam.db` replaced by a FIFO (a crafted file in podman's run dir): heal-podman's scan must
/// say so and go on, not block for ever in open(2) (the timer's run never ends, every later
/// heal is skipped behind it).
#[test]
fn a_fifo_in_place_of_ipam_db_does_not_hang_the_scan() {
    use archy::heal::netavark::FirewallDriver;
    use archy::heal::netsys::{scan, Backend, NetScope, NetavarkHost};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ipam.db");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let nv = NetavarkHost {
        config_dir: dir.path().to_path_buf(),
        netavark: None,
        aardvark: None,
        firewall: FirewallDriver::Nftables,
        networks: std::collections::BTreeMap::default(),
    };
    let scope = NetScope {
        names: set(&["archy-hostile-none"]),
        subnet: "10.250.77.0/24".into(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let s = scan(
            &scope,
            &Backend::Netavark(nv),
            &BTreeSet::new(),
            &BTreeSet::new(),
            || Ok(Vec::new()),
        );
        let _ = tx.send(s.notes);
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(20));
    if got.is_err() {
        // Unblock the scan thread before failing.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let notes = got.expect("scan blocked on a FIFO ipam.db for 20 s");
    assert!(notes.iter().any(|n| n.contains("ipam.db")), "{notes:?}");
}

fn good(id: &str, at: i64) -> GoodImage {
    GoodImage {
        id: id.into(),
        reference: "localhost/t:1".into(),
        at,
    }
}

fn unhealthy_on(id: &str) -> Seen {
    Seen {
        image_id: id.into(),
        reference: "localhost/t:2".into(),
        running: true,
        start_key: "c@1".into(),
        probe_healthy: Some(false),
        evidence: "connection refused".into(),
    }
}

/// A Raspberry Pi boots with fake-hwclock's old time and NTP steps the clock forward minutes
/// to hours later. An image tried over that step has had one tick, not its window: it must
/// not be rolled back (and recorded bad) on the first tick after the step.
#[test]
fn a_clock_stepped_forward_does_not_roll_back_an_image_after_one_tick() {
    let t0 = 1_700_000_000;
    let window = 90;
    let before = ImageRecord {
        last_known_good: Some(good("1111", t0 - 1000)),
        ..ImageRecord::default()
    };
    // Tick 1: the new image is seen, not healthy yet (starting).
    let (r, rb) = lkg::step(&before, &unhealthy_on("2222"), window, t0);
    assert!(rb.is_none());
    // Tick 2, 30 s later, but NTP stepped the clock 3 h forward meanwhile.
    let (r, rb) = lkg::step(&r, &unhealthy_on("2222"), window, t0 + 30 + 3 * 3600);
    assert!(
        rb.is_none(),
        "rolled back after 2 ticks (window {window}s = 3+ ticks): {rb:?}; bad: {:?}",
        r.bad_images
    );
}

/// The reverse: a trial first seen while the clock was far ahead (a boot with a wrong RTC),
/// then NTP steps it back a year. The image that never answers must still be rolled back
/// within a few ticks, not a year later.
#[test]
fn a_clock_stepped_back_still_rolls_back_a_broken_image_within_its_window() {
    let t0 = 1_700_000_000;
    let window = 90;
    let year = 365 * 24 * 3600;
    let mut r = ImageRecord {
        last_known_good: Some(good("1111", t0 - 1000)),
        ..ImageRecord::default()
    };
    // First seen with the clock a year ahead.
    let (next, _) = lkg::step(&r, &unhealthy_on("2222"), window, t0 + year);
    r = next;
    let mut rolled = None;
    for tick in 1..=10 {
        let (next, rb) = lkg::step(&r, &unhealthy_on("2222"), window, t0 + tick * 30);
        r = next;
        if rb.is_some() {
            rolled = Some(tick);
            break;
        }
    }
    assert!(
        rolled.is_some(),
        "not rolled back within 10 ticks after the clock stepped back a year: {r:?}"
    );
}

/// A record torn by the disk or edited by hand: reading it as empty silently drops the
/// refusal of the bad image and the way back, and the next save overwrites the evidence.
/// Expected: the damaged file is kept aside (or the tick refuses to act on the app), never
/// silently replaced.
#[test]
fn a_corrupt_image_record_is_kept_aside_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = lkg::path(dir.path(), "web");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let damaged = b"{\"last_known_good\":{\"id\":\"1111\",\"reference\":\"localhost/t:1\",\"at\":1},\"bad_images\":[{\"id\":\"2222\",\"refer";
    std::fs::write(&path, damaged).unwrap();
    let rec = lkg::load(dir.path(), "web");
    // The tick goes on with what it read and saves its step.
    let (next, _) = lkg::step(&rec, &unhealthy_on("2222"), 90, 1_700_000_000);
    lkg::save(dir.path(), "web", &next).unwrap();
    let kept: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read(e.path()).unwrap() == damaged)
        .collect();
    assert!(
        !kept.is_empty(),
        "the damaged record was overwritten without a copy; refusal of 2222 lost: {next:?}"
    );
}

/// A record naming a huge/negative `since` or `at` does not panic the tick (overflow).
#[test]
fn crafted_times_in_an_image_record_do_not_panic() {
    crafted_record_steps(&[0, 2, 3, 1000]);
}

/// The same with a crafted `healthy_ticks` of u32::MAX: `+= 1` overflows (a panic in debug
/// builds and tests; a silent wrap to 0 in release).
#[test]
fn a_crafted_healthy_ticks_count_does_not_panic() {
    crafted_record_steps(&[u32::MAX]);
}

fn crafted_record_steps(ticks: &[u32]) {
    for (since, ticks) in [i64::MIN, i64::MAX, -1, 0]
        .into_iter()
        .flat_map(|s| ticks.iter().map(move |t| (s, *t)))
    {
        let json = format!(
            "{{\"last_known_good\":{{\"id\":\"1111\",\"reference\":\"r\",\"at\":{since}}},\
             \"trial\":{{\"id\":\"2222\",\"reference\":\"r2\",\"since\":{since},\"healthy_ticks\":{ticks},\"passed\":false,\"start_key\":null}}}}"
        );
        let rec: ImageRecord = serde_json::from_str(&json).unwrap();
        for now in [i64::MIN, i64::MAX, 0, 1_700_000_000] {
            for w in [i64::MAX, 0, -5] {
                let _ = lkg::step(&rec, &unhealthy_on("2222"), w, now);
                let mut healthy = unhealthy_on("2222");
                healthy.probe_healthy = Some(true);
                let _ = lkg::step(&rec, &healthy, w, now);
            }
        }
    }
}

mod bolt {
    //! archy's bbolt commits under hostile sequences, checked by the real bbolt (the Go tool of
    //! tests/ipam_bolt.rs).
    use super::*;
    use archy::heal::boltdb::Db;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use crate::common::bolt::{go, networks};

    /// Release what `known` does not name; write `pages` of the commit's pages (a kill after
    /// them), the meta only when all were written.
    fn release(file: &Path, known: &BTreeSet<String>, pages: Option<usize>) {
        let db = Db::parse(&std::fs::read(file).unwrap()).unwrap();
        let leaks = ipam::leaks(&db.root, &networks(&db), known, &BTreeSet::new());
        let (tree, _) = ipam::without(&db.root, &leaks);
        let commit = db.commit(&tree).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        let n = pages.unwrap_or(commit.pages.len()).min(commit.pages.len());
        for (offset, bytes) in &commit.pages[..n] {
            f.write_all_at(bytes, *offset).unwrap();
        }
        if pages.is_none() {
            f.write_all_at(&commit.meta.1, commit.meta.0).unwrap();
        }
    }

    /// Everything released (paged buckets shrink to inline ones), bbolt allocates again on
    /// top, and a kill after every prefix of the page writes: bbolt's check passes each time
    /// and sees the old tree until the meta is written.
    #[test]
    fn release_all_then_bbolt_again_and_kills_after_each_page_pass_bbolts_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ipam.db");
        let f = file.to_str().unwrap();
        for round in 0..6usize {
            go(&["alloc", f, "archy", &(1 + round * 300).to_string()]);
            go(&["alloc", f, "web", "40"]);
            let before = go(&["dump", f]);
            let db = Db::parse(&std::fs::read(&file).unwrap()).unwrap();
            let n = db.commit(&db.root).unwrap().pages.len();
            for k in 0..n {
                release(&file, &BTreeSet::new(), Some(k));
                go(&["check", f]);
                assert_eq!(
                    go(&["dump", f]),
                    before,
                    "round {round}, kill after {k} pages"
                );
            }
            release(&file, &BTreeSet::new(), None);
            go(&["check", f]);
            let after = Db::parse(&std::fs::read(&file).unwrap()).unwrap();
            assert!(ipam::leaks(
                &after.root,
                &networks(&after),
                &BTreeSet::new(),
                &BTreeSet::new()
            )
            .is_empty());
        }
    }

    /// podman (bbolt) holding ipam.db's lock: archy's release waits, gives up, writes nothing.
    #[test]
    fn a_release_while_bbolt_holds_the_lock_writes_nothing() {
        use archy::heal::netavark::FirewallDriver;
        use archy::heal::netsys::{release_ipam_leaks, Backend, NetScope, NetavarkHost};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ipam.db");
        go(&["alloc", file.to_str().unwrap(), "hostilenet", "5"]);
        let bytes = std::fs::read(&file).unwrap();
        let db = Db::parse(&bytes).unwrap();
        let scope = NetScope {
            names: set(&["hostilenet"]),
            subnet: "10.89.0.0/16".into(),
        };
        let leaks = ipam::leaks(&db.root, &scope.names, &BTreeSet::new(), &BTreeSet::new());
        assert!(!leaks.is_empty());
        let holder = std::fs::File::open(&file).unwrap();
        holder.lock().unwrap();
        let backend = Backend::Netavark(NetavarkHost {
            config_dir: dir.path().to_path_buf(),
            netavark: None,
            aardvark: None,
            firewall: FirewallDriver::Nftables,
            networks: std::collections::BTreeMap::default(),
        });
        let refs: Vec<&ipam::Leak> = leaks.iter().collect();
        let err = release_ipam_leaks(&refs, &scope, &backend, &BTreeSet::new()).unwrap_err();
        assert!(format!("{err:#}").contains("locked"), "{err:#}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        drop(holder);
        // Unlocked: released, and bbolt agrees with the result.
        let done = release_ipam_leaks(&refs, &scope, &backend, &BTreeSet::new()).unwrap();
        assert!(!done.is_empty(), "{done:?}");
        go(&["check", file.to_str().unwrap()]);
    }
}

/// `<state-dir>/images/<app>.json` that is a FIFO (or a link to a device): reading the record
/// must fail fast (not a regular file) instead of blocking every reconcile tick for ever (the
/// image clean-up's `kept_image_ids` reads every `*.json` of the directory the same way).
#[test]
fn a_fifo_image_record_does_not_block_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = lkg::path(dir.path(), "web");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let state = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(lkg::kept_image_ids(&state));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(10));
    if got.is_err() {
        let _ = std::fs::OpenOptions::new().write(true).open(&path);
    }
    got.expect("kept_image_ids blocked on a FIFO record for 10 s");
}

/// The heal-podman case the live check exists for: podman lost its database but a container
/// still runs in its network namespace. Its addresses stay reserved — the IPv6 one of a
/// dual-stack network as well as the IPv4 one (released, podman hands it to the next
/// container: a duplicate address on the bridge).
#[test]
#[allow(clippy::too_many_lines)] // one scenario: a namespace, a database, a release
fn a_live_namespaces_ipv6_address_is_not_released() {
    use archy::heal::boltdb::Db;
    use archy::heal::netavark::FirewallDriver;
    use archy::heal::netsys::{release_ipam_leaks, Backend, NetScope, NetavarkHost};
    use std::os::unix::fs::FileExt;
    let ns = format!("archy-hostile-v6-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &ns]);
    struct Cleanup(String, Option<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(mut c) = self.1.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let mut guard = Cleanup(ns.clone(), None);
    ip(&[
        "-n", &ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    ip(&["-n", &ns, "link", "set", "d0", "up"]);
    ip(&["-n", &ns, "addr", "add", "10.250.77.7/24", "dev", "d0"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        "fd00:77::7/64",
        "dev",
        "d0",
        "nodad",
    ]);
    guard.1 = Some(
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "sleep", "120"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));

    // podman's layout for a dual-stack network; the container is unknown to podman.
    let v6: std::net::Ipv6Addr = "fd00:77::7".parse().unwrap();
    let net = bucket(vec![
        (
            b"10.250.77.0/24".to_vec(),
            Item::Bucket(bucket(vec![(
                vec![10, 250, 77, 7],
                Item::Value(A.as_bytes().to_vec()),
            )])),
        ),
        (
            b"fd00:77::/64".to_vec(),
            Item::Bucket(bucket(vec![(
                v6.octets().to_vec(),
                Item::Value(A.as_bytes().to_vec()),
            )])),
        ),
        (
            b"ids".to_vec(),
            Item::Bucket(bucket(vec![(
                A.as_bytes().to_vec(),
                Item::Value(b"[\"10.250.77.7\",\"fd00:77::7\"]".to_vec()),
            )])),
        ),
    ]);
    let tree = bucket(vec![(b"hostiledual".to_vec(), Item::Bucket(net))]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ipam.db");
    // An empty bbolt file (as bbolt's init lays it out), then the tree committed on it.
    let mut bytes = vec![0u8; 4096 * 4];
    for i in 0..2u64 {
        let p = &mut bytes[i as usize * 4096..];
        p[0..8].copy_from_slice(&i.to_le_bytes());
        p[8..10].copy_from_slice(&0x04u16.to_le_bytes());
        let m = &mut p[16..80];
        m[0..4].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        m[4..8].copy_from_slice(&2u32.to_le_bytes());
        m[8..12].copy_from_slice(&4096u32.to_le_bytes());
        m[16..24].copy_from_slice(&3u64.to_le_bytes());
        m[32..40].copy_from_slice(&2u64.to_le_bytes());
        m[40..48].copy_from_slice(&4u64.to_le_bytes());
        m[48..56].copy_from_slice(&i.to_le_bytes());
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in &m[..56] {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        m[56..64].copy_from_slice(&h.to_le_bytes());
    }
    bytes[2 * 4096..2 * 4096 + 8].copy_from_slice(&2u64.to_le_bytes());
    bytes[2 * 4096 + 8..2 * 4096 + 10].copy_from_slice(&0x10u16.to_le_bytes());
    bytes[3 * 4096..3 * 4096 + 8].copy_from_slice(&3u64.to_le_bytes());
    bytes[3 * 4096 + 8..3 * 4096 + 10].copy_from_slice(&0x02u16.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let commit = Db::parse(&bytes).unwrap().commit(&tree).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    for (offset, page) in commit.pages.iter().chain(std::iter::once(&commit.meta)) {
        f.write_all_at(page, *offset).unwrap();
    }
    drop(f);

    let scope = NetScope {
        names: set(&["hostiledual"]),
        subnet: "10.250.77.0/24".into(),
    };
    let db = Db::parse(&std::fs::read(&file).unwrap()).unwrap();
    let leaks = ipam::leaks(&db.root, &scope.names, &BTreeSet::new(), &BTreeSet::new());
    assert_eq!(leaks.len(), 2, "{leaks:?}");
    let backend = Backend::Netavark(NetavarkHost {
        config_dir: dir.path().to_path_buf(),
        netavark: None,
        aardvark: None,
        firewall: FirewallDriver::Nftables,
        networks: std::collections::BTreeMap::default(),
    });
    let refs: Vec<&ipam::Leak> = leaks.iter().collect();
    let done = release_ipam_leaks(&refs, &scope, &backend, &BTreeSet::new()).unwrap();
    let after = Db::parse(&std::fs::read(&file).unwrap()).unwrap();
    let left = ipam::allocations(&after.root, "hostiledual");
    assert_eq!(
        left.len(),
        2,
        "released while live: {done:?}; left {left:?}"
    );
}
