//! The chaos soak (issue 18): ONE isolated root that lives for the whole soak, running a small
//! appliance, and faults of the matrix's kinds drawn at random (seeded, printed, replayable)
//! one after another on it. After each fault runs what the node's timers (or its boot sequence,
//! or an operator) would run, then every invariant is checked; the first that fails stops the
//! soak with the seed and the fault sequence that led there. A fresh root per case (the matrix)
//! cannot find what one fault leaves for the next; this can.
//!
//! The appliance (all on the root's own network and subnet, ports on 127.0.0.1):
//! - `node`: the test image running busybox httpd, a named volume `node-data` with a checksummed
//!   blob, a rendered bitcoin.conf mounted read-only, a published port;
//! - `lnd` (depends on node): the same with lnd.conf;
//! - `indexer` (depends on node): built from a local context whose image declares
//!   `VOLUME /cache` (a checksummed blob in that anonymous volume), env_file electrumx.env;
//! - a release layout (`releases/<v>`, `current`, `previous`) for verify-update / rollback;
//! - the state dir (secret, rendered configs) on a small tmpfs, so "file system full" is a fault.
//!
//! Invariants after every fault: every app running with its spec (`archy status` exit 0) and
//! answering on its port with its volume data; volume checksums unchanged on disk and as served;
//! configs consistent with the secret (computed here, independently) and as the containers see
//! them; `current` and `previous` whole releases and no temp entries; no ghost OCI process or
//! conmon; no network namespace, veth, bridge address or firewall rule beyond the live containers'
//! (compared with the rules of the first converge, ids and addresses normalised); no stray
//! container; the secret in no archy output.
//!
//! Run by `scripts/chaos-soak [--minutes N] [--seed S]` (which writes CHAOS.md's soak section),
//! and, short with a fixed seed, by `.ci/run`. Environment: ARCHY_SOAK_SEED, ARCHY_SOAK_MINUTES,
//! ARCHY_SOAK_ROUNDS, ARCHY_SOAK_STEPS (stop after N faults: replays a failing prefix),
//! ARCHY_SOAK_KINDS (comma-separated ids), ARCHY_SOAK_ALL=1 (also the kinds of KNOWN_OPEN),
//! ARCHY_SOAK_REPORT (a JSON summary is written there).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::common::install::{write_release, write_restart_script};
use crate::common::*;
use crate::support::*;

mod faults;
mod invariants;

const APPS: [&str; 3] = ["node", "lnd", "indexer"];

/// lnd's and the indexer's command: httpd under a shell that exits on SIGTERM, so they stop at
/// once. The node runs httpd as PID 1, which ignores SIGTERM: its stops wait out the stop
/// timeout, as a slow daemon's do (the window a killed `podman rm -f` needs).
const FAST_STOP: &str = "trap 'exit 0' TERM; /bin/httpd -f -p 80 -h / & wait";

/// The fault kinds, each a row (or a group of rows) of the chaos matrix in CHAOS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    ContainerKill,
    ContainerStop,
    ContainerRm,
    ContainerCreated,
    ContainerRenamed,
    ImageRemoved,
    PortSquatter,
    EngineDbDeleted,
    EngineDbCorrupt,
    EngineGhost,
    EngineRuntimeWiped,
    Reboot,
    KillReconcile,
    KillRender,
    KillRollback,
    ConcurrentReconciles,
    ConfigDamaged,
    ConfigSymlink,
    StateFull,
    NetworkDeleted,
    NetworkWrongSubnet,
    HostileManifest,
    HostileTarball,
    UnloadableManifest,
    BadUpdate,
    ClockStep,
    ExecLeak,
}

impl Kind {
    pub(crate) const ALL: [Kind; 27] = [
        Kind::ContainerKill,
        Kind::ContainerStop,
        Kind::ContainerRm,
        Kind::ContainerCreated,
        Kind::ContainerRenamed,
        Kind::ImageRemoved,
        Kind::PortSquatter,
        Kind::EngineDbDeleted,
        Kind::EngineDbCorrupt,
        Kind::EngineGhost,
        Kind::EngineRuntimeWiped,
        Kind::Reboot,
        Kind::KillReconcile,
        Kind::KillRender,
        Kind::KillRollback,
        Kind::ConcurrentReconciles,
        Kind::ConfigDamaged,
        Kind::ConfigSymlink,
        Kind::StateFull,
        Kind::NetworkDeleted,
        Kind::NetworkWrongSubnet,
        Kind::HostileManifest,
        Kind::HostileTarball,
        Kind::UnloadableManifest,
        Kind::BadUpdate,
        Kind::ClockStep,
        Kind::ExecLeak,
    ];

    /// Short id (sequences, ARCHY_SOAK_KINDS).
    pub(crate) fn id(self) -> &'static str {
        match self {
            Kind::ContainerKill => "container-kill",
            Kind::ContainerStop => "container-stop",
            Kind::ContainerRm => "container-rm",
            Kind::ContainerCreated => "container-created",
            Kind::ContainerRenamed => "container-renamed",
            Kind::ImageRemoved => "image-removed",
            Kind::PortSquatter => "port-squatter",
            Kind::EngineDbDeleted => "engine-db-deleted",
            Kind::EngineDbCorrupt => "engine-db-corrupt",
            Kind::EngineGhost => "engine-ghost",
            Kind::EngineRuntimeWiped => "engine-runtime-wiped",
            Kind::Reboot => "reboot",
            Kind::KillReconcile => "kill-reconcile",
            Kind::KillRender => "kill-render",
            Kind::KillRollback => "kill-rollback",
            Kind::ConcurrentReconciles => "concurrent-reconciles",
            Kind::ConfigDamaged => "config-damaged",
            Kind::ConfigSymlink => "config-symlink",
            Kind::StateFull => "state-full",
            Kind::NetworkDeleted => "network-deleted",
            Kind::NetworkWrongSubnet => "network-wrong-subnet",
            Kind::HostileManifest => "hostile-manifest",
            Kind::UnloadableManifest => "unloadable-manifest",
            Kind::HostileTarball => "hostile-tarball",
            Kind::BadUpdate => "bad-update",
            Kind::ClockStep => "clock-step",
            Kind::ExecLeak => "exec-leak",
        }
    }

    /// What is injected and what runs after it (CHAOS.md's soak table).
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::ContainerKill => "container: `podman kill` (random app) → reconcile tick",
            Kind::ContainerStop => "container: `podman stop` → tick",
            Kind::ContainerRm => "container: `podman rm -f` → tick",
            Kind::ContainerCreated => "container: left in `created` state (a `podman container clone` in its place) → tick",
            Kind::ContainerRenamed => "container: renamed by hand → tick",
            Kind::ImageRemoved => "container: the build app's image removed (`rmi -f`) → tick (rebuilt offline)",
            Kind::PortSquatter => "container: an unmanaged container holds an app's port → tick exits 1 naming it; squatter removed → tick",
            Kind::EngineDbDeleted => "engine: state DB deleted → tick, heal-podman, tick",
            Kind::EngineDbCorrupt => "engine: state DB truncated to one page → tick, heal-podman, tick",
            Kind::EngineGhost => "engine: an older state DB restored (every container a ghost) → tick, heal-podman, tick",
            Kind::EngineRuntimeWiped => "engine: processes killed, runtime dirs wiped → tick, heal-podman, tick",
            Kind::Reboot => "boot: reboot simulated (processes, mounts, netns and firewall rules gone; runtime dirs wiped) → heal-podman, render-config, reconcile, verify-update",
            Kind::KillReconcile => "archy: SIGKILL at a random point of `reconcile` with work to do (containers removed, or every spec changed) → tick",
            Kind::KillRender => "archy: SIGKILL at a random point of `render-config --rotate-secret` → tick",
            Kind::KillRollback => "archy: an update installed, SIGKILL at a random point of `rollback` → rollback again",
            Kind::ConcurrentReconciles => "archy: 2–5 concurrent `reconcile` runs on removed containers (each created once)",
            Kind::ConfigDamaged => "file: a rendered config edited, deleted, made 0400, or both → tick",
            Kind::ConfigSymlink => "file: a rendered config replaced by a symlink → tick exits 1 naming it; link removed → tick",
            Kind::StateFull => "file: state dir's file system filled → `render-config --rotate-secret` fails cleanly, tick; space freed → tick",
            Kind::NetworkDeleted => "network: `podman network rm -f` → tick",
            Kind::NetworkWrongSubnet => "network: recreated with a wrong subnet → tick",
            Kind::HostileManifest => "input: a hostile manifest put in (`reconcile --prune` exits 2, removes nothing), taken out → tick",
            Kind::UnloadableManifest => "input: an app's manifest made unloadable (dangling symlink, directory, FIFO, symlink loop): `reconcile --prune` exits 2 naming it, removes nothing; restored → tick",
            Kind::HostileTarball => "tarball: a hostile release tarball judged (`verify-update --tarball` exits 1; `current` unchanged)",
            Kind::BadUpdate => "update: a release installed and armed whose UI never answers → boot `verify-update` rolls back (status exits 1 naming it) → next boot's `verify-update`",
            Kind::ClockStep => "clock: a tick while the wall clock runs 10 minutes to a day ahead (`ARCHY_NOW`), then the clock set right → status exits 1 (the last completion is in the future) → tick",
            Kind::ExecLeak => "health: an app given an `exec:` probe that never ends (`sleep 1000`) → 2 ticks, each killing the probe's exec session at its deadline (`podman top` shows none left) → probe removed → tick",
        }
    }
}

/// Kinds left out of the default (CI) soak while a known bug makes them fail, each with the issue
/// that fixes it. `ARCHY_SOAK_ALL=1` runs them anyway; the full soak is run with them once the
/// fixes have landed. Empty since both found bugs were fixed:
/// - `engine-runtime-wiped`: podman forgot the namespaces of containers killed under wiped
///   runtime dirs and started them in new ones; heal-podman now releases namespaces no running
///   container has (replayed by `replay_runtime_wiped_leaves_no_namespace` and
///   tests/chaos/engine.rs `engine_runtime_dirs_wiped_under_a_published_port`).
/// - `engine-ghost`: re-registering orphaned volumes failed with "exceeded num_locks (2048)"
///   (every database loss leaks the locks of what it knew); heal-podman now renumbers podman's
///   locks once and retries (src/heal/system.rs `register_volumes_renumbers_once_…`).
const KNOWN_OPEN: &[(Kind, &str)] = &[];

/// Whether the data of image-declared (anonymous) volumes must survive archy's recreates (issue
/// 15 (3), fixed). While false the soak re-seeds the indexer's `/cache` blob whenever the indexer
/// container was replaced; `ARCHY_SOAK_ALL=1` requires it anyway. (Removed by hand, a container
/// leaves its anonymous volume behind: then the blob is always re-seeded.)
const IMAGE_VOLUMES_CARRIED: bool = true;

fn image_volumes_carried() -> bool {
    IMAGE_VOLUMES_CARRIED || std::env::var("ARCHY_SOAK_ALL").is_ok_and(|v| v == "1")
}

struct Config {
    seed: u64,
    minutes: f64,
    rounds: Option<usize>,
    steps: Option<usize>,
    kinds: Vec<Kind>,
    report: Option<PathBuf>,
}

impl Config {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let all = var("ARCHY_SOAK_ALL").is_some_and(|v| v == "1");
        let kinds = match var("ARCHY_SOAK_KINDS") {
            Some(list) => list
                .split(',')
                .map(|id| {
                    *Kind::ALL
                        .iter()
                        .find(|k| k.id() == id.trim())
                        .unwrap_or_else(|| panic!("ARCHY_SOAK_KINDS: no kind {id:?}"))
                })
                .collect(),
            None => Kind::ALL
                .into_iter()
                .filter(|k| all || !KNOWN_OPEN.iter().any(|(o, _)| o == k))
                .collect(),
        };
        Config {
            seed: var("ARCHY_SOAK_SEED").map_or(18, |s| s.parse().expect("ARCHY_SOAK_SEED")),
            minutes: var("ARCHY_SOAK_MINUTES")
                .map_or(3.0, |s| s.parse().expect("ARCHY_SOAK_MINUTES")),
            rounds: var("ARCHY_SOAK_ROUNDS").map(|s| s.parse().expect("ARCHY_SOAK_ROUNDS")),
            steps: var("ARCHY_SOAK_STEPS").map(|s| s.parse().expect("ARCHY_SOAK_STEPS")),
            kinds,
            report: var("ARCHY_SOAK_REPORT").map(PathBuf::from),
        }
    }
}

/// The long-lived node.
struct Node {
    /// The state dir's file system (dropped first: unmounted before the root's cleanup).
    _tmpfs: Tmpfs,
    root: TestRoot,
    cfg: PathBuf,
    opt: PathBuf,
    restart_script: PathBuf,
    restart_log: PathBuf,
    ports: BTreeMap<&'static str, u16>,
    /// sha256 of each checksummed blob: `<app>` (named volume) and `cache` (indexer's /cache).
    sums: BTreeMap<String, String>,
    db_before_apps: PathBuf,
    release: u32,
    epoch: u32,
    passwords: BTreeSet<String>,
    indexer_id: String,
    firewall_baseline: Vec<String>,
    rng: Rng,
    seed: u64,
    sequence: Vec<String>,
    counts: BTreeMap<Kind, usize>,
    started: Instant,
    report: Option<PathBuf>,
}

/// HMAC-SHA256 hex, as Bitcoin Core's share/rpcauth/rpcauth.py computes it
/// (bitcoin/bitcoin: share/rpcauth/rpcauth.py, `hmac.new(salt, password, 'SHA256')`).
fn rpcauth_hmac(salt: &str, password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt.as_bytes()).unwrap();
    mac.update(password.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A consumer's RPC password derived from the canonical one, as src/rpc_users.rs documents it:
/// hex HMAC-SHA256 keyed with the canonical password over `archy-rpc-consumer:<name>`.
fn consumer_password(password: &str, name: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(password.as_bytes()).unwrap();
    mac.update(b"archy-rpc-consumer:");
    mac.update(name.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0): status and body.
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn manifest_text(node: &Node, app: &str) -> String {
    let port = node.ports[app];
    let cfg = node.cfg.display();
    let epoch = node.epoch;
    let common =
        format!("stop_timeout: 1\nports: [\"127.0.0.1:{port}:80\"]\nenv: {{EPOCH: \"{epoch}\"}}\n");
    match app {
        "node" => format!(
            "app: node\nimage: {TEST_IMAGE}\npull: never\ncommand: [\"/bin/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n{common}volumes: [\"node-data:/data\", \"{cfg}/bitcoin.conf:/etc/bitcoin.conf:ro\"]\nconfigs:\n  - render: bitcoin.conf\n    path: {cfg}/bitcoin.conf\n"
        ),
        "lnd" => format!(
            "app: lnd\nimage: {TEST_IMAGE}\npull: never\ncommand: [\"/bin/sh\", \"-c\", \"{FAST_STOP}\"]\n{common}depends_on: [node]\nvolumes: [\"lnd-data:/data\", \"{cfg}/lnd.conf:/etc/lnd.conf:ro\"]\nconfigs:\n  - render: lnd.conf\n    path: {cfg}/lnd.conf\n"
        ),
        "indexer" => format!(
            "app: indexer\nbuild: {{context: {}}}\n{common}depends_on: [node]\nvolumes: [\"indexer-data:/data\"]\nenv_files: [{cfg}/electrumx.env]\nconfigs:\n  - render: electrumx.env\n    path: {cfg}/electrumx.env\n    settings: {{COIN: Bitcoin}}\n",
            node.root.dir.join("indexer-ctx").display()
        ),
        _ => unreachable!(),
    }
}

fn config_file(app: &str) -> &'static str {
    match app {
        "node" => "bitcoin.conf",
        "lnd" => "lnd.conf",
        _ => "electrumx.env",
    }
}

impl Node {
    fn new(config: &Config) -> Self {
        let root = TestRoot::new();
        let tmpfs = Tmpfs::mount(&root.state_dir, "size=2m,mode=0755");
        // podman's DB from before any container or volume existed (the "older DB" of a ghost).
        root.podman_ok(&["ps"]);
        let db_before_apps = root.dir.join("bolt_state.db.before-apps");
        std::fs::copy(root.dir.join("static/bolt_state.db"), &db_before_apps).unwrap();
        let cfg = root.state_dir.join("cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        let ctx = root.test_context("indexer-ctx");
        std::fs::write(
            ctx.join("Containerfile"),
            format!("FROM scratch\nCOPY bin /bin\nVOLUME /cache\nCMD [\"/bin/sh\", \"-c\", \"{FAST_STOP}\"]\n"),
        )
        .unwrap();
        let opt = root.dir.join("opt");
        for v in ["1", "2"] {
            write_release(&opt, v);
        }
        std::os::unix::fs::symlink("releases/2", opt.join("current")).unwrap();
        std::os::unix::fs::symlink("releases/1", opt.join("previous")).unwrap();
        let restart_script = root.dir.join("restart.sh");
        let restart_log = root.dir.join("restarts.log");
        write_restart_script(&restart_script, &restart_log, Some("0.2"));
        let mut ports = BTreeMap::new();
        for app in APPS {
            ports.insert(app, free_port());
        }
        let mut node = Node {
            _tmpfs: tmpfs,
            root,
            cfg,
            opt,
            restart_script,
            restart_log,
            ports,
            sums: BTreeMap::new(),
            db_before_apps,
            release: 2,
            epoch: 0,
            passwords: BTreeSet::new(),
            indexer_id: String::new(),
            firewall_baseline: Vec::new(),
            rng: Rng::seeded(config.seed),
            seed: config.seed,
            sequence: Vec::new(),
            counts: BTreeMap::new(),
            started: Instant::now(),
            report: config.report.clone(),
        };
        node.write_manifests();
        node.tick();
        for app in APPS {
            node.seed_blob(app);
        }
        node.seed_blob("cache");
        node.indexer_id = node.id_of("indexer");
        node.firewall_baseline = node.firewall_rules(&node.inspect());
        eprintln!(
            "soak: root {} network {} subnet {} ports {:?}; firewall baseline:\n  {}",
            node.root.dir.display(),
            node.root.network,
            node.root.subnet,
            node.ports,
            node.firewall_baseline.join("\n  ")
        );
        node.check("setup");
        node
    }

    fn write_manifests(&self) {
        for app in APPS {
            self.root.manifest(app, &manifest_text(self, app));
        }
    }

    // ---- running things ----

    /// archy in this root with the soak's environment; bounded in time; the secret (every
    /// password the soak has seen) must appear in no output.
    fn archy_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let child = self.spawn_archy(args, env);
        let out = self.finish(child, args, Duration::from_secs(300));
        self.note_secret();
        for p in &self.passwords {
            if out.all().contains(p.as_str()) {
                self.fail(&format!(
                    "the secret appears in the output of archy {args:?}"
                ));
            }
        }
        out
    }

    fn archy(&mut self, args: &[&str]) -> Out {
        self.archy_env(args, &[])
    }

    fn spawn_archy(&self, args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, PathBuf) {
        let n = self.sequence.len();
        let outdir = self.root.dir.join("out");
        std::fs::create_dir_all(&outdir).unwrap();
        let base = outdir.join(format!("{n}-{}", rand_tag()));
        let mut cmd = self.root.archy_cmd();
        cmd.args(args)
            .env("ARCHY_INSTALL_ROOT", &self.opt)
            .env(
                "ARCHY_RESTART_CMD",
                format!("/bin/sh '{}' now", self.restart_script.display()),
            )
            // The policy covers build contexts too (issue 14): the indexer's context is allowed.
            .env(
                "ARCHY_ALLOWED_VOLUME_ROOTS",
                format!(
                    "{}:{}",
                    self.root.state_dir.display(),
                    self.root.dir.join("indexer-ctx").display()
                ),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(base.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(base.with_extension("err")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        (cmd.spawn().expect("run archy"), base)
    }

    fn finish(
        &self,
        (mut child, base): (std::process::Child, PathBuf),
        args: &[&str],
        limit: Duration,
    ) -> Out {
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!("archy {args:?} did not finish within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |ext| {
            let p = base.with_extension(ext);
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            let _ = std::fs::remove_file(&p);
            t
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: read("out"),
            stderr: read("err"),
        }
    }

    /// SIGKILL an archy run after `delay` (archy alone: a podman it started runs on, as after
    /// `kill -9` or the OOM killer, until it writes into archy's closed pipe), then wait, at most
    /// one timer period (30 s), until no podman of this root runs: the next tick comes no sooner.
    fn killed_after(&mut self, args: &[&str], delay: Duration) {
        let (mut child, base) = self.spawn_archy(args, &[]);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        for ext in ["out", "err"] {
            let _ = std::fs::remove_file(base.with_extension(ext));
        }
        let until = Instant::now() + Duration::from_secs(30);
        while !self.podman_processes().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// podman processes working on this root (found by its CONTAINERS_CONF in their
    /// environment, or its path on their command line): not conmon.
    fn podman_processes(&self) -> Vec<u32> {
        let needle = self.root.dir.display().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let mentions = |f: &str| {
                    std::fs::read(format!("/proc/{pid}/{f}"))
                        .is_ok_and(|b| String::from_utf8_lossy(&b).contains(&needle))
                };
                comm.trim() == "podman" && (mentions("environ") || mentions("cmdline"))
            })
            .collect()
    }

    fn note_secret(&mut self) {
        if let Some((_, password)) = self.secret() {
            for app in APPS {
                self.passwords.insert(consumer_password(&password, app));
            }
            self.passwords.insert(password);
        }
    }

    fn secret(&self) -> Option<(String, String)> {
        let text =
            std::fs::read_to_string(self.root.state_dir.join("secrets/bitcoin-rpc.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((
            v["user"].as_str()?.to_string(),
            v["password"].as_str()?.to_string(),
        ))
    }

    fn expect(&self, out: &Out, code: i32, what: &str) {
        if out.code != code {
            self.fail(&format!("{what}: expected exit {code}: {out:?}"));
        }
    }

    /// One timer tick: `archy reconcile`, which must converge.
    fn tick(&mut self) -> Out {
        let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
        self.expect(&out, 0, "reconcile tick");
        out
    }

    /// A tick that may fail (the engine is broken and no heal has run yet) but must end.
    fn tick_any(&mut self) -> Out {
        let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
        if !matches!(out.code, 0 | 1) {
            self.fail(&format!("reconcile on a broken engine: {out:?}"));
        }
        out
    }

    /// What an operator (or the boot sequence) runs on a broken engine: a timer tick that may
    /// fail, heal-podman, a tick that converges.
    fn heal_and_tick(&mut self) {
        self.tick_any();
        let out = self.archy(&["heal-podman"]);
        self.expect(&out, 0, "heal-podman");
        self.tick();
    }

    fn podman(&self, args: &[&str]) -> Out {
        self.root.podman(args)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        if out.code != 0 {
            self.fail(&format!("podman {args:?}: {out:?}"));
        }
        out.stdout.trim().to_string()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len() as u64) as usize]
    }

    fn inspect(&self) -> Vec<serde_json::Value> {
        let names: Vec<String> = APPS.iter().map(|a| format!("archy-{a}")).collect();
        let mut args = vec!["inspect", "--type", "container"];
        args.extend(names.iter().map(String::as_str));
        let out = self.podman(&args);
        if out.code != 0 {
            self.fail(&format!("inspect the apps' containers: {out:?}"));
        }
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn id_of(&self, app: &str) -> String {
        self.podman_ok(&["inspect", "--format", "{{.Id}}", &format!("archy-{app}")])
    }

    fn cache_dir(&self) -> PathBuf {
        let out = self.podman_ok(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{if eq .Destination \"/cache\"}}{{.Source}}{{end}}{{end}}",
            "archy-indexer",
        ]);
        if out.is_empty() {
            self.fail("archy-indexer has no /cache volume (the image declares one)");
        }
        PathBuf::from(out)
    }

    fn blob_path(&self, what: &str) -> PathBuf {
        if what == "cache" {
            self.cache_dir().join("blob")
        } else {
            self.root
                .dir
                .join(format!("volumes/{what}-data/_data/blob"))
        }
    }

    /// Write a fresh random blob (seeded) into a volume and remember its checksum.
    fn seed_blob(&mut self, what: &str) {
        let data: String = (0..512)
            .map(|_| format!("{:016x}", self.rng.below(u64::MAX)))
            .collect();
        let path = self.blob_path(what);
        std::fs::write(&path, &data).unwrap();
        self.sums.insert(what.to_string(), sha256(data.as_bytes()));
    }

    /// After a fault: when the indexer container was replaced, its anonymous volume is a new
    /// one. After a removal by hand that is expected (the data stays in the old, unused volume);
    /// after archy's own recreate it is issue 15 (3) until IMAGE_VOLUMES_CARRIED.
    fn indexer_replaced(&mut self, by_hand: bool) {
        let id = self.id_of("indexer");
        if id != self.indexer_id {
            if by_hand || !image_volumes_carried() {
                self.seed_blob("cache");
            }
            self.indexer_id = id;
        }
    }

    // ---- reporting ----

    fn fail(&self, msg: &str) -> ! {
        let listeners = Command::new("ss").args(["-ltnp"]).output().map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| {
                    self.ports
                        .values()
                        .any(|p| l.contains(&format!("127.0.0.1:{p} ")))
                })
                .map(|l| format!("\n  {l}"))
                .collect::<String>()
        });
        let ps = self.podman(&[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Names}} {{.State}} {{.Labels}}",
        ]);
        let conmons: String = conmons_under(&self.root.dir)
            .iter()
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let after = |flag: &str| {
                    args.iter()
                        .position(|a| a == flag)
                        .and_then(|i| args.get(i + 1))
                        .cloned()
                        .unwrap_or_default()
                };
                format!("\n  conmon {pid}: -n {} -c {}", after("-n"), after("-c"))
            })
            .collect();
        eprintln!(
            "podman ps -a:\n{}{}\npodman processes: {:?}",
            ps.stdout,
            conmons,
            self.podman_processes()
        );
        let text = format!(
            "chaos soak FAILED after {} faults ({:.0} s): {msg}\nlisteners on the apps' ports:{}\nreplay: ARCHY_SOAK_SEED={} ARCHY_SOAK_STEPS={} (same kinds)\nfault sequence:\n  {}",
            self.sequence.len(),
            self.started.elapsed().as_secs_f64(),
            listeners.unwrap_or_default(),
            self.seed,
            self.sequence.len(),
            self.sequence.join("\n  ")
        );
        eprintln!("{text}");
        self.write_report(Some(&text));
        panic!("{text}");
    }

    fn write_report(&self, failure: Option<&str>) {
        let Some(path) = &self.report else { return };
        let counts: serde_json::Map<String, serde_json::Value> = Kind::ALL
            .iter()
            .map(|k| {
                (
                    k.id().to_string(),
                    serde_json::json!({
                        "runs": self.counts.get(k).copied().unwrap_or(0),
                        "describe": k.describe(),
                    }),
                )
            })
            .collect();
        let excluded: Vec<serde_json::Value> = KNOWN_OPEN
            .iter()
            .map(|(k, why)| serde_json::json!({"kind": k.id(), "issue": why}))
            .collect();
        let survived = if failure.is_some() {
            self.sequence.len().saturating_sub(1)
        } else {
            self.sequence.len()
        };
        let report = serde_json::json!({
            "seed": self.seed,
            "wall_s": self.started.elapsed().as_secs(),
            "faults": self.sequence.len(),
            "survived": survived,
            "ok": failure.is_none(),
            "failure": failure,
            "kinds": counts,
            "known_open": excluded,
            "image_volumes_carried": image_volumes_carried(),
            "sequence": self.sequence,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}

fn rand_tag() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Run a soak: rounds of the kinds in a seeded random order, until the time, round or step
/// budget is spent. Returns the node (still alive) for callers that check more.
fn soak(config: Config) {
    eprintln!(
        "chaos soak: ARCHY_SOAK_SEED={} minutes {} rounds {:?} steps {:?}; kinds: {}",
        config.seed,
        config.minutes,
        config.rounds,
        config.steps,
        config
            .kinds
            .iter()
            .map(|k| k.id())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut node = Node::new(&config);
    let budget = Duration::from_secs_f64(config.minutes * 60.0);
    let mut round = 0;
    'soak: loop {
        if config.rounds.is_some_and(|r| round >= r)
            || node.started.elapsed() >= budget
            || config.steps.is_some_and(|s| node.sequence.len() >= s)
        {
            break;
        }
        round += 1;
        let mut deck = config.kinds.clone();
        for i in (1..deck.len()).rev() {
            let j = node.rng.below(i as u64 + 1) as usize;
            deck.swap(i, j);
        }
        for kind in deck {
            if node.started.elapsed() >= budget
                || config.steps.is_some_and(|s| node.sequence.len() >= s)
            {
                break 'soak;
            }
            let n = node.sequence.len() + 1;
            node.sequence.push(format!("#{n} {}", kind.id()));
            let t = Instant::now();
            node.inject(kind);
            let injected = t.elapsed();
            node.check(&format!("#{n} {}", kind.id()));
            *node.counts.entry(kind).or_default() += 1;
            eprintln!(
                "soak {} (round {round}, {:.0} s): invariants hold (fault and repair {:.1} s, checks {:.1} s)",
                node.sequence.last().unwrap(),
                node.started.elapsed().as_secs_f64(),
                injected.as_secs_f64(),
                (t.elapsed() - injected).as_secs_f64()
            );
        }
    }
    node.write_report(None);
    eprintln!(
        "chaos soak: {} faults in {} rounds, {:.0} s, every invariant held; seed {}",
        node.sequence.len(),
        round,
        node.started.elapsed().as_secs_f64(),
        node.seed
    );
}

#[test]
#[ignore = "chaos soak: scripts/chaos-soak; .ci/run runs a short one (fixed seed)"]
fn chaos_soak() {
    soak(Config::from_env());
}

/// The soak's first find after issue 15 landed: fault #6 (`engine-runtime-wiped`, after a
/// corrupt DB and a reboot) left one idle network namespace per app on the root's subnet.
#[test]
#[ignore = "chaos soak replay (real podman, ~25 s): .ci/run runs it"]
fn replay_runtime_wiped_leaves_no_namespace() {
    soak(Config {
        seed: 18,
        minutes: 10.0,
        rounds: None,
        steps: Some(6),
        kinds: Kind::ALL.to_vec(),
        report: None,
    });
}

/// The harness deletes a killed container's firewall rules by replaying `iptables -S` lines
/// with `-D`: the CNI backend's comments hold escaped quotes, which must stay one argument (they
/// did not, so those rules were never deleted and leaked onto the host; found by the soak).
#[test]
fn iptables_rules_with_cni_comments_split_into_their_arguments() {
    let line = r#"-A POSTROUTING -s 10.1.2.3/32 -m comment --comment "name: \"net\" id: \"abc\"" -j CNI-1f2e"#;
    assert_eq!(
        split_rule(line),
        [
            "-A",
            "POSTROUTING",
            "-s",
            "10.1.2.3/32",
            "-m",
            "comment",
            "--comment",
            r#"name: "net" id: "abc""#,
            "-j",
            "CNI-1f2e"
        ]
    );
}
