//! What `archy status` decides: per app, desired against actual, from a dry-run reconcile
//! [`Report`] (which carries the manifests and podman's listing it planned from), plus the
//! status records other commands leave. Pure apart from [`Records::read`]; printing lives in
//! `cmd/status.rs`.

pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::health::tick::{HealthView, ViewStatus};
use crate::manifest::{Manifest, Owner};
use crate::metrics;
use crate::plan::Action;
use crate::podman::{Container, ContainerState};
use crate::reconcile::{AppResult, Outcome, Report};
use crate::render::FileStatus;

/// One app's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppStatus {
    pub app: String,
    pub owner: AppOwner,
    pub desired: Desired,
    pub state: AppState,
    /// podman's state of the container ("missing" when there is none).
    pub actual: String,
    pub container: String,
    pub image: String,
    /// The registry digest the container runs, when its image is pinned by one
    /// (`name:tag@sha256:…`: podman pulled and verified exactly that).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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
    /// Its last-known-good image, the bad images it is kept from, and a rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<crate::reconcile::lastgood::ImagesView>,
}

/// Who runs an app's container; serialised as the word (`-` for an orphan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppOwner {
    Archy,
    Systemd,
    /// An orphan: no manifest claims it.
    #[serde(rename = "-")]
    Orphan,
}

/// What the manifests want of an app; serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Disabled,
    /// An orphan: nothing is desired of it.
    None,
}

/// Where an app stands against its manifest; serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Running,
    Exited,
    Paused,
    Missing,
    /// The container (or a config file) differs from what the manifests describe.
    Drifted,
    /// No manifest describes the container.
    Orphan,
    Disabled,
    Conflict,
    Error,
    /// Held back by a `healthy` or `synced` dependency.
    Waiting,
}

impl AppOwner {
    pub fn as_str(self) -> &'static str {
        match self {
            AppOwner::Archy => "archy",
            AppOwner::Systemd => "systemd",
            AppOwner::Orphan => "-",
        }
    }
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Disabled => "disabled",
            Desired::None => "none",
        }
    }
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Running => "running",
            AppState::Exited => "exited",
            AppState::Paused => "paused",
            AppState::Missing => "missing",
            AppState::Drifted => "drifted",
            AppState::Orphan => "orphan",
            AppState::Disabled => "disabled",
            AppState::Conflict => "conflict",
            AppState::Error => "error",
            AppState::Waiting => "waiting",
        }
    }
}

/// The words, padded where a width is asked (the text table).
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}
display_as_str!(AppOwner, Desired, AppState);

/// How a command's last run ended, read from its status record; serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordResult {
    Ok,
    Failed,
    /// It found its lock held (exit 75).
    Busy,
    /// The record says neither `ok` nor `exit_code`.
    Unknown,
}

impl std::fmt::Display for RecordResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RecordResult::Ok => "ok",
            RecordResult::Failed => "failed",
            RecordResult::Busy => "busy",
            RecordResult::Unknown => "unknown",
        })
    }
}

/// A command's last status record, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordSummary {
    pub at: Option<String>,
    pub result: RecordResult,
    pub record: Value,
}

/// Version of the status JSON document (fields: `docs/status-json.md`). Raised when a field
/// changes meaning or goes away; new fields may appear without a raise.
pub const SCHEMA: u32 = 1;

/// The whole status, as printed with `--output json` (documented in `docs/status-json.md`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: u32,
    /// False whenever anything reported here failed (`problems` says what).
    pub ok: bool,
    pub exit_code: u8,
    /// Every app is converged, no orphan, no invalid manifest, the last heal-podman did not fail.
    pub converged: bool,
    /// No app is unhealthy (by its health probe, as of the last reconcile tick).
    pub healthy: bool,
    /// podman could not be asked (it did not answer within its time limit, or failed): the
    /// apps are then unknown and not listed.
    pub podman_error: Option<String>,
    pub apps: Vec<AppStatus>,
    pub manifest_errors: Vec<String>,
    pub podman: Option<RecordSummary>,
    pub pending_update: Option<Value>,
    pub last_verify: Option<RecordSummary>,
    pub last_reconcile: Option<RecordSummary>,
    /// Why reconcile is overdue (no full reconcile completed within the allowed age).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile_overdue: Option<String>,
    /// Every reason `ok` is false, one line each (empty when ok).
    pub problems: Vec<String>,
    /// Trouble that does not make the node fail (`ok` stays as it is): a metrics file the last
    /// reconcile could not write.
    pub warnings: Vec<String>,
    /// Every file a manifest's `backup:` names, with each target (as of the last reconcile tick).
    pub backups: Vec<crate::backup::FileView>,
    /// The disk and memory guard: `oom_kills` (flattened into the document).
    #[serde(flatten)]
    pub guard: crate::guard::View,
}

/// What other commands left under `<state-dir>`: their last status records and a pending update.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub heal: Option<Value>,
    pub pending_update: Option<Value>,
    pub verify: Option<Value>,
    pub reconcile: Option<Value>,
    /// The record of the last full reconcile that ran to its end.
    pub reconcile_completed: Option<Value>,
    /// When the state directory was created (None: it does not exist yet).
    pub state_since: Option<std::time::SystemTime>,
    /// The last `--metrics-file` write failed: its record.
    pub metrics: Option<Value>,
    /// `<state-dir>/backup/<app>.json` of every app with a `backup:` key (read lazily: see
    /// [`Records::read_backups`]); an unreadable one is its error.
    pub backups: BTreeMap<String, Result<crate::backup::AppState, String>>,
    /// `status/oom.json`: the OOM kills reconcile saw.
    pub oom: crate::guard::oom::Record,
}

impl Records {
    /// Read them. A damaged `update/pending.json` (unreadable, not JSON) does not stop the
    /// status: it becomes `{"damaged": "<why>"}`.
    pub fn read(state_dir: &Path) -> Result<Records> {
        Records::read_with(state_dir, None, None)
    }

    /// [`Records::read`], taking the reconcile records from the caller where it has them (the
    /// tick that just wrote them) instead of reading them back.
    pub fn read_with(
        state_dir: &Path,
        reconcile: Option<Value>,
        reconcile_completed: Option<Value>,
    ) -> Result<Records> {
        let pending_path = state_dir.join("update/pending.json");
        let pending_update = match crate::fsutil::read_optional(&pending_path) {
            Ok(bytes) => bytes.map(|bytes| {
                serde_json::from_slice::<Value>(&bytes)
                    .with_context(|| format!("failed to parse {}", pending_path.display()))
                    .unwrap_or_else(|err| damaged_marker(&err))
            }),
            Err(err) => Some(damaged_marker(&err)),
        };
        Ok(Records {
            heal: crate::state::read(state_dir, "heal-podman"),
            pending_update,
            verify: crate::state::read(state_dir, "verify-update"),
            reconcile: reconcile.or_else(|| crate::state::read(state_dir, "reconcile")),
            reconcile_completed: reconcile_completed
                .or_else(|| crate::state::read(state_dir, crate::state::RECONCILE_COMPLETED)),
            state_since: crate::state::state_dir_since(state_dir),
            metrics: crate::state::read(state_dir, crate::state::METRICS),
            backups: BTreeMap::new(),
            oom: crate::guard::oom::read(state_dir),
        })
    }

    /// Read the backup state of these apps (those whose manifest has a `backup:` key).
    pub fn read_backups<'a>(
        mut self,
        state_dir: &Path,
        apps: impl Iterator<Item = &'a str>,
    ) -> Self {
        for app in apps {
            let state = crate::backup::load(state_dir, app).map_err(|e| format!("{e:#}"));
            self.backups.insert(app.to_string(), state);
        }
        self
    }
}

/// `--max-reconcile-age`'s default: four 30-second ticks.
pub const DEFAULT_MAX_RECONCILE_AGE: std::time::Duration = std::time::Duration::from_secs(120);

fn damaged_marker(err: &anyhow::Error) -> Value {
    serde_json::json!({ "damaged": format!("{err:#}") })
}

/// Decide the whole status from the dry-run report (its manifests and podman listing included)
/// and the records. Pure.
///
/// Long, and kept whole on purpose: every reason `ok` is false is added to one `problems` list
/// in the order `archy status` prints them; one function keeps that list and `ok` in step.
#[allow(clippy::too_many_lines)]
pub fn build(
    report: &Report,
    now: i64,
    records: Records,
    max_reconcile_age: std::time::Duration,
) -> Status {
    let manifests = &report.manifests;
    let containers = &report.managed;
    let mut drift: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for file in &report.config_files {
        if file.status != FileStatus::Unchanged {
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
            status.images = report
                .images
                .get(&r.app)
                .and_then(crate::reconcile::lastgood::view);
            status
        })
        .collect();
    for orphan in &report.orphans {
        let c = containers.iter().find(|c| c.name() == orphan.container);
        apps.push(AppStatus {
            app: orphan.app.clone(),
            owner: AppOwner::Orphan,
            desired: Desired::None,
            state: AppState::Orphan,
            actual: c.map_or_else(|| "missing".into(), |c| c.state.to_string()),
            container: orphan.container.clone(),
            image: c.map(|c| c.image.clone()).unwrap_or_default(),
            digest: None,
            started_at: None,
            uptime_seconds: None,
            spec_hash_match: None,
            config_drift: Vec::new(),
            converged: false,
            detail: "no manifest describes it; `archy reconcile --prune` removes it".into(),
            health: crate::health::tick::view(None, None),
            images: None,
        });
    }
    let podman = records.heal.map(summarise);
    let reconcile_overdue = crate::state::reconcile_overdue(
        records.reconcile_completed.as_ref(),
        records.state_since,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
        max_reconcile_age,
    );
    let converged = apps.iter().all(|a| a.converged)
        && report.manifest_errors.is_empty()
        && podman
            .as_ref()
            .is_none_or(|p| p.result != RecordResult::Failed);
    let last_verify = records.verify.map(summarise);
    let last_reconcile = records.reconcile.map(summarise);
    let mut problems: Vec<String> = apps
        .iter()
        .filter(|a| !a.converged)
        .map(|a| format!("app {}: {} ({})", a.app, a.state, a.detail))
        .collect();
    problems.extend(
        report
            .manifest_errors
            .iter()
            .map(|e| crate::output::redact(&e.to_string())),
    );
    for (what, record) in [
        ("the last heal-podman", &podman),
        ("the last verify-update", &last_verify),
        ("the last reconcile", &last_reconcile),
    ] {
        if record
            .as_ref()
            .is_some_and(|r| r.result == RecordResult::Failed)
        {
            problems.push(format!("{what} failed"));
        }
    }
    if let Some(damage) = records
        .pending_update
        .as_ref()
        .and_then(|p| p.get("damaged"))
        .and_then(Value::as_str)
    {
        problems.push(format!(
            "the pending update marker is damaged ({damage}); the boot verify-update treats it as an update of the current release pending"
        ));
    }
    // Converged now is not enough: reconcile must also still be running to keep it so.
    problems.extend(reconcile_overdue.clone());
    let healthy = !apps.iter().any(|a| a.health.failing());
    problems.extend(
        apps.iter()
            .filter(|a| a.health.failing())
            .map(|a| format!("app {}: {}", a.app, a.health.describe())),
    );
    problems.extend(apps.iter().filter_map(|a| {
        let rolled_back = a
            .images
            .as_ref()
            .filter(|i| i.alarm())?
            .rolled_back
            .as_ref()?;
        Some(format!(
            "app {}: {rolled_back} (`archy reconcile --acknowledge {0}` or --retry {0})",
            a.app
        ))
    }));
    problems.extend(apps.iter().filter_map(|a| {
        let lost = a.images.as_ref()?.cannot_roll_back.as_ref()?;
        Some(format!(
            "app {}: {lost} (`archy reconcile --acknowledge {0}` or --retry {0})",
            a.app
        ))
    }));
    let warnings: Vec<String> = records
        .metrics
        .iter()
        .filter(|m| m.get("ok").and_then(Value::as_bool) == Some(false))
        .map(|m| {
            format!(
                "the last reconcile could not write its metrics file: {}",
                m.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no detail)")
            )
        })
        .collect();
    let backups = backup_views(manifests, &records.backups, now, &mut problems);
    let guard = crate::guard::View {
        oom_kills: crate::guard::oom_views(&records.oom, apps.iter().map(|a| a.app.as_str())),
        filesystems: Vec::new(),
    };
    let ok = converged && problems.is_empty();
    let exit_code = if ok {
        crate::exit::SUCCESS
    } else {
        crate::exit::FAILURE
    };
    Status {
        schema: SCHEMA,
        ok,
        exit_code,
        converged,
        healthy,
        podman_error: None,
        apps,
        manifest_errors: report
            .manifest_errors
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        podman,
        pending_update: records.pending_update,
        last_verify,
        last_reconcile,
        problems,
        warnings,
        reconcile_overdue,
        backups,
        guard,
    }
}

/// Every backed-up file's view, its problems added to `problems` (pure). An app with a
/// `backup:` key whose state cannot be read is a problem of its own.
fn backup_views(
    manifests: &[Manifest],
    states: &BTreeMap<String, Result<crate::backup::AppState, String>>,
    now: i64,
    problems: &mut Vec<String>,
) -> Vec<crate::backup::FileView> {
    let mut views = Vec::new();
    for m in manifests {
        let Some(spec) = &m.backup else { continue };
        let state = match states.get(&m.app) {
            Some(Ok(state)) => state.clone(),
            Some(Err(error)) => {
                problems.push(format!("backup {}: {error}", m.app));
                crate::backup::AppState::default()
            }
            None => crate::backup::AppState::default(),
        };
        for view in crate::backup::view(&m.app, spec, &state, now) {
            problems.extend(view.problems.iter().cloned());
            views.push(view);
        }
    }
    views
}

/// Add the file systems' free space (`guard::space::measure`) to a status: one below
/// `min_free` is a problem, so status fails (exit 1) naming it.
pub fn add_free_space(
    status: &mut Status,
    views: Vec<crate::guard::space::FsView>,
    min_free: &crate::guard::space::MinFree,
) {
    let problems = crate::guard::space::problems(&views, min_free);
    if !problems.is_empty() {
        status.ok = false;
        status.exit_code = crate::exit::FAILURE;
        status.problems.extend(problems);
    }
    status.guard.filesystems = views;
}

/// The status when podman could not be asked (`error`: it did not answer within its time
/// limit, or failed): the apps are unknown; the records are shown as they are. Pure.
pub fn without_podman(error: String, records: Records) -> Status {
    let empty = Report {
        images: BTreeMap::new(),
        ok: false,
        exit_code: crate::exit::FAILURE,
        dry_run: true,
        apps: Vec::new(),
        orphans: Vec::new(),
        manifest_errors: Vec::new(),
        config_files: Vec::new(),
        managed: Vec::new(),
        manifests: Vec::new(),
        health: BTreeMap::new(),
    };
    let mut status = build(&empty, 0, records, DEFAULT_MAX_RECONCILE_AGE);
    status.problems.insert(0, error.clone());
    status.podman_error = Some(error);
    status.ok = false;
    status.converged = false;
    status.exit_code = crate::exit::FAILURE;
    status
}

/// A real (not dry-run) reconcile's report as the tick left things (pure): apps it changed are
/// converged (removed ones gone from the listing), config files it wrote are current. The
/// listing is from before the tick; this is what lets the metrics written after a tick describe
/// the node after it without listing again.
pub fn after_tick(report: &Report) -> Report {
    let mut after = report.clone();
    let mut removed = BTreeSet::new();
    for app in after
        .apps
        .iter_mut()
        .filter(|a| a.result == Outcome::Changed)
    {
        if app.action == Action::Remove {
            removed.insert(app.app.clone());
            app.action = Action::Absent;
        } else {
            app.action = Action::Ok;
        }
        app.result = Outcome::Ok;
    }
    for file in &mut after.config_files {
        if matches!(file.status, FileStatus::Created | FileStatus::WrittenDrift) {
            file.status = FileStatus::Unchanged;
        }
    }
    after
        .managed
        .retain(|c| c.app().is_none_or(|a| !removed.contains(a)));
    after
}

/// `archy_app_healthy`: for an app with a health probe, whether its probe passes (status
/// `healthy`; `starting` and `unhealthy` are not), whatever the container's spec; for an app
/// without one, whether it is as desired (`converged`: running and current, or disabled and
/// gone), the only health archy knows of it.
fn app_healthy(a: &AppStatus) -> bool {
    match a.health.status {
        ViewStatus::NoProbe => a.converged,
        status => status == ViewStatus::Probed(crate::health::Status::Healthy),
    }
}

/// Whether the app's container runs: what the plan found fine, or what podman reports.
fn app_up(a: &AppStatus) -> bool {
    a.state == AppState::Running || a.actual == ContainerState::Running.as_str()
}

/// The metrics view of a status (pure). `healthy` is what the app's health probe says
/// ([`app_healthy`]); `restarts` are archy's counters, `bad_versions` the update journal's.
pub fn metrics_snapshot(
    status: &Status,
    restarts: &BTreeMap<String, u64>,
    bad_versions: Vec<String>,
) -> metrics::Snapshot {
    let run = |r: &RecordSummary| metrics::RunSample {
        result: match r.result {
            RecordResult::Ok => metrics::RunResult::Ok,
            RecordResult::Failed => metrics::RunResult::Failed,
            RecordResult::Busy => metrics::RunResult::Busy,
            RecordResult::Unknown => metrics::RunResult::Unknown,
        },
        timestamp_seconds: r
            .at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64),
        duration_seconds: r
            .record
            .get("duration_ms")
            .and_then(Value::as_f64)
            .map(|ms| ms / 1000.0),
    };
    metrics::Snapshot {
        apps: status
            .apps
            .iter()
            .map(|a| metrics::AppSample {
                app: a.app.clone(),
                up: app_up(a),
                healthy: app_healthy(a),
                restarts: restarts.get(&a.app).copied().unwrap_or(0),
                spec_drift: a.spec_hash_match == Some(false),
                config_drift_files: a.config_drift.len(),
                images: metrics::ImageSample {
                    rolled_back: a
                        .images
                        .as_ref()
                        .is_some_and(crate::reconcile::lastgood::ImagesView::alarm),
                    bad_images: a.images.as_ref().map_or(0, |i| i.bad_images.len()),
                },
                chain: a.health.chain.map(|c| metrics::ChainSample {
                    blocks: c.blocks,
                    headers: c.headers,
                    verification_progress: c.verification_progress,
                    initial_block_download: c.initial_block_download,
                }),
            })
            .collect(),
        manifests_invalid: status.manifest_errors.len(),
        converged: status.converged,
        reconcile: status.last_reconcile.as_ref().map(run),
        podman_heal: status.podman.as_ref().map(run),
        update_pending: status.pending_update.as_ref().map(|p| {
            p.get("version")
                .and_then(Value::as_str)
                .map_or_else(|| "unknown".into(), String::from)
        }),
        bad_versions,
        backups: status
            .backups
            .iter()
            .flat_map(|f| {
                f.targets.iter().map(|t| metrics::BackupSample {
                    app: f.app.clone(),
                    file: f.file.clone(),
                    target: t.target.clone(),
                    last_success_timestamp: t.last_success,
                    age_seconds: t.age_seconds,
                    current: t.current,
                    failing: t.error.is_some(),
                    sha256: t.sha256.clone(),
                })
            })
            .collect(),
        guard: metrics::GuardSample {
            oom_kills: status
                .apps
                .iter()
                .map(|a| {
                    let kills = status
                        .guard
                        .oom_kills
                        .iter()
                        .find(|o| o.app == a.app)
                        .map_or(0, |o| o.kills);
                    (a.app.clone(), kills)
                })
                .collect(),
            filesystems: status
                .guard
                .filesystems
                .iter()
                .map(|f| metrics::FsSample {
                    fs: f.role.label(),
                    path: f.path.display().to_string(),
                    free_bytes: f.free_bytes,
                    size_bytes: f.size_bytes,
                    low: f.low,
                })
                .collect(),
        },
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
        Some(Owner::Systemd) => AppOwner::Systemd,
        _ => AppOwner::Archy,
    };
    let enabled = m.is_none_or(|m| m.enabled);
    let running = c.is_some_and(|c| c.state == ContainerState::Running);
    let actual = c.map_or_else(|| "missing".into(), |c| c.state.to_string());
    let mut detail = r.error.clone().unwrap_or_else(|| r.reason.clone());
    let (mut state, mut converged) = match r.action {
        _ if r.result == Outcome::Failed && r.action != Action::Delegated => {
            (AppState::Error, false)
        }
        _ if r.result == Outcome::Waiting => (AppState::Waiting, false),
        Action::Ok => (AppState::Running, true),
        Action::Start => (AppState::Exited, false),
        Action::Unpause => (AppState::Paused, false),
        Action::Create => (AppState::Missing, false),
        Action::Recreate | Action::Restart => (AppState::Drifted, false),
        Action::Remove => (AppState::Disabled, false),
        Action::Absent => (AppState::Disabled, true),
        Action::Conflict | Action::Adopt => (AppState::Conflict, false),
        Action::Delegated if r.result == Outcome::Failed => (AppState::Drifted, false),
        Action::Delegated if !enabled => (AppState::Disabled, true),
        Action::Delegated if running => (AppState::Running, true),
        Action::Delegated if c.is_none() => (AppState::Missing, false),
        Action::Delegated => (AppState::Exited, false),
    };
    if r.action == Action::Delegated && r.result != Outcome::Failed {
        detail = format!("run by systemd ({}.service)", r.app);
    }
    if !config_drift.is_empty() {
        if state == AppState::Running {
            state = AppState::Drifted;
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
        desired: if enabled {
            Desired::Running
        } else {
            Desired::Disabled
        },
        state,
        actual,
        container: r.container.clone(),
        image: c
            .map(|c| c.image.clone())
            .or_else(|| m.and_then(|m| m.image.clone()))
            .unwrap_or_default(),
        digest: c
            .and_then(|c| crate::images::pinned_digest(&c.image))
            .map(String::from),
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
        images: None,
    }
}

/// A record's time and result: `ok: bool` if present, else `exit_code` (0 ok, 75 busy).
pub fn summarise(record: Value) -> RecordSummary {
    let result = match (
        record.get("ok").and_then(Value::as_bool),
        record.get("exit_code").and_then(Value::as_u64),
    ) {
        (Some(true), _) | (None, Some(0)) => RecordResult::Ok,
        (_, Some(75)) => RecordResult::Busy,
        (Some(false), _) | (None, Some(_)) => RecordResult::Failed,
        (None, None) => RecordResult::Unknown,
    };
    RecordSummary {
        at: record.get("at").and_then(Value::as_str).map(String::from),
        result,
        record,
    }
}

/// The status of `apps` (empty: all): a dry-run reconcile decides, the records other commands
/// left are read, [`build`] combines them. Answers within one listing's time limit even when
/// podman hangs (then the status says podman did not answer).
pub fn run(ctx: &crate::ctx::Ctx, apps: &[String], max_reconcile_age: Duration) -> Result<Status> {
    let options = crate::reconcile::Options {
        apps: apps.to_vec(),
        dry_run: true,
        ..crate::reconcile::Options::default()
    };
    // A health check answers within one listing's time limit, even when podman hangs: every
    // podman call of this run shares that budget.
    crate::exec::set_deadline(std::time::Instant::now().checked_add(ctx.settings.timeout_listing));
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
    Ok(match report {
        Ok(mut report) => {
            report
                .manifests
                .retain(|m| apps.is_empty() || apps.contains(&m.app));
            let records = records.read_backups(
                &ctx.settings.state_dir,
                report
                    .manifests
                    .iter()
                    .filter(|m| m.backup.is_some())
                    .map(|m| m.app.as_str()),
            );
            build(&report, now, records, max_reconcile_age)
        }
        Err(podman_error) => without_podman(podman_error, records),
    })
}

/// After a real tick with `--metrics-file`: write the metrics ([`write_metrics`]); a failure is
/// a warning recorded for `archy status` (`status/metrics.json`), cleared by the next success.
pub fn write_metrics_after_tick(
    ctx: &crate::ctx::Ctx,
    report: &crate::reconcile::Report,
    path: &Path,
    recorded: Option<Value>,
    completed: Option<Value>,
) {
    let state_dir = &ctx.settings.state_dir;
    match write_metrics(ctx, report, path, recorded, completed) {
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

/// The node after this tick (its own report, no second listing; the reconcile records it just
/// wrote, not read back) as Prometheus metrics, written atomically to `path`.
fn write_metrics(
    ctx: &crate::ctx::Ctx,
    report: &crate::reconcile::Report,
    path: &Path,
    recorded: Option<Value>,
    completed: Option<Value>,
) -> Result<()> {
    let state_dir = &ctx.settings.state_dir;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let records = Records::read_with(state_dir, recorded, completed)?.read_backups(
        state_dir,
        report
            .manifests
            .iter()
            .filter(|m| m.backup.is_some())
            .map(|m| m.app.as_str()),
    );
    let mut status = build(&after_tick(report), now, records, DEFAULT_MAX_RECONCILE_AGE);
    let min_free = crate::guard::space::MinFree::default();
    let views = crate::guard::space::measure(state_dir, &min_free);
    add_free_space(&mut status, views, &min_free);
    let snapshot = metrics_snapshot(
        &status,
        &crate::metrics::read_restarts(state_dir),
        crate::update::journal::Journal::new(state_dir).bad_versions()?,
    );
    let text = crate::output::redact(&crate::metrics::render(&snapshot));
    crate::metrics::write_file(path, &text)
}

/// The one app and container the status tests (here and in text.rs) build views from.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::plan::Action;
    use crate::podman::Container;
    use crate::reconcile::{AppResult, Outcome};

    pub fn result(action: Action, result: Outcome) -> AppResult {
        AppResult {
            app: "web".into(),
            container: "archy-web".into(),
            action,
            reason: "why".into(),
            result,
            error: None,
        }
    }

    pub fn container(state: &str, started_at: i64) -> Container {
        Container {
            id: "0123456789abcdef".into(),
            names: vec!["archy-web".into()],
            state: crate::podman::ContainerState::parse(state),
            image: "localhost/web:1".into(),
            started_at,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{container, result};
    use super::*;

    /// The enums serialise to the words status printed when they were strings (JSON unchanged),
    /// and the text table prints the same words.
    #[test]
    fn status_words_are_the_ones_json_always_had() {
        use crate::health::Status as Health;
        let word = |v: serde_json::Value| v.as_str().unwrap().to_string();
        let owners = [AppOwner::Archy, AppOwner::Systemd, AppOwner::Orphan];
        let desired = [Desired::Running, Desired::Disabled, Desired::None];
        let states = [
            AppState::Running,
            AppState::Exited,
            AppState::Paused,
            AppState::Missing,
            AppState::Drifted,
            AppState::Orphan,
            AppState::Disabled,
            AppState::Conflict,
            AppState::Error,
            AppState::Waiting,
        ];
        let health = [
            ViewStatus::Probed(Health::Starting),
            ViewStatus::Probed(Health::Healthy),
            ViewStatus::Probed(Health::Unhealthy),
            ViewStatus::Probed(Health::Syncing),
            ViewStatus::Probed(Health::WaitingForOperator),
            ViewStatus::Unknown,
            ViewStatus::NoProbe,
        ];
        let json: Vec<String> = owners
            .iter()
            .map(|v| word(serde_json::to_value(v).unwrap()))
            .chain(
                desired
                    .iter()
                    .map(|v| word(serde_json::to_value(v).unwrap())),
            )
            .chain(
                states
                    .iter()
                    .map(|v| word(serde_json::to_value(v).unwrap())),
            )
            .chain(
                health
                    .iter()
                    .map(|v| word(serde_json::to_value(v).unwrap())),
            )
            .collect();
        let text: Vec<String> = owners
            .iter()
            .map(ToString::to_string)
            .chain(desired.iter().map(ToString::to_string))
            .chain(states.iter().map(ToString::to_string))
            .chain(health.iter().map(ToString::to_string))
            .collect();
        let expected = "archy systemd - running disabled none running exited paused missing \
                        drifted orphan disabled conflict error waiting starting healthy unhealthy \
                        syncing waiting-for-operator unknown no probe";
        assert_eq!(json.join(" "), expected);
        assert_eq!(text.join(" "), expected);
        assert_eq!(format!("[{:<8}]", AppState::Drifted), "[drifted ]");
    }

    #[test]
    fn metrics_follow_the_status() {
        let c = container("running", 1_000);
        let exited = container("exited", 1_000);
        let status = Status {
            schema: SCHEMA,
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
                app_status(&result(Action::Ok, Outcome::Ok), None, Some(&c), vec![], 0),
                AppStatus {
                    app: "db".into(),
                    ..app_status(
                        &result(Action::Start, Outcome::Ok),
                        None,
                        Some(&exited),
                        vec![],
                        0,
                    )
                },
                AppStatus {
                    app: "ui".into(),
                    ..app_status(
                        &result(Action::Recreate, Outcome::Ok),
                        None,
                        Some(&c),
                        vec!["/x".into()],
                        0,
                    )
                },
            ],
            manifest_errors: vec!["bad.yaml: nope".into()],
            podman: Some(summarise(
                serde_json::json!({"exit_code": 1, "at": "2027-01-15T08:00:00Z"}),
            )),
            pending_update: Some(serde_json::json!({"version": "7"})),
            last_verify: None,
            last_reconcile: Some(summarise(
                serde_json::json!({"exit_code": 0, "at": "2027-01-15T08:00:05Z", "duration_ms": 12.5}),
            )),
            reconcile_overdue: None,
        };
        let restarts = BTreeMap::from([("db".to_string(), 4)]);
        let s = metrics_snapshot(&status, &restarts, vec!["6".into()]);
        let apps: Vec<_> = s
            .apps
            .iter()
            .map(|a| {
                (
                    a.app.as_str(),
                    a.up,
                    a.healthy,
                    a.restarts,
                    a.spec_drift,
                    a.config_drift_files,
                )
            })
            .collect();
        assert_eq!(
            apps,
            [
                ("web", true, true, 0, false, 0),
                ("db", false, false, 4, false, 0),
                ("ui", true, false, 0, true, 1),
            ]
        );
        assert_eq!(s.manifests_invalid, 1);
        assert!(!s.converged);
        let r = s.reconcile.unwrap();
        assert_eq!(r.result, metrics::RunResult::Ok);
        assert_eq!(r.timestamp_seconds, Some(1_800_000_005));
        assert_eq!(r.duration_seconds, Some(0.0125));
        assert_eq!(s.podman_heal.unwrap().result, metrics::RunResult::Failed);
        assert_eq!(s.update_pending.as_deref(), Some("7"));
        assert_eq!(s.bad_versions, ["6"]);
    }

    #[test]
    fn metrics_healthy_follows_the_probe_and_converged_without_one() {
        use crate::health::{HealthState, Status as Health};
        let probed = crate::manifest::parse(
            "app: web\nimage: i\nhealth: {tcp: \"127.0.0.1:1\", failures: 2}\n",
        )
        .unwrap();
        let c = container("running", 1_000);
        let converged = app_status(&result(Action::Ok, Outcome::Ok), None, Some(&c), vec![], 0);
        let drifted = app_status(
            &result(Action::Recreate, Outcome::Ok),
            None,
            Some(&c),
            vec!["/x".into()],
            0,
        );
        assert!(converged.converged && !drifted.converged);
        let with = |base: &AppStatus, app: &str, state: Option<Health>| AppStatus {
            app: app.into(),
            health: crate::health::tick::view(
                Some(&probed),
                state
                    .map(|status| HealthState {
                        status,
                        ..Default::default()
                    })
                    .as_ref(),
            ),
            ..base.clone()
        };
        let status = Status {
            schema: SCHEMA,
            ok: false,
            exit_code: 1,
            converged: false,
            healthy: false,
            podman_error: None,
            problems: vec![],
            warnings: vec![],
            backups: vec![],
            guard: crate::guard::View::default(),
            apps: vec![
                // Converged, but its probe fails: not healthy.
                with(&converged, "failing", Some(Health::Unhealthy)),
                with(&converged, "starting", Some(Health::Starting)),
                with(&converged, "unknown", None),
                // Drifted (a recreate is due), but its probe passes: healthy.
                with(&drifted, "passing", Some(Health::Healthy)),
                // No probe: converged decides.
                AppStatus {
                    app: "plain".into(),
                    ..converged.clone()
                },
                AppStatus {
                    app: "plain-drifted".into(),
                    ..drifted.clone()
                },
            ],
            manifest_errors: vec![],
            podman: None,
            pending_update: None,
            last_verify: None,
            last_reconcile: None,
            reconcile_overdue: None,
        };
        assert_eq!(status.apps[4].health.status, ViewStatus::NoProbe);
        let s = metrics_snapshot(&status, &BTreeMap::new(), vec![]);
        let healthy: Vec<(&str, bool)> =
            s.apps.iter().map(|a| (a.app.as_str(), a.healthy)).collect();
        assert_eq!(
            healthy,
            [
                ("failing", false),
                ("starting", false),
                ("unknown", false),
                ("passing", true),
                ("plain", true),
                ("plain-drifted", false),
            ]
        );
    }

    #[test]
    fn after_a_tick_changed_apps_are_converged_and_removed_ones_gone() {
        let exited = Container {
            labels: [(crate::podman::LABEL_APP.to_string(), "web".to_string())].into(),
            ..container("exited", 1_000)
        };
        let gone = Container {
            names: vec!["archy-old".into()],
            labels: [(crate::podman::LABEL_APP.to_string(), "old".to_string())].into(),
            ..container("running", 1_000)
        };
        let report = Report {
            images: BTreeMap::new(),
            ok: true,
            exit_code: 0,
            dry_run: false,
            apps: vec![
                result(Action::Start, Outcome::Changed),
                AppResult {
                    app: "old".into(),
                    container: "archy-old".into(),
                    ..result(Action::Remove, Outcome::Changed)
                },
                AppResult {
                    app: "bad".into(),
                    container: "archy-bad".into(),
                    ..result(Action::Create, Outcome::Failed)
                },
            ],
            orphans: vec![],
            manifest_errors: vec![],
            config_files: vec![],
            managed: vec![exited, gone],
            health: BTreeMap::new(),
            manifests: vec![],
        };
        let status = build(
            &after_tick(&report),
            0,
            Records::default(),
            DEFAULT_MAX_RECONCILE_AGE,
        );
        let view: Vec<_> = status
            .apps
            .iter()
            .map(|a| (a.app.as_str(), a.state, a.converged, app_up(a)))
            .collect();
        assert_eq!(
            view,
            [
                ("web", AppState::Running, true, true),
                ("old", AppState::Disabled, true, false),
                ("bad", AppState::Error, false, false),
            ]
        );
    }

    #[test]
    fn categories_follow_the_plan() {
        let c = container("running", 1_000);
        let s = app_status(
            &result(Action::Ok, Outcome::Ok),
            None,
            Some(&c),
            vec![],
            4_700,
        );
        assert_eq!(
            (s.state, s.converged, s.uptime_seconds, s.spec_hash_match),
            (AppState::Running, true, Some(3_700), Some(true))
        );
        assert_eq!(s.started_at.as_deref(), Some("1970-01-01T00:16:40Z"));
        let exited = container("exited", 1_000);
        let s = app_status(
            &result(Action::Start, Outcome::Ok),
            None,
            Some(&exited),
            vec![],
            0,
        );
        assert_eq!(
            (s.state, s.converged, s.uptime_seconds),
            (AppState::Exited, false, None)
        );
        let s = app_status(
            &result(Action::Recreate, Outcome::Ok),
            None,
            Some(&c),
            vec![],
            0,
        );
        assert_eq!(
            (s.state, s.spec_hash_match),
            (AppState::Drifted, Some(false))
        );
        let s = app_status(&result(Action::Create, Outcome::Ok), None, None, vec![], 0);
        assert_eq!(
            (s.state, s.actual.as_str(), s.spec_hash_match),
            (AppState::Missing, "missing", None)
        );
        let s = app_status(
            &result(Action::Ok, Outcome::Ok),
            None,
            Some(&c),
            vec!["/etc/x".into()],
            0,
        );
        assert_eq!((s.state, s.converged), (AppState::Drifted, false));
        assert_eq!(s.detail, "config differs: /etc/x");
        let s = app_status(
            &result(Action::Delegated, Outcome::Failed),
            None,
            Some(&c),
            vec![],
            0,
        );
        assert_eq!((s.state, s.converged), (AppState::Drifted, false));
    }

    #[test]
    fn records_summarise_by_ok_or_exit_code() {
        let r = summarise(serde_json::json!({"exit_code": 0, "at": "2026-01-01T00:00:00Z"}));
        assert_eq!(
            (r.result, r.at.as_deref()),
            (RecordResult::Ok, Some("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            summarise(serde_json::json!({"exit_code": 75})).result,
            RecordResult::Busy
        );
        assert_eq!(
            summarise(serde_json::json!({"exit_code": 1})).result,
            RecordResult::Failed
        );
        assert_eq!(
            summarise(serde_json::json!({"ok": false})).result,
            RecordResult::Failed
        );
        assert_eq!(
            summarise(serde_json::json!({})).result,
            RecordResult::Unknown
        );
    }
}
