//! `archy verify-update`: three jobs around an update, so a bad release can never strand a node.
//!
//! - `--tarball FILE`: static checks on a release tar.gz (release scripts; the updater before
//!   installing). Headers only; exit 0 clean, 1 violations, 2 unreadable.
//! - `--arm`: the updater, right after switching `current`, writes the pending marker.
//! - no mode flag (boot, from a oneshot unit): if a marker is pending, probe the web UI; on
//!   success clear the marker, on failure record the bad version and roll back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::ReleaseArgs;
use crate::ctx::Ctx;
use crate::exit;
use crate::output::{print_json, OutputFormat};
use crate::update::probe::{self, ProbeConfig};
use crate::update::verify::{self, Options, VerifyReport};

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
    if args.arm {
        return arm(ctx, args);
    }
    let opts = Options {
        install_root: args.release.install_root.clone(),
        restart,
        probe: ProbeConfig {
            url: args.url.clone(),
            expect: args.expect,
            successes: args.successes,
            interval: args.interval,
            timeout: args.timeout,
        },
        no_rollback: args.no_rollback,
        progress: crate::logging::show_progress(ctx.settings.quiet),
    };
    let report = verify::run(ctx, &opts)?;
    finish(ctx, &report);
    Ok(report.result.exit_code())
}

fn check_tarball(ctx: &Ctx, args: &VerifyUpdateArgs, path: &Path) -> Result<u8> {
    let mut report = verify::check_tarball(path, args.sha256.as_deref(), &args.require)?;
    report.check_space(&args.release.install_root);
    match ctx.settings.output {
        OutputFormat::Json => print_json(&report.to_json(path)),
        OutputFormat::Text => {
            println!("{}", report.summary(path));
            for v in &report.violations {
                println!("  {v}");
            }
        }
    }
    Ok(report.exit_code())
}

fn arm(ctx: &Ctx, args: &VerifyUpdateArgs) -> Result<u8> {
    let pending = verify::arm(ctx, &args.release.install_root, args.version.as_deref())?;
    crate::state::record(
        &ctx.settings.state_dir,
        "verify-update",
        json!({"result": "armed", "version": pending.version, "previous": pending.previous}),
    );
    match ctx.settings.output {
        OutputFormat::Json => {
            print_json(&json!({"ok": true, "action": "armed", "pending": pending}));
        }
        OutputFormat::Text => println!(
            "armed: the next `archy verify-update` checks release {} (previous {})",
            pending.version,
            pending.previous.as_deref().unwrap_or("none")
        ),
    }
    Ok(exit::SUCCESS)
}

/// Print the result (text or one JSON document) and record it for `archy status`.
fn finish(ctx: &Ctx, report: &VerifyReport) {
    let doc = report.to_json();
    crate::state::record(&ctx.settings.state_dir, "verify-update", doc.clone());
    match ctx.settings.output {
        OutputFormat::Json => print_json(&doc),
        OutputFormat::Text => println!("{}", report.message),
    }
}
