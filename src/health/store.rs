//! Each app's health state in `<state-dir>/health/<app>.json`, written atomically (temp file,
//! fsync, rename) so the failure count and the last evidence survive a crash or kill -9. The
//! file is rewritten only when the state changed: a healthy no-op tick writes nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::HealthState;

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("health")
}

pub fn path(state_dir: &Path, app: &str) -> PathBuf {
    dir(state_dir).join(format!("{app}.json"))
}

/// The persisted state; missing → default. A corrupt file is logged and treated as no state
/// (the next tick rewrites it): a torn record must not stop reconcile. A file that cannot be
/// read at all (a directory there, an I/O error) gives no state with its `store_error` set:
/// the app's health is then `unknown`.
pub fn load(state_dir: &Path, app: &str) -> HealthState {
    let path = path(state_dir, app);
    match crate::fsutil::read_optional(&path) {
        Ok(None) => HealthState::default(),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring unreadable health state {}: {e}", path.display());
            HealthState::default()
        }),
        Err(e) => {
            tracing::warn!("{e:#}");
            HealthState {
                store_error: Some(format!("cannot read health state: {e:#}")),
                ..HealthState::default()
            }
        }
    }
}

/// Write the state atomically.
pub fn save(state_dir: &Path, app: &str, state: &HealthState) -> Result<()> {
    let write = || -> Result<()> {
        let dir = dir(state_dir);
        if !dir.is_dir() {
            crate::fsutil::ensure_dir(&dir, 0o755)?;
        }
        let text = serde_json::to_string_pretty(state).context("failed to encode health state")?;
        crate::fsutil::write_atomic(&path(state_dir, app), text.as_bytes(), 0o644)
    };
    write().with_context(|| {
        format!(
            "failed to record the health of app {app} in {}",
            path(state_dir, app).display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Status;

    #[test]
    fn saves_loads_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "web"), HealthState::default());
        let state = HealthState {
            status: Status::Unhealthy,
            consecutive_failures: 4,
            last_error: Some("HTTP 500".into()),
            ..Default::default()
        };
        save(dir.path(), "web", &state).unwrap();
        assert_eq!(load(dir.path(), "web"), state);
        std::fs::write(path(dir.path(), "web"), "{torn").unwrap();
        assert_eq!(load(dir.path(), "web"), HealthState::default());
        // A symlink planted at the record is refused, not written through.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(path(dir.path(), "web")).unwrap();
        std::os::unix::fs::symlink(&target, path(dir.path(), "web")).unwrap();
        assert!(save(dir.path(), "web", &state).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
