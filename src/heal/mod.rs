//! heal-podman's decisions: parse what podman, runc and `/proc` report, classify it into named
//! probes, and plan the next repair in escalating order. Everything here is pure (no commands,
//! no writes; the one file-system read is [`oci_state_root`]'s check whether `/run/user/<uid>`
//! exists) and unit tested on output captured from podman 4.3.1 (`tests/fixtures/heal-*`);
//! [`system`] gathers the facts and performs the repairs.
//!
//! Paths are never hard-coded: podman's own view comes from
//! `podman --log-level=debug info --format json` (the JSON names graph root, run root and volume
//! path; the debug lines on stderr name the static dir holding `bolt_state.db` and the tmp dir,
//! which the JSON of podman 4 lacks). When the database cannot be opened, podman's error names
//! its path. The OCI runtime's state root is the runtime's own default, which podman relies on
//! (it passes no `--root`): `/run/<runtime>` for root, `$XDG_RUNTIME_DIR/<runtime>` rootless.

pub mod boltdb;
pub mod engine;
pub mod ipam;
pub mod netavark;
pub mod netsys;
pub mod network;
pub mod system;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::podman::short_id;

/// Name of podman's BoltDB state database inside its static dir (podman 4, and podman 5 where
/// it already exists: libpod `runtime.go` `getDBState` keeps using it for compatibility).
pub const DB_FILE: &str = "bolt_state.db";
/// podman 5's SQLite state database (libpod `sqlite_state.go`), with its `-wal` and `-shm`
/// files beside it: in the static dir when containers.conf sets one, else in the graph root.
pub const SQLITE_DB_FILE: &str = "db.sql";

/// What a failing podman command's stderr means for healing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EngineError {
    /// The state database exists but cannot be opened (truncated, garbage): move it aside.
    DbCorrupt { db: PathBuf, reason: String },
    /// The database was created with other storage settings: report, never guess.
    ConfigMismatch { detail: String },
    /// Rootless pause process / user namespace state is stale: `podman system migrate`.
    NeedsMigrate { detail: String },
    /// Lock allocation trouble: `podman system renumber`.
    Locks { detail: String },
    /// Anything else (the last error line).
    Other { detail: String },
}

/// Database open failures that mean "this file is not a usable database" (bbolt's wording).
/// Anything else (permission denied, timeout on a lock held by another podman) is not corruption
/// and must not make archy move the file.
const DB_CORRUPT_REASONS: &[&str] = &[
    "file size too small",
    "invalid database",
    "version mismatch",
    "checksum error",
    "meta",
    "unexpected EOF",
];

/// SQLite's words for a file that is not a usable database (podman 5's `db.sql`; its errors name
/// no path: `beginning transaction: file is not a database`).
const SQLITE_CORRUPT_REASONS: &[&str] =
    &["file is not a database", "database disk image is malformed"];

/// The meaningful error line of podman's stderr: the last `Error: …` line, or the last line.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("failed to connect to syslog"))
        .filter(|l| !l.contains("level=debug") && !l.contains("level=info"))
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .or(lines.last())
        .map(|l| l.trim_start_matches("Error:").trim().to_string())
        .unwrap_or_default()
}

/// Classify the stderr of a failed podman command (probes run `podman info`).
pub fn classify_engine_error(stderr: &str) -> EngineError {
    let line = error_line(stderr);
    if line.contains("database configuration mismatch") {
        return EngineError::ConfigMismatch { detail: line };
    }
    if let Some(rest) = line
        .find("opening database ")
        .map(|i| &line[i + "opening database ".len()..])
    {
        // "opening database /path/bolt_state.db: file size too small"
        if let Some((path, reason)) = rest.split_once(": ") {
            if path.starts_with('/')
                && DB_CORRUPT_REASONS.iter().any(|r| reason.contains(r))
                && !reason.contains("timeout")
            {
                return EngineError::DbCorrupt {
                    db: PathBuf::from(path),
                    reason: reason.trim().to_string(),
                };
            }
        }
    }
    if let Some(reason) = SQLITE_CORRUPT_REASONS.iter().find(|r| line.contains(*r)) {
        // The path is podman's SQLite database, found from its paths (`engine_paths`).
        return EngineError::DbCorrupt {
            db: PathBuf::new(),
            reason: (*reason).to_string(),
        };
    }
    if stderr.contains("system migrate") || stderr.contains("invalid internal status") {
        return EngineError::NeedsMigrate {
            detail: stderr_line_with(stderr, "migrate").unwrap_or(line),
        };
    }
    if line.contains("num_locks") || line.contains("allocating lock") || line.contains("shm lock") {
        return EngineError::Locks { detail: line };
    }
    EngineError::Other { detail: line }
}

fn stderr_line_with(stderr: &str, needle: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains(needle))
        .map(|l| l.trim().to_string())
}

impl EngineError {
    /// One line for probe evidence.
    pub fn describe(&self) -> String {
        match self {
            EngineError::DbCorrupt { db, reason } => {
                format!("database {} cannot be opened: {reason}", db.display())
            }
            EngineError::ConfigMismatch { detail } => detail.clone(),
            EngineError::NeedsMigrate { detail } => detail.clone(),
            EngineError::Locks { detail } => detail.clone(),
            EngineError::Other { detail } => detail.clone(),
        }
    }
}

/// Paths podman says it uses, from `podman --log-level=debug …` stderr (`Using static dir …`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DebugPaths {
    pub graph_root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
    pub static_dir: Option<PathBuf>,
    pub tmp_dir: Option<PathBuf>,
    pub volume_path: Option<PathBuf>,
    /// `Initializing boltdb state at …` (printed before the database is opened).
    pub db: Option<PathBuf>,
    /// `Using OCI runtime "/usr/bin/runc"`.
    pub oci_runtime: Option<PathBuf>,
    /// `Using sqlite as database backend` (podman 5, printed before the database is opened).
    pub sqlite: bool,
}

/// Parse podman's debug log lines for the paths it resolved (config + database overrides).
pub fn parse_debug_paths(stderr: &str) -> DebugPaths {
    let mut paths = DebugPaths::default();
    for line in stderr.lines() {
        let Some(msg) = debug_msg(line) else { continue };
        let value = |prefix: &str| {
            msg.strip_prefix(prefix)
                .map(|v| PathBuf::from(v.trim().trim_matches('"')))
        };
        if let Some(v) = value("Using graph root ") {
            paths.graph_root = Some(v);
        } else if let Some(v) = value("Using run root ") {
            paths.run_root = Some(v);
        } else if let Some(v) = value("Using static dir ") {
            paths.static_dir = Some(v);
        } else if let Some(v) = value("Using tmp dir ") {
            paths.tmp_dir = Some(v);
        } else if let Some(v) = value("Using volume path ") {
            paths.volume_path = Some(v);
        } else if let Some(v) = value("Initializing boltdb state at ") {
            paths.db = Some(v);
        } else if let Some(v) = value("Using OCI runtime ") {
            paths.oci_runtime = Some(v);
        } else if msg.starts_with("Using sqlite as database backend") {
            paths.sqlite = true;
        }
    }
    paths
}

/// The `msg="…"` of a logrus line, unescaped enough for paths.
fn debug_msg(line: &str) -> Option<String> {
    let start = line.find("msg=\"")? + 5;
    let rest = &line[start..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// The fields of `podman info --format json` heal-podman reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub host: InfoHost,
    #[serde(default)]
    pub store: InfoStore,
    #[serde(default)]
    pub version: InfoVersion,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoHost {
    #[serde(rename = "ociRuntime", default)]
    pub oci_runtime: InfoRuntime,
    /// conmon's binary (`host.conmon.path`), to identify conmon processes by executable.
    #[serde(default)]
    pub conmon: InfoRuntime,
    #[serde(default)]
    pub security: InfoSecurity,
    /// `netavark` or `cni` (podman 4.0+; podman 5 has only netavark).
    #[serde(rename = "networkBackend", default)]
    pub network_backend: String,
    /// `sqlite` or `boltdb` (podman 5; podman 4 has only BoltDB and does not say).
    #[serde(rename = "databaseBackend", default)]
    pub database_backend: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoRuntime {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoSecurity {
    #[serde(default)]
    pub rootless: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoStore {
    #[serde(rename = "graphRoot", default)]
    pub graph_root: String,
    #[serde(rename = "runRoot", default)]
    pub run_root: String,
    #[serde(rename = "volumePath", default)]
    pub volume_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoVersion {
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// Parse `podman info --format json`.
pub fn parse_info(json: &str) -> anyhow::Result<Info> {
    use anyhow::Context;
    serde_json::from_str(json).context("failed to parse `podman info --format json` output")
}

/// Every path heal-podman works with, as podman resolved them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnginePaths {
    pub graph_root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
    pub static_dir: Option<PathBuf>,
    pub tmp_dir: Option<PathBuf>,
    pub volume_path: Option<PathBuf>,
    pub db: Option<PathBuf>,
    /// The OCI runtime binary (runc, crun).
    pub oci_runtime: Option<PathBuf>,
    /// Its state root (`runc --root`).
    pub oci_root: Option<PathBuf>,
    /// The conmon binary podman runs (from `podman info`; unknown while podman is down).
    pub conmon: Option<PathBuf>,
    pub rootless: bool,
}

/// Merge podman info JSON (when podman answered), debug lines and an engine error into paths.
/// `euid` and `xdg_runtime_dir` decide the OCI runtime's default state root.
pub fn engine_paths(
    info: Option<&Info>,
    debug: &DebugPaths,
    error: Option<&EngineError>,
    euid: u32,
    xdg_runtime_dir: Option<&Path>,
) -> EnginePaths {
    let non_empty = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let graph_root = info
        .and_then(|i| non_empty(&i.store.graph_root))
        .or_else(|| debug.graph_root.clone());
    let run_root = info
        .and_then(|i| non_empty(&i.store.run_root))
        .or_else(|| debug.run_root.clone());
    let volume_path = info
        .and_then(|i| non_empty(&i.store.volume_path))
        .or_else(|| debug.volume_path.clone());
    let error_db = match error {
        Some(EngineError::DbCorrupt { db, .. }) if !db.as_os_str().is_empty() => Some(db.clone()),
        _ => None,
    };
    let sqlite_error =
        matches!(error, Some(EngineError::DbCorrupt { db, .. }) if db.as_os_str().is_empty());
    let sqlite =
        debug.sqlite || sqlite_error || info.is_some_and(|i| i.host.database_backend == "sqlite");
    let static_dir_known = debug.static_dir.clone();
    let db = error_db.or_else(|| debug.db.clone()).or_else(|| {
        if sqlite {
            sqlite_db_path(static_dir_known.as_deref(), graph_root.as_deref())
        } else {
            static_dir_known.as_ref().map(|d| d.join(DB_FILE))
        }
    });
    let static_dir = debug.static_dir.clone().or_else(|| {
        (!sqlite)
            .then(|| db.as_ref().and_then(|d| d.parent().map(Path::to_path_buf)))
            .flatten()
    });
    let oci_runtime = debug
        .oci_runtime
        .clone()
        .or_else(|| info.and_then(|i| non_empty(&i.host.oci_runtime.path)));
    let rootless = info.map_or(euid != 0, |i| i.host.security.rootless);
    let runtime_name = oci_runtime
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            info.map(|i| i.host.oci_runtime.name.clone())
                .filter(|n| !n.is_empty())
        });
    let oci_root = runtime_name.and_then(|name| oci_state_root(&name, euid, xdg_runtime_dir));
    EnginePaths {
        graph_root,
        run_root,
        static_dir,
        tmp_dir: debug.tmp_dir.clone(),
        volume_path,
        db,
        oci_runtime,
        oci_root,
        conmon: info.and_then(|i| non_empty(&i.host.conmon.path)),
        rootless,
    }
}

/// The value of `key = "value"` in section `[section]` of a TOML config file (containers.conf,
/// storage.conf), the last one wins; enough for the plain string keys heal-podman reads when
/// podman itself cannot answer. Comments and other sections are skipped.
pub fn toml_string(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if current != section {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.split(" #").next().unwrap_or(v).trim();
            let v = v.trim_matches('"').trim_matches('\'');
            found = Some(v.to_string());
        }
    }
    found
}

/// Where podman 5 keeps its SQLite database (libpod `sqlite_state.go` `NewSqliteState`): in the
/// static dir when containers.conf names one, else in the graph root (podman then defaults the
/// static dir to `<graph root>/libpod`, so a static dir there is taken as the default).
pub fn sqlite_db_path(static_dir: Option<&Path>, graph_root: Option<&Path>) -> Option<PathBuf> {
    match (static_dir, graph_root) {
        (Some(s), Some(g)) if s == g.join("libpod") => Some(g.join(SQLITE_DB_FILE)),
        (Some(s), _) => Some(s.join(SQLITE_DB_FILE)),
        (None, Some(g)) => Some(g.join(SQLITE_DB_FILE)),
        (None, None) => None,
    }
}

/// The OCI runtime's default state root, which podman 4 relies on (it passes no `--root`;
/// verified with runc: conmon's command line carries no `--root` and `runc list` in
/// `/run/runc` shows podman's containers). runc and crun honour `$XDG_RUNTIME_DIR` only when
/// not root, and rootless podman sets it for them to its own runtime dir.
pub fn oci_state_root(runtime: &str, euid: u32, xdg_runtime_dir: Option<&Path>) -> Option<PathBuf> {
    if euid == 0 {
        Some(PathBuf::from("/run").join(runtime))
    } else {
        let run_user = PathBuf::from(format!("/run/user/{euid}"));
        let run_user_exists = run_user.is_dir();
        Some(rootless_runtime_dir(euid, xdg_runtime_dir, run_user_exists).join(runtime))
    }
}

/// Rootless podman's runtime dir, chosen as podman chooses it: `$XDG_RUNTIME_DIR`, else
/// `/run/user/<uid>` when it exists, else `/tmp/podman-run-<uid>` (seen here for a user logged in
/// with `su -`, which sets no XDG_RUNTIME_DIR). Pure.
pub fn rootless_runtime_dir(
    euid: u32,
    xdg_runtime_dir: Option<&Path>,
    run_user_exists: bool,
) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) => dir.to_path_buf(),
        None if run_user_exists => PathBuf::from(format!("/run/user/{euid}")),
        None => PathBuf::from(format!("/tmp/podman-run-{euid}")),
    }
}

/// One OCI container as `runc list --format json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OciContainer {
    pub id: String,
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub bundle: String,
}

/// Parse `runc list --format json` (`null` when empty).
pub fn parse_runc_list(json: &str) -> anyhow::Result<Vec<OciContainer>> {
    use anyhow::Context;
    crate::exec::parse_json(json).context("failed to parse `runc list --format json` output")
}

/// A conmon process: its pid, container id (`-c`) and bundle (`-b`), and who runs what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conmon {
    pub pid: u32,
    pub id: String,
    pub bundle: String,
    /// Effective uid of the process (`/proc/PID/status`), when known.
    pub uid: Option<u32>,
    /// Whether `/proc/PID/exe` is the engine's conmon binary.
    pub exe_is_conmon: bool,
}

/// Why a process that looks like this engine's conmon (argv names conmon and a bundle under
/// the engine's roots) is not positively identified as one, so heal-podman must leave it
/// alone (pure): run by another user than the engine's, another executable, or an id that is
/// no container id. None when identified.
pub fn unidentified_conmon(c: &Conmon, engine_uid: u32) -> Option<String> {
    let is_container_id = c.id.len() == 64 && c.id.bytes().all(|b| b.is_ascii_hexdigit());
    let reason = match c.uid {
        None => "its owner cannot be read".to_string(),
        Some(uid) if uid != engine_uid => format!(
            "it runs as {} (uid {uid}), not as the engine's user (uid {engine_uid})",
            crate::procinfo::user_name(uid)
        ),
        Some(_) if !c.exe_is_conmon => "its executable is not the engine's conmon".to_string(),
        Some(_) if !is_container_id => "its -c argument is not a container id".to_string(),
        Some(_) => return None,
    };
    Some(format!(
        "pid {} looks like conmon for {} but {reason}; left alone",
        c.pid,
        crate::podman::short_id(&c.id)
    ))
}

/// Recognise conmon in a process's argv (from `/proc/<pid>/cmdline`).
pub fn parse_conmon_argv(pid: u32, argv: &[String]) -> Option<Conmon> {
    let program = argv.first()?;
    if Path::new(program).file_name()?.to_str()? != "conmon" {
        return None;
    }
    let mut id = None;
    let mut bundle = None;
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--cid" => id = args.next().cloned(),
            "-b" | "--bundle" => bundle = args.next().cloned(),
            other => {
                if let Some(v) = other.strip_prefix("--cid=") {
                    id = Some(v.to_string());
                } else if let Some(v) = other.strip_prefix("--bundle=") {
                    bundle = Some(v.to_string());
                }
            }
        }
    }
    Some(Conmon {
        pid,
        id: id?,
        bundle: bundle?,
        uid: None,
        exe_is_conmon: false,
    })
}

/// Whether `path` lies under any of `roots` (component-wise, so `/a/bc` is not under `/a/b`).
pub fn under_any(path: &str, roots: &[&Path]) -> bool {
    let path = Path::new(path);
    roots.iter().any(|root| path.starts_with(root))
}

/// The boot time (`btime`, Unix seconds) from `/proc/stat`.
pub fn parse_btime(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A container podman's storage knows but its database does not (`ps --external`: Storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageOnly {
    pub id: String,
    pub name: String,
    /// Its name is one archy manages (a manifest's container name or `archy-…`).
    pub managed: bool,
    /// A buildah working container (a running or interrupted build's), not damage: podman's
    /// database never holds those (`ps --external` reports its command as `buildah`).
    pub buildah: bool,
}

/// Whether archy manages a container of this name.
pub fn is_managed_name(name: &str, manifest_names: &BTreeSet<String>) -> bool {
    manifest_names.contains(name) || name.starts_with("archy-")
}

/// Split `podman ps -a --external` into database ids and storage-only containers.
pub fn split_external(
    listing: &[crate::podman::Container],
    manifest_names: &BTreeSet<String>,
) -> (BTreeSet<String>, Vec<StorageOnly>) {
    let mut known = BTreeSet::new();
    let mut storage = Vec::new();
    for c in listing {
        if c.state.eq_ignore_ascii_case("storage") {
            storage.push(StorageOnly {
                id: c.id.clone(),
                name: c.name().to_string(),
                managed: is_managed_name(c.name(), manifest_names),
                buildah: c.command.first().is_some_and(|cmd| cmd == "buildah"),
            });
        } else {
            known.insert(c.id.clone());
        }
    }
    (known, storage)
}

/// Everything the probes found, as data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub paths: EnginePaths,
    pub podman_version: Option<String>,
    /// `None`: podman info answered.
    pub engine_error: Option<EngineError>,
    /// `None` when it could not be looked at (engine down).
    pub storage_only: Option<Vec<StorageOnly>>,
    /// OCI containers under podman's roots that podman's database does not know.
    pub ghosts: Option<Vec<OciContainer>>,
    /// conmon processes for this graph root whose container podman's database does not know.
    pub ghost_conmons: Option<Vec<Conmon>>,
    /// Volume directories podman does not list.
    pub orphan_volumes: Option<Vec<String>>,
    /// Network namespaces, veths, port forwards and IP reservations on archy's networks of
    /// containers podman does not know (`None`: not looked at, engine down).
    pub network_debris: Option<Vec<network::Debris>>,
    /// Network namespaces on archy's networks an earlier attachment left (no process, no
    /// running container's).
    pub stale_namespaces: Option<Vec<network::StaleNamespace>>,
    /// Bridges no podman network claims, nothing attached, holding archy's subnet.
    pub orphan_bridges: Option<Vec<network::OrphanBridge>>,
    /// netavark: port forwards on archy's networks to addresses nothing holds.
    pub dead_forwards: Option<Vec<netavark::DeadForward>>,
    /// Why the runtime dirs look stale (`Some(vec![])` = checked, consistent).
    pub stale_runtime: Option<Vec<String>>,
    /// Why clearing the runtime dirs is not safe now (live containers or mounts), if it is not.
    pub runtime_busy: Vec<String>,
    /// Notes from probes that could not look (missing tools, unknown paths).
    pub notes: Vec<String>,
    /// The network backend podman reports (`netavark`, `cni`) and the firewall it programs
    /// (`iptables`, `nftables`): where the network-debris probe looks and how it releases.
    pub network_backend: Option<&'static str>,
    pub firewall_driver: Option<netavark::FirewallDriver>,
    /// archy's networks and the backend, for the repairs.
    #[serde(skip)]
    pub net: NetContext,
}

/// archy's networks and the backend podman uses for them.
#[derive(Debug, Clone, Default)]
pub struct NetContext {
    pub scope: netsys::NetScope,
    pub backend: netsys::Backend,
}

/// The named probes, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeName {
    Engine,
    Database,
    StorageOnly,
    GhostOci,
    NetworkDebris,
    OrphanVolumes,
    RuntimeDirs,
}

impl ProbeName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeName::Engine => "engine",
            ProbeName::Database => "database",
            ProbeName::StorageOnly => "storage-only",
            ProbeName::GhostOci => "ghost-oci",
            ProbeName::NetworkDebris => "network-debris",
            ProbeName::OrphanVolumes => "orphan-volumes",
            ProbeName::RuntimeDirs => "runtime-dirs",
        }
    }
}

/// ok, broken, or not checked (a probe that needs a working engine while it is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Broken,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Broken => "broken",
            Status::Unknown => "unknown",
        }
    }
}

/// One probe's verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub name: ProbeName,
    pub status: Status,
    pub evidence: Vec<String>,
}

#[allow(clippy::ref_option)] // called with the paths struct's fields as they are
fn display(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "?".into(), |p| p.display().to_string())
}

/// Turn facts into the six named probes (pure).
pub fn probes(facts: &Facts) -> Vec<Probe> {
    vec![
        probe_engine(facts),
        probe_database(facts),
        probe_storage_only(facts),
        probe_ghost_oci(facts),
        probe_network_debris(facts),
        probe_orphan_volumes(facts),
        probe_runtime_dirs(facts),
    ]
}

fn unknown_while_podman_is_down() -> Vec<String> {
    vec!["not checked: podman does not answer".to_string()]
}

/// Probe: podman answers `podman info`.
fn probe_engine(facts: &Facts) -> Probe {
    match &facts.engine_error {
        None => Probe {
            name: ProbeName::Engine,
            status: Status::Ok,
            evidence: vec![format!(
                "podman {} answers `podman info` (graph root {}, run root {})",
                facts.podman_version.as_deref().unwrap_or("?"),
                display(&facts.paths.graph_root),
                display(&facts.paths.run_root)
            )],
        },
        Some(err) => Probe {
            name: ProbeName::Engine,
            status: Status::Broken,
            evidence: vec![format!("`podman info` fails: {}", err.describe())],
        },
    }
}

/// Probe: podman's state database opens.
fn probe_database(facts: &Facts) -> Probe {
    match &facts.engine_error {
        None => Probe {
            name: ProbeName::Database,
            status: Status::Ok,
            evidence: vec![format!("{} opens", display(&facts.paths.db))],
        },
        Some(err @ (EngineError::DbCorrupt { .. } | EngineError::ConfigMismatch { .. })) => Probe {
            name: ProbeName::Database,
            status: Status::Broken,
            evidence: vec![err.describe()],
        },
        Some(_) => Probe {
            name: ProbeName::Database,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: every container in storage is in podman's database (or a build's working container,
/// which the database never holds).
fn probe_storage_only(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    let builds: Vec<String> = facts
        .storage_only
        .iter()
        .flatten()
        .filter(|s| s.buildah)
        .map(|s| {
            format!(
                "{} ({}) is a buildah working container (a build's; not damage)",
                s.name,
                short_id(&s.id)
            )
        })
        .collect();
    let damaged = facts
        .storage_only
        .as_ref()
        .map(|l| l.iter().filter(|s| !s.buildah).collect::<Vec<_>>());
    match (&damaged, engine_down) {
        (Some(list), false) if list.is_empty() => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Ok,
            evidence: std::iter::once(
                "every container in storage is in podman's database or a build's".to_string(),
            )
            .chain(builds)
            .collect(),
        },
        (Some(list), false) => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Broken,
            evidence: list
                .iter()
                .map(|s| {
                    format!(
                        "{} ({}) exists only in storage{}",
                        s.name,
                        short_id(&s.id),
                        if s.managed { "" } else { "; not archy's" }
                    )
                })
                .collect(),
        },
        _ => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: no OCI container or conmon runs behind podman's back.
fn probe_ghost_oci(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    match (&facts.ghosts, &facts.ghost_conmons, engine_down) {
        (Some(ghosts), Some(conmons), false) if ghosts.is_empty() && conmons.is_empty() => Probe {
            name: ProbeName::GhostOci,
            status: Status::Ok,
            evidence: vec![format!(
                "no OCI container or conmon under {} unknown to podman (runtime root {})",
                display(&facts.paths.graph_root),
                display(&facts.paths.oci_root)
            )],
        },
        (Some(ghosts), Some(conmons), false) => {
            let mut evidence: Vec<String> = ghosts
                .iter()
                .map(|g| {
                    format!(
                        "OCI container {} is {} (pid {}) but podman's database does not know it",
                        short_id(&g.id),
                        g.status,
                        g.pid
                    )
                })
                .collect();
            evidence.extend(
                conmons
                    .iter()
                    .filter(|c| !ghosts.iter().any(|g| g.id == c.id))
                    .map(|c| {
                        format!(
                            "conmon pid {} for unknown container {}",
                            c.pid,
                            short_id(&c.id)
                        )
                    }),
            );
            Probe {
                name: ProbeName::GhostOci,
                status: Status::Broken,
                evidence,
            }
        }
        (_, _, false) => Probe {
            name: ProbeName::GhostOci,
            status: Status::Unknown,
            evidence: vec![format!(
                "not checked: the OCI runtime's containers could not be listed (runtime {}, state root {})",
                display(&facts.paths.oci_runtime),
                display(&facts.paths.oci_root)
            )],
        },
        _ => Probe {
            name: ProbeName::GhostOci,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: no network state on archy's network that nothing owns: of a container podman does
/// not know, a namespace an earlier attachment left, or a bridge no network claims.
fn probe_network_debris(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    let Some(debris) = facts.network_debris.as_ref().filter(|_| !engine_down) else {
        return Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        };
    };
    let evidence: Vec<String> = debris
        .iter()
        .map(network::Debris::describe)
        .chain(
            facts
                .stale_namespaces
                .iter()
                .flatten()
                .map(network::StaleNamespace::describe),
        )
        .chain(
            facts
                .orphan_bridges
                .iter()
                .flatten()
                .map(network::OrphanBridge::describe),
        )
        .chain(
            facts
                .dead_forwards
                .iter()
                .flatten()
                .map(netavark::DeadForward::describe),
        )
        .collect();
    if evidence.is_empty() {
        Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Ok,
            evidence: vec![
                "no network namespace, veth, port forward or IP reservation of a container podman does not know".into(),
            ],
        }
    } else {
        Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Broken,
            evidence,
        }
    }
}

/// Probe: every volume dir is a podman volume.
fn probe_orphan_volumes(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    match (&facts.orphan_volumes, engine_down) {
        (Some(list), false) if list.is_empty() => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Ok,
            evidence: vec![format!(
                "every volume dir in {} is known to podman",
                display(&facts.paths.volume_path)
            )],
        },
        (Some(list), false) => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Broken,
            evidence: list
                .iter()
                .map(|v| {
                    format!(
                        "volume dir {}/{v} is not a podman volume",
                        display(&facts.paths.volume_path)
                    )
                })
                .collect(),
        },
        _ => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: podman's tmp dir and run root belong to this boot.
fn probe_runtime_dirs(facts: &Facts) -> Probe {
    match &facts.stale_runtime {
        Some(reasons) if reasons.is_empty() => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Ok,
            evidence: vec![format!(
                "{} and {} belong to this boot",
                display(&facts.paths.tmp_dir),
                display(&facts.paths.run_root)
            )],
        },
        Some(reasons) => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Broken,
            evidence: reasons.clone(),
        },
        None => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Unknown,
            evidence: vec!["not checked: podman's tmp dir is unknown".into()],
        },
    }
}

/// Healthy: every probe ok (an unknown probe means podman is down, which is broken).
pub fn healthy(probes: &[Probe]) -> bool {
    probes.iter().all(|p| p.status == Status::Ok)
}

/// Repairs, in escalating order (least destructive first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    SystemMigrate,
    ClearRuntimeDirs,
    MoveDbAside,
    RemoveStorageOnly,
    KillGhosts,
    ReleaseNetworkDebris,
    ReleaseStaleNamespaces,
    ReleaseDeadForwards,
    RemoveOrphanBridges,
    RegisterVolumes,
    SystemRenumber,
}

impl StepKind {
    pub const ALL: [StepKind; 11] = [
        StepKind::SystemMigrate,
        StepKind::ClearRuntimeDirs,
        StepKind::MoveDbAside,
        StepKind::RemoveStorageOnly,
        StepKind::KillGhosts,
        StepKind::ReleaseNetworkDebris,
        StepKind::ReleaseStaleNamespaces,
        StepKind::ReleaseDeadForwards,
        StepKind::RemoveOrphanBridges,
        StepKind::RegisterVolumes,
        StepKind::SystemRenumber,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::SystemMigrate => "system-migrate",
            StepKind::ClearRuntimeDirs => "clear-runtime-dirs",
            StepKind::MoveDbAside => "move-db-aside",
            StepKind::RemoveStorageOnly => "remove-storage-only",
            StepKind::KillGhosts => "kill-ghosts",
            StepKind::ReleaseNetworkDebris => "release-network-debris",
            StepKind::ReleaseStaleNamespaces => "release-stale-namespaces",
            StepKind::ReleaseDeadForwards => "release-dead-forwards",
            StepKind::RemoveOrphanBridges => "remove-orphan-bridges",
            StepKind::RegisterVolumes => "register-volumes",
            StepKind::SystemRenumber => "system-renumber",
        }
    }
}

/// A planned repair and what it will touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    /// What it acts on: container ids, paths, volume names.
    pub targets: Vec<String>,
    /// Human description for the step list and `--dry-run`.
    pub describe: String,
}

/// Options that widen what heal-podman may remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Remove every storage-only container, not only archy's.
    pub yes: bool,
}

/// Storage-only containers the plan will remove, and those it keeps.
pub fn storage_to_remove(
    list: &[StorageOnly],
    opts: PlanOptions,
) -> (Vec<&StorageOnly>, Vec<&StorageOnly>) {
    list.iter()
        .filter(|s| !s.buildah)
        .partition(|s| s.managed || opts.yes)
}

/// Ghost ids to kill: every ghost except those whose storage-only container is kept.
pub fn ghosts_to_kill(facts: &Facts, opts: PlanOptions) -> (Vec<String>, Vec<u32>) {
    let kept: BTreeSet<&str> = facts
        .storage_only
        .as_deref()
        .map(|l| {
            storage_to_remove(l, opts)
                .1
                .into_iter()
                .map(|s| s.id.as_str())
                .collect()
        })
        .unwrap_or_default();
    let ids: Vec<String> = facts
        .ghosts
        .iter()
        .flatten()
        .filter(|g| !kept.contains(g.id.as_str()))
        .map(|g| g.id.clone())
        .collect();
    let conmons: Vec<u32> = facts
        .ghost_conmons
        .iter()
        .flatten()
        .filter(|c| !kept.contains(c.id.as_str()))
        .map(|c| c.pid)
        .collect();
    (ids, conmons)
}

/// Every repair that applies to these facts, in escalating order (pure). The caller performs
/// the first one not yet tried, re-probes, and asks again.
///
/// Long, and kept whole on purpose: one block per repair in escalation order; that order is
/// the decision, and it is easiest to check when the blocks stand side by side.
#[allow(clippy::too_many_lines)]
pub fn plan(facts: &Facts, opts: PlanOptions) -> Vec<Step> {
    let mut steps = Vec::new();
    let err = facts.engine_error.as_ref();
    let engine_other = matches!(
        err,
        Some(EngineError::Other { .. } | EngineError::NeedsMigrate { .. })
    );
    if matches!(err, Some(EngineError::NeedsMigrate { .. })) || engine_other {
        steps.push(Step {
            kind: StepKind::SystemMigrate,
            targets: vec![],
            describe: "run `podman system migrate` (restarts a stale pause process, migrates containers to the current configuration)".into(),
        });
    }
    let stale = facts.stale_runtime.as_ref().is_some_and(|r| !r.is_empty());
    if stale || engine_other {
        let targets: Vec<String> = [&facts.paths.tmp_dir, &facts.paths.run_root]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        if !targets.is_empty() {
            steps.push(Step {
                kind: StepKind::ClearRuntimeDirs,
                describe: format!(
                    "clear podman's runtime dirs {} (state of a previous boot; podman rebuilds it)",
                    targets.join(" and ")
                ),
                targets,
            });
        }
    }
    if let Some(EngineError::DbCorrupt { db, .. }) = err {
        steps.push(Step {
            kind: StepKind::MoveDbAside,
            targets: vec![db.display().to_string()],
            describe: format!(
                "move the unreadable database {} aside to {}.broken-<UTC time> (kept, never deleted)",
                db.display(),
                db.display()
            ),
        });
    }
    if err.is_none() {
        if let Some(list) = &facts.storage_only {
            let (remove, _) = storage_to_remove(list, opts);
            if !remove.is_empty() {
                steps.push(Step {
                    kind: StepKind::RemoveStorageOnly,
                    targets: remove.iter().map(|s| s.id.clone()).collect(),
                    describe: format!(
                        "remove storage-only containers {} (`podman rm --storage`; images and volumes kept)",
                        remove.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let (ids, conmons) = ghosts_to_kill(facts, opts);
        if !ids.is_empty() || !conmons.is_empty() {
            let mut targets: Vec<String> = ids.clone();
            targets.extend(conmons.iter().map(|p| format!("conmon:{p}")));
            steps.push(Step {
                kind: StepKind::KillGhosts,
                describe: format!(
                    "kill and delete ghost OCI containers {} and their conmon processes",
                    if ids.is_empty() {
                        "(none)".to_string()
                    } else {
                        ids.iter()
                            .map(|i| short_id(i))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                targets,
            });
        }
        if let Some(debris) = facts.network_debris.as_ref().filter(|d| !d.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseNetworkDebris,
                targets: debris.iter().map(|d| d.container_id.clone()).collect(),
                describe: format!(
                    "release the network state of containers podman no longer knows ({}): the backend's teardown replayed (CNI DEL from libcni's cache, or `netavark teardown`), then their network namespace, port forwards, DNS entries and IP reservations",
                    debris.iter().map(|d| short_id(&d.container_id)).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(stale) = facts.stale_namespaces.as_ref().filter(|s| !s.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseStaleNamespaces,
                targets: stale.iter().map(|s| s.path.clone()).collect(),
                describe: format!(
                    "release network namespaces no running container has ({}): the backend's teardown replayed for them (CNI DEL where libcni's cache names them, or `netavark teardown` of the port forwards to their addresses), then the namespace (its veth goes with it) and what is left of their addresses",
                    stale.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(dead) = facts.dead_forwards.as_ref().filter(|d| !d.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseDeadForwards,
                targets: dead.iter().map(netavark::DeadForward::target).collect(),
                describe: format!(
                    "release port forwards to addresses no live container holds ({}): `netavark teardown` replayed for them, then `podman network reload --all`",
                    dead.iter().map(|d| d.forward.describe()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(bridges) = facts.orphan_bridges.as_ref().filter(|b| !b.is_empty()) {
            steps.push(Step {
                kind: StepKind::RemoveOrphanBridges,
                targets: bridges.iter().map(|b| b.name.clone()).collect(),
                describe: format!(
                    "delete bridges no podman network claims and nothing is attached to ({}), so archy's subnet can be used again",
                    bridges.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(volumes) = facts.orphan_volumes.as_ref().filter(|v| !v.is_empty()) {
            steps.push(Step {
                kind: StepKind::RegisterVolumes,
                targets: volumes.clone(),
                describe: format!(
                    "re-register volumes {} with `podman volume create` (their data stays in place)",
                    volumes.join(", ")
                ),
            });
        }
    }
    if matches!(err, Some(EngineError::Locks { .. })) || engine_other {
        steps.push(Step {
            kind: StepKind::SystemRenumber,
            targets: vec![],
            describe: "run `podman system renumber` (reallocates container locks)".into(),
        });
    }
    steps
}

/// The first planned step not tried yet.
pub fn next_step(steps: Vec<Step>, tried: &[StepKind]) -> Option<Step> {
    steps.into_iter().find(|s| !tried.contains(&s.kind))
}

/// What the operator should do when heal-podman could not bring podman back (pure).
pub fn next_advice(facts: &Facts, opts: PlanOptions) -> String {
    match &facts.engine_error {
        Some(EngineError::ConfigMismatch { detail }) => format!(
            "podman's database was created with other storage settings ({detail}). archy does not guess which is right: \
             make containers.conf/storage.conf (or podman's --root/--runroot/--storage-driver flags) match the database again, \
             or, if the new settings are intended, move {} aside and rerun `archy heal-podman`, then `archy reconcile`",
            display(&facts.paths.db)
        ),
        Some(err) => format!(
            "podman still fails ({}); inspect `podman --log-level=debug info`, then rerun `archy heal-podman`",
            err.describe()
        ),
        None => {
            let kept: Vec<String> = facts
                .storage_only
                .as_deref()
                .map(|l| storage_to_remove(l, opts).1.iter().map(|s| s.name.clone()).collect())
                .unwrap_or_default();
            if !kept.is_empty() && !opts.yes {
                format!(
                    "storage-only containers not managed by archy remain ({}); rerun `archy heal-podman --yes` to remove them too (images and volumes are kept)",
                    kept.join(", ")
                )
            } else if facts.runtime_busy.is_empty() {
                "rerun `archy heal-podman -v` and inspect the failing probe's evidence".into()
            } else {
                format!(
                    "runtime dirs could not be cleared while containers run ({}); stop them and rerun `archy heal-podman`",
                    facts.runtime_busy.join("; ")
                )
            }
        }
    }
}

/// `bolt_state.db.broken-20260101T120000Z` next to the database (UTC, from an RFC 3339 time).
pub fn broken_db_path(db: &Path, rfc3339_utc: &str) -> PathBuf {
    let stamp: String = rfc3339_utc
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let name = db
        .file_name()
        .map_or_else(|| DB_FILE.to_string(), |n| n.to_string_lossy().into_owned());
    db.with_file_name(format!("{name}.broken-{stamp}"))
}

#[cfg(test)]
mod tests;

/// The outcome of one repair step that touches several things: what it did, or an error naming
/// every failure and what was done before it (so a partial repair is never reported as none).
pub(crate) fn repair_outcome(
    touched: Vec<String>,
    errors: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    if errors.is_empty() {
        Ok(touched)
    } else {
        anyhow::bail!(
            "{} (done: {})",
            errors.join("; "),
            if touched.is_empty() {
                "nothing".to_string()
            } else {
                touched.join(", ")
            }
        )
    }
}
