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
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::common::install::{write_release, write_restart_script};
use crate::common::*;
use crate::hostile::hostile_manifests;
use crate::support::*;
use crate::tarballs::{tarball, HOSTILE_TARBALLS};

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
}

impl Kind {
    pub(crate) const ALL: [Kind; 25] = [
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
            Kind::BadUpdate => "update: a release installed and armed whose UI never answers → boot `verify-update` rolls back",
        }
    }
}

/// Kinds left out of the default (CI) soak while a known bug makes them fail, each with the issue
/// that fixes it. `ARCHY_SOAK_ALL=1` runs them anyway; the full soak is run with them once the
/// fixes have landed.
const KNOWN_OPEN: &[(Kind, &str)] = &[
    // Issue 15 (1): heal-podman kills a ghost but leaves its network namespace, veth and the
    // DNAT rule of its port (ahead of the new container's), so the app's port refuses
    // connections after DB loss + heal + reconcile (seen here: one stale namespace per app on
    // the root's subnet after a single fault). Same debris after runtime dirs are wiped under
    // killed containers.
    (
        Kind::EngineDbDeleted,
        "issue 15 (1): network debris of a healed ghost",
    ),
    (
        Kind::EngineDbCorrupt,
        "issue 15 (1): network debris of a healed ghost",
    ),
    (
        Kind::EngineGhost,
        "issue 15 (1): network debris of a healed ghost",
    ),
    (
        Kind::EngineRuntimeWiped,
        "issue 15 (1): network debris of killed containers",
    ),
    // Issue 15 (4): a manifest that cannot be loaded is silently ignored (exit 0) and
    // `--prune` then removes its app's container.
    (
        Kind::UnloadableManifest,
        "issue 15 (4): an unloadable manifest is ignored and --prune removes its app",
    ),
];

/// Issue 15 (3): a recreate loses the data of image-declared (anonymous) volumes. Until it lands,
/// the soak re-seeds the indexer's `/cache` blob whenever the indexer container was replaced,
/// instead of requiring the data to survive archy's recreate. `ARCHY_SOAK_ALL=1` requires it.
const IMAGE_VOLUMES_CARRIED: bool = false;

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
            .env("ARCHY_ALLOWED_VOLUME_ROOTS", &self.root.state_dir)
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

    // ---- the faults ----

    /// Inject one fault and run what the node would run after it; its random choices go into
    /// the sequence (`note`) as they are made.
    fn inject(&mut self, kind: Kind) {
        match kind {
            Kind::ContainerKill | Kind::ContainerStop | Kind::ContainerRm => {
                let app = *self.pick(&APPS);
                self.note(app);
                let name = format!("archy-{app}");
                match kind {
                    Kind::ContainerKill => self.podman_ok(&["kill", &name]),
                    Kind::ContainerStop => self.podman_ok(&["stop", "-t", "0", &name]),
                    _ => self.podman_ok(&["rm", "-f", "-t", "0", &name]),
                };
                self.tick();
                self.indexer_replaced(true);
            }
            Kind::ContainerCreated => {
                // What a crash between create and start leaves: the full spec, never started.
                let app = *self.pick(&APPS);
                self.note(app);
                let name = format!("archy-{app}");
                let clone = format!("archy-{app}-clone");
                self.podman_ok(&["container", "clone", &name, &clone]);
                self.podman_ok(&["rm", "-f", "-t", "0", &name]);
                self.podman_ok(&["rename", &clone, &name]);
                self.tick();
                self.indexer_replaced(true);
            }
            Kind::ContainerRenamed => {
                let app = *self.pick(&APPS);
                self.note(app);
                self.podman_ok(&["rename", &format!("archy-{app}"), &format!("by-hand-{app}")]);
                self.tick();
                self.indexer_replaced(false);
            }
            Kind::ImageRemoved => {
                let image =
                    self.podman_ok(&["inspect", "--format", "{{.ImageName}}", "archy-indexer"]);

                self.note(&image);
                self.podman_ok(&["rmi", "-f", &image]);
                self.tick();
                self.indexer_replaced(true);
            }
            Kind::PortSquatter => {
                let app = *self.pick(&APPS);
                self.note(app);
                let port = self.ports[app];
                self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
                let publish = format!("127.0.0.1:{port}:80");
                self.podman_ok(&[
                    "run",
                    "-d",
                    "--name",
                    "squatter",
                    "--network",
                    &self.root.network.clone(),
                    "-p",
                    &publish,
                    TEST_IMAGE,
                ]);
                let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
                self.expect(&out, 1, "reconcile with a squatter on a port");
                if !out.all().contains(&port.to_string()) {
                    self.fail(&format!("the failure names port {port}: {out:?}"));
                }
                for other in APPS.iter().filter(|a| **a != app) {
                    if self.root.state(&format!("archy-{other}")) != "running" {
                        self.fail(&format!(
                            "{other} stopped while {app}'s port was squatted: {out:?}"
                        ));
                    }
                }
                self.podman_ok(&["rm", "-f", "-t", "0", "squatter"]);
                self.tick();
                self.indexer_replaced(true);
            }
            Kind::EngineDbDeleted | Kind::EngineDbCorrupt | Kind::EngineGhost => {
                let db = self.root.dir.join("static/bolt_state.db");
                match kind {
                    Kind::EngineDbDeleted => std::fs::remove_file(&db).unwrap(),
                    Kind::EngineDbCorrupt => std::fs::OpenOptions::new()
                        .write(true)
                        .open(&db)
                        .unwrap()
                        .set_len(4096)
                        .unwrap(),
                    _ => {
                        std::fs::copy(&self.db_before_apps, &db).unwrap();
                    }
                }
                self.heal_and_tick();
                self.indexer_replaced(true);
            }
            Kind::EngineRuntimeWiped => {
                kill_root_processes(&self.root.dir);
                unmount_runtime_except(&self.root.dir, &[&self.root.state_dir]);
                self.wipe_runtime_dirs();
                self.heal_and_tick();
                self.indexer_replaced(true);
            }
            Kind::Reboot => {
                // A power cut: processes and mounts gone; a boot: /run (netns) and the firewall
                // start empty. The bridge is kept: deleted, CNI's bridge plugin (1.1.1, kernel
                // 6.18) fails to recreate it ("could not set bridge's mac: invalid argument").
                release_leaked_host_state(&self.root.dir, &self.root.gateway, &self.root.network);
                unmount_runtime_except(&self.root.dir, &[&self.root.state_dir]);
                self.wipe_runtime_dirs();
                for step in [
                    &["heal-podman"][..],
                    &["render-config"],
                    &["reconcile", "--lock-wait", "120s"],
                ] {
                    let out = self.archy(step);
                    self.expect(&out, 0, &format!("boot: {step:?}"));
                }
                let out = self.archy(&["verify-update"]);
                self.expect(&out, 0, "boot: verify-update");
                if !out.stdout.contains("nothing pending") {
                    self.fail(&format!("boot verify-update with nothing armed: {out:?}"));
                }
                self.indexer_replaced(true);
            }
            Kind::KillReconcile => {
                let by_hand = self.rng.below(2) == 0;
                if by_hand {
                    for app in APPS {
                        self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
                    }
                } else {
                    self.epoch += 1;
                    self.write_manifests();
                }
                let delay = Duration::from_millis(self.rng.below(1500));
                self.note(&format!(
                    "{} after {delay:?}",
                    if by_hand { "removed" } else { "respec" }
                ));
                self.killed_after(&["reconcile"], delay);
                self.tick();
                self.indexer_replaced(by_hand);
            }
            Kind::KillRender => {
                let delay = Duration::from_micros(self.rng.below(8000));
                self.note(&format!("after {delay:?}"));
                self.killed_after(&["render-config", "--rotate-secret"], delay);
                for f in ["bitcoin.conf", "lnd.conf", "electrumx.env"] {
                    let whole = std::fs::read_to_string(self.cfg.join(f)).is_ok_and(|t| {
                        t.starts_with("# Generated by archy")
                            && t.ends_with('\n')
                            && t.lines().count() >= 3
                    });
                    if !whole {
                        self.fail(&format!("{f} torn by a kill after {delay:?}"));
                    }
                }
                self.tick();
                self.indexer_replaced(false);
            }
            Kind::KillRollback => {
                let (old, new) = self.install_update();
                let restarts = self.restarts();
                let delay = Duration::from_micros(self.rng.below(300_000));
                self.note(&format!("{new}->{old} after {delay:?}"));
                self.killed_after(&["rollback"], delay);
                let current = self.link("current");
                if current != format!("releases/{old}") && current != format!("releases/{new}") {
                    self.fail(&format!("current -> {current} after a kill at {delay:?}"));
                }
                let out = self.archy(&["rollback"]);
                self.expect(&out, 0, "rollback after a killed rollback");
                if self.link("current") != format!("releases/{old}") || self.restarts() <= restarts
                {
                    self.fail(&format!(
                        "rollback finished: current -> {}, restarts {} -> {}: {out:?}",
                        self.link("current"),
                        restarts,
                        self.restarts()
                    ));
                }
            }
            Kind::ConcurrentReconciles => {
                let n = 2 + self.rng.below(4) as usize;
                self.note(&format!("{n} runs"));
                for app in APPS {
                    self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
                }
                self.root.take_podman_calls();
                let children: Vec<_> = (0..n)
                    .map(|_| self.spawn_archy(&["reconcile", "--lock-wait", "120s"], &[]))
                    .collect();
                for child in children {
                    let out = self.finish(child, &["reconcile"], Duration::from_secs(300));
                    self.expect(&out, 0, "concurrent reconcile");
                }
                let runs = self
                    .root
                    .take_podman_calls()
                    .iter()
                    .filter(|c| c.starts_with("run "))
                    .count();
                if runs != APPS.len() {
                    self.fail(&format!(
                        "{n} concurrent reconciles ran {runs} containers, not one per app"
                    ));
                }
                self.indexer_replaced(true);
            }
            Kind::ConfigDamaged => {
                let app = *self.pick(&APPS);
                self.note(app);
                let file = self.cfg.join(config_file(app));
                let good = std::fs::read(&file).unwrap();
                let how = *self.pick(&["edited", "deleted", "read-only", "edited+read-only"]);
                self.note(&format!("{} {how}", config_file(app)));
                if how.contains("edited") {
                    std::fs::write(&file, "[Bitcoind]\nbitcoind.rpcpass=guess\n").unwrap();
                }
                if how == "deleted" {
                    std::fs::remove_file(&file).unwrap();
                }
                if how.contains("read-only") {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400))
                        .unwrap();
                }
                self.tick();
                let mode = std::fs::metadata(&file)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .ok();
                if std::fs::read(&file).ok() != Some(good) || mode != Some(0o600) {
                    self.fail(&format!("{} not restored (mode {mode:?})", file.display()));
                }
                self.indexer_replaced(false);
            }
            Kind::ConfigSymlink => {
                let app = *self.pick(&APPS);
                self.note(app);
                let file = self.cfg.join(config_file(app));
                let elsewhere = self.root.dir.join("elsewhere.conf");
                std::fs::write(&elsewhere, "keep me").unwrap();
                std::fs::remove_file(&file).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
                let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
                self.expect(&out, 1, "reconcile with a config replaced by a symlink");
                if !out.all().contains("symlink")
                    || !out.all().contains(&file.display().to_string())
                {
                    self.fail(&format!(
                        "the error names the symlink {}: {out:?}",
                        file.display()
                    ));
                }
                if std::fs::read_to_string(&elsewhere).unwrap() != "keep me" {
                    self.fail("written through a symlink");
                }
                std::fs::remove_file(&file).unwrap();
                self.tick();
                self.indexer_replaced(false);
            }
            Kind::StateFull => {
                let files: Vec<PathBuf> = [
                    "secrets/bitcoin-rpc.json",
                    "cfg/bitcoin.conf",
                    "cfg/lnd.conf",
                    "cfg/electrumx.env",
                ]
                .iter()
                .map(|f| self.root.state_dir.join(f))
                .collect();
                let before: Vec<Vec<u8>> =
                    files.iter().map(|f| std::fs::read(f).unwrap()).collect();
                let filler = self.root.state_dir.join("filler");
                let _ = Command::new("dd")
                    .args([
                        "if=/dev/zero",
                        &format!("of={}", filler.display()),
                        "bs=1k",
                        "count=4096",
                    ])
                    .output();
                let out = self.archy(&["render-config", "--rotate-secret"]);
                if out.code == 0 || !out.all().contains("No space left on device") {
                    self.fail(&format!("rotate-secret on a full file system: {out:?}"));
                }
                let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
                if !matches!(out.code, 0 | 1) {
                    self.fail(&format!("reconcile on a full file system: {out:?}"));
                }
                for (f, b) in files.iter().zip(&before) {
                    if std::fs::read(f).ok().as_ref() != Some(b) {
                        self.fail(&format!("{} changed on a full file system", f.display()));
                    }
                }
                std::fs::remove_file(&filler).unwrap();
                self.tick();
            }
            Kind::NetworkDeleted | Kind::NetworkWrongSubnet => {
                let net = self.root.network.clone();
                self.podman_ok(&["network", "rm", "-f", &net]);
                if kind == Kind::NetworkWrongSubnet {
                    let o: Vec<u32> = self
                        .root
                        .subnet
                        .split('.')
                        .map(|x| x.parse().unwrap_or(0))
                        .collect();
                    let wrong = format!("10.{}.{}.0/24", 230 + o[1] % 20, o[2]);
                    self.podman_ok(&["network", "create", "--subnet", &wrong, &net]);
                }
                self.tick();
                self.indexer_replaced(true);
            }
            Kind::HostileManifest => {
                let app = *self.pick(&APPS);
                self.note(app);
                let mut all = hostile_manifests(app, self.ports[app]);
                let i = self.rng.below(all.len() as u64) as usize;
                let h = all.swap_remove(i);
                self.note(h.fault);
                let path = self.root.manifest(h.file, &h.yaml);
                let out = self.archy(&["reconcile", "--prune", "--lock-wait", "120s"]);
                self.expect(&out, 2, &format!("reconcile --prune beside {}", h.fault));
                for e in &h.expect {
                    if !out.all().contains(e.as_str()) {
                        self.fail(&format!("{}: expected {e:?} in {out:?}", h.fault));
                    }
                }
                for a in APPS {
                    if self.root.state(&format!("archy-{a}")) != "running" {
                        self.fail(&format!("{a} not running beside {}: {out:?}", h.fault));
                    }
                }
                std::fs::remove_file(path).unwrap();
                self.tick();
            }
            Kind::UnloadableManifest => {
                let app = *self.pick(&APPS);
                self.note(app);
                let how = *self.pick(&["dangling symlink", "directory", "fifo", "symlink loop"]);
                self.note(how);
                let path = self.root.manifests.join(format!("{app}.yaml"));
                let aside = self.root.dir.join(format!("{app}.yaml.aside"));
                std::fs::rename(&path, &aside).unwrap();
                match how {
                    "dangling symlink" => {
                        std::os::unix::fs::symlink(self.root.dir.join("nowhere.yaml"), &path)
                            .unwrap()
                    }
                    "directory" => std::fs::create_dir(&path).unwrap(),
                    "fifo" => {
                        let st = Command::new("mkfifo").arg(&path).status().unwrap();
                        assert!(st.success(), "mkfifo");
                    }
                    _ => std::os::unix::fs::symlink(&path, &path).unwrap(),
                }
                let out = self.archy(&["reconcile", "--prune", "--lock-wait", "120s"]);
                let running = APPS
                    .iter()
                    .all(|a| self.root.state(&format!("archy-{a}")) == "running");
                let named = out.all().contains(&format!("{app}.yaml"));
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    std::fs::remove_dir(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
                std::fs::rename(&aside, &path).unwrap();
                if out.code != 2 || !named || !running {
                    self.fail(&format!(
                        "{app}.yaml a {how}: reconcile --prune must exit 2 naming it and remove nothing (all running: {running}): {out:?}"
                    ));
                }
                self.tick();
            }
            Kind::HostileTarball => {
                let (name, entry, build) = *self.pick(&HOSTILE_TARBALLS);
                self.note(name);
                let dir = self.root.dir.join("tarballs");
                std::fs::create_dir_all(&dir).unwrap();
                let path = tarball(&dir, name, build);
                let current = self.link("current");
                let out = self.archy(&["verify-update", "--tarball", path.to_str().unwrap()]);
                self.expect(&out, 1, "verify-update on a hostile tarball");
                if !out.all().contains(entry) {
                    self.fail(&format!("the refusal names {entry}: {out:?}"));
                }
                if self.link("current") != current {
                    self.fail("a tarball check changed `current`");
                }
                std::fs::remove_dir_all(&dir).unwrap();
            }
            Kind::BadUpdate => {
                let (old, new) = self.install_update();
                self.note(&format!("{new}->{old}"));
                let out = self.archy(&["verify-update", "--arm"]);
                self.expect(&out, 0, "verify-update --arm");
                let url = format!("https://127.0.0.1:{}/", free_port());
                let out = self.archy(&[
                    "verify-update",
                    "--url",
                    &url,
                    "--interval",
                    "100ms",
                    "--timeout",
                    "1s",
                ]);
                self.expect(
                    &out,
                    1,
                    "boot verify-update of a release whose UI never answers",
                );
                let bad = std::fs::read_to_string(self.root.state_dir.join("update/bad-versions"))
                    .unwrap_or_default();
                if self.link("current") != format!("releases/{old}")
                    || !bad.lines().any(|l| l == new.to_string())
                {
                    self.fail(&format!(
                        "not rolled back to {old} / {new} not recorded bad: {out:?}"
                    ));
                }
            }
        }
    }

    /// Add a detail (a random choice) to the current fault in the sequence.
    fn note(&mut self, detail: &str) {
        if let Some(last) = self.sequence.last_mut() {
            last.push(' ');
            last.push_str(detail);
        }
    }

    fn wipe_runtime_dirs(&self) {
        let _ = std::fs::remove_dir_all(self.root.dir.join("tmp"));
        let _ = std::fs::remove_dir_all(self.root.dir.join("run"));
    }

    fn bridge(&self) -> Option<String> {
        let out = self.podman(&[
            "network",
            "inspect",
            "--format",
            "{{.NetworkInterface}}",
            &self.root.network,
        ]);
        Some(out.stdout.trim().to_string()).filter(|b| out.code == 0 && !b.is_empty())
    }

    fn link(&self, name: &str) -> String {
        std::fs::read_link(self.opt.join(name))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(&self.restart_log).map_or(0, |t| t.lines().count())
    }

    /// What the updater does: install release N+1, `previous` -> the current one, `current` ->
    /// the new one (each by renaming a new symlink over the old), older releases pruned.
    fn install_update(&mut self) -> (u32, u32) {
        let old: u32 = self
            .link("current")
            .trim_start_matches("releases/")
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("current -> {}", self.link("current"))));
        self.release += 1;
        let new = self.release;
        write_release(&self.opt, &new.to_string());
        for (link, v) in [("previous", old), ("current", new)] {
            let tmp = self.opt.join(format!(".{link}.updater"));
            std::os::unix::fs::symlink(format!("releases/{v}"), &tmp).unwrap();
            std::fs::rename(&tmp, self.opt.join(link)).unwrap();
        }
        for e in std::fs::read_dir(self.opt.join("releases"))
            .unwrap()
            .flatten()
        {
            let v = e.file_name().to_string_lossy().into_owned();
            if v != old.to_string() && v != new.to_string() {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
        (old, new)
    }

    // ---- the invariants ----

    fn check(&mut self, after: &str) {
        let containers = self.root.containers();
        let stray: Vec<String> = containers
            .iter()
            .filter_map(|c| {
                let name = c["Names"][0].as_str().unwrap_or("?");
                let app = name.strip_prefix("archy-");
                let ok = app.is_some_and(|a| APPS.contains(&a))
                    && c["Labels"]["io.archy.app"].as_str() == app
                    && c["State"] == "running";
                (!ok).then(|| format!("{name} ({})", c["State"].as_str().unwrap_or("?")))
            })
            .collect();
        if !stray.is_empty() || containers.len() != APPS.len() {
            self.fail(&format!(
                "after {after}: containers not exactly the running apps: {stray:?}"
            ));
        }
        let inspect = self.inspect();
        self.check_processes(&inspect);
        self.check_network(&inspect);
        let status = self.archy(&["status"]);
        self.expect(&status, 0, &format!("after {after}: archy status"));
        let check = self.archy(&["render-config", "--check"]);
        self.expect(&check, 0, &format!("after {after}: render-config --check"));
        self.check_configs(&inspect);
        self.check_data();
        self.check_releases();
    }

    fn check_configs(&self, inspect: &[serde_json::Value]) {
        let Some((user, password)) = self.secret() else {
            self.fail("the canonical secret is unreadable");
        };
        let read = |f: &str| std::fs::read_to_string(self.cfg.join(f)).unwrap_or_default();
        let bitcoin = read("bitcoin.conf");
        // bitcoin.conf's rpcauth line for `u` proves password `p` (Bitcoin Core's rpcauth.py).
        let authorised = |u: &str, p: &str| {
            bitcoin
                .lines()
                .filter_map(|l| l.strip_prefix("rpcauth="))
                .filter_map(|v| v.split_once(':'))
                .filter_map(|(lu, rest)| rest.split_once('$').map(|(s, h)| (lu, s, h)))
                .filter(|(lu, _, _)| *lu == u)
                .map(|(_, salt, h)| h == rpcauth_hmac(salt, p))
                .collect::<Vec<_>>()
                == [true]
        };
        // A consumer's credentials: the canonical ones, or (least-privilege RPC users) its own
        // user with a password derived from the canonical one.
        let derived = |u: &str, p: &str| {
            (u == user && p == password) || (u != user && p == consumer_password(&password, u))
        };
        let canonical_ok = authorised(&user, &password);
        let lnd = read("lnd.conf");
        let value = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .to_string()
        };
        let (lu, lp) = (
            value(&lnd, "bitcoind.rpcuser="),
            value(&lnd, "bitcoind.rpcpass="),
        );
        let lnd_ok = derived(&lu, &lp) && authorised(&lu, &lp);
        let env = read("electrumx.env");
        let daemon = env
            .lines()
            .find(|l| l.starts_with("DAEMON_URL="))
            .unwrap_or("");
        let (eu, ep) = daemon
            .strip_prefix("DAEMON_URL=http://")
            .and_then(|r| r.split_once('@'))
            .and_then(|(cred, _)| cred.split_once(':'))
            .unwrap_or(("", ""));
        let env_ok = derived(eu, ep) && authorised(eu, ep);
        if !(canonical_ok && lnd_ok && env_ok) {
            self.fail(&format!(
                "configs inconsistent with the secret: bitcoin.conf canonical rpcauth {canonical_ok}, lnd.conf (user {lu}) {lnd_ok}, electrumx.env (user {eu}) {env_ok}"
            ));
        }
        let indexer = inspect
            .iter()
            .find(|c| c["Name"] == "archy-indexer")
            .unwrap();
        let sees = indexer["Config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(daemon)));
        if !sees {
            self.fail("archy-indexer's environment lacks electrumx.env's DAEMON_URL");
        }
        for (app, file) in [("node", "bitcoin.conf"), ("lnd", "lnd.conf")] {
            let served = self.get(app, &format!("/etc/{file}"));
            if served != read(file).as_bytes() {
                self.fail(&format!(
                    "archy-{app} sees another {file} than the rendered one"
                ));
            }
        }
    }

    /// GET with retries (a container just started may not listen yet); fails the soak when the
    /// app never answers 200.
    fn get(&self, app: &str, path: &str) -> Vec<u8> {
        let port = self.ports[app];
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match http_get(port, path) {
                Ok((200, body)) => return body,
                other if Instant::now() > until => self.fail(&format!(
                    "archy-{app} does not answer GET {path} on 127.0.0.1:{port}: {:?}",
                    other.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
                )),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    fn check_data(&self) {
        for what in ["node", "lnd", "indexer", "cache"] {
            let path = self.blob_path(what);
            let on_disk = std::fs::read(&path).map(|b| sha256(&b)).unwrap_or_default();
            if on_disk != self.sums[what] {
                self.fail(&format!("data lost: {} changed or missing", path.display()));
            }
            let (app, url) = match what {
                "cache" => ("indexer", "/cache/blob"),
                app => (app, "/data/blob"),
            };
            if sha256(&self.get(app, url)) != self.sums[what] {
                self.fail(&format!(
                    "archy-{app} serves another {url} than its volume holds"
                ));
            }
        }
    }

    fn check_releases(&self) {
        let whole = |link: &str| {
            let target = self.link(link);
            let v = target.strip_prefix("releases/").unwrap_or("?");
            let dir = self.opt.join(&target);
            std::fs::read_to_string(dir.join("web-ui/index.html")).ok()
                == Some(format!("release {v}"))
                && dir.join("bin/archipelago").exists()
        };
        if !whole("current") || !whole("previous") {
            self.fail(&format!(
                "not a whole release: current -> {}, previous -> {}",
                self.link("current"),
                self.link("previous")
            ));
        }
        let extra: Vec<String> = std::fs::read_dir(&self.opt)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !["releases", "current", "previous"].contains(&n.as_str()))
            .collect();
        if !extra.is_empty() {
            self.fail(&format!("left in the install root: {extra:?}"));
        }
    }

    fn check_processes(&self, inspect: &[serde_json::Value]) {
        let ids: BTreeSet<String> = inspect
            .iter()
            .map(|c| c["Id"].as_str().unwrap().to_string())
            .collect();
        let runc: BTreeSet<String> = runc_ids_under(&self.root.dir).into_iter().collect();
        if runc != ids {
            self.fail(&format!(
                "OCI containers {runc:?}, podman's {ids:?}: a ghost"
            ));
        }
        let conmons = conmons_under(&self.root.dir).len();
        if conmons != APPS.len() {
            self.fail(&format!(
                "{conmons} conmon processes for {} containers",
                APPS.len()
            ));
        }
    }

    fn prefix(&self) -> String {
        let (net, _) = self.root.gateway.rsplit_once('.').unwrap();
        format!("{net}.")
    }

    fn check_network(&self, inspect: &[serde_json::Value]) {
        let prefix = self.prefix();
        let mut sandboxes: BTreeSet<String> = BTreeSet::new();
        for c in inspect {
            let key = c["NetworkSettings"]["SandboxKey"].as_str().unwrap_or("");
            sandboxes.insert(key.rsplit('/').next().unwrap_or("").to_string());
        }
        let mut netns = BTreeSet::new();
        for e in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let out = Command::new("ip")
                .args(["-n", &name, "-o", "-4", "addr", "show"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("inet {prefix}")) {
                netns.insert(name);
            }
        }
        if netns != sandboxes {
            self.fail(&format!(
                "network namespaces on {prefix}0/24: {netns:?}, the containers': {sandboxes:?}"
            ));
        }
        let addrs = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .unwrap();
        let holders: Vec<String> = String::from_utf8_lossy(&addrs.stdout)
            .lines()
            .filter(|l| l.contains(&format!("inet {}/", self.root.gateway)))
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        let Some(bridge) = self.bridge() else {
            self.fail("archy's network has no bridge");
        };
        if holders != [bridge.clone()] {
            self.fail(&format!(
                "interfaces holding the gateway {}: {holders:?} (bridge {bridge})",
                self.root.gateway
            ));
        }
        let veths = Command::new("ip")
            .args(["-o", "link", "show", "master", &bridge])
            .output()
            .unwrap();
        let veths = String::from_utf8_lossy(&veths.stdout).lines().count();
        if veths != APPS.len() {
            self.fail(&format!(
                "{veths} veths on {bridge} for {} containers",
                APPS.len()
            ));
        }
        let rules = self.firewall_rules(inspect);
        if rules != self.firewall_baseline {
            let extra: Vec<&String> = rules
                .iter()
                .filter(|r| !self.firewall_baseline.contains(r))
                .collect();
            let missing: Vec<&String> = self
                .firewall_baseline
                .iter()
                .filter(|r| !rules.contains(r))
                .collect();
            self.fail(&format!("firewall rules differ from the first converge's: extra {extra:#?}, missing {missing:#?}"));
        }
    }

    /// The firewall rules (nat and filter) that mention this root's subnet, network or ports,
    /// normalised: a live container's id and address become its app's name, per-container
    /// chain names a placeholder; anything else stays as is (and so shows up as a difference).
    fn firewall_rules(&self, inspect: &[serde_json::Value]) -> Vec<String> {
        let prefix = self.prefix();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for c in inspect {
            let app = c["Name"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches("archy-")
                .to_string();
            names.insert(
                c["Id"].as_str().unwrap_or("?").to_string(),
                format!("<{app}-id>"),
            );
            let ip = c["NetworkSettings"]["Networks"][&self.root.network]["IPAddress"]
                .as_str()
                .unwrap_or("?");
            names.insert(ip.to_string(), format!("<{app}-ip>"));
        }
        let ports: Vec<String> = self.ports.values().map(|p| p.to_string()).collect();
        let net = format!("\\\"{}\\\"", self.root.network);
        let mut rules = Vec::new();
        for table in ["nat", "filter"] {
            let out = Command::new("iptables")
                .args(["-t", table, "-S"])
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mentions = line.contains(&prefix)
                    || line.contains(&net)
                    || line
                        .split(|c: char| !c.is_ascii_digit())
                        .any(|t| ports.iter().any(|p| p == t));
                if !line.starts_with("-A ") || !mentions {
                    continue;
                }
                let normal: Vec<String> = line
                    .split(' ')
                    .map(|tok| {
                        let bare = tok.trim_matches(|c| c == '"' || c == '\\');
                        let (addr, rest) = match bare.find(['/', ':']) {
                            Some(i) => bare.split_at(i),
                            None => (bare, ""),
                        };
                        if let Some(n) = names.get(addr) {
                            format!("{n}{rest}")
                        } else if (bare.starts_with("CNI-") || bare.starts_with("NETAVARK-"))
                            && bare.rsplit('-').next().is_some_and(|h| {
                                h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit())
                            })
                        {
                            let kind = bare.rsplit_once('-').unwrap().0;
                            format!("{kind}-<chain>")
                        } else {
                            tok.to_string()
                        }
                    })
                    .collect();
                rules.push(format!("{table}: {}", normal.join(" ")));
            }
        }
        rules.sort();
        rules
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
