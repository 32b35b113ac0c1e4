//! The post-update boot check (`archy verify-update`'s engine): arm a marker after switching
//! `current`, and later decide → probe → journal → roll back. Also the static tarball check.
//!
//! Every outcome is one [`VerifyReport`]; the command prints it and records it for
//! `archy status`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::journal::{Journal, Pending};
use super::probe::{self, Answer, ProbeConfig};
use super::release::{self, Layout};
use super::rollback::{self, RollbackAction};
use super::tarball;
use crate::ctx::Ctx;
use crate::exit;
use crate::lock::Mode;

/// What a boot check needs besides the context.
#[derive(Debug, Clone)]
pub struct Options {
    /// Installation holding `releases/<version>/`, `current` and `previous`.
    pub install_root: PathBuf,
    /// Run once after switching back to the previous release (argv, never a shell).
    pub restart: Vec<String>,
    pub probe: ProbeConfig,
    /// On failure record the bad version but leave `current` (the marker stays).
    pub no_rollback: bool,
    /// A progress bar on stderr while probing (a terminal, not `--quiet`).
    pub progress: bool,
}

/// How a boot check ended (the JSON `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    NothingPending,
    StaleMarker,
    Verified,
    VerifyFailed,
    RollbackRefused,
    RolledBack,
}

impl VerifyResult {
    /// Whether the release on disk is one to keep (nothing to do counts).
    pub fn ok(self) -> bool {
        matches!(
            self,
            Self::NothingPending | Self::StaleMarker | Self::Verified
        )
    }

    pub fn exit_code(self) -> u8 {
        if self.ok() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        }
    }
}

/// One boot check's outcome: the result, a sentence, and the details (version, probe,
/// rollback …) as printed in JSON.
#[derive(Debug)]
pub struct VerifyReport {
    pub result: VerifyResult,
    pub message: String,
    pub details: serde_json::Value,
}

impl VerifyReport {
    fn new(result: VerifyResult, message: impl Into<String>, details: serde_json::Value) -> Self {
        VerifyReport {
            result,
            message: message.into(),
            details,
        }
    }

    /// The JSON document printed and recorded: the details with `ok`, `result`, `message`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = self.details.clone();
        if let Some(object) = doc.as_object_mut() {
            object.insert("ok".into(), self.result.ok().into());
            object.insert("result".into(), json!(self.result));
            object.insert("message".into(), self.message.clone().into());
        }
        doc
    }
}

/// What to do with a pending marker given the current release (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    NothingPending,
    /// The marker names a release that is no longer current (rolled back or replaced).
    Stale {
        marker: String,
        current: Option<String>,
    },
    Probe,
}

pub fn decide(pending: Option<&Pending>, current: Option<&str>) -> Decision {
    match pending {
        None => Decision::NothingPending,
        Some(p) if Some(p.version.as_str()) == current => Decision::Probe,
        Some(p) => Decision::Stale {
            marker: p.version.clone(),
            current: current.map(String::from),
        },
    }
}

/// Arm the check: write the pending marker for `version` (default: the one `current` points
/// at), under the update lock.
pub fn arm(ctx: &Ctx, install_root: &Path, version: Option<&str>) -> Result<Pending> {
    let _lock = ctx.lock("update", Mode::Exclusive)?;
    let layout = Layout::new(install_root);
    let version = match version {
        Some(v) => {
            release::check_version(v).map_err(|e| exit::invalid(format!("--version: {e}")))?;
            v.to_string()
        }
        None => layout
            .current()?
            .version()
            .map(String::from)
            .with_context(|| {
                format!(
                    "cannot arm: {} does not exist and no --version was given",
                    layout.current_link().display()
                )
            })?,
    };
    let previous = layout.previous()?.version().map(String::from);
    let pending = Pending {
        version,
        previous,
        armed_at: crate::state::now_rfc3339(),
    };
    Journal::new(&ctx.settings.state_dir).write_pending(&pending)?;
    Ok(pending)
}

/// Decide, probe, then record success or roll back, under the update lock.
///
/// Long, and kept whole on purpose: every outcome ends in exactly one report, and each branch
/// writes the journal in a fixed order; one top-to-bottom narrative keeps both visible.
#[allow(clippy::too_many_lines)]
pub fn run(ctx: &Ctx, opts: &Options) -> Result<VerifyReport> {
    probe::loopback_host(&opts.probe.url).map_err(exit::invalid)?;
    let _lock = ctx.lock("update", Mode::Exclusive)?;
    let layout = Layout::new(&opts.install_root);
    let journal = Journal::new(&ctx.settings.state_dir);
    let current = layout.current()?;
    // A marker that exists but cannot be read means an update was armed: probe the current
    // release as if it were pending (rolling back on failure) instead of giving up unprobed.
    let (pending, damaged) = match journal.pending() {
        Ok(pending) => (pending, None),
        Err(err) => {
            let damage = format!("{err:#}");
            tracing::warn!(
                "the pending marker {} is damaged ({damage}); treating it as an update of the current release {} pending",
                journal.pending_path().display(),
                current.version().unwrap_or("(none)")
            );
            let assumed = current.version().map(|v| Pending {
                version: v.to_string(),
                previous: None,
                armed_at: String::new(),
            });
            (assumed, Some(damage))
        }
    };
    if let (None, Some(damage)) = (&pending, &damaged) {
        journal.clear_pending()?;
        return Ok(VerifyReport::new(
            VerifyResult::StaleMarker,
            format!("nothing to verify: the pending marker was damaged ({damage}) and no release is current; cleared it"),
            json!({"damaged_marker": damage}),
        ));
    }
    let pending = match decide(pending.as_ref(), current.version()) {
        Decision::NothingPending => {
            return Ok(VerifyReport::new(
                VerifyResult::NothingPending,
                "nothing pending",
                json!({}),
            ));
        }
        Decision::Stale { marker, current } => {
            journal.clear_pending()?;
            let message = format!(
                "nothing pending: the marker was for {marker} but current is {}; cleared it",
                current.as_deref().unwrap_or("missing")
            );
            return Ok(VerifyReport::new(
                VerifyResult::StaleMarker,
                message,
                json!({"marker": marker, "current": current}),
            ));
        }
        Decision::Probe => pending.context("marker vanished while locked")?,
    };
    let cfg = &opts.probe;
    tracing::info!(
        "verifying release {}: {} must answer {} {} time(s) in a row within {:.0?}",
        pending.version,
        cfg.url,
        cfg.expect,
        cfg.successes,
        cfg.timeout
    );
    let result = probe_with_progress(cfg, opts.progress)?;
    let base = json!({
        "version": pending.version,
        "previous": pending.previous,
        "url": cfg.url,
        "probe": result,
        "damaged_marker": damaged,
    });
    if result.verified {
        journal.append_history(json!({
            "event": "verified",
            "version": pending.version,
            "previous": pending.previous,
            "attempts": result.attempts,
            "elapsed_ms": result.elapsed_ms,
        }))?;
        journal.clear_pending()?;
        let message = format!(
            "release {} verified: {} answered {} {} time(s) in a row",
            pending.version, cfg.url, cfg.expect, cfg.successes
        );
        return Ok(VerifyReport::new(VerifyResult::Verified, message, base));
    }
    let last = result
        .last
        .as_ref()
        .map_or_else(|| "no attempt".into(), Answer::to_string);
    let reason = format!(
        "release {} failed its boot check: {} did not answer {} {} time(s) in a row within {:.0?} (last: {last})",
        pending.version, cfg.url, cfg.expect, cfg.successes, cfg.timeout
    );
    tracing::warn!("{reason}");
    journal.add_bad_version(&pending.version)?;
    if opts.no_rollback {
        journal.append_history(json!({
            "event": "verify_failed",
            "version": pending.version,
            "reason": reason,
            "rolled_back": false,
        }))?;
        return Ok(VerifyReport::new(
            VerifyResult::VerifyFailed,
            format!("{reason}; not rolling back (--no-rollback)"),
            base,
        ));
    }
    let outcome = rollback::execute(
        &layout,
        &journal,
        &opts.restart,
        &reason,
        false,
        "verify-update",
    )?;
    let mut doc = base;
    if let Some(object) = doc.as_object_mut() {
        object.insert("rollback".into(), serde_json::to_value(&outcome)?);
    }
    if outcome.action == RollbackAction::Refused {
        return Ok(VerifyReport::new(
            VerifyResult::RollbackRefused,
            format!("{reason}\nrollback refused: {}", outcome.message),
            doc,
        ));
    }
    // The armed update is over whatever the rollback found (nothing to do included).
    journal.clear_pending()?;
    Ok(VerifyReport::new(
        VerifyResult::RolledBack,
        format!("{reason}\n{}", outcome.message),
        doc,
    ))
}

fn probe_with_progress(cfg: &ProbeConfig, progress: bool) -> Result<probe::ProbeResult> {
    if !progress {
        return probe::run(cfg, |attempt, answer, consecutive, left| {
            tracing::info!(
                "probe {attempt}: {answer} ({consecutive}/{} in a row, {}s left)",
                cfg.successes,
                left.as_secs()
            );
        });
    }
    let bar = indicatif::ProgressBar::new(cfg.timeout.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} verifying update [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message(format!(
        "{}s left, waiting for the first answer",
        cfg.timeout.as_secs()
    ));
    let result = probe::run(cfg, |_, answer, consecutive, left| {
        bar.set_position(cfg.timeout.saturating_sub(left).as_secs());
        bar.set_message(format!(
            "{}s left, last answer: {answer} ({consecutive}/{} in a row)",
            left.as_secs(),
            cfg.successes
        ));
    });
    bar.finish_and_clear();
    result
}

/// A release tarball's static check: how many entries were read and what they violate.
#[derive(Debug)]
pub struct TarballReport {
    pub entries: usize,
    pub violations: Vec<tarball::Violation>,
    pub elapsed_ms: u128,
    /// What unpacking takes on disk: each entry's declared size rounded up to 4 KiB blocks,
    /// and a block for every directory and link.
    pub unpacked_bytes: u64,
    /// Unpacking would not fit on the install root's file system ([`TarballReport::check_space`]).
    pub space: Option<String>,
}

/// The block size unpacked sizes are rounded to (ext4's and most file systems' default).
const UNPACK_BLOCK: u64 = 4096;

/// Bytes unpacking these entries takes on disk. Pure.
pub fn unpacked_size(entries: &[tarball::EntryInfo]) -> u64 {
    entries
        .iter()
        .map(|e| e.size.div_ceil(UNPACK_BLOCK).max(1) * UNPACK_BLOCK)
        .sum()
}

impl TarballReport {
    /// On a node (the install root exists), refuse the release when the install root's file
    /// system lacks its unpacked size: the updater checks before it unpacks, instead of failing
    /// half-way. Far from any node (release scripts) nothing is judged.
    pub fn check_space(&mut self, install_root: &Path) {
        if !install_root.exists() {
            return;
        }
        let what = format!(
            "unpacking this release into {}",
            install_root.join("releases").display()
        );
        if let Err(err) = crate::guard::space::require(install_root, self.unpacked_bytes, &what) {
            self.space = Some(format!("{err:#}"));
        }
    }

    pub fn exit_code(&self) -> u8 {
        if self.violations.is_empty() && self.space.is_none() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        }
    }

    /// The JSON document `--output json` prints.
    pub fn to_json(&self, path: &Path) -> serde_json::Value {
        let mut doc = json!({
            "ok": self.violations.is_empty() && self.space.is_none(),
            "action": "check_tarball",
            "tarball": path.display().to_string(),
            "entries": self.entries,
            "violations": self.violations,
            "elapsed_ms": self.elapsed_ms,
        });
        if let Some(space) = &self.space {
            doc["space"] = json!(space);
        }
        doc
    }

    /// The first line of the text output (the violations follow, one a line).
    pub fn summary(&self, path: &Path) -> String {
        if let Some(space) = &self.space {
            return format!("{}: {space}", path.display());
        }
        if self.violations.is_empty() {
            format!("{}: ok ({} entries checked)", path.display(), self.entries)
        } else {
            format!(
                "{}: {} violation(s) in {} entries:",
                path.display(),
                self.violations.len(),
                self.entries
            )
        }
    }
}

/// Check a release tar.gz (headers only; no lock: release scripts run it far from any node).
/// An unreadable file or a malformed `sha256` is invalid input.
pub fn check_tarball(
    path: &Path,
    sha256: Option<&str>,
    require: &[String],
) -> Result<TarballReport> {
    if let Some(hex) = sha256 {
        if !tarball::valid_sha256(hex) {
            return Err(exit::invalid(format!(
                "--sha256 must be 64 hex digits, got {hex:?}"
            )));
        }
    }
    let started = Instant::now();
    let entries = tarball::read_tarball(path).map_err(|e| {
        if e.downcast_ref::<tarball::Unreadable>().is_some() {
            exit::invalid(format!("{e:#}"))
        } else {
            e
        }
    })?;
    let mut violations = tarball::check_entries(&entries, require);
    if let Some(expected) = sha256 {
        let actual = tarball::sha256_file(path).map_err(|e| exit::invalid(format!("{e:#}")))?;
        violations.extend(tarball::check_digest(
            expected,
            &actual,
            &path.display().to_string(),
        ));
    }
    Ok(TarballReport {
        entries: entries.len(),
        violations,
        elapsed_ms: started.elapsed().as_millis(),
        unpacked_bytes: unpacked_size(&entries),
        space: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(v: &str) -> Pending {
        Pending {
            version: v.into(),
            previous: Some("1".into()),
            armed_at: "t".into(),
        }
    }

    #[test]
    fn decide_probes_only_the_current_armed_release() {
        assert_eq!(decide(None, Some("2")), Decision::NothingPending);
        assert_eq!(decide(Some(&marker("2")), Some("2")), Decision::Probe);
        assert_eq!(
            decide(Some(&marker("2")), Some("1")),
            Decision::Stale {
                marker: "2".into(),
                current: Some("1".into())
            }
        );
        assert_eq!(
            decide(Some(&marker("2")), None),
            Decision::Stale {
                marker: "2".into(),
                current: None
            }
        );
    }

    #[test]
    fn results_print_their_json_word_and_exit_code() {
        for (result, word, code) in [
            (VerifyResult::NothingPending, "nothing_pending", 0),
            (VerifyResult::StaleMarker, "stale_marker", 0),
            (VerifyResult::Verified, "verified", 0),
            (VerifyResult::VerifyFailed, "verify_failed", 1),
            (VerifyResult::RollbackRefused, "rollback_refused", 1),
            (VerifyResult::RolledBack, "rolled_back", 1),
        ] {
            let doc = VerifyReport::new(result, "m", json!({"version": "2"})).to_json();
            assert_eq!(doc["result"], word);
            assert_eq!(doc["ok"], code == 0);
            assert_eq!(doc["version"], "2");
            assert_eq!(result.exit_code(), code);
        }
    }
}
