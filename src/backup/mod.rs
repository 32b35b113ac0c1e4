//! Critical state copied off the box when it changes (a manifest's `backup:` key; lnd's static
//! channel backup first). Decide, then act, like `heal/`:
//! - **facts**: each tick stats every backed-up file through its volume's mount point (known
//!   from [`AppState`], so a no-op tick makes no podman call and reads no file's content) and
//!   checks each target (directory there, mounted when required, not read-only, the newest copy
//!   still there);
//! - **plan** (pure, here): [`source_changed`] (size, mtime, ctime, inode) says whether the file
//!   must be read and hashed, [`needs_copy`] which targets lack its content, [`expired`] which
//!   versions go, [`view`] what status says;
//! - **perform** ([`perform`]): read once the size held still across two stats, refuse an
//!   empty file, copy atomically and versioned to each directory (temp + fsync + rename; the
//!   last `keep:` versions kept, named by time and hash), pipe it to each command's stdin, and
//!   write the state (atomically, only when it changed) to `<state-dir>/backup/<app>.json`.
//!
//! A target that fails (missing, unmounted, read-only, full, a command that exits non-zero) is
//! reported by the tick and by `archy status` (exit 1, naming it); the app stays converged, and
//! the copy is retried every tick until the target holds the file again.

pub mod perform;
pub mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::backup::BackupSpec;

/// What a source's stat says about its content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// What archy knows of one target for one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    /// SHA-256 of the content the target holds (as of archy's last copy).
    #[serde(default)]
    pub sha256: Option<String>,
    /// When archy last copied to it (Unix seconds).
    #[serde(default)]
    pub last_success: Option<i64>,
    /// The newest version's file name (directory targets).
    #[serde(default)]
    pub newest: Option<String>,
    /// Why the last attempt failed (cleared by a success or a check that finds it fine).
    #[serde(default)]
    pub error: Option<String>,
}

/// What archy knows of one backed-up file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// The volume's mount point on the host (asked of podman once, then reused).
    #[serde(default)]
    pub mountpoint: Option<PathBuf>,
    /// The stat of the content last read.
    #[serde(default)]
    pub stamp: Option<Stamp>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// When archy first saw the current content (Unix seconds).
    #[serde(default)]
    pub changed_at: Option<i64>,
    /// Why the source was not read this tick, not an error (not there yet, empty, being written).
    #[serde(default)]
    pub pending: Option<String>,
    /// Why the source cannot be backed up (a symlink or special file, outside its volume, too
    /// big, unreadable, its volume not found): status fails on it.
    #[serde(default)]
    pub error: Option<String>,
    /// By target label ([`Target::label`]).
    #[serde(default)]
    pub targets: BTreeMap<String, TargetState>,
}

/// `<state-dir>/backup/<app>.json`: by file entry as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
}

pub fn state_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backup")
}

pub fn state_path(state_dir: &Path, app: &str) -> PathBuf {
    self::state_dir(state_dir).join(format!("{app}.json"))
}

/// The recorded state of an app (empty when there is none; an unreadable one is an error).
pub fn load(state_dir: &Path, app: &str) -> anyhow::Result<AppState> {
    let path = state_path(state_dir, app);
    match crate::fsutil::read_optional(&path)? {
        None => Ok(AppState::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("failed to parse backup state {}: {e}", path.display())),
    }
}

/// Whether the source must be read: no content recorded, or its stat moved (pure).
pub fn source_changed(recorded: Option<&Stamp>, now: &Stamp) -> bool {
    recorded != Some(now)
}

/// What a tick found of a target before copying anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCheck {
    /// Usable; for a directory, whether the newest copy archy made is still there.
    Ready { newest_present: bool },
    /// Missing, unmounted, read-only: the reason.
    Unavailable(String),
}

/// Whether a target must get the content `sha256` (pure): it does not hold it, or its newest
/// copy went away.
pub fn needs_copy(target: &TargetState, sha256: &str, check: &TargetCheck) -> bool {
    match check {
        TargetCheck::Ready { newest_present } => {
            target.sha256.as_deref() != Some(sha256) || !newest_present
        }
        TargetCheck::Unavailable(_) => true,
    }
}

/// A version's file name: `<name>.<UTC time>.<first 12 hex of its SHA-256>`, so names sort by
/// time (pure).
pub fn version_name(name: &str, at: i64, sha256: &str) -> String {
    let time = crate::clock::rfc3339(at).replace(['-', ':'], "");
    format!("{name}.{time}.{}", &sha256[..sha256.len().min(12)])
}

/// The versions of `name` to delete so `keep` remain, oldest first (pure). Only names of the
/// version form are considered; the plain `name` (the newest copy) is never one.
pub fn expired(entries: &[String], name: &str, keep: u32) -> Vec<String> {
    let prefix = format!("{name}.");
    let mut versions: Vec<&String> = entries
        .iter()
        .filter(|e| {
            e.strip_prefix(&prefix).is_some_and(|rest| {
                let mut parts = rest.split('.');
                matches!((parts.next(), parts.next(), parts.next()),
                    (Some(t), Some(h), None) if t.len() == 16 && t.ends_with('Z') && !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            })
        })
        .collect();
    versions.sort();
    let excess = versions.len().saturating_sub(keep as usize);
    versions.into_iter().take(excess).cloned().collect()
}

/// One target of one file, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetView {
    pub target: String,
    /// SHA-256 of the newest version the target holds.
    pub sha256: Option<String>,
    pub last_success: Option<i64>,
    /// Seconds since the last successful copy.
    pub age_seconds: Option<i64>,
    /// It holds the file's current content.
    pub current: bool,
    pub error: Option<String>,
}

/// One backed-up file, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileView {
    pub app: String,
    pub file: String,
    /// SHA-256 of the source's current content (as last read).
    pub sha256: Option<String>,
    pub changed_at: Option<i64>,
    pub pending: Option<String>,
    /// Why the source cannot be backed up (null when it can).
    pub error: Option<String>,
    pub targets: Vec<TargetView>,
    /// Why this file makes status fail (empty when fine).
    pub problems: Vec<String>,
}

/// What status says of an app's backups (pure): every target with an error is a problem at
/// once; a change no target holds after `alert_after` is one too.
pub fn view(app: &str, spec: &BackupSpec, state: &AppState, now: i64) -> Vec<FileView> {
    spec.files
        .iter()
        .map(|file| {
            let recorded = state.files.get(file.as_str());
            let fs = recorded.cloned().unwrap_or_default();
            let targets: Vec<TargetView> = spec
                .targets
                .iter()
                .map(|t| {
                    let label = t.label();
                    let ts = fs.targets.get(&label).cloned().unwrap_or_default();
                    TargetView {
                        current: fs.sha256.is_some() && ts.sha256 == fs.sha256,
                        age_seconds: ts.last_success.map(|at| (now - at).max(0)),
                        target: label,
                        sha256: ts.sha256,
                        last_success: ts.last_success,
                        error: ts.error,
                    }
                })
                .collect();
            let mut problems: Vec<String> = fs
                .error
                .iter()
                .map(|e| format!("backup {app} {file}: {e}"))
                .collect();
            problems.extend(targets.iter().filter_map(|t| {
                t.error
                    .as_ref()
                    .map(|e| format!("backup {app} {file}: target {}: {e}", t.target))
            }));
            if let (Some(_), Some(changed_at)) = (&fs.sha256, fs.changed_at) {
                let waited = now - changed_at;
                if !targets.iter().any(|t| t.current)
                    && waited >= spec.alert_after.0.as_secs() as i64
                {
                    problems.push(format!(
                        "backup {app} {file}: changed {waited}s ago and no target holds the change"
                    ));
                }
            }
            FileView {
                app: app.to_string(),
                file: file.to_string(),
                sha256: fs.sha256,
                changed_at: fs.changed_at,
                pending: fs.pending,
                error: fs.error,
                targets,
                problems,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64, mtime: i128) -> Stamp {
        Stamp {
            size,
            mtime_ns: mtime,
            ctime_ns: mtime,
            ino: 7,
        }
    }

    #[test]
    fn only_a_moved_stat_reads_the_source() {
        assert!(source_changed(None, &stamp(1, 1)));
        assert!(!source_changed(Some(&stamp(1, 1)), &stamp(1, 1)));
        assert!(source_changed(Some(&stamp(1, 1)), &stamp(2, 1)));
        assert!(source_changed(Some(&stamp(1, 1)), &stamp(1, 2)));
    }

    #[test]
    fn a_target_gets_a_copy_when_it_lacks_the_content_or_lost_it() {
        let held = TargetState {
            sha256: Some("aa".into()),
            ..TargetState::default()
        };
        let ready = |present| TargetCheck::Ready {
            newest_present: present,
        };
        assert!(!needs_copy(&held, "aa", &ready(true)));
        assert!(needs_copy(&held, "aa", &ready(false)));
        assert!(needs_copy(&held, "bb", &ready(true)));
        assert!(needs_copy(
            &held,
            "aa",
            &TargetCheck::Unavailable("gone".into())
        ));
    }

    #[test]
    fn versions_are_named_by_time_and_hash_and_the_oldest_expire() {
        let sha = "0123456789abcdef0123";
        assert_eq!(
            version_name("channel.backup", 1_765_000_000, sha),
            "channel.backup.20251206T054640Z.0123456789ab"
        );
        let entries: Vec<String> = [
            "channel.backup",
            "channel.backup.20251206T054640Z.0123456789ab",
            "channel.backup.20251206T054641Z.aa",
            "channel.backup.20251205T000000Z.bb",
            ".channel.backup.x.tmp",
            "channel.backup.notes",
            "other.20251205T000000Z.bb",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            expired(&entries, "channel.backup", 2),
            vec!["channel.backup.20251205T000000Z.bb".to_string()]
        );
        assert!(expired(&entries, "channel.backup", 3).is_empty());
    }

    #[test]
    fn status_names_a_failing_target_and_a_change_not_copied_in_time() {
        let spec: BackupSpec = serde_norway::from_str(
            "files: [\"d:/x/channel.backup\"]\ntargets: [{dir: /mnt/a}, {command: [cat]}]\nalert_after: 5m\n",
        )
        .unwrap();
        let mut state = AppState::default();
        let mut fs = FileState {
            sha256: Some("new".into()),
            changed_at: Some(1_000),
            ..FileState::default()
        };
        fs.targets.insert(
            "/mnt/a".into(),
            TargetState {
                sha256: Some("old".into()),
                last_success: Some(900),
                newest: None,
                error: Some("directory /mnt/a is missing (not mounted?)".into()),
            },
        );
        state.files.insert("d:/x/channel.backup".into(), fs.clone());
        let v = view("lnd", &spec, &state, 1_100);
        assert_eq!(
            v[0].problems,
            vec!["backup lnd d:/x/channel.backup: target /mnt/a: directory /mnt/a is missing (not mounted?)"]
        );
        assert_eq!(v[0].targets[0].age_seconds, Some(200));
        assert!(!v[0].targets[0].current);
        let v = view("lnd", &spec, &state, 1_300);
        assert_eq!(
            v[0].problems[1],
            "backup lnd d:/x/channel.backup: changed 300s ago and no target holds the change"
        );
        // The command target holds it: no alert, only the failing directory.
        fs.targets.insert(
            "command cat".into(),
            TargetState {
                sha256: Some("new".into()),
                last_success: Some(1_010),
                ..TargetState::default()
            },
        );
        state.files.insert("d:/x/channel.backup".into(), fs);
        let v = view("lnd", &spec, &state, 1_300);
        assert_eq!(v[0].problems.len(), 1);
        assert!(v[0].targets[1].current);
        // A source that cannot be backed up is a problem of its own.
        state.files.get_mut("d:/x/channel.backup").unwrap().error =
            Some("/v/x/channel.backup is not a regular file: refused".into());
        let v = view("lnd", &spec, &state, 1_300);
        assert_eq!(
            v[0].problems[0],
            "backup lnd d:/x/channel.backup: /v/x/channel.backup is not a regular file: refused"
        );
    }
}
