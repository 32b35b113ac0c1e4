//! The reconcile report as text: changed config files, one line per app (with its error or
//! what it waits for), orphans, invalid manifests, then the counts. Pure; the command prints it.

use std::fmt::Write as _;

use super::{Outcome, Report};
use crate::render::FileStatus;

/// The text `archy reconcile` prints (secrets redacted in app lines and manifest errors).
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for file in &report.config_files {
        if file.status != FileStatus::Unchanged {
            _ = writeln!(
                out,
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
        _ = writeln!(out, "{}", crate::output::redact(&line));
    }
    for o in &report.orphans {
        _ = writeln!(
            out,
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
        _ = writeln!(out, "{}", crate::output::redact(&e.to_string()));
    }
    let count = |result: Outcome| report.apps.iter().filter(|a| a.result == result).count();
    let prefix = if report.dry_run {
        "reconcile (dry run)"
    } else {
        "reconcile"
    };
    _ = writeln!(out,
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
    out
}
