//! Small status records under `<state-dir>/status/<concern>.json`, one file per concern so
//! commands under different locks never overwrite each other's record. `archy status` reads them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;

pub fn status_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("status")
}

/// The state directory's own entries, with a label for errors: no manifest may point a path
/// into them. App data directories beside them (`<state-dir>/bitcoin/…`) are not archy's.
pub fn reserved_dirs(state_dir: &Path) -> Vec<(String, PathBuf)> {
    [
        (
            "archy's secrets directory",
            crate::secret::secrets_dir(state_dir),
        ),
        ("archy's status directory", status_dir(state_dir)),
        ("archy's update journal", state_dir.join("update")),
        ("archy's cache directory", state_dir.join("cache")),
        (
            "archy's restart-pending directory",
            crate::render::pending_dir(state_dir),
        ),
    ]
    .into_iter()
    .map(|(label, dir)| (label.to_string(), dir))
    .collect()
}

/// Now as RFC 3339 UTC with seconds, for records and file names.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Record the outcome of a command (`at` is added). Failures to record are logged, not fatal:
/// a full disk must not turn a converged reconcile into a failed one.
pub fn record(state_dir: &Path, concern: &str, mut value: serde_json::Value) {
    if let Some(object) = value.as_object_mut() {
        object.insert("at".into(), now_rfc3339().into());
    }
    let result: Result<()> = (|| {
        let dir = status_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let text = crate::output::redact(&serde_json::to_string_pretty(&value)?);
        crate::fsutil::replace_quick(&dir.join(format!("{concern}.json")), text.as_bytes(), 0o644)
    })();
    if let Err(err) = result {
        tracing::warn!(
            "could not record {concern} status under {}: {err:#}",
            state_dir.display()
        );
    }
}

/// Read a concern's last record, if any.
pub fn read(state_dir: &Path, concern: &str) -> Option<serde_json::Value> {
    let text =
        std::fs::read_to_string(status_dir(state_dir).join(format!("{concern}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}
