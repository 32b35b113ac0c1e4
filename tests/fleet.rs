//! `examples/fleet/rollout.yml` run by the real `ansible-playbook` (ansible-core from PyPI in a
//! throwaway venv, `.ci/fetch-ansible`) against three nodes simulated on this machine: local
//! connection, each node with its own install root, state dir, run dir, isolated podman
//! config and web UI, a small HTTP server on 127.0.0.1 answering for whatever release the
//! node's `current` names.
//!
//! - a good release reaches all three nodes, each verified by its own `archy verify-update`;
//! - a release that answers 500 on the second node: the canary takes it, the second node rolls
//!   itself back (archy, not the playbook), the third is never touched, and the play fails
//!   naming the second node;
//! - rolling that release again is refused at the gate (the second node lists it as bad) before
//!   any node changes, and so is a tarball archy's static checks reject.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestRoot;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `ansible-playbook` from $ARCHY_ANSIBLE_PLAYBOOK, else what `.ci/fetch-ansible` provides.
/// Not finding it is a failure, not a skip.
fn ansible_playbook() -> PathBuf {
    common::fetched_tool("ARCHY_ANSIBLE_PLAYBOOK", "fetch-ansible")
}

/// One simulated node.
struct Node {
    name: String,
    root: TestRoot,
    install: PathBuf,
    restart_log: PathBuf,
    port: u16,
}

impl Node {
    /// `releases/1` installed and current; a web UI answering 500 for `failing` releases.
    fn new(name: &str, failing: &'static [&'static str]) -> Self {
        let root = TestRoot::empty();
        let install = root.dir.join("opt");
        let release = install.join("releases/1/web-ui");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::write(release.join("index.html"), "release 1").unwrap();
        std::os::unix::fs::symlink("releases/1", install.join("current")).unwrap();
        let restart_log = root.dir.join("restarts.log");
        std::fs::write(
            root.dir.join("restart.sh"),
            format!(
                "#!/bin/sh\necho \"restart $*\" >> '{}'\n",
                restart_log.display()
            ),
        )
        .unwrap();
        let port = serve_web_ui(install.clone(), failing);
        Node {
            name: name.into(),
            root,
            install,
            restart_log,
            port,
        }
    }

    fn current(&self) -> String {
        std::fs::read_link(self.install.join("current"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn previous(&self) -> String {
        std::fs::read_link(self.install.join("previous"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(&self.restart_log).map_or(0, |t| t.lines().count())
    }

    fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.root.state_dir.join("update/history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn bad_versions(&self) -> String {
        std::fs::read_to_string(self.root.state_dir.join("update/bad-versions")).unwrap_or_default()
    }

    fn inventory_entry(&self) -> (String, serde_json::Value) {
        let mut env: serde_json::Map<String, serde_json::Value> = self
            .root
            .env()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        env.insert("ARCHY_LOCK_WAIT".into(), "30s".into());
        let vars = serde_json::json!({
            "ansible_connection": "local",
            "archy_bin": env!("CARGO_BIN_EXE_archy"),
            "archy_install_root": self.install,
            "archy_state_dir": self.root.state_dir,
            "archy_stage_dir": self.root.dir,
            "archy_restart_cmd": format!("/bin/sh {}/restart.sh {}", self.root.dir.display(), self.name),
            "archy_probe_url": format!("http://127.0.0.1:{}/", self.port),
            "archy_verify_interval": "100ms",
            "archy_verify_timeout": "3s",
            "archy_env": env,
        });
        (self.name.clone(), vars)
    }
}

/// The node's web UI: 200 for the release `current` names, 500 when that release is listed
/// in `failing`. Runs until the test process exits.
fn serve_web_ui(install: PathBuf, failing: &'static [&'static str]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let current = std::fs::read_link(install.join("current"))
                .ok()
                .and_then(|p| p.file_name().map(|v| v.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let healthy = install.join("current/web-ui/index.html").is_file()
                && !failing.contains(&current.as_str());
            let status = if healthy {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

/// A release tarball: `./` (mode `root_mode`), `web-ui/index.html` naming the version.
fn release_tarball(dir: &Path, version: &str, root_mode: u32) -> PathBuf {
    common::install::web_ui_tarball(
        &dir.join(format!("archipelago-{version}.tar.gz")),
        root_mode,
        format!("release {version}").as_bytes(),
    )
}

struct Fleet {
    nodes: Vec<Node>,
    tmp: tempfile::TempDir,
    playbook: PathBuf,
}

impl Fleet {
    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn inventory(&self) -> PathBuf {
        let hosts: serde_json::Map<String, serde_json::Value> =
            self.nodes.iter().map(Node::inventory_entry).collect();
        let python = self.playbook.with_file_name("python3");
        let inventory = serde_json::json!({
            "all": {"vars": {"ansible_python_interpreter": python}},
            "archy_nodes": {"hosts": hosts},
        });
        let path = self.tmp.path().join("inventory.yml");
        std::fs::write(&path, serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
        path
    }

    /// Run rollout.yml for this tarball; returns the output (stdout has the play's report).
    fn rollout(&self, tarball: &Path, version: &str) -> Output {
        let out = Command::new(&self.playbook)
            .arg("-i")
            .arg(self.inventory())
            .arg(repo().join("examples/fleet/rollout.yml"))
            .arg("-e")
            .arg(format!("release_tarball={}", tarball.display()))
            .arg("-e")
            .arg(format!("release_version={version}"))
            .env("ANSIBLE_CONFIG", repo().join("examples/fleet/ansible.cfg"))
            .env("ANSIBLE_HOME", self.tmp.path().join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", self.tmp.path().join("ansible-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env_remove("ARCHY_LOG")
            .output()
            .expect("run ansible-playbook");
        eprintln!(
            "=== rollout of {version}: exit {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The PLAY RECAP line of one host.
fn recap<'a>(stdout: &'a str, host: &str) -> &'a str {
    let recap = stdout.rsplit("PLAY RECAP").next().unwrap_or("");
    recap
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap line for {host}:\n{stdout}"))
}

#[test]
fn a_release_rolls_across_three_nodes_and_a_failing_node_stops_the_rollout() {
    let playbook = ansible_playbook();
    let fleet = Fleet {
        nodes: vec![
            Node::new("node1", &[]),
            Node::new("node2", &["3"]),
            Node::new("node3", &[]),
        ],
        tmp: tempfile::tempdir().unwrap(),
        playbook,
    };

    // A good release reaches every node; each verified it itself.
    let good = release_tarball(fleet.tmp.path(), "2", 0o755);
    let out = fleet.rollout(&good, "2");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for node in &fleet.nodes {
        assert_eq!(node.current(), "releases/2", "{}", node.name);
        assert_eq!(node.previous(), "releases/1", "{}", node.name);
        assert_eq!(node.restarts(), 1, "{}", node.name);
        let history = node.history();
        assert_eq!(history.len(), 1, "{}: {history:?}", node.name);
        assert_eq!(history[0]["event"], "verified");
        assert_eq!(history[0]["version"], "2");
        assert!(!node.root.state_dir.join("update/pending.json").exists());
        assert!(recap(&stdout, &node.name).contains("failed=0"));
        // The fleet table has the node on release 2.
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("\"{:<20} 2 ", node.name))
                    || l.contains(&format!("{:<20} 2 ", node.name))),
            "table row for {}:\n{stdout}",
            node.name
        );
    }
    assert!(stdout.contains("LAST VERIFY"), "{stdout}");

    // Release 3 answers 500 on node2: canary node1 takes it, node2 rolls itself back, node3 is
    // never touched, and the play fails naming node2.
    let bad = release_tarball(fleet.tmp.path(), "3", 0o755);
    let out = fleet.rollout(&bad, "3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ROLLOUT STOPPED at node2: release 3 failed its check there"),
        "{stdout}"
    );
    assert!(recap(&stdout, "node2").contains("failed=1"), "{stdout}");
    assert!(recap(&stdout, "node1").contains("failed=0"), "{stdout}");
    assert!(recap(&stdout, "node3").contains("failed=0"), "{stdout}");

    let node1 = fleet.node("node1");
    assert_eq!(node1.current(), "releases/3");
    assert_eq!(node1.history().last().unwrap()["event"], "verified");

    let node2 = fleet.node("node2");
    assert_eq!(node2.current(), "releases/2", "archy rolled node2 back");
    assert_eq!(node2.bad_versions().trim(), "3");
    let events: Vec<String> = node2
        .history()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(events.iter().any(|e| e.contains("roll")), "{events:?}");
    assert_eq!(
        node2.restarts(),
        3,
        "release 2, release 3, and archy's rollback"
    );

    let node3 = fleet.node("node3");
    assert_eq!(node3.current(), "releases/2", "node3 is never touched");
    assert!(!node3.install.join("releases/3").exists());
    assert_eq!(node3.restarts(), 1);
    assert_eq!(node3.history().len(), 1);
    assert!(
        !stdout.contains("Fleet table"),
        "the rollout stopped: {stdout}"
    );

    // Rolling release 3 again: node2 refuses it at the gate, before any node changes.
    let out = fleet.rollout(&bad, "3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("node2 refuses release 3: it is in"),
        "{stdout}"
    );
    assert_eq!(fleet.node("node3").current(), "releases/2");
    assert_eq!(fleet.node("node3").restarts(), 1);
    assert_eq!(fleet.node("node2").restarts(), 3);

    // A tarball archy's static checks reject (root directory 0700) is refused on every node.
    let crafted = release_tarball(fleet.tmp.path(), "4", 0o700);
    let out = fleet.rollout(&crafted, "4");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("refuses release 4"), "{stdout}");
    assert!(stdout.contains("0700"), "the violation is named: {stdout}");
    for node in &fleet.nodes {
        assert!(!node.install.join("releases/4").exists(), "{}", node.name);
    }
    assert_eq!(fleet.node("node1").current(), "releases/3");
}
