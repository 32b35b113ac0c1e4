//! Small status records under `<state-dir>/status/<concern>.json`, one file per concern so
//! commands under different locks never overwrite each other's record. `archy status` reads them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;

pub fn status_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("status")
}

/// `<state-dir>/restart-pending/<app>`: set before a consumed file is rewritten, cleared once the
/// app's container was restarted, so a crash in between still restarts it on the next run.
pub fn pending_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("restart-pending")
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
        ("archy's restart-pending directory", pending_dir(state_dir)),
        ("archy's backup state directory", state_dir.join("backup")),
        ("archy's image records", state_dir.join("images")),
    ]
    .into_iter()
    .map(|(label, dir)| (label.to_string(), dir))
    .collect()
}

/// Now as RFC 3339 UTC with seconds, for records and file names: archy's one clock
/// ([`crate::clock`]), so a simulated tick is recorded at its simulated time; the system clock
/// when the override is malformed (a record is never lost over it).
pub fn now_rfc3339() -> String {
    match crate::clock::now() {
        Ok(secs) => crate::clock::rfc3339(secs),
        Err(_) => humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    }
}

/// Record the outcome of a command (`at` is added). Failures to record are logged, not fatal:
/// a full disk must not turn a converged reconcile into a failed one. Returns the record as
/// written (what [`read`] would now give), None when it could not be written.
pub fn record(
    state_dir: &Path,
    concern: &str,
    mut value: serde_json::Value,
) -> Option<serde_json::Value> {
    if let Some(object) = value.as_object_mut() {
        object.insert("at".into(), now_rfc3339().into());
    }
    let result: Result<()> = (|| {
        let dir = status_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let text = crate::output::redact(&serde_json::to_string_pretty(&value)?);
        crate::fsutil::replace_quick(&dir.join(format!("{concern}.json")), text.as_bytes(), 0o644)
    })();
    match result {
        Ok(()) => Some(value),
        Err(err) => {
            tracing::warn!(
                "could not record {concern} status under {}: {err:#}",
                state_dir.display()
            );
            None
        }
    }
}

/// The record a failed `--metrics-file` write leaves (removed by the next good write):
/// `archy status` shows it as a warning.
pub const METRICS: &str = "metrics";

/// Remove a concern's record if there is one (one `unlink`; nothing there is the usual case).
pub fn clear(state_dir: &Path, concern: &str) {
    let path = status_dir(state_dir).join(format!("{concern}.json"));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!("could not remove {}: {err}", path.display()),
    }
}

/// The record a full reconcile (every app, not a dry run) leaves when it ran to its end,
/// whatever its apps' outcomes: its `at` is when reconcile last completed.
pub const RECONCILE_COMPLETED: &str = "reconcile-completed";

/// Why reconcile counts as overdue at `now`, if it does (pure): the last full reconcile
/// completed longer than `max_age` ago, or none ever completed although the state directory
/// has existed (`state_since`, its creation time) for longer than that; whatever the unit's
/// exit status said (a tick that finds its lock held exits 75, which systemd counts as
/// success). A node with no state directory yet has not been asked to run anything.
/// How far in the future a completion record may be dated and still count (clock jitter
/// between ticks, NTP slewing): seconds.
pub const FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

pub fn reconcile_overdue(
    completed: Option<&serde_json::Value>,
    state_since: Option<SystemTime>,
    now: SystemTime,
    max_age: std::time::Duration,
) -> Option<String> {
    let age_of = |at: SystemTime| now.duration_since(at).unwrap_or_default();
    let shown = |age: std::time::Duration| {
        humantime::format_duration(std::time::Duration::from_secs(age.as_secs())).to_string()
    };
    let at = completed
        .and_then(|r| r.get("at"))
        .and_then(serde_json::Value::as_str)
        .and_then(|text| humantime::parse_rfc3339(text).ok());
    match at {
        // Dated in the future (the clock was set back after it, or it ran ahead then): its age
        // would read 0 forever. Past a small skew it proves nothing about reconcile running.
        Some(at) if at > now + FUTURE_SKEW => Some(format!(
            "the last full reconcile is dated {} ({} in the future): the clock was set back              since, and no full reconcile completed after that",
            humantime::format_rfc3339_seconds(at),
            shown(at.duration_since(now).unwrap_or_default())
        )),
        Some(at) => (age_of(at) > max_age).then(|| {
            format!(
                "a full reconcile last completed {} ago (at {}), more than the {} allowed",
                shown(age_of(at)),
                humantime::format_rfc3339_seconds(at),
                humantime::format_duration(max_age)
            )
        }),
        None => state_since
            .filter(|since| age_of(*since) > max_age)
            .map(|since| {
                format!(
                "no full reconcile has completed since the state directory was created {} ago, \
                 more than the {} allowed",
                shown(age_of(since)),
                humantime::format_duration(max_age)
            )
            }),
    }
}

/// When the state directory was created (its modification time where the file system keeps
/// no creation time); None when it does not exist.
pub fn state_dir_since(state_dir: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(state_dir).ok()?;
    meta.created().or_else(|_| meta.modified()).ok()
}

/// Read a concern's last record, if any.
pub fn read(state_dir: &Path, concern: &str) -> Option<serde_json::Value> {
    let text =
        std::fs::read_to_string(status_dir(state_dir).join(format!("{concern}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reconcile_is_overdue_when_it_completed_too_long_ago_or_never_on_an_old_state_dir() {
        let now = humantime::parse_rfc3339("2026-01-01T12:00:00Z").unwrap();
        let max = Duration::from_secs(120);
        let rec = |v: serde_json::Value| reconcile_overdue(Some(&v), None, now, max);
        let fresh = Some(now - Duration::from_secs(30));
        let old = Some(now - Duration::from_secs(3600));
        assert_eq!(reconcile_overdue(None, None, now, max), None);
        assert_eq!(reconcile_overdue(None, fresh, now, max), None);
        let never = reconcile_overdue(None, old, now, max).unwrap();
        assert!(
            never.contains("no full reconcile has completed") && never.contains("1h ago"),
            "{never}"
        );
        assert_eq!(
            rec(serde_json::json!({"at": "2026-01-01T11:59:00Z", "exit_code": 1})),
            None
        );
        let late = rec(serde_json::json!({"at": "2026-01-01T11:50:00Z", "exit_code": 0})).unwrap();
        assert!(
            late.contains("10m ago") && late.contains("2m allowed"),
            "{late}"
        );
        // Dated in the future: within the skew it counts, beyond it it is overdue.
        assert_eq!(
            rec(serde_json::json!({"at": "2026-01-01T12:00:50Z", "exit_code": 0})),
            None
        );
        let ahead = rec(serde_json::json!({"at": "2026-01-01T13:00:00Z", "exit_code": 0})).unwrap();
        assert!(
            ahead.contains("1h in the future") && ahead.contains("clock was set back"),
            "{ahead}"
        );
    }
}
