//! Shared pieces of the chaos cases: the report line each case writes, loop counts, a seeded
//! random source, and a guard that kills a root's ghost OCI containers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// True when the full matrix is asked for (`ARCHY_CHAOS_FULL=1`): loops run their full counts.
pub fn full() -> bool {
    std::env::var("ARCHY_CHAOS_FULL").is_ok_and(|v| v == "1")
}

/// `quick` iterations in the default run, `full` under `ARCHY_CHAOS_FULL=1`.
pub fn iterations(quick: usize, full_count: usize) -> usize {
    if full() {
        full_count
    } else {
        quick
    }
}

/// One row of the matrix. Written when dropped, also when the case panics (then `ok: false`).
pub struct Case {
    /// Section of CHAOS.md the row goes to ("" for the main table).
    section: String,
    fault: String,
    response: String,
    runs: usize,
    passes: usize,
    data_lost: bool,
}

impl Case {
    pub fn new(fault: &str, response: &str) -> Self {
        Case {
            section: String::new(),
            fault: fault.into(),
            response: response.into(),
            runs: 0,
            passes: 0,
            data_lost: false,
        }
    }

    /// A row of the "input: hostile" section: case `number` of issue 14 (hostile input and
    /// local users).
    pub fn hostile(number: &str, fault: &str, response: &str) -> Self {
        let mut case = Case::new(&format!("{number} {fault}"), response);
        case.section = "input: hostile".into();
        case
    }

    /// One injection of the fault begins.
    pub fn run(&mut self) {
        self.runs += 1;
    }

    /// The injection's assertions all held.
    pub fn pass(&mut self) {
        self.passes += 1;
    }

    /// Assert that data survived; a failure is recorded as data lost before the panic.
    pub fn data_kept(&mut self, kept: bool, what: &str) {
        if !kept {
            self.data_lost = true;
        }
        assert!(kept, "data lost: {what}");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let Some(path) = std::env::var_os("ARCHY_CHAOS_REPORT") else {
            return;
        };
        let ok = !std::thread::panicking() && self.runs > 0 && self.passes == self.runs;
        let line = serde_json::json!({
            "section": self.section,
            "fault": self.fault,
            "response": self.response,
            "runs": self.runs,
            "passes": self.passes,
            "data_lost": self.data_lost,
            "ok": ok,
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line: lines of parallel test processes never interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// xorshift64, seeded from `ARCHY_CHAOS_SEED` or the clock (the seed is printed for replays).
pub struct Rng(u64);

impl Rng {
    pub fn new(label: &str) -> Self {
        let seed = std::env::var("ARCHY_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("{label}: ARCHY_CHAOS_SEED={seed}");
        Rng(seed)
    }

    /// A generator for a given seed (the soak's replays).
    pub fn seeded(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A tmpfs mounted on a directory (created if missing); unmounted when dropped, also when the
/// case panics.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `mount -t tmpfs -o <options> tmpfs <dir>`, e.g. options `size=64k`.
    pub fn mount(dir: &Path, options: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Unmount everything under the root except the graph driver's own mount (a reboot drops
/// container rootfs and shm mounts).
pub fn unmount_runtime(dir: &Path) {
    unmount_runtime_except(dir, &[]);
}

/// `unmount_runtime`, keeping the mounts at `keep` (and below): a soak's state-dir tmpfs, which
/// stands for a disk, not for runtime state.
pub fn unmount_runtime_except(dir: &Path, keep: &[&Path]) {
    let graph_overlay = dir.join("graph/overlay");
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| Path::new(m).starts_with(dir) && Path::new(m) != graph_overlay)
        .filter(|m| !keep.iter().any(|k| Path::new(m).starts_with(k)))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").arg(&m).output();
    }
}

/// An app `app` with a named volume holding a file; returns the volume file's expected content.
pub fn app_with_data(root: &TestRoot, app: &str, extra: &str) -> String {
    root.simple_manifest(app, &format!("volumes: [\"{app}-data:/data\"]\n{extra}"));
    let out = root.archy(&["reconcile", app]);
    assert_eq!(out.code, 0, "{out:?}");
    let content = format!("precious-{app}");
    root.podman_ok(&[
        "exec",
        &format!("archy-{app}"),
        "/bin/sh",
        "-c",
        &format!("echo {content} > /data/blk00000.dat"),
    ]);
    content
}

/// The volume file of `app_with_data`: read from the volume's directory on disk (what "data lost"
/// means), after checking that the app's running container sees the same content. `exec` right
/// after a restart can fail transiently under load, so it is retried; a container that never
/// sees its volume fails the test with podman's error, not as lost data.
pub fn volume_file(root: &TestRoot, app: &str) -> Option<String> {
    let on_disk = std::fs::read_to_string(
        root.dir
            .join(format!("volumes/{app}-data/_data/blk00000.dat")),
    )
    .ok()
    .map(|s| s.trim().to_string());
    let mut last = None;
    for _ in 0..10 {
        let out = root.podman(&[
            "exec",
            &format!("archy-{app}"),
            "/bin/cat",
            "/data/blk00000.dat",
        ]);
        if out.code == 0 {
            assert_eq!(
                Some(out.stdout.trim().to_string()),
                on_disk,
                "the container sees other data than its volume holds"
            );
            return on_disk;
        }
        last = Some(out);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("archy-{app} cannot read its volume (on disk: {on_disk:?}): {last:?}");
}

/// Managed containers per app label, to assert "exactly one container per app".
pub fn containers_of(root: &TestRoot, app: &str) -> usize {
    root.containers()
        .iter()
        .filter(|c| c["Labels"]["io.archy.app"] == app)
        .count()
}
