//! Image resolution: every app becomes an image reference before anything acts. `build:` apps get
//! a content-derived local tag; `image:` apps their own reference. `ensure` builds or pulls what
//! local storage lacks, through the same code for `reconcile` and `build-image`.

pub mod build;
pub mod gc;
pub mod lkg;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, PullPolicy};
use crate::podman::{Podman, LABEL_APP, LABEL_CONTEXT_HASH};

/// Where an app's image comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Build {
        context: PathBuf,
        containerfile: PathBuf,
        context_hash: String,
        args: Vec<(String, String)>,
    },
    Registry {
        pull: PullPolicy,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub reference: String,
    pub source: Source,
}

/// Resolve an app's image reference (reads the build context for `build:` apps; no podman).
pub fn resolve(m: &Manifest) -> Result<Resolved> {
    resolve_with(m, None)
}

/// `resolve`, with context hashes taken from (and added to) `cache` when given.
pub fn resolve_with(m: &Manifest, cache: Option<&std::sync::Mutex<HashCache>>) -> Result<Resolved> {
    if let Some(image) = &m.image {
        return Ok(Resolved {
            reference: image.clone(),
            source: Source::Registry { pull: m.pull },
        });
    }
    let build = m
        .build
        .as_ref()
        .context("manifest has neither image nor build")?;
    let context = m.build_context().expect("build is set");
    let meta = fs::metadata(&context).with_context(|| {
        format!(
            "build context {} of app {} is not readable",
            context.display(),
            m.app
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "build context {} of app {} is not a directory",
            context.display(),
            m.app
        );
    }
    let containerfile = match &build.containerfile {
        Some(file) => context.join(file),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|f| context.join(f))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "build context {} has neither Containerfile nor Dockerfile",
                    context.display()
                )
            })?,
    };
    let args: Vec<(String, String)> = build
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let context_hash = match cache {
        Some(cache) => cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .context_hash(&context, &containerfile, &args)?,
        None => context_hash(&context, &containerfile, &args)?,
    };
    Ok(Resolved {
        reference: build_reference(&m.app, &context_hash),
        source: Source::Build {
            context,
            containerfile,
            context_hash,
            args,
        },
    })
}

/// The digest a reference is pinned to (`name[:tag]@sha256:<hex>` → `sha256:<hex>`).
pub fn pinned_digest(reference: &str) -> Option<&str> {
    reference.rsplit_once('@').map(|(_, digest)| digest)
}

/// A reference as podman lists it (pure): `docker.io/` and `library/` filled in for Docker
/// Hub names, `:latest` when it names neither tag nor digest, and the tag dropped beside a
/// digest (`name:tag@sha256:…` lists as `name@sha256:…`).
pub fn normalise(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let (host, path) = match split_registry(name) {
        (Some(host), path) => (host.to_string(), path.to_string()),
        (None, path) if path.contains('/') => ("docker.io".to_string(), path.to_string()),
        (None, path) => ("docker.io".to_string(), format!("library/{path}")),
    };
    let last = path.rsplit('/').next().unwrap_or_default();
    match (digest, last.contains(':')) {
        (Some(digest), true) => {
            let untagged = path.rsplit_once(':').map_or(path.as_str(), |(p, _)| p);
            format!("{host}/{untagged}@{digest}")
        }
        (Some(digest), false) => format!("{host}/{path}@{digest}"),
        (None, true) => format!("{host}/{path}"),
        (None, false) => format!("{host}/{path}:latest"),
    }
}

/// Whether a container listed with image `listed` runs the image `desired` names (pure; an
/// image id names itself).
pub fn same_image(listed: &str, desired: &str) -> bool {
    listed == desired || normalise(listed) == normalise(desired)
}

/// Refuse a pulled image whose registry digests do not include the pin (pure).
pub fn check_pin(app: &str, reference: &str, digests: &[String]) -> Result<()> {
    let Some(pin) = pinned_digest(reference) else {
        return Ok(());
    };
    if digests
        .iter()
        .any(|d| d.rsplit_once('@').is_some_and(|(_, got)| got == pin))
    {
        return Ok(());
    }
    bail!(
        "image {reference} of app {app} is pinned to {pin}, but the image pulled has {}: refused (the image was not used)",
        if digests.is_empty() {
            "no registry digest".to_string()
        } else {
            format!("digest(s) {}", digests.join(", "))
        }
    )
}

/// `localhost/archy-<app>:<first 12 hex of the context hash>`.
pub fn build_reference(app: &str, context_hash: &str) -> String {
    format!("localhost/archy-{app}:{}", &context_hash[..12])
}

/// sha256 over the containerfile, the build args and every non-ignored file of the context
/// (relative path, executable bit, content). Independent of directory listing order.
pub fn context_hash(
    context: &Path,
    containerfile: &Path,
    args: &[(String, String)],
) -> Result<String> {
    let files = context_files(context)?;
    hash_context(context, containerfile, args, &files)
}

/// The context's files that a build sees (ignore rules applied), sorted.
fn context_files(context: &Path) -> Result<Vec<PathBuf>> {
    let ignore = IgnoreRules::load(context)?;
    let mut files = Vec::new();
    walk(context, Path::new(""), &ignore, &mut files)?;
    files.sort();
    Ok(files)
}

/// Bytes of the context's files a build sees: what its image's layers need at least, so
/// a build is refused up front on a graph root without them (crate::guard::space).
pub fn context_size(context: &Path) -> Result<u64> {
    context_files(context)?
        .iter()
        .map(|rel| {
            let path = context.join(rel);
            fs::symlink_metadata(&path)
                .map(|m| m.len())
                .with_context(|| format!("failed to stat {}", path.display()))
        })
        .sum()
}

fn hash_args(hasher: &mut Sha256, args: &[(String, String)]) {
    let mut sorted_args = args.to_vec();
    sorted_args.sort();
    for (key, value) in &sorted_args {
        hasher.update(b"arg\0");
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\0");
    }
}

fn hash_context(
    context: &Path,
    containerfile: &Path,
    args: &[(String, String)],
    files: &[PathBuf],
) -> Result<String> {
    let mut hasher = Sha256::new();
    require_regular(containerfile, "containerfile")?;
    let cf = fs::read(containerfile)
        .with_context(|| format!("failed to read containerfile {}", containerfile.display()))?;
    hasher.update(b"containerfile\0");
    hasher.update((cf.len() as u64).to_le_bytes());
    hasher.update(&cf);
    hash_args(&mut hasher, args);
    for rel in files {
        let full = context.join(rel);
        let meta = fs::symlink_metadata(&full)
            .with_context(|| format!("failed to stat {}", full.display()))?;
        hasher.update(b"file\0");
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&full)
                .with_context(|| format!("failed to read link {}", full.display()))?;
            hasher.update(b"link\0");
            hasher.update(target.to_string_lossy().as_bytes());
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            hasher.update(if exec { b"x\0" } else { b"-\0" });
            let content =
                fs::read(&full).with_context(|| format!("failed to read {}", full.display()))?;
            hasher.update((content.len() as u64).to_le_bytes());
            hasher.update(&content);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A fingerprint of the context from metadata alone (path, size, mode, inode, mtime and ctime
/// in nanoseconds, link target) — what git's index trusts. ctime cannot be set back by tools
/// such as `tar` or `cp -p`, so rewritten content always changes it.
fn stat_fingerprint(
    context: &Path,
    containerfile: &Path,
    args: &[(String, String)],
    files: &[PathBuf],
) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    hash_args(&mut hasher, args);
    let mut stat = |label: &[u8], path: &Path| -> Result<()> {
        let meta = fs::symlink_metadata(path)
            .with_context(|| format!("failed to stat {}", path.display()))?;
        hasher.update(label);
        hasher.update(path.as_os_str().as_encoded_bytes());
        for n in [
            meta.len(),
            u64::from(meta.mode()),
            meta.ino(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            hasher.update(n.to_le_bytes());
        }
        if meta.file_type().is_symlink() {
            hasher.update(
                fs::read_link(path)
                    .with_context(|| format!("failed to read link {}", path.display()))?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        }
        Ok(())
    };
    stat(b"containerfile\0", containerfile)?;
    for rel in files {
        stat(b"file\0", &context.join(rel))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Context hashes remembered by metadata fingerprint (`<state-dir>/cache/context-hashes.json`),
/// so a no-op tick stats a build context instead of reading and hashing every byte of it.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, CachedHash>,
    dirty: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CachedHash {
    fingerprint: String,
    hash: String,
}

impl HashCache {
    /// The cache under `state_dir`; an unreadable or malformed cache is an empty one.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join("cache").join("context-hashes.json");
        let entries = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        HashCache {
            path: Some(path),
            entries,
            dirty: false,
        }
    }

    /// Write the cache if it changed; failures are logged (it is only a cache).
    pub fn save(&self) {
        let (Some(path), true) = (&self.path, self.dirty) else {
            return;
        };
        let result = (|| -> Result<()> {
            let dir = path.parent().context("cache path has a parent")?;
            fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            crate::fsutil::replace_quick(path, &serde_json::to_vec(&self.entries)?, 0o644)
        })();
        if let Err(err) = result {
            tracing::warn!("could not save the context hash cache: {err:#}");
        }
    }

    fn context_hash(
        &mut self,
        context: &Path,
        containerfile: &Path,
        args: &[(String, String)],
    ) -> Result<String> {
        let files = context_files(context)?;
        let fingerprint = stat_fingerprint(context, containerfile, args, &files)?;
        let key = format!("{}\0{}", context.display(), containerfile.display());
        if let Some(cached) = self
            .entries
            .get(&key)
            .filter(|c| c.fingerprint == fingerprint)
        {
            return Ok(cached.hash.clone());
        }
        let hash = hash_context(context, containerfile, args, &files)?;
        self.entries.insert(
            key,
            CachedHash {
                fingerprint,
                hash: hash.clone(),
            },
        );
        self.dirty = true;
        Ok(hash)
    }
}

fn walk(root: &Path, rel: &Path, ignore: &IgnoreRules, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    for entry in
        fs::read_dir(&dir).with_context(|| format!("failed to read directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("failed to read directory {}", dir.display()))?;
        let child = rel.join(entry.file_name());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            // Descend even into ignored dirs: a later `!pattern` may re-include a file inside.
            walk(root, &child, ignore, out)?;
        } else if !ignore.is_ignored(&child) {
            // Reading a FIFO blocks until a writer comes, a device may never end: a build
            // context holds regular files and symlinks only (symlinks are hashed, not followed).
            if let Some(kind) = special_kind(&file_type) {
                bail!(
                    "{} in build context {} is a {kind}; a build context may hold only regular files, directories and symlinks (remove it or list it in .containerignore)",
                    child.display(),
                    root.display()
                );
            }
            out.push(child);
        }
    }
    Ok(())
}

/// The name of a file type that is neither a regular file, a directory nor a symlink.
#[allow(clippy::trivially_copy_pass_by_ref)] // as `DirEntry::file_type` hands it over
fn special_kind(file_type: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        Some("FIFO")
    } else if file_type.is_socket() {
        Some("socket")
    } else if file_type.is_char_device() {
        Some("character device")
    } else if file_type.is_block_device() {
        Some("block device")
    } else {
        None
    }
}

/// Fail unless `path` (followed) is a regular file: reading anything else may block forever.
fn require_regular(path: &Path, what: &str) -> Result<()> {
    let meta =
        fs::metadata(path).with_context(|| format!("failed to stat {what} {}", path.display()))?;
    if !meta.is_file() {
        let kind = special_kind(&meta.file_type()).unwrap_or("directory");
        bail!("{what} {} is a {kind}, not a regular file", path.display());
    }
    Ok(())
}

/// `.containerignore` / `.dockerignore` rules (the first that exists), Docker semantics: glob
/// patterns relative to the context, `**` spans directories, `!` re-includes, last match wins,
/// and a pattern matching a directory ignores everything below it.
#[derive(Debug, Default)]
pub struct IgnoreRules {
    rules: Vec<(bool, Vec<String>)>,
}

impl IgnoreRules {
    pub fn load(context: &Path) -> Result<Self> {
        for name in [".containerignore", ".dockerignore"] {
            let path = context.join(name);
            if fs::symlink_metadata(&path).is_ok() {
                require_regular(&path, "ignore file")?;
            }
            if let Some(bytes) = crate::fsutil::read_optional(&path)? {
                return Ok(Self::parse(&String::from_utf8_lossy(&bytes)));
            }
        }
        Ok(Self::default())
    }

    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (negate, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let parts = pattern
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(String::from)
                    .collect();
                (negate, parts)
            })
            .collect();
        IgnoreRules { rules }
    }

    pub fn is_ignored(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut ignored = false;
        for (negate, pattern) in &self.rules {
            // A pattern matching the path or any of its parent directories applies.
            let hit = (1..=parts.len()).any(|n| match_parts(pattern, &parts[..n]));
            if hit {
                ignored = !negate;
            }
        }
        ignored
    }
}

fn match_parts(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_parts(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((head, tail)) => {
                glob_segment(first.as_bytes(), head.as_bytes()) && match_parts(rest, tail)
            }
            None => false,
        },
    }
}

/// `*`, `?` and `[...]`-free glob on one path segment.
fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_segment(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_segment(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_segment(rest, &text[1..]),
    }
}

/// Options for making an image present.
#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// Rebuild / re-pull even when present.
    pub force: bool,
    /// Registry mirrors tried in order before the image's own registry.
    pub mirrors: Vec<String>,
    /// Show a spinner with the current build step.
    pub progress: bool,
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Present,
    Built,
    Pulled,
}

/// Whether `ensure` pulls this image on every call (`pull: always`), present or not.
pub fn always_pulls(resolved: &Resolved) -> bool {
    matches!(
        resolved.source,
        Source::Registry {
            pull: PullPolicy::Always
        }
    )
}

/// Make the resolved image present in local storage: build, pull or fail per the app's policy.
pub fn ensure(
    podman: &Podman,
    app: &str,
    resolved: &Resolved,
    options: &EnsureOptions,
) -> Result<Ensured> {
    if !options.force && !always_pulls(resolved) && podman.image_exists(&resolved.reference)? {
        return Ok(Ensured::Present);
    }
    match &resolved.source {
        Source::Build {
            context,
            containerfile,
            context_hash,
            args,
        } => {
            build(
                podman,
                app,
                &resolved.reference,
                context,
                containerfile,
                context_hash,
                args,
                options.progress,
            )?;
            Ok(Ensured::Built)
        }
        Source::Registry {
            pull: PullPolicy::Never,
        } => {
            bail!(
                "image {} is not in local storage and the app's pull policy is `never`",
                resolved.reference
            )
        }
        Source::Registry { .. } => {
            let pin = pinned_digest(&resolved.reference);
            require_pull_space(&resolved.reference)?;
            pull_with_mirrors(podman, &resolved.reference, &options.mirrors).with_context(|| {
                pin.map_or_else(String::new, |pin| {
                    format!("image of app {app} pinned to {pin}: the registry must hold that digest")
                })
            })?;
            if pin.is_some() {
                let digests = podman.image_digests(&resolved.reference)?;
                if let Err(err) = check_pin(app, &resolved.reference, &digests) {
                    // Not left behind under the pinned name for a later run to find present.
                    if let Err(untag) = podman.remove_image(&resolved.reference) {
                        tracing::warn!("{untag:#}");
                    }
                    return Err(err);
                }
            }
            Ok(Ensured::Pulled)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    podman: &Podman,
    app: &str,
    reference: &str,
    context: &Path,
    containerfile: &Path,
    context_hash: &str,
    args: &[(String, String)],
    progress: bool,
) -> Result<()> {
    let labels = vec![
        (LABEL_CONTEXT_HASH.to_string(), context_hash.to_string()),
        (LABEL_APP.to_string(), app.to_string()),
    ];
    let needed = context_size(context)
        .with_context(|| format!("failed to size build context {}", context.display()))?;
    crate::guard::space::require(
        &crate::guard::space::graphroot(),
        needed,
        &format!(
            "building {reference} for {app} (its context {} holds {})",
            context.display(),
            crate::guard::space::human_bytes(needed)
        ),
    )?;
    let cmd = podman.build_cmd(context, containerfile, reference, &labels, args);
    tracing::info!(
        "building image {reference} for {app} from {}",
        context.display()
    );
    let spinner = progress.then(|| {
        let bar = spinners().add(indicatif::ProgressBar::new_spinner());
        // `wide_msg` truncates to the terminal width: a long build step never wraps the display.
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message(format!("{app}: building"));
        bar
    });
    // Output decoded lossily line by line: a non-UTF-8 byte in a RUN step's output is logged
    // as U+FFFD and never ends the read (which used to kill the build).
    let mut on_line = |text: &str| {
        tracing::debug!(target: "archy::build", "{app}: {text}");
        if text.starts_with("STEP ") {
            if let Some(bar) = &spinner {
                bar.set_message(format!("{app}: {text}"));
            } else {
                tracing::info!("{app}: {text}");
            }
        }
    };
    let result = cmd.run_lines(&mut on_line);
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    let (status, log) =
        result.with_context(|| format!("failed to build image {reference} for {app}"))?;
    if status != 0 {
        let tail = crate::exec::tail(&log.join("\n"), 15);
        bail!("`{}` exited with code {status}: {tail}", cmd.display());
    }
    // The tag names the content hashed before the build; if the context changed while it
    // built, the image may hold the edited content: drop the tag, fail, and let the next run
    // build (and tag) what the context then holds.
    let after = self::context_hash(context, containerfile, args).with_context(|| {
        format!(
            "failed to hash build context {} after the build",
            context.display()
        )
    })?;
    if after != context_hash {
        let untag = podman.untag(reference);
        bail!(
            "build context {} changed while {reference} was built: the image may not match its tag, so the tag was {}; the next run builds again",
            context.display(),
            match untag {
                Ok(()) => "removed".to_string(),
                Err(err) => format!("NOT removed ({err:#})"),
            }
        );
    }
    Ok(())
}

/// One multi-line display for every build of this process: parallel builds (reconcile's
/// `--jobs`) each get their own spinner line instead of overwriting one another.
fn spinners() -> &'static indicatif::MultiProgress {
    static SPINNERS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    SPINNERS.get_or_init(indicatif::MultiProgress::new)
}

/// Registry host of a reference, if it names one (`docker.io/library/nginx` → `docker.io`).
fn split_registry(reference: &str) -> (Option<&str>, &str) {
    match reference.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (Some(host), rest)
        }
        _ => (None, reference),
    }
}

/// Refuse a pull up front when podman's graph root lacks twice the image's compressed layers
/// (the download, then the unpacked layers: at least as much again), as its registry manifest
/// tells (crate::guard::registry). A registry that does not tell: the pull runs unchecked.
fn require_pull_space(reference: &str) -> Result<()> {
    let Some(compressed) = crate::guard::registry::image_size(reference) else {
        tracing::debug!("{reference}: its registry gave no size; pulling unchecked");
        return Ok(());
    };
    crate::guard::space::require(
        &crate::guard::space::graphroot(),
        compressed.saturating_mul(2),
        &format!(
            "pulling {reference} (its registry manifest lists {} of compressed layers; unpacked they take at least as much again)",
            crate::guard::space::human_bytes(compressed)
        ),
    )
}

/// Try each mirror, then the reference itself; a mirror hit is tagged as the original reference.
fn pull_with_mirrors(podman: &Podman, reference: &str, mirrors: &[String]) -> Result<()> {
    let (_, path) = split_registry(reference);
    let candidates = mirrors
        .iter()
        .map(|m| format!("{}/{path}", m.trim_end_matches('/')));
    let mut tried = Vec::new();
    for candidate in candidates.chain(std::iter::once(reference.to_string())) {
        match podman.pull(&candidate) {
            Ok(()) if candidate == reference => return Ok(()),
            Ok(()) => {
                podman.tag(&candidate, reference)?;
                tracing::info!("pulled {reference} as {candidate}");
                return Ok(());
            }
            Err(err) => {
                let why = crate::exec::failed_stderr(&err)
                    .map_or_else(|| format!("{err:#}"), |s| crate::exec::tail(s, 2));
                tried.push(format!("{candidate}: {why}"));
            }
        }
    }
    bail!(
        "failed to pull {reference}; tried {} source(s):\n  {}",
        tried.len(),
        tried.join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
        }
        dir
    }

    fn hash(dir: &Path) -> String {
        context_hash(dir, &dir.join("Containerfile"), &[]).unwrap()
    }

    #[test]
    fn hash_is_independent_of_creation_order() {
        let a = ctx(&[("Containerfile", "FROM scratch"), ("a/x", "1"), ("b", "2")]);
        let b = ctx(&[("b", "2"), ("a/x", "1"), ("Containerfile", "FROM scratch")]);
        assert_eq!(hash(a.path()), hash(b.path()));
    }

    #[test]
    fn content_path_args_and_exec_bit_change_the_hash() {
        let a = ctx(&[("Containerfile", "FROM scratch"), ("bin/run", "echo")]);
        let before = hash(a.path());
        fs::set_permissions(a.path().join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        let exec = hash(a.path());
        assert_ne!(before, exec);
        fs::write(a.path().join("bin/run"), "echo 2").unwrap();
        assert_ne!(exec, hash(a.path()));
        let with_arg = context_hash(
            a.path(),
            &a.path().join("Containerfile"),
            &[("V".into(), "1".into())],
        )
        .unwrap();
        assert_ne!(with_arg, hash(a.path()));
        let b = ctx(&[("Containerfile", "FROM scratch"), ("bin/run2", "echo")]);
        let c = ctx(&[("Containerfile", "FROM scratch"), ("bin/run", "echo")]);
        assert_ne!(hash(b.path()), hash(c.path()));
    }

    #[test]
    fn ignored_files_do_not_change_the_hash() {
        let a = ctx(&[
            ("Containerfile", "FROM scratch"),
            (".containerignore", "*.log\nnode_modules\n!keep.log\n"),
            ("site/index.html", "hi"),
        ]);
        let before = hash(a.path());
        fs::write(a.path().join("debug.log"), "noise").unwrap();
        fs::create_dir_all(a.path().join("node_modules/x")).unwrap();
        fs::write(a.path().join("node_modules/x/y.js"), "noise").unwrap();
        assert_eq!(before, hash(a.path()));
        fs::write(a.path().join("keep.log"), "kept").unwrap();
        assert_ne!(before, hash(a.path()), "a re-included file counts");
    }

    #[test]
    fn cache_reuses_a_hash_until_a_file_changes() {
        let a = ctx(&[
            ("Containerfile", "FROM scratch"),
            ("site/index.html", "one"),
        ]);
        let state = tempfile::tempdir().unwrap();
        let cf = a.path().join("Containerfile");
        let mut cache = HashCache::load(state.path());
        let first = cache.context_hash(a.path(), &cf, &[]).unwrap();
        assert_eq!(first, hash(a.path()));
        cache.save();
        let mut cache = HashCache::load(state.path());
        assert!(!cache.entries.is_empty(), "saved and loaded");
        assert_eq!(cache.context_hash(a.path(), &cf, &[]).unwrap(), first);
        assert!(!cache.dirty, "a hit writes nothing");
        // Same size, same mtime set back by hand: ctime still moves, so the change is seen.
        let index = a.path().join("site/index.html");
        let mtime = fs::metadata(&index).unwrap().modified().unwrap();
        fs::write(&index, "two").unwrap();
        fs::File::options()
            .write(true)
            .open(&index)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let changed = cache.context_hash(a.path(), &cf, &[]).unwrap();
        assert_ne!(changed, first);
        assert_eq!(changed, hash(a.path()));
    }

    #[test]
    fn ignore_rule_semantics() {
        let rules = IgnoreRules::parse("# comment\n**/*.tmp\n/docs\nsecret?.txt\n");
        assert!(rules.is_ignored(Path::new("a/b/c.tmp")));
        assert!(rules.is_ignored(Path::new("x.tmp")));
        assert!(rules.is_ignored(Path::new("docs/readme.md")));
        assert!(!rules.is_ignored(Path::new("src/docs.md")));
        assert!(rules.is_ignored(Path::new("secret1.txt")));
        assert!(!rules.is_ignored(Path::new("secret10.txt")));
    }

    /// A stand-in podman that logs its argv and lets only `pull <ok>` succeed.
    fn fake_podman(dir: &Path, ok: &str) -> (Podman, PathBuf) {
        let log = dir.join("calls.log");
        let script = dir.join("podman");
        fs::write(&script, format!("#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = pull ] && [ \"$3\" != '{ok}' ] && {{ echo \"Error: $3: connection refused\" >&2; exit 125; }}\nexit 0\n", log.display())).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        (Podman::new(&script), log)
    }

    #[test]
    fn mirrors_are_tried_in_order_and_a_hit_is_tagged_as_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let (podman, log) = fake_podman(dir.path(), "m2.local/library/nginx:1.27");
        let mirrors = vec!["m1.local".to_string(), "m2.local/".to_string()];
        pull_with_mirrors(&podman, "docker.io/library/nginx:1.27", &mirrors).unwrap();
        let calls = fs::read_to_string(log).unwrap();
        assert_eq!(
            calls,
            "pull --quiet m1.local/library/nginx:1.27\npull --quiet m2.local/library/nginx:1.27\ntag m2.local/library/nginx:1.27 docker.io/library/nginx:1.27\n"
        );
    }

    #[test]
    fn a_failed_pull_names_every_source_tried() {
        let dir = tempfile::tempdir().unwrap();
        let (podman, _) = fake_podman(dir.path(), "nowhere");
        let err = pull_with_mirrors(
            &podman,
            "docker.io/library/nginx:1.27",
            &["m1.local".to_string()],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tried 2 source(s)"), "{text}");
        assert!(text.contains("m1.local/library/nginx:1.27: Error: m1.local/library/nginx:1.27: connection refused"), "{text}");
        assert!(
            text.contains("docker.io/library/nginx:1.27: Error:"),
            "{text}"
        );
    }

    #[test]
    fn references_compare_as_podman_lists_them() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(normalise("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(normalise("lncm/bitcoind"), "docker.io/lncm/bitcoind:latest");
        assert_eq!(normalise("localhost/t:1"), "localhost/t:1");
        assert_eq!(
            normalise(&format!("127.0.0.1:5000/t:1@{pin}")),
            format!("127.0.0.1:5000/t@{pin}")
        );
        assert!(same_image("docker.io/library/nginx:1.27", "nginx:1.27"));
        assert!(same_image(
            &format!("127.0.0.1:5000/t@{pin}"),
            &format!("127.0.0.1:5000/t:1@{pin}")
        ));
        assert!(!same_image("localhost/t:1", "localhost/t:2"));
        assert!(!same_image("docker.io/library/nginx:1.27", "nginx:1.28"));
    }

    #[test]
    fn a_pulled_image_must_carry_the_pinned_digest() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        let reference = format!("127.0.0.1:5000/t:1@{pin}");
        assert_eq!(pinned_digest(&reference), Some(pin.as_str()));
        assert_eq!(pinned_digest("t:1"), None);
        assert!(crate::manifest::valid_digest(&pin));
        assert!(
            !crate::manifest::valid_digest("sha256:AB") && !crate::manifest::valid_digest("md5:00")
        );
        check_pin("web", &reference, &[format!("127.0.0.1:5000/t@{pin}")]).unwrap();
        check_pin("web", "t:1", &[]).unwrap();
        let other = format!("127.0.0.1:5000/t@sha256:{}", "cd".repeat(32));
        let err = check_pin("web", &reference, std::slice::from_ref(&other)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("image {reference} of app web is pinned to {pin}, but the image pulled has digest(s) {other}: refused (the image was not used)")
        );
        let err = check_pin("web", &reference, &[]).unwrap_err().to_string();
        assert!(err.contains("has no registry digest"), "{err}");
    }

    #[test]
    fn a_pull_whose_digest_differs_from_the_pin_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pin = format!("sha256:{}", "ab".repeat(32));
        let reference = format!("reg.local/t:1@{pin}");
        let log = dir.path().join("calls.log");
        let script = dir.path().join("podman");
        // A registry that answers the pinned pull with another image.
        fs::write(&script, format!("#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = image ] && [ \"$2\" = exists ] && exit 1\n[ \"$1\" = image ] && echo '[{{\"RepoDigests\": [\"reg.local/t@sha256:{}\"]}}]'\nexit 0\n", log.display(), "cd".repeat(32))).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let resolved = Resolved {
            reference: reference.clone(),
            source: Source::Registry {
                pull: PullPolicy::Missing,
            },
        };
        let err = ensure(
            &Podman::new(&script),
            "web",
            &resolved,
            &EnsureOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("is pinned to") && err.contains("refused"),
            "{err}"
        );
        let calls = fs::read_to_string(log).unwrap();
        assert_eq!(
            calls,
            format!("image exists {reference}\npull --quiet {reference}\nimage inspect --format json {reference}\nrmi {reference}\n")
        );
    }

    #[test]
    fn reference_is_derived_from_hash() {
        assert_eq!(
            build_reference("bitcoin-ui", &"ab".repeat(32)),
            "localhost/archy-bitcoin-ui:abababababab"
        );
        assert_eq!(
            split_registry("docker.io/library/nginx:1"),
            (Some("docker.io"), "library/nginx:1")
        );
        assert_eq!(split_registry("nginx:1"), (None, "nginx:1"));
    }
}
