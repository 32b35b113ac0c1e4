//! A booted Debian 13 node for tests: `scripts/node-test boot` in the background (systemd as
//! PID 1 under `systemd-nspawn -b`, private network, its own cgroup), commands run in it as
//! transient units, files put in and read through its root directory on the host. Dropping the
//! [`Node`] powers it off and removes its root copy and cgroups, also when a test panics.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("scripts/node-test")
}

fn nodes_dir() -> PathBuf {
    std::env::var_os("ARCHY_NODE_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/archy-node"), PathBuf::from)
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub struct Node {
    pub name: String,
    supervisor: Child,
    log: PathBuf,
}

impl Node {
    /// Boot a node named `<tag>-<pid>` and wait until systemd reports the boot finished.
    pub fn boot(tag: &str) -> Node {
        let name = format!("{tag}-{}", std::process::id());
        let log = std::env::temp_dir().join(format!("archy-node-{name}.log"));
        let supervisor = Command::new(script())
            .args(["boot", &name])
            // The node powers itself off if this test process dies without running Drop.
            .env("ARCHY_NODE_OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run scripts/node-test boot");
        let mut node = Node {
            name,
            supervisor,
            log,
        };
        node.wait_booted(Duration::from_secs(300));
        node
    }

    /// The node's `/` as a directory of the host.
    pub fn root(&self) -> PathBuf {
        nodes_dir().join(&self.name).join("root")
    }

    /// A path inside the node, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root().join(inside.trim_start_matches('/'))
    }

    pub fn boots(&self) -> u32 {
        std::fs::read_to_string(nodes_dir().join(&self.name).join("boots"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// PID (on the host) of the node's systemd, if it is up.
    pub fn leader(&self) -> Option<u32> {
        let out = Command::new(script())
            .args(["leader", &self.name])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn wait_booted(&mut self, limit: Duration) {
        let t0 = Instant::now();
        while self.leader().is_none() {
            if let Ok(Some(status)) = self.supervisor.try_wait() {
                panic!(
                    "node {} ended ({status}) before it booted:\n{}",
                    self.name,
                    self.console()
                );
            }
            assert!(
                t0.elapsed() < limit,
                "node {} did not start:\n{}",
                self.name,
                self.console()
            );
        }
        // PID 1 runs before its bus socket exists: retry until systemd answers.
        loop {
            let out = self.run(&["systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "node {}: {}\n{}",
                self.name,
                text(&out),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn console(&self) -> String {
        let console = std::fs::read_to_string(nodes_dir().join(&self.name).join("console.log"))
            .unwrap_or_default();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        format!(
            "--- supervisor\n{log}\n--- console (last 40 lines)\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Run argv in the node as a transient unit (`systemd-run --wait --pipe`).
    pub fn run(&self, argv: &[&str]) -> Output {
        Command::new(script())
            .args(["run", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/node-test run")
    }

    /// Run a shell script in the node.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["/bin/sh", "-c", script])
    }

    /// Run a shell script in the node; it must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "node {}: `{script}` failed: {}",
            self.name,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Write a file into the node (root-owned, parents created).
    pub fn write(&self, inside: &str, content: &str) {
        let path = self.path(inside);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }

    pub fn copy_in(&self, host: &Path, inside: &str) {
        let path = self.path(inside);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(host, &path)
            .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", host.display(), path.display()));
    }

    /// `systemctl reboot` and wait for the next boot to finish; returns when its systemd is up
    /// (the instant the new boot's PID 1 was seen) .
    pub fn reboot(&mut self) -> Instant {
        let before = self.boots();
        let old = self.leader();
        // The transient unit dies with the old boot: its result does not matter.
        let _ = self.run(&["systemctl", "reboot", "--no-block"]);
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.supervisor.try_wait() {
                panic!(
                    "node {} ended ({status}) instead of rebooting:\n{}",
                    self.name,
                    self.console()
                );
            }
            if self.boots() > before {
                if let Some(pid) = self.leader() {
                    if Some(pid) != old {
                        break;
                    }
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "node {} did not reboot:\n{}",
                self.name,
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let booted = Instant::now();
        self.wait_booted(Duration::from_secs(120));
        booted
    }

    /// Poll `script` in the node every `every` until it succeeds; the time it took.
    pub fn wait_for(&self, what: &str, script: &str, limit: Duration, every: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let out = self.sh(script);
            if out.status.success() {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "node {}: {what} not reached within {limit:?}; last try: {}\n--- journal\n{}",
                self.name,
                text(&out),
                self.journal_tail()
            );
            std::thread::sleep(every);
        }
    }

    pub fn journal_tail(&self) -> String {
        String::from_utf8_lossy(
            &self
                .sh("journalctl -b --no-pager -n 80 -u 'archy-*' -u archipelago.service")
                .stdout,
        )
        .into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let out = Command::new(script()).args(["stop", &self.name]).output();
        if let Ok(out) = &out {
            if !out.status.success() {
                eprintln!("node-test stop {}: {}", self.name, text(out));
            }
        }
        // The supervisor exits once the node is off; stop killed it after its own deadline.
        let _ = self.supervisor.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
