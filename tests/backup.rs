//! `backup:` against real podman: a busybox app rewrites a file in its named volume and each
//! reconcile tick copies every complete version (never a partial one) atomically to a
//! directory target and to a command's stdin; a deleted copy is made again; a target that is
//! unmounted, read-only or full fails `archy status` by name until it is back; a no-op tick is one
//! podman call and opens no source file (strace); `channel.db` is refused at manifest load.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The app's manifest: a named volume `scb` at /data, its `sub/channel.backup` backed up.
fn backup_app(root: &TestRoot, targets: &str) {
    root.simple_manifest(
        "lnd",
        &format!(
            "volumes: [\"scb:/data\"]\nbackup:\n  files: [\"scb:/sub/channel.backup\"]\n  keep: 3\n  targets:\n{targets}"
        ),
    );
}

/// Write the file from inside the app's container (the way lnd would).
fn write_in_app(root: &TestRoot, content: &str) {
    root.podman_ok(&[
        "exec",
        "archy-lnd",
        "sh",
        "-c",
        &format!(
            "/bin/busybox mkdir -p /data/sub && printf '%s' '{content}' > /data/sub/channel.backup"
        ),
    ]);
}

fn reconcile(root: &TestRoot) -> Out {
    let out = root.archy(&["reconcile"]);
    assert_eq!(
        out.code, 0,
        "a backup problem never fails the tick: {out:?}"
    );
    out
}

/// Every file under `dir` (name → content), temp files included.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

fn newest(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("lnd/channel.backup")).ok()
}

#[test]
fn every_complete_version_is_copied_never_a_partial_one_and_a_noop_tick_reads_nothing() {
    let root = TestRoot::new();
    let target = root.dir.join("usb");
    std::fs::create_dir(&target).unwrap();
    let piped = root.dir.join("piped");
    backup_app(
        &root,
        &format!(
            "    - dir: {}\n    - command: [sh, -c, 'cat > {} && echo \"$ARCHY_BACKUP_FILE\" > {}.name']\n",
            target.display(),
            piped.display(),
            piped.display()
        ),
    );
    let out = reconcile(&root);
    assert!(out.stdout.contains("does not exist yet"), "{out:?}");
    assert_eq!(newest(&target), None);

    write_in_app(&root, "v1-complete");
    let out = reconcile(&root);
    assert!(
        out.stdout
            .contains("backup lnd scb:/sub/channel.backup: copied to"),
        "{out:?}"
    );
    assert_eq!(newest(&target).as_deref(), Some("v1-complete"));
    assert_eq!(
        std::fs::read_to_string(&piped).unwrap(),
        "v1-complete",
        "the command got the bytes on stdin"
    );
    assert_eq!(
        std::fs::read_to_string(piped.with_extension("name")).unwrap(),
        "channel.backup\n"
    );

    write_in_app(&root, "v2-complete-and-longer");
    reconcile(&root);
    assert_eq!(newest(&target).as_deref(), Some("v2-complete-and-longer"));

    // A write in progress: "PART" then one byte every 20 ms. Ticks during it copy nothing new
    // (the size moves between the two stats), and never a truncated file.
    let full = format!("PART{}", "x".repeat(60));
    let mut writer = root
        .podman_cmd()
        .args([
            "exec",
            "archy-lnd",
            "sh",
            "-c",
            "printf PART > /data/sub/channel.backup; i=0; while [ $i -lt 60 ]; do printf x >> /data/sub/channel.backup; sleep 0.02; i=$((i+1)); done",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let during = reconcile(&root);
    assert!(during.stdout.contains("is being written"), "{during:?}");
    assert!(writer.wait().unwrap().success());
    let complete = ["v1-complete", "v2-complete-and-longer", full.as_str()];
    for (name, content) in files(&target.join("lnd")) {
        assert!(
            complete.contains(&content.as_str()),
            "{name} holds a partial copy: {content:?}"
        );
        assert!(!name.ends_with(".tmp"), "a temp file was left: {name}");
    }
    reconcile(&root);
    assert_eq!(newest(&target).as_deref(), Some(full.as_str()));
    assert_eq!(std::fs::read_to_string(&piped).unwrap(), full);
    let versions: Vec<String> = files(&target.join("lnd"))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "channel.backup")
        .collect();
    assert_eq!(
        versions.len(),
        3,
        "keep: 3 → the oldest version went: {versions:?}"
    );
    assert!(
        versions.iter().all(|n| n.starts_with("channel.backup.")),
        "{versions:?}"
    );

    // A no-op tick: one podman call, the source stat-ed but never opened.
    root.take_podman_calls();
    let trace = root.dir.join("strace.log");
    let out = Out::from(
        Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_archy"))
            .arg("reconcile")
            .envs(root.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("ARCHY_LOG")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.take_podman_calls(),
        vec!["ps -a --format json --filter label=io.archy.managed=true".to_string()],
        "a no-op tick with a backup makes exactly one podman call"
    );
    let opened = std::fs::read_to_string(&trace).unwrap();
    assert!(
        !opened.contains("_data/sub/channel.backup"),
        "a no-op tick opened the source: {}",
        opened
            .lines()
            .filter(|l| l.contains("channel.backup"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The newest copy deleted on the target: made again from the unchanged source.
    std::fs::remove_file(target.join("lnd/channel.backup")).unwrap();
    let out = reconcile(&root);
    assert!(out.stdout.contains("copied to"), "{out:?}");
    assert_eq!(newest(&target).as_deref(), Some(full.as_str()));

    // A symlink in its place (to a file outside the volume) is refused, not followed, and
    // fails status; the real file back, all is well again.
    root.podman_ok(&[
        "exec",
        "archy-lnd",
        "/bin/busybox",
        "ln",
        "-sf",
        "/etc/hostname",
        "/data/sub/channel.backup",
    ]);
    let out = reconcile(&root);
    assert!(out.stdout.contains("is not a regular file"), "{out:?}");
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAILING"), "{out:?}");
    assert_eq!(
        newest(&target).as_deref(),
        Some(full.as_str()),
        "the good copy stays"
    );
    root.podman_ok(&[
        "exec",
        "archy-lnd",
        "/bin/busybox",
        "rm",
        "/data/sub/channel.backup",
    ]);
    write_in_app(&root, &full);
    reconcile(&root);

    // Status and metrics name the file and its targets; promtool accepts them.
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    let b = &doc["backups"][0];
    assert_eq!(b["file"], "scb:/sub/channel.backup");
    assert_eq!(b["targets"][0]["target"], target.display().to_string());
    assert_eq!(b["targets"][0]["current"], true);
    assert_eq!(b["targets"][0]["sha256"], b["sha256"]);
    let out = root.archy(&["status", "--output", "prometheus"]);
    assert_eq!(out.code, 0, "{out:?}");
    let series = format!(
        "archy_backup_age_seconds{{app=\"lnd\",file=\"scb:/sub/channel.backup\",target=\"{}\"}}",
        target.display()
    );
    assert!(out.stdout.contains(&series), "{}", out.stdout);
    assert!(
        out.stdout.contains("archy_backup_last_success_timestamp{"),
        "{}",
        out.stdout
    );
    let (code, said) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(out.stdout.as_bytes());
    assert_eq!(
        (code, said.as_str()),
        (0, ""),
        "promtool on:\n{}",
        out.stdout
    );
}

/// `Command` with bytes on stdin: (exit code, stdout + stderr).
trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (i32, String);
}

impl WithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> (i32, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// A bind mount this test made, undone however the test ends.
struct Mounted(PathBuf);

impl Mounted {
    fn bind(from: &Path, to: &Path) -> Mounted {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(ok.success());
        Mounted(to.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", opts])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unmounted_or_read_only_target_fails_status_by_name_then_recovers() {
    let root = TestRoot::new();
    let disk = root.dir.join("disk");
    let mnt = root.dir.join("mnt");
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    backup_app(
        &root,
        &format!("    - dir: {}\n      require_mount: true\n", mnt.display()),
    );
    let mounted = Mounted::bind(&disk, &mnt);
    reconcile(&root);
    write_in_app(&root, "v1");
    reconcile(&root);
    assert_eq!(newest(&disk).as_deref(), Some("v1"));
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");

    // Unmounted: the tick reports it (the app stays converged), status fails naming it, and
    // nothing lands in the bare mount point.
    drop(mounted);
    write_in_app(&root, "v2");
    let out = reconcile(&root);
    let name = mnt.display().to_string();
    assert!(
        out.stdout.contains(&format!("target {name} FAILED")),
        "{out:?}"
    );
    assert!(out.stdout.contains("not a mount point"), "{out:?}");
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "target {name}: directory {name} is not a mount point"
        )),
        "{out:?}"
    );
    assert!(
        !mnt.join("lnd").exists(),
        "nothing is written under an unmounted mount point"
    );

    // Back: the pending change is copied on the next tick, status is fine again.
    let mounted = Mounted::bind(&disk, &mnt);
    reconcile(&root);
    assert_eq!(newest(&disk).as_deref(), Some("v2"));
    assert_eq!(root.archy(&["status"]).code, 0);

    // Read-only: the same.
    mounted.remount("remount,bind,ro");
    write_in_app(&root, "v3");
    let out = reconcile(&root);
    assert!(out.stdout.contains("read-only file system"), "{out:?}");
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let problems = out.json()["problems"].to_string();
    assert!(problems.contains(&format!("target {name}")), "{problems}");
    mounted.remount("remount,bind,rw");
    reconcile(&root);
    assert_eq!(newest(&disk).as_deref(), Some("v3"));
    assert_eq!(root.archy(&["status"]).code, 0);

    // Full: a 4 KiB tmpfs takes no 8 KiB copy; nothing half-written stays on it.
    drop(mounted);
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    let tiny = Mounted(mnt.clone());
    let big = "y".repeat(8192);
    write_in_app(&root, &big);
    let out = reconcile(&root);
    assert!(
        out.stdout.contains(&format!("target {name} FAILED")),
        "{out:?}"
    );
    assert!(out.stdout.contains("No space left on device"), "{out:?}");
    assert_eq!(root.archy(&["status"]).code, 1);
    let left = files(&mnt.join("lnd"));
    assert!(
        left.is_empty(),
        "nothing half-written stays on a full target: {left:?}"
    );
    drop(tiny);
    let _mounted = Mounted::bind(&disk, &mnt);
    reconcile(&root);
    assert_eq!(newest(&disk).as_deref(), Some(big.as_str()));
    assert_eq!(root.archy(&["status"]).code, 0);
}

#[test]
fn a_live_database_is_refused_at_manifest_load() {
    let root = TestRoot::empty();
    let file = root.simple_manifest(
        "lnd",
        "volumes: [\"lnd-data:/root/.lnd\"]\nbackup:\n  files: [\"lnd-data:/data/graph/mainnet/channel.db\"]\n  targets: [{dir: /mnt/usb}]\n",
    );
    let out = root.archy(&["reconcile", "--dry-run"]);
    assert_eq!(out.code, 2, "{out:?}");
    let said = out.all();
    assert!(said.contains(&file.display().to_string()), "{said}");
    assert!(said.contains("backup"), "{said}");
    assert!(said.contains("channel.db` is a live database"), "{said}");
}
