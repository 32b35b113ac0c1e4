//! Atomic file writes: temp file in the same directory, mode set, write, fsync, rename, fsync
//! the directory. A crash at any point leaves the old file or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Write `contents` to `path` atomically with permission bits `mode`.
///
/// Refuses to write through a symlink at `path`, and requires the parent to exist and be a
/// directory (a missing parent usually means a wrong path, not a directory to invent).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomic_owned(path, contents, mode, None)
}

/// `write_atomic`, also setting owner and group (uid, gid) on the new file before the rename,
/// e.g. to keep the owner the file had.
pub fn write_atomic_owned(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    check_writable_target(path)?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(parent)
        .with_context(|| format!("failed to create a temporary file in {}", parent.display()))?;
    // The umask may have narrowed the mode at creation: set it exactly before any content lands.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| {
            format!(
                "failed to set mode {mode:o} on a temporary file in {}",
                parent.display()
            )
        })?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid)).with_context(|| {
            format!(
                "failed to set owner {uid}:{gid} on a temporary file in {}",
                parent.display()
            )
        })?;
    }
    tmp.write_all(contents)
        .with_context(|| format!("failed to write a temporary file for {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("failed to flush a temporary file for {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to rename a temporary file over {}", path.display()))?;
    sync_dir(parent)?;
    remove_stale_temps(parent, &name.to_string_lossy());
    Ok(())
}

/// Remove temp files a killed earlier write of the same target left behind. Writers of one
/// target hold that concern's lock, so no live write owns them.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(&prefix) && file_name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Fail when `path` is a symlink or its parent is missing or not a directory.
pub fn check_writable_target(path: &Path) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            bail!(
                "{} is a symlink; refusing to write through it",
                path.display()
            );
        }
        if meta.is_dir() {
            bail!("{} is a directory, expected a file", path.display());
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        match fs::metadata(parent) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!(
                "parent {} of {} is not a directory",
                parent.display(),
                path.display()
            ),
            Err(_) => bail!(
                "parent directory {} of {} does not exist",
                parent.display(),
                path.display()
            ),
        }
    }
    Ok(())
}

/// Fail when a directory on the way to `path` is a symlink: a file archy renders must land
/// where the manifest says, not wherever a link (made by someone who can write a parent)
/// points.
pub fn check_no_symlinked_parents(path: &Path) -> Result<()> {
    let mut dir = std::path::PathBuf::new();
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    for component in parent.components() {
        dir.push(component);
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "{} is a symlink on the way to {}; refusing to write through it",
                dir.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Replace `path` atomically (temp file + rename) without fsync: readers never see a torn file,
/// but after a power cut the old or an empty file may come back. For status records that are
/// rewritten every run and only read as hints (a fsync pair costs ~1 ms per 30-second tick).
pub fn replace_quick(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".status.")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(parent)
        .with_context(|| format!("failed to create a temporary file in {}", parent.display()))?;
    tmp.write_all(contents)
        .with_context(|| format!("failed to write a temporary file for {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to rename a temporary file over {}", path.display()))?;
    Ok(())
}

/// Replace `path` (absolute or relative to the working directory) in a directory reached
/// without following symlinks, for a file a root process writes into a directory others may
/// own (node_exporter's textfile directory): every directory on the way is opened with
/// `O_NOFOLLOW` from the one before it, so a symlink anywhere is refused. Below a directory
/// another user controls (owns, or can write without the sticky bit: Debian's
/// /var/lib/prometheus is prometheus's) every directory must be root's or ours, so one that
/// user swapped in is refused; `path`'s own directory may otherwise be another user's. The file
/// is written as a fresh `O_EXCL` temporary file and renamed over `path` through the
/// directory's handle: a symlink or hard link at `path` is replaced, never written through.
/// Readers never see half a file; no fsync (like [`replace_quick`]).
pub fn replace_under_dir(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    use std::path::Component;
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    let start = if parent.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().context("failed to read the working directory")?
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let open_dir = |at: Option<&std::os::fd::OwnedFd>, p: &Path| {
        match at {
            Some(fd) => rustix::fs::openat(fd, p, dir_flags, Mode::empty()),
            None => rustix::fs::openat(rustix::fs::CWD, p, dir_flags, Mode::empty()),
        }
        .map_err(std::io::Error::from)
    };
    let mut walked = PathBuf::from("/");
    let mut dir = open_dir(None, Path::new("/"))
        .with_context(|| format!("failed to open directory {}", walked.display()))?;
    let mut parts: Vec<Component> = start.components().collect();
    parts.extend(parent.components());
    let parts: Vec<&std::ffi::OsStr> = parts
        .iter()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(*n),
            Component::ParentDir => Some(std::ffi::OsStr::new("..")),
            _ => None,
        })
        .collect();
    // A directory another user controls may lie on the way (Debian's /var/lib/prometheus
    // belongs to prometheus): with every component opened O_NOFOLLOW that user cannot point
    // the walk outside directories they own, only swap in one of their own. So below such a
    // directory, every directory must be root's or ours: a swapped-in one is refused.
    let mut controlled_by: Option<String> = None;
    for part in &parts {
        check_on_the_way(&dir, &walked, &mut controlled_by, path)?;
        walked.push(part);
        dir = open_dir(Some(&dir), Path::new(part)).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ELOOP)
                || e.raw_os_error() == Some(libc::ENOTDIR)
            {
                " (a symlink or not a directory; archy does not follow symlinks here)"
            } else {
                ""
            };
            anyhow::anyhow!("failed to open directory {}{hint}: {e}", walked.display())
        })?;
    }
    // The textfile directory itself may be another user's (node_exporter's), but not below a
    // directory another user controls.
    if let Some(above) = &controlled_by {
        let stat = rustix::fs::fstat(&dir)?;
        if stat.st_uid != 0 && stat.st_uid != crate::procinfo::euid() {
            anyhow::bail!(
                "refusing to write {}: {} is owned by uid {} and lies below {above}",
                path.display(),
                walked.display(),
                stat.st_uid
            );
        }
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", hex::encode(random_bytes::<6>()?)));
    let tmp = rustix::fs::openat(
        &dir,
        Path::new(&tmp_name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("failed to create a temporary file in {}", walked.display()))?;
    let result = (|| -> Result<()> {
        let mut file = File::from(tmp);
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        rustix::fs::renameat(&dir, Path::new(&tmp_name), &dir, Path::new(name))?;
        Ok(())
    })();
    if let Err(err) = result {
        let _ = rustix::fs::unlinkat(&dir, Path::new(&tmp_name), rustix::fs::AtFlags::empty());
        return Err(err).with_context(|| format!("failed to replace {}", path.display()));
    }
    Ok(())
}

/// One directory on the way (not the last): below a directory another user controls it must
/// be root's or ours; if it is itself controlled by another user (owned, or writable by group
/// or others without the sticky bit), what lies below is held to that.
fn check_on_the_way(
    dir: &std::os::fd::OwnedFd,
    walked: &Path,
    controlled_by: &mut Option<String>,
    path: &Path,
) -> Result<()> {
    let stat = rustix::fs::fstat(dir)?;
    let me = crate::procinfo::euid();
    let foreign = stat.st_uid != 0 && stat.st_uid != me;
    if foreign {
        if let Some(above) = controlled_by.as_deref() {
            anyhow::bail!(
                "refusing to write {}: {} is owned by uid {} and lies below {above}",
                path.display(),
                walked.display(),
                stat.st_uid
            );
        }
        *controlled_by = Some(format!(
            "{}, which uid {} owns",
            walked.display(),
            stat.st_uid
        ));
    } else if stat.st_mode & 0o022 != 0 && stat.st_mode & 0o1000 == 0 {
        *controlled_by = Some(format!(
            "{}, which other users can write (mode {:o})",
            walked.display(),
            stat.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(bytes)
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle =
        File::open(dir).with_context(|| format!("failed to open directory {}", dir.display()))?;
    handle
        .sync_all()
        .with_context(|| format!("failed to sync directory {}", dir.display()))
}

/// Create a directory (and parents) and set its mode exactly.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set mode {mode:o} on {}", dir.display()))
}

/// Append one line to a file (created 0644), fsynced: for history logs.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("failed to open {} for appending", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("failed to append to {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("failed to flush {}", path.display()))
}

/// A directory or file another user could change under archy (running as root).
#[derive(Debug)]
pub struct Untrusted(pub String);

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Untrusted {}

/// `ls -l` rendering of a type letter and permission bits, with s/S and t/T for the special
/// bits: `mode_string('d', 0o700)` is `drwx------`.
pub fn mode_string(type_letter: char, mode: u32) -> String {
    let mut out = String::with_capacity(10);
    out.push(type_letter);
    let triplets = [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ];
    for (shift, special, lower, upper) in triplets {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        out.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        let exec = bits & 0o1 != 0;
        out.push(match (mode & special != 0, exec) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

/// `0755 (drwxr-xr-x) owned by nobody (uid 65534)`, for errors about a path's safety.
pub fn describe_owner_mode(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let letter = if meta.is_dir() { 'd' } else { '-' };
    format!(
        "{:04o} ({}) owned by {} (uid {})",
        meta.mode() & 0o7777,
        mode_string(letter, meta.mode() & 0o7777),
        crate::procinfo::user_name(meta.uid()),
        meta.uid()
    )
}

/// Refuse a path another user could write: it must be owned by root or by this process's user,
/// and not group- or world-writable. `what` names it in the error ("run directory").
pub fn check_trusted(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path)
        .with_context(|| format!("failed to inspect {what} {}", path.display()))?;
    let euid = crate::procinfo::euid();
    let owner_ok = meta.uid() == 0 || meta.uid() == euid;
    if !owner_ok || meta.mode() & 0o022 != 0 {
        return Err(anyhow::Error::new(Untrusted(format!(
            "{what} {} is {}: another user could change what archy (uid {euid}) reads or locks \
             there; it must be owned by root{} and not writable by group or others",
            path.display(),
            describe_owner_mode(&meta),
            if euid == 0 {
                String::new()
            } else {
                format!(" or uid {euid}")
            },
        ))));
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists, the missing rest appended (`.` and `..`
/// in it applied lexically), for policy checks on paths that may not exist yet.
pub fn resolve_existing(path: &Path) -> std::path::PathBuf {
    let components: Vec<std::path::Component> = path.components().collect();
    // The longest prefix that resolves, then the rest applied lexically.
    for split in (1..=components.len()).rev() {
        let prefix: std::path::PathBuf = components[..split].iter().collect();
        if let Ok(mut resolved) = fs::canonicalize(&prefix) {
            for component in &components[split..] {
                match component {
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    std::path::Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            return resolved;
        }
    }
    path.to_path_buf()
}

/// Read a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Read a small regular file that may not exist, without following a final symlink, blocking
/// on a FIFO or reading more than `max` bytes (a record a tick reads every 30 s: a FIFO or a
/// link to a device there must fail fast, not hang the tick or exhaust memory).
pub fn read_regular_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to open {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("failed to stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file: refused", path.display());
    }
    if meta.len() > max {
        bail!(
            "{} is {} bytes, more than the {max} expected: refused",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{} grew past {max} bytes while read: refused",
            path.display()
        );
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn bounded_reads_refuse_fifos_links_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.json");
        assert!(read_regular_bounded(&f, 10).unwrap().is_none());
        fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular_bounded(&f, 5).unwrap().unwrap(), b"12345");
        let err = read_regular_bounded(&f, 4).unwrap_err();
        assert!(err.to_string().contains("more than the 4"), "{err:#}");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_regular_bounded(&link, 10).is_err());
        let fifo = dir.path().join("fifo.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular_bounded(&fifo, 10).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err:#}");
    }

    #[test]
    fn resolve_existing_follows_links_and_applies_the_missing_rest() {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(base.join("allowed")).unwrap();
        std::os::unix::fs::symlink("/", base.join("allowed/root")).unwrap();
        assert_eq!(
            resolve_existing(&base.join("allowed/root/etc")),
            Path::new("/etc")
        );
        assert_eq!(
            resolve_existing(&base.join("allowed/missing/../../x/y")),
            base.join("x/y")
        );
        assert_eq!(
            resolve_existing(&base.join("allowed/new/file")),
            base.join("allowed/new/file")
        );
    }

    #[test]
    fn refuses_symlink_and_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err:#}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        let err = write_atomic(&dir.path().join("nope/f"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err:#}");
    }
}
