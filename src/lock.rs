//! RAII file locks (std's `File::try_lock`, flock semantics): one per concern, taken first.
//! The lock is released when the guard drops or the process dies, so a SIGKILL never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often a waiting run retries the lock.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Lock held by another archy run for longer than `--lock-wait` (exit 75).
#[derive(Debug)]
pub struct LockBusy {
    pub path: PathBuf,
    pub waited: Duration,
}

impl std::fmt::Display for LockBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lock {} is held by another archy run (waited {:.1}s); try again later",
            self.path.display(),
            self.waited.as_secs_f64()
        )
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

/// Take the lock at `path` (creating it and its directory), waiting up to `wait`.
pub fn acquire(path: &Path, mode: Mode, wait: Duration) -> Result<LockGuard> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create lock directory {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("failed to open lock file {}", path.display()))?;
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
                    }));
                }
                if !announced {
                    tracing::info!(
                        "waiting up to {:.0?} for lock {} held by another archy run",
                        wait,
                        path.display()
                    );
                    announced = true;
                }
                std::thread::sleep(POLL_INTERVAL.min(wait - waited));
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
    fn shared_holders_coexist_and_exclude_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let a = acquire(&path, Mode::Shared, Duration::ZERO).unwrap();
        let _b = acquire(&path, Mode::Shared, Duration::ZERO).unwrap();
        assert!(acquire(&path, Mode::Exclusive, Duration::ZERO).is_err());
        drop(a);
        drop(_b);
        assert!(acquire(&path, Mode::Exclusive, Duration::ZERO).is_ok());
    }
}
