//! `archy reconcile`: the command line of the reconcile engine ([`crate::reconcile`]): its
//! flags become [`Options`], the report is printed and recorded for `archy status`.

use anyhow::Result;

use crate::backup::perform::FileResult;
use crate::ctx::Ctx;
use crate::output::OutputFormat;
use crate::reconcile::{Options, Outcome, Report, DEFAULT_JOBS};

/// Converge containers to the manifests: create missing ones, recreate drifted ones, start
/// stopped ones. A second run with nothing changed does nothing.
///
/// Health: an app's `health:` probe (`http: URL` or `tcp: HOST:PORT` from the host, beside the
/// one podman listing and without a podman call; `exec: [argv]` through `podman exec`, the
/// costly kind) is checked every run. Failures within `start_period` (default 90s) of a start
/// do not count. After `failures` (default 3) consecutive failures the app is unhealthy and is
/// restarted; still failing that often after the restart's grace, it is recreated (volumes
/// kept); then it backs off: further restarts wait 1, 2, 4, 8, then at most 10 minutes. A
/// passing probe resets all of it; state in <state-dir>/health/<app>.json. `depends_on: {app:
/// healthy}` holds a dependent back (result `waiting`) until that app's probe passes.
///
/// Backups: after converging, each file a manifest's `backup:` names is stat-ed (no podman
/// call, no read while unchanged); a changed one is copied, once it holds still, atomically and
/// versioned to each directory target and on stdin to each command target. A failing target is
/// reported (`target … FAILED`), not a failed run; `archy status` exits 1 naming it. State in
/// <state-dir>/backup/<app>.json.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Only these apps (default: every app with a manifest).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Print the plan (create / recreate / start / ok / orphan / adopt, with reasons) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove managed containers that no manifest describes (volumes are kept).
    #[arg(long)]
    pub prune: bool,
    /// Replace an unmanaged container that holds an app's container name (volumes are kept).
    #[arg(long)]
    pub adopt: bool,
    /// Apps converged in parallel within one dependency layer.
    #[arg(long, env = "ARCHY_JOBS", default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Registry mirror tried before an image's own registry (repeatable).
    #[arg(
        long = "mirror",
        env = "ARCHY_MIRRORS",
        value_delimiter = ',',
        value_name = "HOST[/PATH]"
    )]
    pub mirrors: Vec<String>,
    /// After the run, write Prometheus metrics (what `archy status --output prometheus` prints)
    /// to this file, replaced atomically, for node_exporter's textfile collector. Its directory
    /// is reached without following symlinks, and below a directory another user controls
    /// only root's directories are accepted. A write that fails is a warning (also in `archy status`), never a
    /// failed tick. Not written by --dry-run.
    #[arg(long, env = "ARCHY_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Clear APP's bad images (repeatable): the image its manifest names is tried again.
    #[arg(long, value_name = "APP")]
    pub retry: Vec<String>,
    /// Acknowledge APP's rollback (repeatable): status stops failing on it; the image stays bad.
    #[arg(long, value_name = "APP")]
    pub acknowledge: Vec<String>,
    /// Apply APP's image update now even while its chain syncs (`defer_updates_while`).
    #[arg(long, value_name = "APP")]
    pub force: Vec<String>,
}

impl From<&ReconcileArgs> for Options {
    fn from(args: &ReconcileArgs) -> Self {
        Options {
            apps: args.apps.clone(),
            dry_run: args.dry_run,
            prune: args.prune,
            adopt: args.adopt,
            jobs: args.jobs,
            mirrors: args.mirrors.clone(),
            retry: args.retry.clone(),
            acknowledge: args.acknowledge.clone(),
            force: args.force.clone(),
        }
    }
}

pub fn run(ctx: &Ctx, args: &ReconcileArgs) -> Result<u8> {
    let metrics_file = args.metrics_file.as_deref().filter(|_| !args.dry_run);
    if let Some(path) = metrics_file {
        crate::metrics::check_target(path).map_err(crate::exit::invalid)?;
    }
    let started = std::time::Instant::now();
    let report = crate::reconcile::reconcile(ctx, &Options::from(args))?;
    let backups = if report.dry_run {
        Vec::new()
    } else {
        crate::backup::perform::tick_selected(ctx, &report.manifests, &args.apps)
    };
    print_report(&report, &backups, ctx.settings.output);
    if !report.dry_run {
        let restarted = report.restarted();
        if let Err(err) = crate::metrics::add_restarts(&ctx.settings.state_dir, &restarted) {
            tracing::warn!("could not count restarts: {err:#}");
        }
    }
    let completed = if !report.dry_run && args.apps.is_empty() {
        // `archy status` fails when this stops happening, whatever the unit's exit status says.
        crate::state::record(
            &ctx.settings.state_dir,
            crate::state::RECONCILE_COMPLETED,
            serde_json::json!({"exit_code": report.exit_code}),
        )
    } else {
        None
    };
    let recorded = crate::state::record(
        &ctx.settings.state_dir,
        "reconcile",
        serde_json::json!({
            "exit_code": report.exit_code,
            "dry_run": report.dry_run,
            "changed": report.apps.iter().filter(|a| a.result == Outcome::Changed).count(),
            "failed": report.apps.iter().filter(|a| a.result == Outcome::Failed).count(),
            "manifest_errors": report.manifest_errors.len(),
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        }),
    );
    if let Some(path) = metrics_file {
        // A view: a failed write is a warning (here and in status), never a failed tick.
        crate::status::write_metrics_after_tick(ctx, &report, path, recorded, completed);
    }
    Ok(report.exit_code)
}

fn print_report(report: &Report, backups: &[FileResult], format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(report).expect("report serialises");
            if let Some(object) = value.as_object_mut() {
                let backups = serde_json::to_value(backups).expect("backups serialise");
                object.insert("backups".into(), backups);
            }
            crate::output::print_json(&value);
        }
        OutputFormat::Text => {
            print!("{}", crate::reconcile::text::render_text(report));
            print!("{}", crate::backup::text::render_tick(backups));
        }
    }
}
