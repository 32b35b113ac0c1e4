//! `archy verify-update`: three jobs around an update, so a bad release can never strand a node.
//!
//! - `--tarball FILE`: static checks on a release tar.gz (release scripts; the updater before
//!   installing). Headers only; exit 0 clean, 1 violations, 2 unreadable.
//! - `--arm`: the updater, right after switching `current`, writes the pending marker.
//! - no mode flag (boot, from a oneshot unit): if a marker is pending, probe the web UI; on
//!   success clear the marker, on failure record the bad version and roll back.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::ReleaseArgs;
use crate::ctx::Ctx;
use crate::exit;
use crate::lock::Mode;
use crate::output::{print_json, OutputFormat};
use crate::update::journal::{Journal, Pending};
use crate::update::probe::{self, Answer, ProbeConfig};
use crate::update::release::{self, Layout};
use crate::update::rollback::{self, RollbackAction};
use crate::update::tarball;

/// Check a release tarball, arm the post-update check, or run it (probe the web UI and roll
/// back if it does not answer).
///
/// Without --tarball or --arm: when `<state-dir>/update/pending.json` exists, probe --url every
/// --interval until it answers --expect --successes times in a row. Success removes the marker
/// and appends to `<state-dir>/update/history.jsonl`. Failure records the version in
/// `<state-dir>/update/bad-versions` and rolls back to `previous` (unless --no-rollback), exit 1.
#[derive(Debug, clap::Args)]
// `--version` names the release being armed here; `archy --version` still prints archy's.
#[command(disable_version_flag = true)]
pub struct VerifyUpdateArgs {
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Check this release tar.gz (headers only) instead of probing: root directory 0755, every
    /// directory o+rx and with an entry of its own, every file o+r, no absolute or `..` paths,
    /// no device nodes or fifos, no setuid/setgid, no link leaving the root when resolved
    /// through the archive's own links; every gzip member read, end-of-archive marker required.
    #[arg(long, value_name = "FILE", conflicts_with = "arm")]
    pub tarball: Option<PathBuf>,
    /// With --tarball: the expected SHA-256 of the file (64 hex digits).
    #[arg(long, value_name = "HEX", requires = "tarball")]
    pub sha256: Option<String>,
    /// With --tarball: a path that must exist in the archive, as stored (a leading `./` is
    /// optional; repeatable), e.g. `web-ui/index.html`.
    #[arg(long, value_name = "PATH", requires = "tarball")]
    pub require: Vec<String>,
    /// Arm the check after switching `current` to a new release: writes
    /// `<state-dir>/update/pending.json` with the version and the previous one.
    #[arg(long)]
    pub arm: bool,
    /// With --arm: the version being installed (default: the one `current` points at).
    #[arg(long, value_name = "VERSION", requires = "arm")]
    pub version: Option<String>,
    /// URL of the web UI to probe. Certificate checks are skipped only when its host is a
    /// loopback address (127.0.0.0/8, ::1, localhost).
    #[arg(long, default_value = "https://127.0.0.1/", value_name = "URL")]
    pub url: String,
    /// HTTP status that counts as healthy.
    #[arg(long, default_value_t = 200, value_name = "STATUS")]
    pub expect: u16,
    /// Healthy answers needed in a row.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub successes: u32,
    /// Time between probes.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Give up (and roll back) when the web UI has not proven healthy within this time.
    #[arg(long, default_value = "90s", value_parser = super::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// On failure record the bad version but do not roll back (the marker stays).
    #[arg(long)]
    pub no_rollback: bool,
}

pub fn run(ctx: &Ctx, args: &VerifyUpdateArgs) -> Result<u8> {
    if let Some(path) = &args.tarball {
        // A file check for release scripts: no lock (they may run far from any node).
        return check_tarball(ctx, args, path);
    }
    let restart = args.release.restart_argv()?;
    probe::loopback_host(&args.url).map_err(exit::invalid)?;
    let _lock = ctx.lock("update", Mode::Exclusive)?;
    let layout = args.release.layout();
    let journal = Journal::new(&ctx.settings.state_dir);
    if args.arm {
        return arm(ctx, args, &layout, &journal);
    }
    verify(ctx, args, &layout, &journal, &restart)
}

fn check_tarball(ctx: &Ctx, args: &VerifyUpdateArgs, path: &std::path::Path) -> Result<u8> {
    if let Some(hex) = &args.sha256 {
        if !tarball::valid_sha256(hex) {
            return Err(exit::invalid(format!(
                "--sha256 must be 64 hex digits, got {hex:?}"
            )));
        }
    }
    let started = std::time::Instant::now();
    let entries = tarball::read_tarball(path).map_err(|e| {
        if e.downcast_ref::<tarball::Unreadable>().is_some() {
            exit::invalid(format!("{e:#}"))
        } else {
            e
        }
    })?;
    let mut violations = tarball::check_entries(&entries, &args.require);
    if let Some(expected) = &args.sha256 {
        let actual = tarball::sha256_file(path).map_err(|e| exit::invalid(format!("{e:#}")))?;
        violations.extend(tarball::check_digest(
            expected,
            &actual,
            &path.display().to_string(),
        ));
    }
    let code = if violations.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    };
    match ctx.settings.output {
        OutputFormat::Json => print_json(&json!({
            "ok": violations.is_empty(),
            "action": "check_tarball",
            "tarball": path.display().to_string(),
            "entries": entries.len(),
            "violations": violations,
            "elapsed_ms": started.elapsed().as_millis(),
        })),
        OutputFormat::Text => {
            if violations.is_empty() {
                println!("{}: ok ({} entries checked)", path.display(), entries.len());
            } else {
                println!(
                    "{}: {} violation(s) in {} entries:",
                    path.display(),
                    violations.len(),
                    entries.len()
                );
                for v in &violations {
                    println!("  {v}");
                }
            }
        }
    }
    Ok(code)
}

fn arm(ctx: &Ctx, args: &VerifyUpdateArgs, layout: &Layout, journal: &Journal) -> Result<u8> {
    let version = match &args.version {
        Some(v) => {
            release::check_version(v).map_err(|e| exit::invalid(format!("--version: {e}")))?;
            v.clone()
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
    journal.write_pending(&pending)?;
    crate::state::record(
        &ctx.settings.state_dir,
        "verify-update",
        json!({"result": "armed", "version": pending.version, "previous": pending.previous}),
    );
    match ctx.settings.output {
        OutputFormat::Json => {
            print_json(&json!({"ok": true, "action": "armed", "pending": pending}))
        }
        OutputFormat::Text => println!(
            "armed: the next `archy verify-update` checks release {} (previous {})",
            pending.version,
            pending.previous.as_deref().unwrap_or("none")
        ),
    }
    Ok(exit::SUCCESS)
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

/// Decide, probe, then record success or roll back.
///
/// Long, and kept whole on purpose: every outcome ends in exactly one `finish` (one record, one
/// printed result), and each branch writes the journal in a fixed order; one top-to-bottom
/// narrative keeps both visible.
fn verify(
    ctx: &Ctx,
    args: &VerifyUpdateArgs,
    layout: &Layout,
    journal: &Journal,
    restart: &[String],
) -> Result<u8> {
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
        finish(
            ctx,
            "stale_marker",
            &format!("nothing to verify: the pending marker was damaged ({damage}) and no release is current; cleared it"),
            json!({"damaged_marker": damage}),
        );
        return Ok(exit::SUCCESS);
    }
    let pending = match decide(pending.as_ref(), current.version()) {
        Decision::NothingPending => {
            finish(ctx, "nothing_pending", "nothing pending", json!({}));
            return Ok(exit::SUCCESS);
        }
        Decision::Stale { marker, current } => {
            journal.clear_pending()?;
            let message = format!(
                "nothing pending: the marker was for {marker} but current is {}; cleared it",
                current.as_deref().unwrap_or("missing")
            );
            finish(
                ctx,
                "stale_marker",
                &message,
                json!({"marker": marker, "current": current}),
            );
            return Ok(exit::SUCCESS);
        }
        Decision::Probe => pending.context("marker vanished while locked")?,
    };
    let cfg = ProbeConfig {
        url: args.url.clone(),
        expect: args.expect,
        successes: args.successes,
        interval: args.interval,
        timeout: args.timeout,
    };
    tracing::info!(
        "verifying release {}: {} must answer {} {} time(s) in a row within {:.0?}",
        pending.version,
        cfg.url,
        cfg.expect,
        cfg.successes,
        cfg.timeout
    );
    let result = probe_with_progress(ctx, &cfg)?;
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
        finish(ctx, "verified", &message, base);
        return Ok(exit::SUCCESS);
    }
    let last = result
        .last
        .as_ref()
        .map(Answer::to_string)
        .unwrap_or_else(|| "no attempt".into());
    let reason = format!(
        "release {} failed its boot check: {} did not answer {} {} time(s) in a row within {:.0?} (last: {last})",
        pending.version, cfg.url, cfg.expect, cfg.successes, cfg.timeout
    );
    tracing::warn!("{reason}");
    journal.add_bad_version(&pending.version)?;
    if args.no_rollback {
        journal.append_history(json!({
            "event": "verify_failed",
            "version": pending.version,
            "reason": reason,
            "rolled_back": false,
        }))?;
        finish(
            ctx,
            "verify_failed",
            &format!("{reason}; not rolling back (--no-rollback)"),
            base,
        );
        return Ok(exit::FAILURE);
    }
    let outcome = rollback::execute(layout, journal, restart, &reason, false, "verify-update")?;
    let mut doc = base;
    if let Some(object) = doc.as_object_mut() {
        object.insert("rollback".into(), serde_json::to_value(&outcome)?);
    }
    if outcome.action == RollbackAction::Refused {
        finish(
            ctx,
            "rollback_refused",
            &format!("{reason}\nrollback refused: {}", outcome.message),
            doc,
        );
        return Ok(exit::FAILURE);
    }
    // The armed update is over whatever the rollback found (nothing to do included).
    journal.clear_pending()?;
    finish(
        ctx,
        "rolled_back",
        &format!("{reason}\n{}", outcome.message),
        doc,
    );
    Ok(exit::FAILURE)
}

/// Print the result (text or one JSON document) and record it for `archy status`.
fn finish(ctx: &Ctx, result: &str, message: &str, mut doc: serde_json::Value) {
    let ok = matches!(result, "nothing_pending" | "stale_marker" | "verified");
    if let Some(object) = doc.as_object_mut() {
        object.insert("ok".into(), ok.into());
        object.insert("result".into(), result.into());
        object.insert("message".into(), message.into());
    }
    crate::state::record(&ctx.settings.state_dir, "verify-update", doc.clone());
    match ctx.settings.output {
        OutputFormat::Json => print_json(&doc),
        OutputFormat::Text => println!("{message}"),
    }
}

fn probe_with_progress(ctx: &Ctx, cfg: &ProbeConfig) -> Result<probe::ProbeResult> {
    if !crate::logging::show_progress(ctx.settings.quiet) {
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
}
