//! Update state under `<state-dir>/update/`:
//!
//! - `pending.json`: the marker the updater arms right after switching `current`
//!   (`version`, `previous`, `armed_at`); the boot check probes while it exists.
//! - `rollback.json`: a rollback in progress (`from`, `to`, `reason`), written before `current`
//!   moves and removed once the restart has run, so a rollback killed half-way is finished by
//!   the next `archy rollback` instead of being mistaken for "already rolled back".
//! - `history.jsonl`: one JSON line per outcome (verified, rolled back, verify failed).
//! - `bad-versions`: one version per line that failed its boot check; the updater refuses them.
//!
//! All JSON files are written atomically; the line files are appended and fsynced.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// The marker armed after an update: probe `version`; on failure go back to `previous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    pub previous: Option<String>,
    pub armed_at: String,
}

/// A rollback that has started: `current` is being (or has been) moved from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackIntent {
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub started_at: String,
}

/// Paths of the update state files.
#[derive(Debug, Clone)]
pub struct Journal {
    pub dir: PathBuf,
}

impl Journal {
    pub fn new(state_dir: &Path) -> Self {
        Journal {
            dir: state_dir.join("update"),
        }
    }

    pub fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    pub fn intent_path(&self) -> PathBuf {
        self.dir.join("rollback.json")
    }

    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    pub fn bad_versions_path(&self) -> PathBuf {
        self.dir.join("bad-versions")
    }

    fn ensure_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create directory {}", self.dir.display()))
    }

    pub fn pending(&self) -> Result<Option<Pending>> {
        read_json(&self.pending_path())
    }

    pub fn write_pending(&self, pending: &Pending) -> Result<()> {
        self.write_json(&self.pending_path(), pending)
    }

    pub fn clear_pending(&self) -> Result<()> {
        remove_optional(&self.pending_path())
    }

    pub fn intent(&self) -> Result<Option<RollbackIntent>> {
        read_json(&self.intent_path())
    }

    pub fn write_intent(&self, intent: &RollbackIntent) -> Result<()> {
        self.write_json(&self.intent_path(), intent)
    }

    pub fn clear_intent(&self) -> Result<()> {
        remove_optional(&self.intent_path())
    }

    /// Append one event to `history.jsonl` (`at` is added).
    pub fn append_history(&self, mut event: serde_json::Value) -> Result<()> {
        self.ensure_dir()?;
        if let Some(object) = event.as_object_mut() {
            object.insert("at".into(), crate::state::now_rfc3339().into());
        }
        fsutil::append_line(&self.history_path(), &event.to_string())
    }

    /// Every recorded event, oldest first (unparseable lines skipped).
    pub fn history(&self) -> Result<Vec<serde_json::Value>> {
        let Some(bytes) = fsutil::read_optional(&self.history_path())? else {
            return Ok(Vec::new());
        };
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    pub fn bad_versions(&self) -> Result<Vec<String>> {
        let Some(bytes) = fsutil::read_optional(&self.bad_versions_path())? else {
            return Ok(Vec::new());
        };
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// Record a version that failed its boot check (once; a second failure adds nothing).
    pub fn add_bad_version(&self, version: &str) -> Result<bool> {
        if self.bad_versions()?.iter().any(|v| v == version) {
            return Ok(false);
        }
        self.ensure_dir()?;
        fsutil::append_line(&self.bad_versions_path(), version)?;
        Ok(true)
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        self.ensure_dir()?;
        let text = serde_json::to_string_pretty(value)
            .with_context(|| format!("failed to encode {}", path.display()))?;
        fsutil::write_atomic(path, format!("{text}\n").as_bytes(), 0o644)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) = fsutil::read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("failed to parse {}", path.display()))
}

fn remove_optional(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fsutil::sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_clears_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        assert_eq!(journal.pending().unwrap(), None);
        let marker = Pending {
            version: "2".into(),
            previous: Some("1".into()),
            armed_at: "2025-01-01T00:00:00Z".into(),
        };
        journal.write_pending(&marker).unwrap();
        assert_eq!(journal.pending().unwrap(), Some(marker));
        journal.clear_pending().unwrap();
        journal.clear_pending().unwrap();
        assert_eq!(journal.pending().unwrap(), None);
    }

    #[test]
    fn bad_versions_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        assert!(journal.add_bad_version("1.7.39").unwrap());
        assert!(!journal.add_bad_version("1.7.39").unwrap());
        assert!(journal.add_bad_version("1.7.38").unwrap());
        assert_eq!(journal.bad_versions().unwrap(), ["1.7.39", "1.7.38"]);
    }
}
