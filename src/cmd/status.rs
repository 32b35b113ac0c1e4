//! `archy status`: one line per app (desired vs actual, image, uptime, spec-hash match, config
//! drift, owner), then podman's health, updates and the last reconcile. Read-only: a dry-run
//! reconcile decides, [`crate::status`] turns its report and the status records other commands
//! leave under `<state-dir>/status/` into the status; this file prints it. Exit 0 only when everything is converged, so it serves as a health check.

use std::time::Instant;

use anyhow::Result;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::metrics;
use crate::output::OutputFormat;
use crate::reconcile::Options;
use crate::status::{RecordSummary, Records, Status};

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
/// the last heal-podman, verify-update and reconcile runs failed, and a full reconcile completed
/// within --max-reconcile-age (JSON `ok`); 1 otherwise. The JSON document (`schema` 1) is
/// described in docs/status-json.md.
///
/// --output prometheus prints the same as Prometheus metrics (text exposition format):
/// archy_app_up, archy_app_healthy, archy_app_restarts_total, archy_app_spec_drift and
/// archy_app_config_drift_files per app; archy_converged, archy_manifests_invalid,
/// archy_config_drift_files; archy_reconcile_last_{result,duration_seconds,timestamp_seconds};
/// archy_podman_heal_last_{result,timestamp_seconds}; archy_update_pending,
/// archy_update_bad_versions. `archy reconcile --metrics-file` writes them after every tick.
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
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<u8> {
    let options = Options {
        apps: args.apps.clone(),
        dry_run: true,
        ..Options::default()
    };
    // A health check answers within one listing's time limit, even when podman hangs: every
    // podman call of this run shares that budget.
    crate::exec::set_deadline(Instant::now().checked_add(ctx.settings.timeout_listing));
    let report = match crate::reconcile::reconcile(ctx, &options) {
        Ok(report) => Ok(report),
        Err(err) if crate::exec::timed_out(&err).is_some() => Err(format!(
            "podman did not answer: {}",
            crate::output::redact(&format!("{err:#}"))
        )),
        Err(err) if crate::exec::failed_stderr(&err).is_some() => Err(format!(
            "podman failed: {}",
            crate::output::redact(&format!("{err:#}"))
        )),
        Err(err) => return Err(err),
    };
    let now = crate::health::now()?;
    let records = Records::read(&ctx.settings.state_dir)?;
    let status = match report {
        Ok(report) => crate::status::build(&report, now, records, args.max_reconcile_age),
        Err(podman_error) => crate::status::without_podman(podman_error, records),
    };
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

/// `1d 2h 3m` style, whole minutes (seconds under a minute).
pub fn human_uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn print(status: &Status, format: OutputFormat) {
    match format {
        OutputFormat::Json => crate::output::print_json(
            &serde_json::to_value(status)
                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
        ),
        OutputFormat::Text => print!("{}", crate::output::redact(&render_text(status))),
    }
}

/// The text view. Pure.
pub fn render_text(status: &Status) -> String {
    // Columns as wide as their longest value, so long image references never shift the rest.
    let app_w = status
        .apps
        .iter()
        .map(|a| a.app.len())
        .chain([18])
        .max()
        .unwrap_or(18);
    let image_w = status
        .apps
        .iter()
        .map(|a| a.image.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let mut out = format!(
        "{:<app_w$} {:<8} {:<9} {:<9} {:<image_w$} {:<8} {:<5} {:<10} {}\n",
        "APP", "OWNER", "DESIRED", "STATE", "IMAGE", "UPTIME", "SPEC", "CONFIG", "HEALTH"
    );
    for a in &status.apps {
        out.push_str(&format!(
            "{:<app_w$} {:<8} {:<9} {:<9} {:<image_w$} {:<8} {:<5} {:<10} {}\n",
            a.app,
            a.owner,
            a.desired,
            a.state,
            a.image,
            a.uptime_seconds
                .map(human_uptime)
                .unwrap_or_else(|| "-".into()),
            match a.spec_hash_match {
                Some(true) => "ok",
                Some(false) => "diff",
                None => "-",
            },
            if a.config_drift.is_empty() {
                "ok".to_string()
            } else {
                format!("drift ({})", a.config_drift.len())
            },
            a.health.label(),
        ));
        if !a.converged {
            out.push_str(&format!("{:<app_w$} {}\n", "", a.detail));
        }
        if let (true, Some(error)) = (a.health.failing(), &a.health.last_error) {
            out.push_str(&format!("{:<app_w$} health: {error}\n", ""));
        }
        if let Some(what) = &a.health.operator {
            out.push_str(&format!("{:<app_w$} health: {what}\n", ""));
        }
        if let Some(c) = &a.health.chain {
            out.push_str(&format!(
                "{:<app_w$} chain: {}, {}/{} blocks, verification {:.1} %\n",
                "",
                if c.initial_block_download {
                    "syncing"
                } else {
                    "synced"
                },
                c.blocks,
                c.headers,
                c.verification_progress * 100.0
            ));
        }
    }
    for e in &status.manifest_errors {
        out.push_str(&format!("invalid manifest: {e}\n"));
    }
    if let Some(error) = &status.podman_error {
        out.push_str(&format!("podman:    {error}\n"));
    }
    let record = |name: &str, r: &Option<RecordSummary>| match r {
        Some(r) => format!(
            "{} (at {})",
            r.result,
            r.at.as_deref().unwrap_or("unknown time")
        ),
        None => format!("no {name} record yet"),
    };
    out.push_str(&format!(
        "podman:    last heal {}\n",
        record("heal-podman", &status.podman)
    ));
    let pending = match &status.pending_update {
        Some(p) if p.get("damaged").is_some() => format!(
            "pending marker DAMAGED ({})",
            p["damaged"].as_str().unwrap_or("?")
        ),
        Some(p) => format!(
            "pending {}",
            p.get("version")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| p.to_string())
        ),
        None => "none pending".into(),
    };
    out.push_str(&format!(
        "update:    {pending}; last verify {}\n",
        record("verify-update", &status.last_verify)
    ));
    out.push_str(&format!(
        "reconcile: last run {}\n",
        record("reconcile", &status.last_reconcile)
    ));
    if let Some(overdue) = &status.reconcile_overdue {
        out.push_str(&format!("reconcile: OVERDUE: {overdue}\n"));
    }
    out.push_str(match (status.converged, status.healthy, status.ok) {
        (true, true, true) => "status: converged\n",
        (true, false, _) => "status: converged, but some apps are unhealthy\n",
        (true, true, false) => "status: converged, with problems\n",
        (false, _, _) => "status: NOT converged\n",
    });
    if status.converged && !status.ok {
        for p in &status.problems {
            out.push_str(&format!("problem: {p}\n"));
        }
    }
    for w in &status.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;
    use crate::reconcile::Outcome;
    use crate::status::fixtures::{container, result};
    use crate::status::{app_status, summarise, AppStatus};

    #[test]
    fn text_view_is_exact() {
        let c = container("running", 1_000);
        let status = Status {
            schema: crate::status::SCHEMA,
            ok: false,
            exit_code: 1,
            converged: false,
            healthy: true,
            podman_error: None,
            problems: vec![],
            warnings: vec![],
            apps: vec![
                app_status(
                    &result(Action::Ok, Outcome::Ok),
                    None,
                    Some(&c),
                    vec![],
                    8_200,
                ),
                AppStatus {
                    app: "db".into(),
                    ..app_status(&result(Action::Create, Outcome::Ok), None, None, vec![], 0)
                },
            ],
            manifest_errors: vec![],
            podman: Some(summarise(serde_json::json!({"exit_code": 0, "at": "T1"}))),
            pending_update: None,
            last_verify: None,
            last_reconcile: Some(summarise(serde_json::json!({"exit_code": 1, "at": "T2"}))),
            reconcile_overdue: None,
        };
        let expected = "\
APP                OWNER    DESIRED   STATE     IMAGE           UPTIME   SPEC  CONFIG     HEALTH
web                archy    running   running   localhost/web:1 2h 0m    ok    ok         no probe
db                 archy    running   missing                   -        -     ok         no probe
                   why
podman:    last heal ok (at T1)
update:    none pending; last verify no verify-update record yet
reconcile: last run failed (at T2)
status: NOT converged
";
        assert_eq!(render_text(&status), expected);
        assert_eq!(human_uptime(59), "59s");
        assert_eq!(human_uptime(90_061), "1d 1h");
    }
}
