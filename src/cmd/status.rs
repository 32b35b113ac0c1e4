//! `archy status`: one line per app (desired vs actual, image, uptime, spec-hash match, config
//! drift, owner), then podman's health, updates and the last reconcile. Read-only: a dry-run
//! reconcile decides, [`crate::status`] turns its report and the status records other commands
//! leave under `<state-dir>/status/` into the status; this file prints it. Exit 0 only when everything is converged, so it serves as a health check.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::metrics;
use crate::output::OutputFormat;
use crate::status::Status;

/// Show whether every app is converged, podman's health, pending updates and the last reconcile.
///
/// Per app: desired state against actual (running, exited, paused, missing, drifted, orphan,
/// disabled, conflict, error), image, uptime, whether the container's spec hash matches the
/// manifests, config files that differ from what would be rendered, and the owner (archy, or
/// systemd through a Quadlet unit), and health as of the last reconcile tick: healthy,
/// unhealthy n/N (consecutive failed probes of the `failures` that trigger a restart, with the
/// last error), starting, unknown (its state file under <state-dir>/health cannot be read or
/// written: named, and a failure), or no probe; an app held back by a `healthy` dependency is `waiting`.
/// Changes nothing. Answers within --timeout-listing even when podman hangs (then it says
/// podman did not answer). Exit 0 when every app is converged and none is unhealthy or of
/// unknown health, no orphan
/// or invalid manifest exists, podman answered, the pending-update marker is readable, none of
/// the last heal-podman, verify-update and reconcile runs failed, a full reconcile completed
/// within --max-reconcile-age, and no backup target (a manifest's `backup:`) fails or lacks a
/// change older than its `alert_after`, and no file system of podman's graph root, its volume
/// path or the state dir is below --min-free (JSON `ok`); 1 otherwise. Free space is read with
/// statvfs (no podman call); OOM kills reconcile saw are listed (`oom:`). Backups: one line per file and
/// target (current or not, last copy's age, the newest version's SHA-256, the error). The JSON document (`schema` 1) is
/// described in docs/status-json.md.
///
/// --output prometheus prints the same as Prometheus metrics (text exposition format):
/// archy_app_up, archy_app_healthy, archy_app_restarts_total, archy_app_spec_drift and
/// archy_app_config_drift_files per app; archy_converged, archy_manifests_invalid,
/// archy_config_drift_files; archy_reconcile_last_{result,duration_seconds,timestamp_seconds};
/// archy_podman_heal_last_{result,timestamp_seconds}; archy_update_pending,
/// archy_update_bad_versions; per backed-up file and target archy_backup_age_seconds,
/// archy_backup_last_success_timestamp, archy_backup_current, archy_backup_target_failing,
/// archy_backup_info (its sha256); archy_app_oom_kills_total per app; per file system
/// archy_filesystem_{free_bytes,size_bytes,free_ratio,low}. `archy reconcile --metrics-file`
/// writes them after every tick.
/// archy_app_healthy is the app's health probe (1 when it passes, 0 when starting or
/// unhealthy); for an app without a probe it is 1 when the app is converged.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only these apps (default: every app with a manifest, plus orphans).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Fail (exit 1) when a full reconcile has not completed for longer than this, whatever the
    /// reconcile unit's exit status says (default: four 30-second ticks).
    #[arg(long, env = "ARCHY_MAX_RECONCILE_AGE", default_value = "2m", value_parser = super::parse_duration, value_name = "DURATION")]
    pub max_reconcile_age: std::time::Duration,
    /// Fail (exit 1) when the file system of podman's graph root, its volume path or the state
    /// dir has less free space than this: a percent of its size, a size (`2g`), or both
    /// comma-separated (low when below either).
    #[arg(long, env = "ARCHY_MIN_FREE", default_value = crate::guard::space::DEFAULT_MIN_FREE, value_name = "BOUND")]
    pub min_free: crate::guard::space::MinFree,
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<u8> {
    let mut status = crate::status::run(ctx, &args.apps, args.max_reconcile_age)?;
    let views = crate::guard::space::measure(&ctx.settings.state_dir, &args.min_free);
    crate::status::add_free_space(&mut status, views, &args.min_free);
    if ctx.settings.prometheus {
        let state_dir = &ctx.settings.state_dir;
        let snapshot = crate::status::metrics_snapshot(
            &status,
            &metrics::read_restarts(state_dir),
            crate::update::journal::Journal::new(state_dir).bad_versions()?,
        );
        print!("{}", crate::output::redact(&metrics::render(&snapshot)));
    } else {
        print(&status, ctx.settings.output);
    }
    Ok(status.exit_code)
}

fn print(status: &Status, format: OutputFormat) {
    match format {
        OutputFormat::Json => crate::output::print_json(
            &serde_json::to_value(status)
                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
        ),
        OutputFormat::Text => print!(
            "{}",
            crate::output::redact(&crate::status::text::render_text(status))
        ),
    }
}
