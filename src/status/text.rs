//! `archy status`'s text view: one line per app, then podman, updates and the last reconcile.
//! Pure; the command prints it.

use serde_json::Value;

use super::{RecordSummary, Status};

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

/// The text view. Pure.
///
/// Long, and kept whole on purpose: it is the screen top to bottom (the app table with its
/// column widths, then podman, updates, reconcile, problems), read like the output it makes.
#[allow(clippy::too_many_lines)]
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
            a.uptime_seconds.map_or_else(|| "-".into(), human_uptime),
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
        if let Some(images) = &a.images {
            if let Some(rolled_back) = &images.rolled_back {
                let ack = if images.acknowledged {
                    " (acknowledged)"
                } else {
                    ""
                };
                out.push_str(&format!("{:<app_w$} image: {rolled_back}{ack}\n", ""));
            }
            if let Some(lost) = &images.cannot_roll_back {
                out.push_str(&format!("{:<app_w$} image: {lost}\n", ""));
            }
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
                .map_or_else(|| p.to_string(), String::from)
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
    out.push_str(&backup_text(&status.backups));
    for fs in &status.guard.filesystems {
        out.push_str(&format!(
            "disk:      {}{}\n",
            fs.describe(),
            if fs.low { " LOW" } else { "" }
        ));
    }
    for oom in &status.guard.oom_kills {
        out.push_str(&format!("oom:       {}\n", oom.describe()));
    }
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

/// One line per backed-up file and target: whether it holds the current content, when it was
/// last copied there, the newest version's hash (12 hex), and the error if it fails.
fn backup_text(backups: &[crate::backup::FileView]) -> String {
    let mut out = String::new();
    for f in backups {
        if let Some(pending) = &f.pending {
            out.push_str(&format!("backup:    {} {}: {pending}\n", f.app, f.file));
        }
        if let Some(error) = &f.error {
            out.push_str(&format!(
                "backup:    {} {}: FAILING: {error}\n",
                f.app, f.file
            ));
        }
        for t in &f.targets {
            let ago = |age: i64| human_uptime(age.max(0) as u64);
            let state = match (&t.error, t.current, t.age_seconds) {
                (Some(e), _, _) => format!("FAILING: {e}"),
                (None, true, Some(age)) => format!("current, copied {} ago", ago(age)),
                (None, false, Some(age)) => format!("NOT current, last copied {} ago", ago(age)),
                (None, _, None) => "no copy yet".to_string(),
            };
            let sha = t
                .sha256
                .as_deref()
                .map(|s| format!(" (sha256 {})", &s[..s.len().min(12)]))
                .unwrap_or_default();
            out.push_str(&format!(
                "backup:    {} {} -> {}: {state}{sha}\n",
                f.app, f.file, t.target
            ));
        }
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
            backups: vec![],
            guard: crate::guard::View::default(),
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

    #[test]
    fn backup_lines_name_each_target_its_state_and_hash() {
        use crate::backup::{FileView, TargetView};
        let target = |name: &str, current, age: Option<i64>, error: Option<&str>| TargetView {
            target: name.into(),
            sha256: Some("0123456789abcdef".into()),
            last_success: age.map(|a| 1_000 - a),
            age_seconds: age,
            current,
            error: error.map(String::from),
        };
        let file = FileView {
            app: "lnd".into(),
            file: "d:/x/channel.backup".into(),
            sha256: Some("0123456789abcdef".into()),
            changed_at: Some(900),
            pending: Some("it is being written".into()),
            error: Some("/v/x/channel.backup is not a regular file".into()),
            targets: vec![
                target("/mnt/usb", true, Some(90), None),
                target("/mnt/nfs", false, Some(4_000), None),
                target("command cat", false, None, Some("exited with code 1")),
            ],
            problems: vec![],
        };
        assert_eq!(
            backup_text(&[file]),
            "\
backup:    lnd d:/x/channel.backup: it is being written
backup:    lnd d:/x/channel.backup: FAILING: /v/x/channel.backup is not a regular file
backup:    lnd d:/x/channel.backup -> /mnt/usb: current, copied 1m ago (sha256 0123456789ab)
backup:    lnd d:/x/channel.backup -> /mnt/nfs: NOT current, last copied 1h 6m ago (sha256 0123456789ab)
backup:    lnd d:/x/channel.backup -> command cat: FAILING: exited with code 1 (sha256 0123456789ab)
"
        );
    }
}
