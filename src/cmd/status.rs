//! `archy status`: one line per app (desired vs actual, image, uptime, spec-hash match, config
//! drift, owner), then podman's health, updates and the last reconcile. Read-only: it reuses a
//! dry-run reconcile for the decisions and the status records other commands leave under
//! `<state-dir>/status/`. Exit 0 only when everything is converged, so it serves as a health check.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;
use serde_json::Value;

use super::reconcile::{AppResult, ReconcileArgs, Report};
use super::Ctx;
use crate::health::tick::HealthView;
use crate::manifest::{Manifest, Owner};
use crate::output::OutputFormat;
use crate::plan::Action;
use crate::podman::Container;

/// Show whether every app is converged, podman's health, pending updates and the last reconcile.
///
/// Per app: desired state against actual (running, exited, paused, missing, drifted, orphan,
/// disabled, conflict, error), image, uptime, whether the container's spec hash matches the
/// manifests, config files that differ from what would be rendered, and the owner (archy, or
/// systemd through a Quadlet unit), and health as of the last reconcile tick: healthy,
/// unhealthy n/N (consecutive failed probes of the `failures` that trigger a restart, with the
/// last error), starting, or no probe; an app held back by a `healthy` dependency is `waiting`.
/// Changes nothing. Exit 0 when every app is converged and none is unhealthy, no orphan or
/// invalid manifest exists and the last heal-podman run (if any) succeeded; 1 otherwise.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only these apps (default: every app with a manifest, plus orphans).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
}

/// One app's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppStatus {
    pub app: String,
    /// "archy", "systemd", or "-" for an orphan.
    pub owner: &'static str,
    /// "running", "disabled", or "none" for an orphan.
    pub desired: &'static str,
    /// running / exited / paused / missing / drifted / orphan / disabled / conflict / error /
    /// waiting (held back by a `healthy` dependency).
    pub state: &'static str,
    /// podman's state of the container ("missing" when there is none).
    pub actual: String,
    pub container: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// Whether the container's spec-hash label matches the manifests (None: no container, or
    /// not archy's to judge).
    pub spec_hash_match: Option<bool>,
    /// Config files of this app that differ from what would be rendered.
    pub config_drift: Vec<String>,
    pub converged: bool,
    pub detail: String,
    /// The app's probe as of the last reconcile tick.
    pub health: HealthView,
}

/// A command's last status record, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordSummary {
    pub at: Option<String>,
    /// "ok", "failed", "busy" or "unknown".
    pub result: &'static str,
    pub record: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ok: bool,
    pub exit_code: u8,
    pub converged: bool,
    /// No app is unhealthy.
    pub healthy: bool,
    pub apps: Vec<AppStatus>,
    pub manifest_errors: Vec<String>,
    pub podman: Option<RecordSummary>,
    pub pending_update: Option<Value>,
    pub last_verify: Option<RecordSummary>,
    pub last_reconcile: Option<RecordSummary>,
}

/// Parses a `ReconcileArgs` so new reconcile options get their defaults here too.
#[derive(Debug, Parser)]
struct DryRun {
    #[command(flatten)]
    args: ReconcileArgs,
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<u8> {
    let mut argv = vec!["status".to_string(), "--dry-run".to_string()];
    argv.extend(args.apps.iter().cloned());
    let dry_run = DryRun::try_parse_from(argv)
        .map_err(|e| crate::exit::invalid(format!("reconcile options: {e}")))?
        .args;
    let report = super::reconcile::reconcile(ctx, &dry_run)?;
    let now = crate::health::now()?;
    let state_dir = &ctx.global.state_dir;
    let pending_path = state_dir.join("update/pending.json");
    let pending_update = crate::fsutil::read_optional(&pending_path)?
        .map(|bytes| {
            serde_json::from_slice::<Value>(&bytes)
                .with_context(|| format!("failed to parse {}", pending_path.display()))
        })
        .transpose()?;
    let status = build(
        &report,
        &report.manifests,
        &report.managed,
        now,
        crate::state::read(state_dir, "heal-podman"),
        pending_update,
        crate::state::read(state_dir, "verify-update"),
        crate::state::read(state_dir, "reconcile"),
    );
    print(&status, ctx.global.output);
    Ok(status.exit_code)
}

/// Decide the whole status from the dry-run report, the manifests, podman's listing and the
/// records. Pure.
#[allow(clippy::too_many_arguments)]
pub fn build(
    report: &Report,
    manifests: &[Manifest],
    containers: &[Container],
    now: i64,
    heal: Option<Value>,
    pending_update: Option<Value>,
    verify: Option<Value>,
    reconcile: Option<Value>,
) -> Status {
    let mut drift: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for file in &report.config_files {
        if !matches!(file.status, "unchanged" | "ok") {
            drift
                .entry(file.app.as_str())
                .or_default()
                .push(file.path.clone());
        }
    }
    let mut apps: Vec<AppStatus> = report
        .apps
        .iter()
        .map(|r| {
            let m = manifests.iter().find(|m| m.app == r.app);
            let container = containers
                .iter()
                .find(|c| c.app() == Some(r.app.as_str()) && c.name() == r.container)
                .or_else(|| containers.iter().find(|c| c.app() == Some(r.app.as_str())));
            let mut status = app_status(
                r,
                m,
                container,
                drift.remove(r.app.as_str()).unwrap_or_default(),
                now,
            );
            status.health = crate::health::tick::view(m, report.health.get(&r.app));
            status
        })
        .collect();
    for orphan in &report.orphans {
        let c = containers.iter().find(|c| c.name() == orphan.container);
        apps.push(AppStatus {
            app: orphan.app.clone(),
            owner: "-",
            desired: "none",
            state: "orphan",
            actual: c
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into()),
            container: orphan.container.clone(),
            image: c.map(|c| c.image.clone()).unwrap_or_default(),
            started_at: None,
            uptime_seconds: None,
            spec_hash_match: None,
            config_drift: Vec::new(),
            converged: false,
            detail: "no manifest describes it; `archy reconcile --prune` removes it".into(),
            health: crate::health::tick::view(None, None),
        });
    }
    let podman = heal.map(summarise);
    let converged = apps.iter().all(|a| a.converged)
        && report.manifest_errors.is_empty()
        && podman.as_ref().is_none_or(|p| p.result != "failed");
    let healthy = !apps.iter().any(|a| a.health.unhealthy());
    let exit_code = if converged && healthy {
        crate::exit::SUCCESS
    } else {
        crate::exit::FAILURE
    };
    Status {
        ok: converged && healthy,
        exit_code,
        converged,
        healthy,
        apps,
        manifest_errors: report
            .manifest_errors
            .iter()
            .map(|e| e.to_string())
            .collect(),
        podman,
        pending_update,
        last_verify: verify.map(summarise),
        last_reconcile: reconcile.map(summarise),
    }
}

/// One app's status from its dry-run result and its container. Pure.
pub fn app_status(
    r: &AppResult,
    m: Option<&Manifest>,
    c: Option<&Container>,
    config_drift: Vec<String>,
    now: i64,
) -> AppStatus {
    let owner = match m.map(|m| m.owner) {
        Some(Owner::Systemd) => "systemd",
        _ => "archy",
    };
    let enabled = m.is_none_or(|m| m.enabled);
    let actual = c
        .map(|c| c.state.clone())
        .unwrap_or_else(|| "missing".into());
    let running = actual == "running";
    let mut detail = r.error.clone().unwrap_or_else(|| r.reason.clone());
    let (mut state, mut converged) = match r.action {
        _ if r.result == "failed" && r.action != Action::Delegated => ("error", false),
        _ if r.result == "waiting" => ("waiting", false),
        Action::Ok => ("running", true),
        Action::Start => ("exited", false),
        Action::Unpause => ("paused", false),
        Action::Create => ("missing", false),
        Action::Recreate | Action::Restart => ("drifted", false),
        Action::Remove => ("disabled", false),
        Action::Absent => ("disabled", true),
        Action::Conflict | Action::Adopt => ("conflict", false),
        Action::Delegated if r.result == "failed" => ("drifted", false),
        Action::Delegated if !enabled => ("disabled", true),
        Action::Delegated if running => ("running", true),
        Action::Delegated if c.is_none() => ("missing", false),
        Action::Delegated => ("exited", false),
    };
    if r.action == Action::Delegated && r.result != "failed" {
        detail = format!("run by systemd ({}.service)", r.app);
    }
    if !config_drift.is_empty() {
        if state == "running" {
            state = "drifted";
        }
        converged = false;
        detail = format!("config differs: {}", config_drift.join(", "));
    }
    let spec_hash_match = match (c, r.action) {
        (None, _) | (_, Action::Delegated) => None,
        (Some(_), action) => Some(action != Action::Recreate),
    };
    let started = c.filter(|c| c.started_at > 0).map(|c| c.started_at);
    AppStatus {
        app: r.app.clone(),
        owner,
        desired: if enabled { "running" } else { "disabled" },
        state,
        actual,
        container: r.container.clone(),
        image: c
            .map(|c| c.image.clone())
            .or_else(|| m.and_then(|m| m.image.clone()))
            .unwrap_or_default(),
        started_at: started.map(|s| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s as u64))
                .to_string()
        }),
        uptime_seconds: started
            .filter(|_| running)
            .map(|s| now.saturating_sub(s).max(0) as u64),
        spec_hash_match,
        config_drift,
        converged,
        detail,
        health: crate::health::tick::view(m, None),
    }
}

/// A record's time and result: `ok: bool` if present, else `exit_code` (0 ok, 75 busy).
pub fn summarise(record: Value) -> RecordSummary {
    let result = match (
        record.get("ok").and_then(Value::as_bool),
        record.get("exit_code").and_then(Value::as_u64),
    ) {
        (Some(true), _) | (None, Some(0)) => "ok",
        (_, Some(75)) => "busy",
        (Some(false), _) | (None, Some(_)) => "failed",
        (None, None) => "unknown",
    };
    RecordSummary {
        at: record.get("at").and_then(Value::as_str).map(String::from),
        result,
        record,
    }
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
        if let (true, Some(error)) = (a.health.unhealthy(), &a.health.last_error) {
            out.push_str(&format!("{:<app_w$} health: {error}\n", ""));
        }
    }
    for e in &status.manifest_errors {
        out.push_str(&format!("invalid manifest: {e}\n"));
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
    out.push_str(match (status.converged, status.healthy) {
        (true, true) => "status: converged\n",
        (true, false) => "status: converged, but some apps are unhealthy\n",
        (false, _) => "status: NOT converged\n",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(action: Action, result: &'static str) -> AppResult {
        AppResult {
            app: "web".into(),
            container: "archy-web".into(),
            action,
            reason: "why".into(),
            result,
            error: None,
        }
    }

    fn container(state: &str, started_at: i64) -> Container {
        Container {
            id: "0123456789abcdef".into(),
            names: vec!["archy-web".into()],
            state: state.into(),
            image: "localhost/web:1".into(),
            started_at,
            ..Default::default()
        }
    }

    #[test]
    fn categories_follow_the_plan() {
        let c = container("running", 1_000);
        let s = app_status(&result(Action::Ok, "ok"), None, Some(&c), vec![], 4_700);
        assert_eq!(
            (s.state, s.converged, s.uptime_seconds, s.spec_hash_match),
            ("running", true, Some(3_700), Some(true))
        );
        assert_eq!(s.started_at.as_deref(), Some("1970-01-01T00:16:40Z"));
        let exited = container("exited", 1_000);
        let s = app_status(&result(Action::Start, "ok"), None, Some(&exited), vec![], 0);
        assert_eq!(
            (s.state, s.converged, s.uptime_seconds),
            ("exited", false, None)
        );
        let s = app_status(&result(Action::Recreate, "ok"), None, Some(&c), vec![], 0);
        assert_eq!((s.state, s.spec_hash_match), ("drifted", Some(false)));
        let s = app_status(&result(Action::Create, "ok"), None, None, vec![], 0);
        assert_eq!(
            (s.state, s.actual.as_str(), s.spec_hash_match),
            ("missing", "missing", None)
        );
        let s = app_status(
            &result(Action::Ok, "ok"),
            None,
            Some(&c),
            vec!["/etc/x".into()],
            0,
        );
        assert_eq!((s.state, s.converged), ("drifted", false));
        assert_eq!(s.detail, "config differs: /etc/x");
        let s = app_status(
            &result(Action::Delegated, "failed"),
            None,
            Some(&c),
            vec![],
            0,
        );
        assert_eq!((s.state, s.converged), ("drifted", false));
    }

    #[test]
    fn records_summarise_by_ok_or_exit_code() {
        let r = summarise(serde_json::json!({"exit_code": 0, "at": "2026-01-01T00:00:00Z"}));
        assert_eq!(
            (r.result, r.at.as_deref()),
            ("ok", Some("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            summarise(serde_json::json!({"exit_code": 75})).result,
            "busy"
        );
        assert_eq!(
            summarise(serde_json::json!({"exit_code": 1})).result,
            "failed"
        );
        assert_eq!(summarise(serde_json::json!({"ok": false})).result, "failed");
        assert_eq!(summarise(serde_json::json!({})).result, "unknown");
    }

    #[test]
    fn text_view_is_exact() {
        let c = container("running", 1_000);
        let status = Status {
            ok: false,
            exit_code: 1,
            converged: false,
            healthy: true,
            apps: vec![
                app_status(&result(Action::Ok, "ok"), None, Some(&c), vec![], 8_200),
                AppStatus {
                    app: "db".into(),
                    ..app_status(&result(Action::Create, "ok"), None, None, vec![], 0)
                },
            ],
            manifest_errors: vec![],
            podman: Some(summarise(serde_json::json!({"exit_code": 0, "at": "T1"}))),
            pending_update: None,
            last_verify: None,
            last_reconcile: Some(summarise(serde_json::json!({"exit_code": 1, "at": "T2"}))),
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
