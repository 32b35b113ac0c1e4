//! `archy reconcile`: the command line of the reconcile engine ([`crate::reconcile`]): its
//! flags become [`Options`], the report is printed and recorded for `archy status`.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::output::OutputFormat;
use crate::plan::Action;
use crate::reconcile::{Options, Outcome, Report, DEFAULT_JOBS};
use crate::render::FileStatus;

/// Converge containers to the manifests: create missing ones, recreate drifted ones, start
/// stopped ones. A second run with nothing changed does nothing.
///
/// Health: an app's `health:` probe (`http: URL` or `tcp: HOST:PORT` from the host, beside the
/// one podman listing and without a podman call; `exec: [argv]` through `podman exec`, the
/// costly kind) is checked every run. Failures within `start_period` (default 90s) of a start
/// do not count. After `failures` (default 3) consecutive failures the app is unhealthy and is
/// restarted; still failing that often after the restart's grace, it is recreated (volumes
/// kept); then it backs off: further restarts wait 1, 2, 4, 8, then at most 10 minutes. A
/// passing probe resets all of it. Every action is logged with the evidence (status code,
/// connect error, exit code and output tail); counts and evidence are kept in
/// <state-dir>/health/<app>.json. `depends_on: {app: healthy}` holds a dependent back (not
/// created, started, or restarted or recreated by health; result `waiting`) until that app's
/// probe passes.
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
    print_report(&report, ctx.settings.output);
    if !report.dry_run {
        let restarted: Vec<&str> = report
            .apps
            .iter()
            .filter(|a| a.result == Outcome::Changed)
            .filter(|a| {
                matches!(
                    a.action,
                    Action::Start | Action::Restart | Action::Unpause | Action::Recreate
                )
            })
            .map(|a| a.app.as_str())
            .collect();
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
        // Metrics are a view: failing to write them is a warning (here and in `archy
        // status`), never a failed tick; the tick has converged by now.
        let state_dir = &ctx.settings.state_dir;
        match write_metrics(ctx, &report, path, recorded, completed) {
            Ok(()) => crate::state::clear(state_dir, crate::state::METRICS),
            Err(err) => {
                let error = format!("{err:#}");
                tracing::warn!("{error}");
                crate::state::record(
                    state_dir,
                    crate::state::METRICS,
                    serde_json::json!({"ok": false, "file": path, "error": error}),
                );
            }
        }
    }
    Ok(report.exit_code)
}

/// The node after this tick (its own report, no second listing; the reconcile records it just
/// wrote, not read back) as Prometheus metrics, written atomically to `path`.
fn write_metrics(
    ctx: &Ctx,
    report: &Report,
    path: &std::path::Path,
    recorded: Option<serde_json::Value>,
    completed: Option<serde_json::Value>,
) -> Result<()> {
    let state_dir = &ctx.settings.state_dir;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let records = crate::status::Records::read_with(state_dir, recorded, completed)?;
    let status = crate::status::build(
        &crate::status::after_tick(report),
        now,
        records,
        crate::status::DEFAULT_MAX_RECONCILE_AGE,
    );
    let snapshot = crate::status::metrics_snapshot(
        &status,
        &crate::metrics::read_restarts(state_dir),
        crate::update::journal::Journal::new(state_dir).bad_versions()?,
    );
    let text = crate::output::redact(&crate::metrics::render(&snapshot));
    crate::metrics::write_file(path, &text)
}

fn print_report(report: &Report, format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            crate::output::print_json(&serde_json::to_value(report).expect("report serialises"))
        }
        OutputFormat::Text => {
            for file in &report.config_files {
                if file.status != FileStatus::Unchanged {
                    println!(
                        "config {}: {}{}",
                        file.path,
                        file.status,
                        file.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            for r in &report.apps {
                let verb = match (report.dry_run, r.result) {
                    (true, Outcome::Planned) => format!("would {}", r.action.as_str()),
                    (_, Outcome::Conflict) => "conflict".to_string(),
                    (_, Outcome::Ok) => "ok".to_string(),
                    (_, Outcome::Changed) => r.action.past_tense().to_string(),
                    (_, Outcome::Waiting) => "waiting".to_string(),
                    (_, other) => format!("{} {other}", r.action.as_str()),
                };
                let mut line = format!("{:<20} {:<14} {}", r.app, verb, r.reason);
                if let (Outcome::Waiting, Some(why)) = (r.result, &r.error) {
                    line = format!(
                        "{:<20} {:<14} {why} (to {})",
                        r.app,
                        verb,
                        r.action.as_str()
                    );
                } else if let Some(error) = &r.error {
                    line.push_str(&format!(
                        "\n{:<20} error: {}",
                        "",
                        error.replace('\n', "\n                     ")
                    ));
                }
                println!("{}", crate::output::redact(&line));
            }
            for o in &report.orphans {
                println!(
                    "{:<20} orphan {:<7} container {}{}",
                    o.app,
                    o.result,
                    o.container,
                    o.detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
            }
            for e in &report.manifest_errors {
                println!("{}", crate::output::redact(&e.to_string()));
            }
            let count = |result: Outcome| report.apps.iter().filter(|a| a.result == result).count();
            let prefix = if report.dry_run {
                "reconcile (dry run)"
            } else {
                "reconcile"
            };
            println!(
                "{prefix}: {} apps, {} ok, {} {}, {} failed, {} skipped, {} waiting, {} orphans, {} invalid manifests",
                report.apps.len(),
                count(Outcome::Ok),
                if report.dry_run { count(Outcome::Planned) } else { count(Outcome::Changed) },
                if report.dry_run { "to change" } else { "changed" },
                count(Outcome::Failed),
                count(Outcome::Skipped),
                count(Outcome::Waiting),
                report.orphans.len(),
                report.manifest_errors.len()
            );
        }
    }
}
