//! The effects of one backup tick ([`tick`]): stat each source, check each target, read and
//! copy only what changed, record the state. The decisions are [`super`]'s pure functions.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AppState, FileState, Stamp, TargetCheck, TargetState};
use crate::ctx::Ctx;
use crate::lock::Mode;
use crate::manifest::backup::{BackupFile, BackupSpec, Source, Target};
use crate::manifest::Manifest;

/// Between the two stats that must agree before a changed file is read: a file being written
/// (lnd rewrites its SCB whole) moves within this; 100 ms costs only a tick that copies.
pub const SETTLE: Duration = Duration::from_millis(100);
/// Largest file copied (lnd's SCB is a few KiB per channel): a bigger one is refused, not read.
pub const MAX_SIZE: u64 = 64 << 20;
/// Time limit of one command target.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// What became of one backed-up file this tick. Serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOutcome {
    /// Its stat did not move and every target holds it: nothing read, nothing written.
    Unchanged,
    /// Copied to at least one target, no target failed.
    Copied,
    /// Not copied this tick, not an error: not there yet, empty, or being written.
    Pending,
    /// A target (or the source) failed: see the targets.
    Failed,
}

/// What became of one target this tick. Serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetOutcome {
    Ok,
    Copied,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub result: TargetOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub app: String,
    pub file: String,
    pub result: FileOutcome,
    /// SHA-256 of the content as last read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub targets: Vec<TargetResult>,
}

/// After a real reconcile tick: [`tick`] over the apps it worked on (`apps`, or all). A failure
/// is logged, never a failed tick: the apps converged; `archy status` names what failed.
pub fn tick_selected(ctx: &Ctx, manifests: &[Manifest], apps: &[String]) -> Vec<FileResult> {
    let selected: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| apps.is_empty() || apps.contains(&m.app))
        .collect();
    tick(ctx, &selected).unwrap_or_else(|err| {
        tracing::warn!("backup: {err:#}");
        Vec::new()
    })
}

/// One backup tick over the apps given (those with a `backup:` key act): under
/// `<run-dir>/backup.lock`. A podman call only when a volume's mount point is not known yet.
pub fn tick(ctx: &Ctx, apps: &[&Manifest]) -> Result<Vec<FileResult>> {
    let backed: Vec<(&Manifest, &BackupSpec)> = apps
        .iter()
        .filter_map(|m| m.backup.as_ref().map(|b| (*m, b)))
        .collect();
    if backed.is_empty() {
        return Ok(Vec::new());
    }
    let _lock = ctx.lock("backup", Mode::Exclusive)?;
    let now = crate::clock::now()?;
    let state_dir = &ctx.settings.state_dir;
    let mut volumes = Volumes { ctx, listed: None };
    let mut results = Vec::new();
    for (m, spec) in backed {
        let before = super::load(state_dir, &m.app).unwrap_or_else(|err| {
            tracing::warn!("{err:#}; starting afresh");
            AppState::default()
        });
        let mut state = before.clone();
        // Entries no longer in the manifest are forgotten.
        state
            .files
            .retain(|key, _| spec.files.iter().any(|f| f.as_str() == key));
        for file in &spec.files {
            let fs = state.files.entry(file.as_str().to_string()).or_default();
            let result = file_tick(&m.app, spec, file, fs, &mut volumes, now);
            log(&result);
            results.push(result);
        }
        if state != before {
            save(state_dir, &m.app, &state);
        }
    }
    Ok(results)
}

/// Write an app's state atomically; a failure is logged (the copies stand; the next tick
/// redoes what the lost record would have said).
fn save(state_dir: &Path, app: &str, state: &AppState) {
    let saved = (|| -> Result<()> {
        let dir = super::state_dir(state_dir);
        crate::fsutil::ensure_dir(&dir, 0o700)?;
        let text = serde_json::to_string_pretty(state)?;
        crate::fsutil::write_atomic(&super::state_path(state_dir, app), text.as_bytes(), 0o600)
    })();
    if let Err(err) = saved {
        tracing::warn!("could not record the backup state of {app}: {err:#}");
    }
}

fn log(r: &FileResult) {
    match r.result {
        FileOutcome::Unchanged => {}
        FileOutcome::Copied => tracing::info!(
            "backup {} {}: copied to {}",
            r.app,
            r.file,
            r.targets
                .iter()
                .filter(|t| t.result == TargetOutcome::Copied)
                .map(|t| t.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FileOutcome::Pending => tracing::info!(
            "backup {} {}: {}",
            r.app,
            r.file,
            r.detail.as_deref().unwrap_or("pending")
        ),
        FileOutcome::Failed => {
            if let Some(detail) = &r.detail {
                tracing::warn!("backup {} {}: {detail}", r.app, r.file);
            }
            for t in r
                .targets
                .iter()
                .filter(|t| t.result == TargetOutcome::Failed)
            {
                tracing::warn!(
                    "backup {} {}: target {}: {}",
                    r.app,
                    r.file,
                    t.target,
                    t.error.as_deref().unwrap_or("failed")
                );
            }
        }
    }
}

/// Volume mount points, listed from podman at most once per tick and only when needed.
struct Volumes<'a> {
    ctx: &'a Ctx<'a>,
    listed: Option<Result<BTreeMap<String, PathBuf>, String>>,
}

impl Volumes<'_> {
    fn mountpoint(&mut self, name: &str) -> Result<Option<PathBuf>, String> {
        let ctx = self.ctx;
        let listed = self.listed.get_or_insert_with(|| {
            ctx.podman
                .volume_mountpoints()
                .map_err(|e| format!("{e:#}"))
        });
        match listed {
            Ok(map) => Ok(map.get(name).cloned()),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The directory the file's path is inside: the bind mount's host directory, or the volume's
/// mount point (recorded; asked of podman when unknown or gone).
fn source_root(
    file: &BackupFile,
    fs: &mut FileState,
    volumes: &mut Volumes,
) -> Result<Option<PathBuf>, String> {
    match &file.source {
        Source::HostDir(dir) => Ok(Some(dir.clone())),
        Source::Volume(name) => {
            if let Some(known) = fs.mountpoint.as_ref().filter(|p| p.is_dir()) {
                return Ok(Some(known.clone()));
            }
            let found = volumes.mountpoint(name)?;
            fs.mountpoint.clone_from(&found);
            Ok(found)
        }
    }
}

fn file_tick(
    app: &str,
    spec: &BackupSpec,
    file: &BackupFile,
    fs: &mut FileState,
    volumes: &mut Volumes,
    now: i64,
) -> FileResult {
    let mut result = FileResult {
        app: app.to_string(),
        file: file.to_string(),
        result: FileOutcome::Unchanged,
        sha256: None,
        detail: None,
        targets: Vec::new(),
    };
    let pending = |mut result: FileResult, fs: &mut FileState, why: String| {
        result.result = FileOutcome::Pending;
        result.sha256.clone_from(&fs.sha256);
        result.detail = Some(why.clone());
        fs.pending = Some(why);
        fs.error = None;
        result
    };
    // The source cannot be backed up (refused, unreadable): a problem for status.
    let fail = |mut result: FileResult, fs: &mut FileState, why: String| {
        result.result = FileOutcome::Failed;
        result.detail = Some(why.clone());
        fs.pending = None;
        fs.error = Some(why);
        result
    };
    let root = match source_root(file, fs, volumes) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return pending(
                result,
                fs,
                format!("volume {} does not exist yet", file.source_str()),
            )
        }
        Err(e) => {
            return fail(
                result,
                fs,
                format!("could not find the volume's mount point: {e}"),
            )
        }
    };
    let path = root.join(&file.path);
    let stamp = match source_stamp(&path) {
        Ok(Some(stamp)) => stamp,
        Ok(None) => return pending(result, fs, format!("{} does not exist yet", path.display())),
        Err(e) => return fail(result, fs, format!("{e:#}")),
    };
    fs.error = None;
    let name = file.name();
    // Targets no longer in the manifest are forgotten.
    let labels: Vec<String> = spec.targets.iter().map(Target::label).collect();
    fs.targets.retain(|label, _| labels.contains(label));
    let checks: Vec<(String, TargetCheck)> = spec
        .targets
        .iter()
        .map(|t| {
            let label = t.label();
            let ts = fs.targets.get(&label).cloned().unwrap_or_default();
            (label, check_target(t, app, name, &ts))
        })
        .collect();
    let changed = super::source_changed(fs.stamp.as_ref(), &stamp);
    let wanted = |sha: Option<&str>, label: &str, check: &TargetCheck| {
        matches!(check, TargetCheck::Ready { .. })
            && sha.is_none_or(|sha| {
                super::needs_copy(
                    &fs.targets.get(label).cloned().unwrap_or_default(),
                    sha,
                    check,
                )
            })
    };
    let any_wanted = checks
        .iter()
        .any(|(label, check)| changed || wanted(fs.sha256.as_deref(), label, check));
    let mut bytes = None;
    if any_wanted {
        match read_settled(&root, &path, &stamp) {
            Ok(Ok((content, settled))) => {
                let sha = hex::encode(Sha256::digest(&content));
                if fs.sha256.as_deref() != Some(sha.as_str()) {
                    fs.sha256 = Some(sha);
                    fs.changed_at = Some(now);
                }
                fs.stamp = Some(settled);
                fs.pending = None;
                bytes = Some(content);
            }
            Ok(Err(why)) => return pending(result, fs, why),
            Err(e) => return fail(result, fs, format!("{e:#}")),
        }
    }
    let sha = fs.sha256.clone();
    result.sha256.clone_from(&sha);
    for (target, (label, check)) in spec.targets.iter().zip(checks) {
        let ts = fs.targets.entry(label.clone()).or_default();
        let outcome = match (&check, &bytes, &sha) {
            (TargetCheck::Unavailable(why), _, _) => Err(why.clone()),
            (TargetCheck::Ready { .. }, Some(content), Some(sha))
                if super::needs_copy(ts, sha, &check) =>
            {
                copy_to(target, app, name, content, sha, spec.keep.0, now)
                    .map(Some)
                    .map_err(|e| format!("{e:#}"))
            }
            (TargetCheck::Ready { .. }, _, _) => Ok(None),
        };
        let target_result = match outcome {
            Ok(Some(newest)) => {
                ts.sha256.clone_from(&sha);
                ts.last_success = Some(now);
                ts.newest = newest;
                ts.error = None;
                TargetOutcome::Copied
            }
            Ok(None) => {
                ts.error = None;
                TargetOutcome::Ok
            }
            Err(e) => {
                ts.error = Some(e);
                TargetOutcome::Failed
            }
        };
        result.targets.push(TargetResult {
            target: label,
            result: target_result,
            error: ts.error.clone(),
        });
    }
    result.result = if result
        .targets
        .iter()
        .any(|t| t.result == TargetOutcome::Failed)
    {
        FileOutcome::Failed
    } else if result
        .targets
        .iter()
        .any(|t| t.result == TargetOutcome::Copied)
    {
        FileOutcome::Copied
    } else {
        FileOutcome::Unchanged
    };
    result
}

/// The source's stat (lstat: a symlink is refused), None when it does not exist.
fn source_stamp(path: &Path) -> Result<Option<Stamp>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(Some(Stamp::of(&meta))),
        Ok(_) => bail!(
            "{} is not a regular file (a symlink or special file is never followed): refused",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to stat {}", path.display())),
    }
}

/// Read a changed file once it holds still: a second stat [`SETTLE`] later must agree with the
/// first, the content must be non-empty and as long as both say, and the file must not move
/// while read. `Ok(Err(why))`: not now (copied on a later tick); `Err`: refused.
fn read_settled(
    root: &Path,
    path: &Path,
    first: &Stamp,
) -> Result<Result<(Vec<u8>, Stamp), String>> {
    if first.size == 0 {
        return Ok(Err(format!(
            "{} is empty: not copied (an empty file never replaces a good copy)",
            path.display()
        )));
    }
    if first.size > MAX_SIZE {
        bail!(
            "{} is {} bytes, more than the {MAX_SIZE} a backed-up file may be: refused",
            path.display(),
            first.size
        );
    }
    std::thread::sleep(SETTLE);
    let moving = || {
        Ok(Err(format!(
            "{} is being written (it changed within {} ms): copied once it holds still",
            path.display(),
            SETTLE.as_millis()
        )))
    };
    match source_stamp(path)? {
        Some(second) if second == *first => {}
        _ => return moving(),
    }
    let (content, after) = read_inside(root, path)?;
    if after != *first || content.len() as u64 != first.size {
        return moving();
    }
    Ok(Ok((content, after)))
}

/// Read a file that must lie inside `root` (no symlink on the way out of the volume: the
/// container owns the volume's content), without following a final symlink or blocking on a
/// FIFO. Returns the content and the stat after reading.
fn read_inside(root: &Path, path: &Path) -> Result<(Vec<u8>, Stamp)> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    let real = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .with_context(|| format!("failed to resolve {}", path.display()))?;
    let root_real =
        fs::canonicalize(root).with_context(|| format!("failed to resolve {}", root.display()))?;
    if !real.starts_with(&root_real) {
        bail!(
            "{} resolves to {}, outside {}: refused",
            path.display(),
            real.display(),
            root_real.display()
        );
    }
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file: refused", path.display());
    }
    let mut content = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_SIZE + 1)
        .read_to_end(&mut content)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let after = Stamp::of(&file.metadata()?);
    Ok((content, after))
}

/// Whether a target can take a copy now, and whether the newest copy archy made is still there.
fn check_target(target: &Target, app: &str, name: &str, ts: &TargetState) -> TargetCheck {
    match target {
        Target::Command { .. } => TargetCheck::Ready {
            newest_present: true,
        },
        Target::Dir { dir, require_mount } => {
            match fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return TargetCheck::Unavailable(format!(
                        "{} is not a directory",
                        dir.display()
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return TargetCheck::Unavailable(format!(
                        "directory {} is missing (not mounted?); archy does not create it",
                        dir.display()
                    ))
                }
                Err(e) => {
                    return TargetCheck::Unavailable(format!("directory {}: {e}", dir.display()))
                }
            }
            if *require_mount && !is_mount_point(dir) {
                return TargetCheck::Unavailable(format!(
                    "directory {} is not a mount point (disk not mounted?)",
                    dir.display()
                ));
            }
            if let Ok(vfs) = rustix::fs::statvfs(dir) {
                if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
                    return TargetCheck::Unavailable(format!(
                        "directory {} is on a read-only file system",
                        dir.display()
                    ));
                }
            }
            let app_dir = dir.join(app);
            let present = |n: &str| {
                app_dir
                    .join(n)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_file())
            };
            TargetCheck::Ready {
                newest_present: present(name) && ts.newest.as_deref().is_none_or(present),
            }
        }
    }
}

/// Whether `dir` is a mount point (`/proc/self/mountinfo`'s fifth field, octal escapes undone).
fn is_mount_point(dir: &Path) -> bool {
    let Ok(real) = fs::canonicalize(dir) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| Path::new(&unescape_mountinfo(field)) == real)
}

fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code = u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(code as char);
            i += 4;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// Copy to one target. A directory gets `<dir>/<app>/<version>` then `<dir>/<app>/<name>`
/// (each temp + fsync + rename + directory fsync), and loses versions beyond `keep`; returns
/// the version's name. A command gets the bytes on stdin (never in its argv) and
/// `ARCHY_BACKUP_APP`, `ARCHY_BACKUP_FILE`, `ARCHY_BACKUP_SHA256` in its environment.
fn copy_to(
    target: &Target,
    app: &str,
    name: &str,
    content: &[u8],
    sha: &str,
    keep: u32,
    now: i64,
) -> Result<Option<String>> {
    match target {
        Target::Dir { dir, .. } => {
            let app_dir = dir.join(app);
            match fs::create_dir(&app_dir) {
                Ok(()) => {
                    fs::set_permissions(
                        &app_dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o700),
                    )
                    .with_context(|| format!("failed to set the mode of {}", app_dir.display()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("failed to create {}", app_dir.display()))
                }
            }
            let version = super::version_name(name, now, sha);
            crate::fsutil::write_atomic(&app_dir.join(&version), content, 0o600)?;
            crate::fsutil::write_atomic(&app_dir.join(name), content, 0o600)?;
            let entries: Vec<String> = fs::read_dir(&app_dir)
                .with_context(|| format!("failed to list {}", app_dir.display()))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            for old in super::expired(&entries, name, keep) {
                if let Err(e) = fs::remove_file(app_dir.join(&old)) {
                    tracing::warn!(
                        "could not remove old backup {}: {e}",
                        app_dir.join(&old).display()
                    );
                }
            }
            Ok(Some(version))
        }
        Target::Command { argv } => {
            crate::exec::Cmd::new(&argv[0])
                .args(&argv[1..])
                .env("ARCHY_BACKUP_APP", app)
                .env("ARCHY_BACKUP_FILE", name)
                .env("ARCHY_BACKUP_SHA256", sha)
                .stdin_bytes(content.to_vec())
                .with_limit(COMMAND_LIMIT)
                .run()?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/mnt/usb\\040disk"), "/mnt/usb disk");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn a_source_outside_its_volume_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir(&root).unwrap();
        fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let err = read_inside(&root, &root.join("up/secret")).unwrap_err();
        assert!(format!("{err:#}").contains("outside"), "{err:#}");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        assert!(source_stamp(&root.join("link")).is_err());
        fs::write(root.join("ok"), "fine").unwrap();
        assert_eq!(read_inside(&root, &root.join("ok")).unwrap().0, b"fine");
    }
}
