//! Parsers of what podman, runc and `/proc` report, for heal-podman's probes: podman's error
//! lines and debug paths, `podman info`, `runc list`, conmon's argv, `/proc/stat`, and the paths
//! they add up to (pure; the one file-system read is [`oci_state_root`]'s check whether
//! `/run/user/<uid>` exists).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::podman::{error_line, ContainerState, ErrorKind};

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

/// Classify the stderr of a failed podman command (probes run `podman info`) with
/// [`ErrorKind`], keeping the error line as the detail.
pub fn classify_engine_error(stderr: &str) -> EngineError {
    let line = error_line(stderr);
    match ErrorKind::of_stderr(stderr) {
        Some(ErrorKind::DatabaseConfigMismatch) => EngineError::ConfigMismatch { detail: line },
        // No path: podman's SQLite database, found from its paths (`engine_paths`).
        Some(ErrorKind::DatabaseCorrupt { db, reason }) => EngineError::DbCorrupt {
            db: db.unwrap_or_default(),
            reason,
        },
        Some(ErrorKind::NeedsMigrate { line }) => EngineError::NeedsMigrate { detail: line },
        Some(ErrorKind::LockTableFull | ErrorKind::Locks) => EngineError::Locks { detail: line },
        Some(
            ErrorKind::NoSuchContainer
            | ErrorKind::NoSuchNetwork
            | ErrorKind::NetworkExists
            | ErrorKind::SubnetUsedOnHost,
        )
        | None => EngineError::Other { detail: line },
    }
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

/// `key = "value"` in `[section]` of containers.conf / storage.conf: see
/// [`crate::podman::config_value`] (one reader for heal and the free-space guard).
pub use crate::podman::config_value as toml_string;

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
        if c.state == ContainerState::Storage {
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
