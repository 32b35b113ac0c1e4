//! RAII file locks (std's `File::try_lock`, flock semantics): one per concern, taken first.
//! The lock is released when the guard drops or the process dies, so a SIGKILL never leaves a
//! stale lock behind.
//!
//! flock needs only a read handle, so a lock file another user can open is a lock another user
//! can hold: lock directories are created 0700, must be owned by root (or archy's user) and not
//! writable by others, lock files are 0600 and opened without following a symlink. When a lock
//! stays busy, `/proc/locks` names the holder; a holder that is not archy of the same user is
//! reported as such and is a failure (exit 1), not a busy tick (exit 75).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::procinfo::Process;

/// How often a waiting run retries the lock.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Mode of lock files and of the lock directories archy creates.
const LOCK_FILE_MODE: u32 = 0o600;
const LOCK_DIR_MODE: u32 = 0o700;

/// Lock held by someone else for longer than `--lock-wait` (exit 75, or 1 for a holder that is
/// not an archy run of this user).
#[derive(Debug)]
pub struct LockBusy {
    pub path: PathBuf,
    pub waited: Duration,
    /// Holders named by `/proc/locks` (empty when it names none we can see).
    pub holders: Vec<Process>,
}

impl LockBusy {
    /// Some holder is not archy run by this user (another program, or another user).
    pub fn foreign(&self) -> bool {
        self.holders.iter().any(|h| !h.is_our_archy())
    }
}

impl std::fmt::Display for LockBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waited = self.waited.as_secs_f64();
        let list: Vec<String> = self
            .holders
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        if self.foreign() {
            write!(
                f,
                "lock {} is held by {}, which is not an archy run of this user (waited {waited:.1}s); \
                 archy cannot converge until it lets go",
                self.path.display(),
                list.join(", ")
            )
        } else if list.is_empty() {
            write!(
                f,
                "lock {} is held by another archy run (waited {waited:.1}s); try again later",
                self.path.display()
            )
        } else {
            write!(
                f,
                "lock {} is held by another archy run, {} (waited {waited:.1}s); try again later",
                self.path.display(),
                list.join(", ")
            )
        }
    }
}
impl std::error::Error for LockBusy {}

/// Exclusive (one holder) or shared (many holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Create the lock's directory (0700) when missing and check it is not writable by others.
fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(LOCK_DIR_MODE)
            .create(dir)
            .with_context(|| format!("failed to create lock directory {}", dir.display()))?;
    }
    crate::fsutil::check_trusted(dir, "lock directory")
}

/// Open (or create, 0600) the lock file without following a symlink; it must be a regular
/// file owned by this user. A lock file of an older archy (0644) is narrowed to 0600.
fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow::anyhow!(
                    "lock file {} is a symlink; refusing to follow it (remove it)",
                    path.display()
                )
            } else {
                anyhow::Error::new(e)
                    .context(format!("failed to open lock file {}", path.display()))
            }
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("failed to inspect lock file {}", path.display()))?;
    let euid = crate::procinfo::euid();
    if !meta.is_file() || meta.uid() != euid {
        return Err(anyhow::Error::new(crate::fsutil::Untrusted(format!(
            "lock file {} is {}{}; only archy's user (uid {euid}) may own it: remove it",
            path.display(),
            if meta.is_file() {
                ""
            } else {
                "not a regular file, "
            },
            crate::fsutil::describe_owner_mode(&meta)
        ))));
    }
    if meta.mode() & 0o7777 != LOCK_FILE_MODE {
        file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE))
            .with_context(|| format!("failed to set mode 0600 on lock file {}", path.display()))?;
    }
    Ok(file)
}

/// Who holds the lock on `file`, from `/proc/locks`.
fn holders(file: &File) -> Vec<Process> {
    match file.metadata() {
        Ok(meta) => crate::procinfo::lock_holders(meta.dev(), meta.ino())
            .into_iter()
            .filter(|pid| *pid != std::process::id())
            .map(Process::inspect)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Take the lock at `path` (creating it and its directory), waiting up to `wait`.
pub fn acquire(path: &Path, mode: Mode, wait: Duration) -> Result<LockGuard> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir)?;
    }
    let file = open_lock_file(path)?;
    let started = Instant::now();
    let mut announced = false;
    loop {
        let attempt = match mode {
            Mode::Exclusive => file.try_lock(),
            Mode::Shared => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => {
                return Ok(LockGuard {
                    file,
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::WouldBlock) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(anyhow::Error::new(LockBusy {
                        path: path.to_path_buf(),
                        waited,
                        holders: holders(&file),
                    }));
                }
                if !announced {
                    let busy = LockBusy {
                        path: path.to_path_buf(),
                        waited,
                        holders: holders(&file),
                    };
                    if busy.foreign() {
                        tracing::warn!("waiting up to {wait:.0?}: {busy}");
                    } else {
                        tracing::info!(
                            "waiting up to {:.0?} for lock {} held by another archy run",
                            wait,
                            path.display()
                        );
                    }
                    announced = true;
                }
                std::thread::sleep(POLL_INTERVAL.min(wait.checked_sub(waited).unwrap()));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_holder_times_out_with_lock_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.lock");
        let _held = acquire(&path, Mode::Exclusive, Duration::ZERO).unwrap();
        let err = acquire(&path, Mode::Exclusive, Duration::from_millis(120)).unwrap_err();
        assert!(err.downcast_ref::<LockBusy>().is_some(), "{err:#}");
    }

    #[test]
    fn lock_files_are_0600_in_a_0700_dir_and_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let path = run.join("a.lock");
        drop(acquire(&path, Mode::Exclusive, Duration::ZERO).unwrap());
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&path), 0o600);
        // An older archy's 0644 lock file is narrowed.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(acquire(&path, Mode::Exclusive, Duration::ZERO).unwrap());
        assert_eq!(mode(&path), 0o600);
        // A planted symlink is refused and its target never created.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, run.join("b.lock")).unwrap();
        let err = acquire(&run.join("b.lock"), Mode::Exclusive, Duration::ZERO).unwrap_err();
        assert!(format!("{err:#}").contains("is a symlink"), "{err:#}");
        assert!(!elsewhere.exists());
        // A directory others can write is refused, naming its mode and owner.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = acquire(&path, Mode::Exclusive, Duration::ZERO).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("0777 (drwxrwxrwx) owned by"), "{text}");
        assert!(text.contains(&run.display().to_string()), "{text}");
        assert!(err.downcast_ref::<crate::fsutil::Untrusted>().is_some());
    }

    #[test]
    fn shared_holders_coexist_and_exclude_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let a = acquire(&path, Mode::Shared, Duration::ZERO).unwrap();
        let b = acquire(&path, Mode::Shared, Duration::ZERO).unwrap();
        assert!(acquire(&path, Mode::Exclusive, Duration::ZERO).is_err());
        drop(a);
        drop(b);
        assert!(acquire(&path, Mode::Exclusive, Duration::ZERO).is_ok());
    }
}
