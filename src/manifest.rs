//! App manifests: one YAML file per app, parsed strictly (unknown keys are errors) and validated.
//! Loading never stops at the first bad file: good apps are returned beside the errors, so one
//! broken manifest does not stop the others from converging.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod backup;
pub mod expansion;
pub mod health;
pub mod policy;
pub mod resources;
pub mod set;
pub mod types;
pub use backup::BackupSpec;
pub use health::{HealthSpec, Probe};
pub use policy::Policy;
pub use resources::{Logging, Resources};
pub use set::{dependency_layers, validate_set};
pub use types::{Port, Renderer, Restart, Volume};

/// Largest manifest file accepted, in bytes (a real one is under 2 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// A scalar YAML value (string, number or bool) kept as the text it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Int(i64),
            Float(f64),
            Str(String),
        }
        match Raw::deserialize(de)
            .map_err(|_| serde::de::Error::custom("expected a string, number or boolean"))?
        {
            Raw::Bool(b) => Ok(Scalar(b.to_string())),
            Raw::Int(i) => Ok(Scalar(i.to_string())),
            Raw::Float(f) => Ok(Scalar(f.to_string())),
            Raw::Str(s) => Ok(Scalar(s)),
        }
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an `image:` app gets its image when it is not in local storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    #[default]
    Missing,
    Never,
    Always,
}

/// When an app's image update waits (`defer_updates_while:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeferWhile {
    /// While its chain is in initial block download (a `bitcoin_rpc:` probe says `syncing`).
    Syncing,
    /// Never: an image change is applied at once.
    Never,
}

/// Who runs the container: archy's reconcile, or systemd through a Quadlet unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    #[default]
    Archy,
    Systemd,
}

/// `build:` — a local build context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Context directory, relative to the manifest file.
    pub context: PathBuf,
    /// Containerfile relative to the context (default Containerfile, then Dockerfile).
    #[serde(default)]
    pub containerfile: Option<PathBuf>,
    #[serde(default)]
    pub args: BTreeMap<String, Scalar>,
}

/// One `configs:` entry: a file rendered by a built-in renderer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub render: Renderer,
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Option<String>,
    /// Owner of the file: a user name or number (for a non-root container user that reads it).
    #[serde(default)]
    pub owner: Option<Scalar>,
    /// Group of the file: a group name or number.
    #[serde(default)]
    pub group: Option<Scalar>,
    /// Mode of directories archy creates for this file under the state dir (default 0700).
    #[serde(default)]
    pub dir_mode: Option<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, Scalar>,
}

/// A user or group id from a number, or a name looked up in `db` (/etc/passwd or /etc/group
/// format: name:x:id:...).
fn resolve_id(value: &str, db: &Path) -> Result<u32, String> {
    if let Ok(id) = value.parse::<u32>() {
        return Ok(id);
    }
    let text = fs::read_to_string(db).map_err(|e| format!("cannot read {}: {e}", db.display()))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            Some((fields.next()?, fields.nth(1)?))
        })
        .find(|(name, _)| *name == value)
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(|| {
            format!(
                "`{value}` is neither a number nor a name in {}",
                db.display()
            )
        })
}

impl ConfigFile {
    /// Its renderer.
    pub fn renderer(&self) -> Renderer {
        self.render
    }

    /// The file mode (validated at load time; default 0600).
    pub fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o600)
    }

    /// Mode of directories archy creates for the file (validated at load time; default 0700).
    pub fn dir_mode_bits(&self) -> u32 {
        self.dir_mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o700)
    }

    /// The `owner` and `group` as ids (names looked up in /etc/passwd and /etc/group); None when
    /// the manifest names neither.
    pub fn owner_ids(&self) -> anyhow::Result<Option<(Option<u32>, Option<u32>)>> {
        if self.owner.is_none() && self.group.is_none() {
            return Ok(None);
        }
        let uid = self
            .owner
            .as_ref()
            .map(|o| resolve_id(&o.0, Path::new("/etc/passwd")))
            .transpose()
            .map_err(|e| anyhow::anyhow!("key `owner` of {}: {e}", self.path.display()))?;
        let gid = self
            .group
            .as_ref()
            .map(|g| resolve_id(&g.0, Path::new("/etc/group")))
            .transpose()
            .map_err(|e| anyhow::anyhow!("key `group` of {}: {e}", self.path.display()))?;
        Ok(Some((uid, gid)))
    }
}

/// One app's manifest, as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub app: String,
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub build: Option<Build>,
    #[serde(default)]
    pub pull: PullPolicy,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Files of KEY=VALUE lines passed with --env-file (e.g. a rendered electrumx.env).
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub network: Option<String>,
    /// Apps this one starts after: a list of app ids, or a map `app: started | healthy`
    /// (`healthy`: not created or started until the dependency's `health:` probe passes).
    #[serde(default, deserialize_with = "deserialize_depends_on")]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub restart: Option<Restart>,
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub configs: Vec<ConfigFile>,
    #[serde(default)]
    pub owner: Owner,
    /// A health probe archy runs every reconcile tick (see `crate::health`).
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Files inside the app's volumes copied off the box whenever they change (see `crate::backup`).
    #[serde(default)]
    pub backup: Option<BackupSpec>,
    /// Where the container's stdout/stderr go and their bound (default: a 10 MiB k8s-file; see
    /// `resources::DEFAULT_LOG_MAX_SIZE`).
    #[serde(default)]
    pub logging: Option<Logging>,
    /// Memory, CPU and process limits and the OOM killer's preference (see `manifest::resources`).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// How long a changed image may take to become healthy before archy goes back to the app's
    /// last-known-good image (default: `start_period` + `failures` ticks of its probe).
    #[serde(default)]
    pub rollback_after: Option<types::HumanDuration>,
    /// `syncing`: an image change waits while the app's chain syncs (the default for apps
    /// probed by `bitcoin_rpc:`); `never`: applied at once. `archy reconcile --force` overrides.
    #[serde(default)]
    pub defer_updates_while: Option<DeferWhile>,
    /// The file this manifest came from (not a YAML key).
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_true() -> bool {
    true
}

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Ordering only: the dependency is converged first (the plain list form).
    #[default]
    Started,
    /// The dependent is not created or started until the dependency's probe passes.
    Healthy,
    /// The dependency's `bitcoin_rpc:` probe passes and its chain is out of initial block
    /// download.
    Synced,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Synced => "synced",
        }
    }
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub app: String,
    pub condition: Condition,
}

impl Dependency {
    pub fn started(app: &str) -> Self {
        Dependency {
            app: app.to_string(),
            condition: Condition::Started,
        }
    }
}

/// `depends_on: [a, b]` or `depends_on: {a: healthy, b: started}`.
fn deserialize_depends_on<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<Dependency>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Map(BTreeMap<String, String>),
    }
    let raw = Option::<Raw>::deserialize(de).map_err(|_| {
        serde::de::Error::custom(
            "key `depends_on`: expected a list of app ids, or a map of app id to `started`, `healthy` or `synced`",
        )
    })?;
    match raw {
        None => Ok(Vec::new()),
        Some(Raw::List(apps)) => Ok(apps.iter().map(|a| Dependency::started(a)).collect()),
        Some(Raw::Map(map)) => map
            .into_iter()
            .map(|(app, condition)| {
                let condition = match condition.as_str() {
                    "started" => Condition::Started,
                    "healthy" => Condition::Healthy,
                    "synced" => Condition::Synced,
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "key `depends_on.{app}`: `{other}` must be `started`, `healthy` or `synced`"
                        )))
                    }
                };
                Ok(Dependency { app, condition })
            })
            .collect(),
    }
}

impl Manifest {
    /// Whether image updates wait while the chain syncs: `defer_updates_while`, by default for
    /// apps probed by `bitcoin_rpc:` (a recreate mid-IBD costs hours).
    pub fn defers_while_syncing(&self) -> bool {
        match self.defer_updates_while {
            Some(d) => d == DeferWhile::Syncing,
            None => self
                .health
                .as_ref()
                .is_some_and(|h| h.bitcoin_rpc.is_some()),
        }
    }

    /// The container name: `container_name`, or `archy-<app>`.
    pub fn container_name(&self) -> String {
        self.container_name
            .clone()
            .unwrap_or_else(|| format!("archy-{}", self.app))
    }

    /// The network the container joins (manifest's, else archy's default network).
    pub fn network_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.network.as_deref().unwrap_or(default)
    }

    /// The ids of the apps this one depends on, whatever the condition.
    pub fn dependency_ids(&self) -> impl Iterator<Item = &str> {
        self.depends_on.iter().map(|d| d.app.as_str())
    }

    /// The build context directory, resolved against the manifest's directory.
    pub fn build_context(&self) -> Option<PathBuf> {
        let build = self.build.as_ref()?;
        let base = self.file.parent().unwrap_or(Path::new("."));
        Some(base.join(&build.context))
    }
}

/// A manifest that could not be used, with the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestError {
    pub file: PathBuf,
    /// The app id, when the file got far enough to name one.
    pub app: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid manifest {}: {}",
            self.file.display(),
            self.message
        )
    }
}

/// The result of loading a manifests directory: usable apps (in file-name order) and errors.
#[derive(Debug, Default)]
pub struct Loaded {
    pub apps: Vec<Manifest>,
    pub errors: Vec<ManifestError>,
}

impl Loaded {
    pub fn get(&self, app: &str) -> Option<&Manifest> {
        self.apps.iter().find(|m| m.app == app)
    }
}

/// Longest `stop_timeout` accepted, in seconds: the reconcile unit's TimeoutStartSec (15 min);
/// a longer wait would have systemd kill the tick mid-restart.
pub const MAX_STOP_TIMEOUT: u32 = 900;

/// Read every `*.yaml` in `dir`. A missing or unreadable directory is an error; bad files are
/// reported in `Loaded::errors`.
pub fn load_dir(dir: &Path, policy: &Policy) -> anyhow::Result<Loaded> {
    use anyhow::Context;
    let entries = fs::read_dir(dir)
        .with_context(|| format!("failed to read manifests directory {}", dir.display()))?;
    // Whoever can write here decides what runs as root.
    crate::fsutil::check_trusted(dir, "manifests directory")?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Every `*.yaml` entry, whatever it is: one that cannot be read as a file (dangling or
        // looping symlink, directory, FIFO, device) is an invalid manifest, never skipped
        // silently (a skipped manifest would make its app an orphan that --prune removes).
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        // One stat per file serves the owner check and the load (a no-op tick reads them all).
        let meta = fs::metadata(&file);
        match check_owner(meta.as_ref().ok()).and_then(|()| load_file_with(&file, meta, policy)) {
            Ok(manifest) => parsed.push(manifest),
            Err(message) => errors.push(ManifestError {
                app: app_hint(&file),
                file,
                message,
            }),
        }
    }
    let (apps, cross_errors) = validate_set(parsed);
    errors.extend(cross_errors);
    if let Some(warning) =
        resources::host_mem_total().and_then(|total| resources::reservations_warning(&apps, total))
    {
        tracing::warn!("{warning}");
    }
    Ok(Loaded { apps, errors })
}

/// A manifest decides what runs as root: it must be owned by root (or by archy's user when
/// archy does not run as root) and not writable by group or others.
fn check_owner(meta: Option<&fs::Metadata>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // What is not a readable regular file is refused by `load_file`, naming what it is.
    let Some(meta) = meta else {
        return Ok(());
    };
    if !meta.is_file() {
        return Ok(());
    }
    let euid = crate::procinfo::euid();
    if (meta.uid() != 0 && meta.uid() != euid) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "file is {}: another user could change what archy (uid {euid}) runs; it must be \
             owned by root{} and not writable by group or others",
            crate::fsutil::describe_owner_mode(meta),
            if euid == 0 {
                String::new()
            } else {
                format!(" or uid {euid}")
            }
        ));
    }
    Ok(())
}

/// The app an unusable manifest file was meant to define, so `archy reconcile <app>` can say
/// why it is unusable: its `app` key if the YAML gets that far, else the file name's stem.
fn app_hint(path: &Path) -> Option<String> {
    // Only a regular file is read: a FIFO would block and /dev/zero never end.
    let from_key = fs::metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= MAX_MANIFEST_BYTES)
        .and_then(|_| fs::read_to_string(path).ok())
        .and_then(|text| {
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
            // A YAML bomb would be expanded here too.
            expansion::check(&text).ok()?;
            serde_norway::from_str::<serde_norway::Value>(&text).ok()
        })
        .and_then(|value| value.get("app")?.as_str().map(String::from));
    from_key
        .or_else(|| Some(path.file_stem()?.to_str()?.to_string()))
        .filter(|app| is_app_id(app))
}

/// Parse and validate one file; the error says which key and what is expected.
pub fn load_file(path: &Path, policy: &Policy) -> Result<Manifest, String> {
    load_file_with(path, fs::metadata(path), policy)
}

/// [`load_file`] with the file's metadata already taken.
fn load_file_with(
    path: &Path,
    meta: std::io::Result<fs::Metadata>,
    policy: &Policy,
) -> Result<Manifest, String> {
    let meta = meta.map_err(|e| {
        let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        match (link, e.raw_os_error()) {
            (true, Some(40)) => format!("cannot be read as a file: symlink loop ({e})"),
            (true, _) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "cannot be read as a file: dangling symlink to {}",
                fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string())
            ),
            _ => format!("cannot be read as a file: {e}"),
        }
    })?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let kind = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "cannot be read as a file: it is {kind} (a manifest must be a regular file)"
        ));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "file is {} bytes; manifests are limited to {} bytes",
            meta.len(),
            MAX_MANIFEST_BYTES
        ));
    }
    // Read through `take`: no second stat for a size hint (the length is known), and a file
    // that grew since is still cut at the limit.
    let mut text = String::with_capacity(meta.len() as usize + 1);
    fs::File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "file grew past {MAX_MANIFEST_BYTES} bytes while being read; manifests are limited to {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    let mut manifest = parse(&text)?;
    manifest.file = path.to_path_buf();
    validate(&manifest, policy)?;
    Ok(manifest)
}

/// Parse YAML text into a manifest (strict: unknown keys are errors).
pub fn parse(text: &str) -> Result<Manifest, String> {
    // A UTF-8 byte order mark (editors on other systems write one) is not a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    expansion::check(text)?;
    serde_norway::from_str::<Manifest>(text).map_err(|e| {
        // Errors about the document as a whole (not a mapping, empty, several documents, a
        // missing top-level key) carry no location; say where, so every rejection names a key
        // or a place. Decided by the location, not the text: the text may quote the input.
        // (serde_norway prints no location at the document's first byte either.)
        if e.location().is_none_or(|at| at.index() == 0) {
            format!("document root: {e} (a manifest is one YAML mapping of keys like `app` and `image`)")
        } else {
            e.to_string()
        }
    })
}

fn is_app_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// podman's own rule for container, volume and network names.
pub fn is_podman_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && s.len() <= 128
}

fn is_env_key(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn has_nul(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().contains(&0)
}

/// Whether an image's digest pin is well formed: `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Validate one manifest on its own (cross-manifest rules are in `validate_set`).
///
/// Long, and kept whole on purpose: one independent check per manifest key, in the order the
/// keys are documented, each returning that key's error; it reads like the reference it mirrors.
#[allow(clippy::too_many_lines)]
pub fn validate(m: &Manifest, policy: &Policy) -> Result<(), String> {
    if !is_app_id(&m.app) {
        return Err(format!("key `app`: `{}` must match [a-z0-9-]+ (at most 48 characters, no leading or trailing -)", m.app));
    }
    if let Some(name) = &m.container_name {
        if !is_podman_name(name) {
            return Err(format!(
                "key `container_name`: `{name}` must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ));
        }
    }
    match (&m.image, &m.build) {
        (Some(_), Some(_)) => {
            return Err("key `image` and key `build`: give exactly one, not both".into())
        }
        (None, None) => return Err("key `image` or key `build`: one of them is required".into()),
        (Some(image), None) => {
            if image.is_empty()
                || image.chars().any(|c| c.is_whitespace() || c.is_control())
                || image.starts_with('-')
            {
                return Err(format!("key `image`: `{image}` is not an image reference"));
            }
            if let Some((_, digest)) = image.rsplit_once('@') {
                if !valid_digest(digest) {
                    return Err(format!("key `image`: `{image}` pins the digest `{digest}`; expected `name[:tag]@sha256:` and 64 lowercase hex digits"));
                }
            }
        }
        (None, Some(build)) => {
            if build.context.as_os_str().is_empty() {
                return Err("key `build.context`: must name a directory".into());
            }
            for (key, value) in &build.args {
                if !is_env_key(key) {
                    return Err(format!(
                        "key `build.args`: `{key}` must match [A-Za-z_][A-Za-z0-9_]*"
                    ));
                }
                if value.0.contains('\0') {
                    return Err(format!("key `build.args.{key}`: value contains a NUL byte"));
                }
            }
            if has_nul(&build.context) || build.containerfile.as_deref().is_some_and(has_nul) {
                return Err(format!(
                    "key `build.context`: `{}` contains a NUL byte",
                    build.context.display()
                ));
            }
            if let Some(context) = m.build_context().filter(|c| c.is_absolute()) {
                policy
                    .check_host_path(&context)
                    .map_err(|e| format!("key `build.context`: {e}"))?;
            }
        }
    }
    if let Some(command) = &m.command {
        if command.is_empty() {
            return Err(
                "key `command`: must not be an empty list (omit it to use the image's)".into(),
            );
        }
        if let Some(i) = command.iter().position(|arg| arg.contains('\0')) {
            return Err(format!(
                "key `command[{i}]`: contains a NUL byte (no process argument can hold one)"
            ));
        }
    }
    for (key, value) in &m.env {
        if !is_env_key(key) {
            return Err(format!(
                "key `env`: `{key}` must match [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        if value.0.contains('\0') {
            return Err(format!("key `env.{key}`: value contains a NUL byte"));
        }
    }
    for file in &m.env_files {
        if !file.is_absolute()
            || has_nul(file)
            || file
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "key `env_files`: `{}` must be an absolute path without `..`",
                file.display()
            ));
        }
        policy
            .check_host_path(file)
            .map_err(|e| format!("key `env_files`: {e}"))?;
    }
    for volume in &m.volumes {
        if let Some(source) = volume.host_source() {
            policy
                .check_host_path(source)
                .map_err(|e| format!("key `volumes`: `{volume}`: source {e}"))?;
        }
    }
    if let Some(backup) = &m.backup {
        backup
            .check_sources(m.volumes.iter().map(Volume::as_str))
            .map_err(|e| format!("key `backup.files`: {e}"))?;
    }
    if let Some(network) = &m.network {
        if !is_podman_name(network) {
            return Err(format!(
                "key `network`: `{network}` must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ));
        }
    }
    for dep in m.dependency_ids() {
        if !is_app_id(dep) {
            return Err(format!("key `depends_on`: `{dep}` is not an app id"));
        }
        if dep == m.app {
            return Err("key `depends_on`: an app cannot depend on itself".into());
        }
    }
    if let Some(timeout) = m.stop_timeout {
        if timeout > MAX_STOP_TIMEOUT {
            return Err(format!(
                "key `stop_timeout`: {timeout} seconds is more than {MAX_STOP_TIMEOUT} (the reconcile unit's 15-minute limit)"
            ));
        }
    }
    if let Some(health) = &m.health {
        health.validate()?;
    }
    resources::validate(m)?;
    let mut paths = BTreeSet::new();
    for (i, config) in m.configs.iter().enumerate() {
        if !config.path.is_absolute()
            || has_nul(&config.path)
            || config
                .path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "key `configs[{i}].path`: `{}` must be an absolute path without `..`",
                config.path.display()
            ));
        }
        policy
            .check_host_path(&config.path)
            .map_err(|e| format!("key `configs[{i}].path`: {e}"))?;
        for (key, mode) in [("mode", &config.mode), ("dir_mode", &config.dir_mode)] {
            if let Some(mode) = mode {
                if u32::from_str_radix(mode, 8).map_or(true, |bits| bits > 0o777) {
                    return Err(format!(
                        "key `configs[{i}].{key}`: `{mode}` must be octal permission bits like \"0600\""
                    ));
                }
            }
        }
        for (key, id) in [("owner", &config.owner), ("group", &config.group)] {
            if let Some(id) = id {
                let ok = id.0.parse::<u32>().is_ok()
                    || (!id.0.is_empty()
                        && id.0.len() <= 32
                        && id
                            .0
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')));
                if !ok {
                    return Err(format!(
                        "key `configs[{i}].{key}`: `{}` must be a number or a user/group name",
                        id.0
                    ));
                }
            }
        }
        if !paths.insert(&config.path) {
            return Err(format!(
                "key `configs[{i}].path`: `{}` is listed twice",
                config.path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(yaml: &str) -> Manifest {
        let m = parse(yaml).unwrap();
        validate(&m, &Policy::default()).unwrap();
        m
    }

    fn bad(yaml: &str) -> String {
        match parse(yaml) {
            Err(e) => e,
            Ok(m) => validate(&m, &Policy::default()).unwrap_err(),
        }
    }

    #[test]
    fn full_manifest_parses_with_defaults() {
        let m = ok("app: bitcoin-ui\nimage: docker.io/library/nginx:1.27-alpine\nports: [\"127.0.0.1:8081:80\"]\nenv: {A: 1, B: true}\n");
        assert_eq!(m.container_name(), "archy-bitcoin-ui");
        assert!(m.enabled);
        assert_eq!(m.pull, PullPolicy::Missing);
        assert_eq!(m.env["A"].0, "1");
        assert_eq!(m.env["B"].0, "true");
        assert_eq!(m.network_or("archy"), "archy");
    }

    #[test]
    fn image_updates_of_bitcoin_rpc_probed_apps_wait_while_syncing_by_default() {
        let node = "app: x\nimage: i\nhealth:\n  bitcoin_rpc: 127.0.0.1:8332\n";
        assert!(ok(node).defers_while_syncing());
        assert!(!ok(&format!("{node}defer_updates_while: never\n")).defers_while_syncing());
        assert!(!ok("app: x\nimage: i\n").defers_while_syncing());
        assert!(ok("app: x\nimage: i\ndefer_updates_while: syncing\n").defers_while_syncing());
        let err = bad("app: x\nimage: i\ndefer_updates_while: always\n");
        assert!(err.contains("defer_updates_while"), "{err}");
    }

    #[test]
    fn a_digest_pin_must_be_sha256_and_64_lowercase_hex() {
        let hex = "0123456789abcdef".repeat(4);
        let m = ok(&format!("app: x\nimage: reg.local/t:1@sha256:{hex}\n"));
        assert!(m.image.unwrap().ends_with(&hex));
        ok(&format!("app: x\nimage: reg.local/t@sha256:{hex}\n"));
        for pin in [
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha512:{hex}"),
            "latest".to_string(),
        ] {
            let err = bad(&format!("app: x\nimage: reg.local/t:1@{pin}\n"));
            assert_eq!(err, format!("key `image`: `reg.local/t:1@{pin}` pins the digest `{pin}`; expected `name[:tag]@sha256:` and 64 lowercase hex digits"));
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = bad("app: x\nimage: i\nimgae: typo\n");
        assert!(err.contains("unknown field `imgae`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        assert!(bad("app: ../../etc\nimage: i\n").contains("key `app`"));
        assert!(bad("app: Upper\nimage: i\n").contains("key `app`"));
        assert!(bad("app: a\n").contains("one of them is required"));
        assert!(bad("app: a\nimage: i\nbuild: {context: .}\n").contains("exactly one"));
        assert_eq!(
            bad("app: a\nimage: i\nports: [\"80:eighty\"]\n"),
            "ports[0]: `80:eighty` is not podman -p syntax ([[ip:][hostPort]:]containerPort[/tcp|udp]) at line 3 column 9"
        );
        assert_eq!(
            bad("app: a\nimage: i\nvolumes: [\"data\"]\n"),
            "volumes[0]: `data` is not SOURCE:DEST[:OPTIONS] at line 3 column 11"
        );
        assert!(bad("app: a\nimage: i\nvolumes: [\"x:relative\"]\n").contains("absolute"));
        assert!(bad("app: a\nimage: i\nenv: {\"A;rm -rf /\": x}\n").contains("key `env`"));
        assert!(bad("app: a\nimage: i\ncontainer_name: \"a;b\"\n").contains("key `container_name`"));
        // Typed keys: serde_norway names the key and the place, the type the expectation.
        assert_eq!(
            bad("app: a\nimage: i\nrestart: sometimes\n"),
            "restart: `sometimes` must be no, always, on-failure[:N] or unless-stopped at line 3 column 10"
        );
        assert!(bad("app: a\nimage: i\nstop_timeout: -1\n").contains("stop_timeout"));
        assert_eq!(
            bad("app: a\nimage: i\nconfigs: [{render: nope.conf, path: /x}]\n"),
            "configs[0].render: `nope.conf` is not a built-in renderer (bitcoin.conf, lnd.conf, \
             electrumx.env, nginx-ui.conf, containers.conf) at line 3 column 20"
        );
        assert!(
            bad("app: a\nimage: i\nconfigs: [{render: lnd.conf, path: rel}]\n")
                .contains("configs[0].path")
        );
        assert!(
            bad("app: a\nimage: i\nconfigs: [{render: lnd.conf, path: /x, mode: \"999\"}]\n")
                .contains("configs[0].mode")
        );
    }

    #[test]
    fn bom_nul_and_huge_stop_timeout() {
        let m = ok("\u{feff}app: a\nimage: i\n");
        assert_eq!(m.app, "a");
        assert!(bad("app: a\nimage: i\ncommand: [sh, \"a\\0b\"]\n").contains("key `command[1]`"));
        assert!(bad("app: a\nimage: i\nvolumes: [\"/x\\0:/y\"]\n").contains("NUL"));
        assert!(bad("app: a\nimage: i\nstop_timeout: 4294967295\n").contains("key `stop_timeout`"));
        assert!(ok("app: a\nimage: i\nstop_timeout: 900\n").stop_timeout == Some(900));
    }

    #[test]
    fn host_paths_are_resolved_and_checked_against_protected_dirs_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("allowed")).unwrap();
        std::fs::create_dir_all(base.join("state/secrets")).unwrap();
        std::os::unix::fs::symlink("/", base.join("allowed/root")).unwrap();
        std::os::unix::fs::symlink(base.join("state"), base.join("allowed/st")).unwrap();
        let policy = Policy {
            allowed_volume_roots: vec![base.join("allowed")],
            ..Policy::default()
        }
        .protecting(&base.join("state"), &base.join("run"), &base.join("m"));
        let a = base.join("allowed");
        let a = a.display();
        let check = |yaml: &str| {
            let m = parse(&format!("app: a\nimage: i\n{yaml}")).unwrap();
            validate(&m, &policy)
        };
        assert!(check(&format!("volumes: [\"{a}/data:/d\"]\n")).is_ok());
        let err = check(&format!("volumes: [\"{a}/root/etc:/d\"]\n")).unwrap_err();
        assert!(
            err.contains("(resolves to /etc) is outside the allowed roots"),
            "{err}"
        );
        let err = check("env_files: [/etc/shadow]\n").unwrap_err();
        assert!(err.contains("key `env_files`"), "{err}");
        let err = check(&format!(
            "configs: [{{render: lnd.conf, path: {a}/st/secrets/bitcoin-rpc.json}}]\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("key `configs[0].path`") && err.contains("archy's secrets directory"),
            "{err}"
        );
        // App data beside archy's own entries in the state dir stays usable.
        let policy_no_roots =
            Policy::default().protecting(&base.join("state"), &base.join("run"), &base.join("m"));
        let m = parse(&format!(
            "app: a\nimage: i\nconfigs: [{{render: lnd.conf, path: {}/state/lnd/lnd.conf}}]\n",
            base.display()
        ))
        .unwrap();
        assert!(validate(&m, &policy_no_roots).is_ok());
    }

    #[test]
    fn config_owner_group_and_dir_mode() {
        let m = ok("app: a\nimage: i\nconfigs: [{render: bitcoin.conf, path: /x, owner: root, group: 101, dir_mode: \"0750\"}]\n");
        assert_eq!(m.configs[0].dir_mode_bits(), 0o750);
        assert_eq!(
            m.configs[0].owner_ids().unwrap(),
            Some((Some(0), Some(101)))
        );
        assert!(
            bad("app: a\nimage: i\nconfigs: [{render: lnd.conf, path: /x, owner: \"a b\"}]\n")
                .contains("configs[0].owner")
        );
        assert!(bad(
            "app: a\nimage: i\nconfigs: [{render: lnd.conf, path: /x, dir_mode: \"0999\"}]\n"
        )
        .contains("configs[0].dir_mode"));
        let m = ok("app: a\nimage: i\nconfigs: [{render: lnd.conf, path: /x, group: no-such-group-here}]\n");
        let err = m.configs[0].owner_ids().unwrap_err().to_string();
        assert!(
            err.contains("key `group` of /x") && err.contains("/etc/group"),
            "{err}"
        );
        let db = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            db.path(),
            "root:x:0:0::/root:/bin/sh\nbitcoin:x:101:101::/home/bitcoin:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(resolve_id("bitcoin", db.path()), Ok(101));
        assert_eq!(resolve_id("7", db.path()), Ok(7));
        assert!(resolve_id("nobody-here", db.path()).is_err());
    }

    #[test]
    fn volume_policy_limits_bind_sources() {
        let policy = Policy {
            allowed_volume_roots: vec![PathBuf::from("/var/lib/archy")],
            ..Policy::default()
        };
        let check = |v: &str| {
            let m = ok(&format!("app: a\nimage: i\nvolumes: [\"{v}\"]\n"));
            validate(&m, &policy)
        };
        assert!(check("/var/lib/archy/x:/x").is_ok());
        assert!(check("named:/x").is_ok());
        assert!(check("/etc:/x")
            .unwrap_err()
            .contains("key `volumes`: `/etc:/x`: source /etc is outside the allowed roots"));
        assert!(
            bad("app: a\nimage: i\nvolumes: [\"/var/lib/archy/../../etc:/x\"]\n")
                .contains("source must not contain `..`")
        );
    }

    fn m(app: &str, deps: &[&str]) -> Manifest {
        let mut m = ok(&format!("app: {app}\nimage: i\n"));
        m.depends_on = deps.iter().map(|s| Dependency::started(s)).collect();
        m.file = PathBuf::from(format!("/m/{app}.yaml"));
        m
    }

    #[test]
    fn set_rules_drop_duplicates_missing_deps_and_cycles() {
        let (apps, errors) = validate_set(vec![
            m("a", &[]),
            m("a", &[]),
            m("b", &["zzz"]),
            m("c", &["b"]),
            m("d", &["e"]),
            m("e", &["d"]),
            m("f", &["a"]),
        ]);
        let ids: Vec<&str> = apps.iter().map(|m| m.app.as_str()).collect();
        assert_eq!(ids, vec!["a", "f"]);
        let messages: Vec<String> = errors
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        assert!(
            messages
                .iter()
                .any(|e| e.contains("already defined in /m/a.yaml")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|e| e.contains("/m/b.yaml") && e.contains("`zzz`")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|e| e.contains("/m/c.yaml") && e.contains("`b`")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|e| e.contains("cycle")), "{messages:?}");
    }

    #[test]
    fn host_port_used_by_two_apps_is_a_set_error_naming_both() {
        let with_ports = |app: &str, ports: &[&str]| {
            let mut m = m(app, &[]);
            m.ports = ports.iter().map(|s| s.parse().unwrap()).collect();
            m
        };
        let (apps, errors) = validate_set(vec![
            with_ports("a", &["127.0.0.1:8080:80"]),
            with_ports("b", &["8080:80"]),
            with_ports(
                "c",
                &["127.0.0.2:8080:80", "80", "127.0.0.1::80", "8080:80/udp"],
            ),
            with_ports("d", &["9000-9010:9000-9010"]),
            with_ports("e", &["[::1]:9005:80"]),
        ]);
        let ids: Vec<&str> = apps.iter().map(|m| m.app.as_str()).collect();
        assert_eq!(ids, vec!["a", "c", "d"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].app.as_deref(), Some("b"));
        assert!(errors[0].message.contains("key `ports`"), "{errors:?}");
        assert!(errors[0].message.contains("app `b`") && errors[0].message.contains("app `a`"));
        assert!(errors[0].message.contains("/m/a.yaml"), "{errors:?}");
        assert!(errors[1].message.contains("app `d`"), "{errors:?}");
    }

    #[test]
    fn depends_on_takes_a_list_or_a_map_of_conditions() {
        let m = ok("app: a\nimage: i\ndepends_on: [b, c]\n");
        assert_eq!(
            m.depends_on,
            vec![Dependency::started("b"), Dependency::started("c")]
        );
        let m = ok("app: a\nimage: i\ndepends_on: {b: healthy, c: started}\n");
        assert_eq!(
            m.depends_on,
            vec![
                Dependency {
                    app: "b".into(),
                    condition: Condition::Healthy
                },
                Dependency::started("c")
            ]
        );
        assert!(ok("app: a\nimage: i\ndepends_on:\n").depends_on.is_empty());
        let err = bad("app: a\nimage: i\ndepends_on: {b: ready}\n");
        assert!(
            err.contains("`ready` must be `started`, `healthy` or `synced`"),
            "{err}"
        );
        assert!(bad("app: a\nimage: i\ndepends_on: 7\n").contains("key `depends_on`"));
        assert!(bad("app: a\nimage: i\ndepends_on: {a: healthy}\n").contains("itself"));
        let err = bad("app: a\nimage: i\nhealth: {tcp: nope}\n");
        assert!(err.contains("key `health.tcp`"), "{err}");
    }

    #[test]
    fn healthy_condition_needs_a_probe_on_the_dependency() {
        let mut base = m("base", &[]);
        let mut child = m("child", &[]);
        child.depends_on = vec![Dependency {
            app: "base".into(),
            condition: Condition::Healthy,
        }];
        let (apps, errors) = validate_set(vec![base.clone(), child.clone()]);
        assert_eq!(apps.len(), 1);
        assert_eq!(errors[0].app.as_deref(), Some("child"));
        assert!(
            errors[0]
                .message
                .contains("`base` is required healthy but has no `health:` probe"),
            "{errors:?}"
        );
        base.health = ok("app: x\nimage: i\nhealth: {tcp: \"127.0.0.1:1\"}\n").health;
        let (apps, errors) = validate_set(vec![base.clone(), child.clone()]);
        assert_eq!((apps.len(), errors.len()), (2, 0), "{errors:?}");
        // `synced` needs the chain-aware probe.
        let mut synced = child.clone();
        synced.depends_on[0].condition = Condition::Synced;
        let (apps, errors) = validate_set(vec![base.clone(), synced.clone()]);
        assert_eq!(apps.len(), 1);
        assert!(
            errors[0]
                .message
                .contains("`base` is required synced but its probe is not `bitcoin_rpc:`"),
            "{errors:?}"
        );
        let mut node = base.clone();
        node.health = ok("app: x\nimage: i\nhealth: {bitcoin_rpc: \"127.0.0.1:8332\"}\n").health;
        let (apps, errors) = validate_set(vec![node, synced]);
        assert_eq!((apps.len(), errors.len()), (2, 0), "{errors:?}");
        // A disabled app's probe never runs: the dependent would wait forever.
        base.enabled = false;
        let (apps, errors) = validate_set(vec![base, child]);
        assert_eq!(apps.len(), 1);
        assert!(
            errors[0]
                .message
                .contains("`base` is required healthy but is `enabled: false`"),
            "{errors:?}"
        );
    }

    #[test]
    fn document_level_errors_say_where() {
        // Each error names a real place: a line and column, a key, or the document root.
        for (text, place) in [
            ("- ", "document root: invalid type: sequence"),
            ("", "document root: missing field `app`"),
            ("a;b`e`", "document root: invalid type: string \"a;b`e`\""),
            (
                "just text",
                "document root: invalid type: string \"just text\"",
            ),
            (
                "---\napp: a\n---\napp: b\n",
                "document root: deserializing from YAML containing more than one document",
            ),
            (
                "app: a\nimage: [\n",
                "image: invalid type: sequence, expected a string at line 2 column 8",
            ),
            (
                "app: a\n  image: i\n",
                "not allowed in this context at line 2 column 8",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(place), "{text:?}: {err}");
        }
    }

    #[test]
    fn yaml_bomb_of_known_keys_is_rejected_not_expanded() {
        let yaml = expansion::tests::known_key_bomb();
        let started = std::time::Instant::now();
        let err = parse(&yaml).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            err.contains("YAML aliases expand this manifest past"),
            "{err}"
        );
        // The same file loaded from disk: the error names it, and the app hint (which parses
        // the file a second time) does not expand it either.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bomb.yaml");
        fs::write(&file, &yaml).unwrap();
        let err = load_file(&file, &Policy::default()).unwrap_err();
        assert!(err.contains("YAML bomb"), "{err}");
        assert_eq!(app_hint(&file).as_deref(), Some("bomb"));
    }

    #[test]
    fn layers_follow_dependencies() {
        let mk = |app: &str, deps: &[&str]| {
            let mut m = parse(&format!("app: {app}\nimage: i\n")).unwrap();
            m.depends_on = deps.iter().map(|s| Dependency::started(s)).collect();
            m
        };
        let apps = vec![
            mk("ui", &["lnd"]),
            mk("lnd", &["btc"]),
            mk("btc", &[]),
            mk("erx", &["btc"]),
        ];
        assert_eq!(
            dependency_layers(&apps).unwrap(),
            vec![vec!["btc"], vec!["erx", "lnd"], vec!["ui"]]
        );
        let cyc = vec![mk("x", &["y"]), mk("y", &["x"]), mk("z", &[])];
        assert_eq!(dependency_layers(&cyc).unwrap_err(), vec!["x", "y"]);
    }
}
