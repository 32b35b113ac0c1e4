//! The reconcile engine: converge podman's containers to the manifests (level-triggered).
//!
//! One tick runs five named stages:
//! 1. **desire** ([`desired`]): load the manifests, render their config files (written unless a
//!    dry run), resolve images and hash each app's desired container ([`DesiredApp`]);
//! 2. **observe**: the one podman listing (started before the desire stage so podman's start-up
//!    hides archy's own work), and moving archy's network when `--subnet` changed ([`network`]);
//! 3. **plan**: [`crate::plan::plan`], pure, one action per app (a full listing only when
//!    something must be created, to find unmanaged holders of a name);
//! 4. **probe** ([`crate::health`]): the host-side health probes started beside the listing are
//!    joined, `exec` probes run, each probed app's health is decided against its recorded state,
//!    and a restart or recreate health asks for joins the plan;
//! 5. **act** ([`executor`]: apps held back by a `healthy` dependency wait) or, in a dry run,
//!    **preview** (the plan as results, nothing done, health as recorded).
//!
//! Decide (stages 1–3) is cheap: a no-op run makes exactly one podman call.

pub mod defer;
pub mod desired;
pub mod executor;
pub mod lastgood;
pub mod network;
pub mod text;
pub mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::thread::JoinHandle;

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::health::tick as health;
use crate::health::{HealthAction, HealthState, ProbeResult, Status};
use crate::images::HashCache;
use crate::lock::{LockGuard, Mode};
use crate::manifest::{Loaded, Manifest, ManifestError};
use crate::plan::{self, Action, Desired, Plan};
use crate::podman::Container;
use crate::render::{FileResult, FileStatus, RenderOutcome};
pub use desired::DesiredApp;

/// Default parallelism, measured on a 2-core node (BENCHMARKS.md (d), `scripts/bench`): cold
/// converge of 20 apps vs 20 sequential `podman run -d` took 1.21× with --jobs 1, 0.83× with 2,
/// 0.76× with 4 and 0.77× with 8 (medians). podman's own work saturates the machine at about 4
/// concurrent `podman run`s; 8 buys nothing, so 4 it is.
pub const DEFAULT_JOBS: u16 = 4;

/// What one reconcile run is asked to do (`archy reconcile`'s flags; `status` uses a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Only these apps (empty: every app with a manifest).
    pub apps: Vec<String>,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Remove managed containers that no manifest describes.
    pub prune: bool,
    /// Replace an unmanaged container that holds an app's container name.
    pub adopt: bool,
    /// Apps converged in parallel within one dependency layer.
    pub jobs: u16,
    /// Registry mirrors tried before an image's own registry.
    pub mirrors: Vec<String>,
    /// Apps whose bad images are cleared, so the image their manifest names is tried again.
    pub retry: Vec<String>,
    /// Apps whose last rollback the operator acknowledged (status stops failing on it).
    pub acknowledge: Vec<String>,
    /// Apps whose image update is applied even while `defer_updates_while: syncing` holds it.
    pub force: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            apps: Vec::new(),
            dry_run: false,
            prune: false,
            adopt: false,
            jobs: DEFAULT_JOBS,
            mirrors: Vec::new(),
            retry: Vec::new(),
            acknowledge: Vec::new(),
            force: Vec::new(),
        }
    }
}

/// What became of one app in a run. Serialised lowercase, as the JSON output has always said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing to do (or, for `owner: systemd`, its Quadlet unit is current).
    Ok,
    Changed,
    Failed,
    /// A dependency failed, so it was not touched.
    Skipped,
    /// A `healthy` dependency has not passed its probe: not created or started yet.
    Waiting,
    /// Dry run: the action would change something.
    Planned,
    /// Dry run: an unmanaged container holds its name.
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Waiting => "waiting",
            Outcome::Planned => "planned",
            Outcome::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What became of an orphan (a managed container no manifest claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanOutcome {
    /// Left alone and reported (no `--prune`, or a dry run).
    Reported,
    Removed,
    Failed,
    /// `--prune`, but some manifest is invalid and may describe it.
    Kept,
}

impl OrphanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OrphanOutcome::Reported => "reported",
            OrphanOutcome::Removed => "removed",
            OrphanOutcome::Failed => "failed",
            OrphanOutcome::Kept => "kept",
        }
    }
}

impl std::fmt::Display for OrphanOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome of one app.
#[derive(Debug, Clone, Serialize)]
pub struct AppResult {
    pub app: String,
    pub container: String,
    pub action: Action,
    pub reason: String,
    pub result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanResult {
    pub app: String,
    pub container: String,
    pub result: OrphanOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything one run decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: u8,
    pub dry_run: bool,
    pub apps: Vec<AppResult>,
    pub orphans: Vec<OrphanResult>,
    pub manifest_errors: Vec<ManifestError>,
    pub config_files: Vec<FileResult>,
    /// The podman listing this run planned from (status reuses it instead of listing again).
    #[serde(skip)]
    pub managed: Vec<Container>,
    /// The valid manifests this run loaded.
    #[serde(skip)]
    pub manifests: Vec<Manifest>,
    /// Every probed app's health after this run (as recorded, in a dry run).
    #[serde(skip)]
    pub health: BTreeMap<String, HealthState>,
    /// Every desired app's image as its manifest names it, and its last-known-good record.
    #[serde(skip)]
    pub images: BTreeMap<String, lastgood::AppImages>,
}

impl Report {
    /// Apps whose container this run started again (counted in `status/restarts.json`).
    pub fn restarted(&self) -> Vec<&str> {
        let restarts = |a: Action| {
            matches!(
                a,
                Action::Start | Action::Restart | Action::Unpause | Action::Recreate
            )
        };
        self.apps
            .iter()
            .filter(|a| a.result == Outcome::Changed && restarts(a.action))
            .map(|a| a.app.as_str())
            .collect()
    }
}

/// `--retry`, `--acknowledge` and `--force` name apps some manifest defines (a typo would
/// otherwise be a silent success): else invalid input (exit 2) naming the flag and the app.
fn check_named_apps(ctx: &Ctx, opts: &Options, loaded: &Loaded) -> Result<()> {
    ctx.check_defined(loaded, &opts.retry, "--retry: ")?;
    ctx.check_defined(loaded, &opts.acknowledge, "--acknowledge: ")?;
    ctx.check_defined(loaded, &opts.force, "--force: ")
}

/// Run one reconcile: desire → observe → plan → probe → act (or preview, in a dry run).
pub fn reconcile(ctx: &Ctx, opts: &Options) -> Result<Report> {
    let _locks = take_locks(ctx, opts)?;
    // The one podman listing runs (under the locks) while archy loads, renders and hashes: its
    // ~35 ms of podman start-up hides all of archy's own work on a no-op tick (BENCHMARKS.md).
    // It is started here, in this thread (a thread spawned to start it may wait to be
    // scheduled), and collected by a thread of its own.
    let listing = ctx.podman.start_list_managed();
    let listing = std::thread::spawn(move || listing?.finish());
    let loaded = ctx.load_manifests_for(&opts.apps)?;
    check_named_apps(ctx, opts, &loaded)?;
    let now = crate::health::now()?;
    // Host-side health probes run beside the listing too (no podman call); a dry run only
    // reads the recorded health.
    let selected: Vec<&Manifest> = select(&loaded, opts);
    // (An acting tick without a probed app starts no thread: it has nothing to probe or read.)
    let probed = probed_apps(&loaded);
    let host_probes = (!opts.dry_run && !probed.is_empty()).then(|| {
        let mut jobs = health::host_jobs(&selected);
        let podman = ctx.podman.clone();
        let state_dir = ctx.settings.state_dir.clone();
        std::thread::spawn(move || {
            health::add_probe_tokens(&mut jobs, &state_dir);
            HostProbes {
                results: crate::health::probe::run_all(&podman, &jobs),
                recorded: load_health(&state_dir, &probed),
            }
        })
    });
    let mut desire = desire(ctx, opts, &loaded)?;
    let managed = observe(ctx, opts, &loaded, listing)?;
    if !opts.dry_run {
        crate::guard::oom::tick(ctx, &managed);
        crate::images::gc::note_images(&ctx.settings.state_dir, &managed);
    }
    let mut the_plan = plan_stage(ctx, opts, &loaded, &desire, &managed)?;
    let state_dir = &ctx.settings.state_dir;
    let deferred = defer::defer_image_updates(
        &loaded,
        &desire.apps,
        &managed,
        &|app| crate::health::store::load(state_dir, app),
        &mut the_plan,
        &opts.force,
    );
    let mut tick = probe_stage(
        ctx,
        &desire,
        &loaded,
        &managed,
        &mut the_plan,
        host_probes,
        now,
    )?;

    if !opts.dry_run {
        let lastgood_tick = lastgood::Tick {
            state_dir: &ctx.settings.state_dir,
            loaded: &loaded,
            managed: &managed,
            health: &tick.health,
            now,
            image_exists: &|id| ctx.podman.image_exists(id),
        };
        lastgood::rollback_stage(
            &lastgood_tick,
            &mut desire.apps,
            &mut desire.images,
            &mut the_plan,
        );
    }
    let orphans = handle_orphans(ctx, &the_plan, opts, !loaded.errors.is_empty());
    let mut results = std::mem::take(&mut desire.failures);
    results.extend(deferred);
    if opts.dry_run {
        results.extend(preview(&the_plan, &loaded, &tick.health));
    } else {
        let layers = crate::manifest::dependency_layers(&loaded.apps)
            .expect("cycles were rejected at load time");
        let executor = executor::Executor {
            ctx,
            apps: &desire.apps,
            managed: &managed,
            mirrors: &opts.mirrors,
            network_ready: Mutex::new(None),
            health: &tick.health,
        };
        results.extend(executor.run_layers(
            &the_plan,
            &layers,
            &loaded,
            opts.jobs as usize,
            &mut desire.failed,
        ));
        tick.persist(&ctx.settings.state_dir);
    }
    check_delegated_units(ctx, &mut results, &desire.apps, &loaded);
    results.sort_by_key(|r| desire.selected.iter().position(|m| m.app == r.app));
    let images = std::mem::take(&mut desire.images);
    let mut report = finish(opts, results, orphans, desire.render, managed, loaded);
    report.health = tick.health;
    report.images = images;
    Ok(report)
}

/// A targeted run shares the run lock with other targeted runs (per-app locks keep them apart);
/// a full run is exclusive. Both wait for heal-podman to finish. A dry run takes none.
fn take_locks(ctx: &Ctx, opts: &Options) -> Result<Vec<LockGuard>> {
    if opts.dry_run {
        return Ok(Vec::new());
    }
    let run_mode = if opts.apps.is_empty() {
        Mode::Exclusive
    } else {
        Mode::Shared
    };
    let run_lock = ctx.lock("reconcile", run_mode)?;
    let heal_lock = ctx.lock("heal-podman", Mode::Shared)?;
    Ok(vec![run_lock, heal_lock])
}

/// What the desire stage found: the selected manifests, their rendered configs, the desired
/// container of each app that could be resolved, and a failed result for each that could not.
struct Desire<'m> {
    selected: Vec<&'m Manifest>,
    render: RenderOutcome,
    apps: BTreeMap<String, DesiredApp>,
    failures: Vec<AppResult>,
    failed: BTreeSet<String>,
    /// The planner's view of each app that did not fail.
    desired: Vec<Desired>,
    /// Each desired app's image record (an app held back from a bad image runs its
    /// last-known-good one: `apps` already says so).
    images: BTreeMap<String, lastgood::AppImages>,
}

/// The manifests a run works on: the apps asked for, or all.
fn select<'m>(loaded: &'m Loaded, opts: &Options) -> Vec<&'m Manifest> {
    loaded
        .apps
        .iter()
        .filter(|m| opts.apps.is_empty() || opts.apps.contains(&m.app))
        .collect()
}

/// Stage 1: render configs (their content is part of the consumers' spec hash), then resolve
/// and hash every selected app.
fn desire<'m>(ctx: &Ctx, opts: &Options, loaded: &'m Loaded) -> Result<Desire<'m>> {
    let gateway = ctx.gateway()?;
    let selected = select(loaded, opts);
    let render = crate::render::render_apps(ctx, &selected, &loaded.apps, !opts.dry_run)?;
    let mut failures: Vec<AppResult> = Vec::new();
    let mut apps: BTreeMap<String, DesiredApp> = BTreeMap::new();
    let hash_cache = Mutex::new(HashCache::load(&ctx.settings.state_dir));
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for m in &selected {
        match desired::desired_app(ctx, m, &gateway, &render.file_hashes, Some(&hash_cache)) {
            Ok(app) => {
                apps.insert(m.app.clone(), app);
            }
            Err(err) => {
                failed.insert(m.app.clone());
                failures.push(failed_result(
                    m,
                    "could not resolve the desired container",
                    crate::output::redact(&format!("{err:#}")),
                ));
            }
        }
    }
    if !opts.dry_run {
        hash_cache
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .save();
    }
    for (app, error) in &render.app_errors {
        failed.insert(app.clone());
        failures.retain(|r| &r.app != app);
        let m = loaded
            .get(app)
            .expect("rendered apps come from the manifests");
        failures.push(failed_result(
            m,
            "a config file could not be rendered",
            error.clone(),
        ));
    }
    let images = lastgood::apply_records(
        &ctx.settings.state_dir,
        &mut apps,
        &opts.retry,
        &opts.acknowledge,
        opts.dry_run,
    );
    let desired = selected
        .iter()
        .filter(|m| !failed.contains(&m.app))
        .map(|m| Desired {
            app: m.app.clone(),
            container_name: m.container_name(),
            spec_hash: apps[&m.app].hash.clone(),
            enabled: m.enabled,
            owner: m.owner,
            restart_reason: render
                .changed_consumers
                .contains(&m.app)
                .then(|| "a config file it consumes was rewritten".to_string()),
        })
        .collect();
    Ok(Desire {
        selected,
        render,
        apps,
        failures,
        failed,
        desired,
        images,
    })
}

fn failed_result(m: &Manifest, reason: &str, error: String) -> AppResult {
    AppResult {
        app: m.app.clone(),
        container: m.container_name(),
        action: Action::Create,
        reason: reason.into(),
        result: Outcome::Failed,
        error: Some(error),
    }
}

/// Stage 2: the managed containers as podman lists them. A full, acting run whose `--subnet`
/// changed first moves archy's network (removing the containers on it) and lists again.
fn observe(
    ctx: &Ctx,
    opts: &Options,
    loaded: &Loaded,
    listing: JoinHandle<Result<Vec<Container>>>,
) -> Result<Vec<Container>> {
    let managed = listing
        .join()
        .map_err(|_| anyhow::anyhow!("the podman listing thread panicked"))??;
    if !opts.dry_run
        && opts.apps.is_empty()
        && network::subnet_changed(&managed, &ctx.settings.network, &ctx.settings.subnet)
    {
        network::migrate_network(ctx, &managed, loaded)?;
        return ctx.podman.list_managed();
    }
    Ok(managed)
}

/// Stage 3: one action per app. Only when something must be created, one full listing reveals
/// unmanaged holders of a desired name (and the plan is made again with it).
fn plan_stage(
    ctx: &Ctx,
    opts: &Options,
    loaded: &Loaded,
    desire: &Desire,
    managed: &[Container],
) -> Result<Plan> {
    let known_apps: BTreeSet<String> = loaded
        .apps
        .iter()
        .map(|m| m.app.clone())
        .chain(loaded.errors.iter().filter_map(|e| e.app.clone()))
        .collect();
    let options = plan::Options { adopt: opts.adopt };
    let the_plan = plan::plan(&desire.desired, managed, None, &known_apps, options);
    if the_plan.apps.iter().any(|a| a.action == Action::Create) {
        let all = ctx.podman.list_all()?;
        return Ok(plan::plan(
            &desire.desired,
            managed,
            Some(&all),
            &known_apps,
            options,
        ));
    }
    Ok(the_plan)
}

/// What the thread beside the listing brings back: the host-side probes' results and the
/// recorded health states (read there too, off the path after the listing).
struct HostProbes {
    results: BTreeMap<String, ProbeResult>,
    recorded: BTreeMap<String, HealthState>,
}

/// The apps whose health is recorded: every loaded app with a probe.
fn probed_apps(loaded: &Loaded) -> Vec<String> {
    loaded
        .apps
        .iter()
        .filter(|m| m.health.is_some())
        .map(|m| m.app.clone())
        .collect()
}

/// Each app's recorded health state.
fn load_health(state_dir: &std::path::Path, apps: &[String]) -> BTreeMap<String, HealthState> {
    apps.iter()
        .map(|app| (app.clone(), crate::health::store::load(state_dir, app)))
        .collect()
}

/// This tick's health: the probes' results decided against the recorded states.
struct HealthTick {
    assessment: health::Assessment,
    /// Recorded states overlaid with this tick's decisions.
    health: BTreeMap<String, HealthState>,
}

impl HealthTick {
    /// Write the states that changed, or that could not be read (atomically). A failure is
    /// logged, not fatal: the tick's own decisions stand for this run, and the app's health is
    /// reported `unknown` with the file and the error (its count would not survive the run).
    fn persist(&mut self, state_dir: &std::path::Path) {
        for a in self
            .assessment
            .apps
            .values()
            .filter(|a| a.changed() || a.before.store_error.is_some())
        {
            let mut state = a.decision.state.clone();
            state.store_error = None;
            let saved = crate::health::store::save(state_dir, &a.app, &state);
            if let Err(err) = &saved {
                tracing::warn!("{err:#}");
            }
            if let Some(recorded) = self.health.get_mut(&a.app) {
                recorded.store_error = saved.err().map(|e| format!("{e:#}"));
            }
        }
    }
}

/// Stage 4: join the host-side probes, run the `exec` ones, decide every probed app, log what
/// health saw, and turn its restarts and recreates into the plan of apps that are otherwise
/// fine. A dry run (no probes) reads the recorded states only.
fn probe_stage(
    ctx: &Ctx,
    desire: &Desire,
    loaded: &Loaded,
    managed: &[Container],
    the_plan: &mut Plan,
    host_probes: Option<JoinHandle<HostProbes>>,
    now: i64,
) -> Result<HealthTick> {
    let Some(host_probes) = host_probes else {
        return Ok(HealthTick {
            assessment: health::Assessment::default(),
            health: load_health(&ctx.settings.state_dir, &probed_apps(loaded)),
        });
    };
    let HostProbes {
        mut results,
        mut recorded,
    } = host_probes
        .join()
        .map_err(|_| anyhow::anyhow!("the health probe thread panicked"))?;
    results.extend(crate::health::probe::run_all(
        &ctx.podman,
        &health::exec_jobs(&desire.selected, managed),
    ));
    let converging = |app: &str| {
        the_plan
            .apps
            .iter()
            .any(|p| p.app == app && p.action.changes())
    };
    // Read beside the wall clock only where a probe's grace or back-off may need it.
    let anchor = desire
        .selected
        .iter()
        .any(|m| m.health.is_some())
        .then(|| crate::clock::anchor(now))
        .flatten();
    // A dependent's restart or recreate waits, like its start, for its `healthy` dependencies.
    let gate = |app: &str, states: &BTreeMap<String, HealthState>| {
        loaded
            .get(app)
            .and_then(|m| health::waiting_for(m, &loaded.apps, states))
    };
    let assessment = health::assess(
        &desire.selected,
        managed,
        &recorded,
        &converging,
        &results,
        &gate,
        &crate::clock::Now { wall: now, anchor },
    );
    log_health(&assessment);
    for (app, action, reason) in assessment.actions() {
        if let Some(p) = the_plan
            .apps
            .iter_mut()
            .find(|p| p.app == app && p.action == Action::Ok)
        {
            p.action = match action {
                HealthAction::Recreate => Action::Recreate,
                HealthAction::Restart | HealthAction::None => Action::Restart,
            };
            p.reason = reason;
        }
    }
    recorded.extend(assessment.states());
    Ok(HealthTick {
        assessment,
        health: recorded,
    })
}

/// Every health decision worth a line, with its evidence (warn: unhealthy and actions).
fn log_health(assessment: &health::Assessment) {
    for a in assessment.apps.values() {
        let Some(message) = &a.decision.message else {
            continue;
        };
        if a.decision.state.status == Status::Healthy {
            tracing::info!("{}: health: {message}", a.app);
        } else if a.delegated && a.decision.action != HealthAction::None {
            tracing::warn!(
                "{}: health: {message}; not acted on (owner: systemd)",
                a.app
            );
        } else {
            tracing::warn!("{}: health: {message}", a.app);
        }
    }
}

/// Whether an action creates or starts a container (what a `healthy` dependency holds back).
pub(crate) fn starts(action: Action) -> bool {
    matches!(
        action,
        Action::Create | Action::Recreate | Action::Adopt | Action::Start | Action::Unpause
    )
}

/// Stage 5 of a dry run: the plan as results, nothing done; apps a `healthy` dependency holds
/// back (by its recorded health) show as waiting.
fn preview(
    the_plan: &Plan,
    loaded: &Loaded,
    health: &BTreeMap<String, HealthState>,
) -> Vec<AppResult> {
    the_plan
        .apps
        .iter()
        .map(|app_plan| {
            let waiting = loaded
                .get(&app_plan.app)
                .filter(|_| starts(app_plan.action))
                .and_then(|m| health::waiting_for(m, &loaded.apps, health));
            AppResult {
                app: app_plan.app.clone(),
                container: app_plan.container_name.clone(),
                action: app_plan.action,
                reason: app_plan.reason.clone(),
                result: if waiting.is_some() {
                    Outcome::Waiting
                } else if app_plan.action == Action::Conflict {
                    Outcome::Conflict
                } else if app_plan.action.changes() || !app_plan.duplicates.is_empty() {
                    Outcome::Planned
                } else {
                    Outcome::Ok
                },
                error: waiting,
            }
        })
        .collect()
}

/// `owner: systemd` apps: the container is systemd's; only check that its Quadlet unit is current.
fn check_delegated_units(
    ctx: &Ctx,
    results: &mut [AppResult],
    apps: &BTreeMap<String, DesiredApp>,
    loaded: &Loaded,
) {
    for r in results
        .iter_mut()
        .filter(|r| r.action == Action::Delegated && r.result == Outcome::Ok)
    {
        if let (Some(app), Some(m)) = (apps.get(&r.app), loaded.get(&r.app)) {
            if let Err(problem) = crate::quadlet::check_unit(
                &ctx.settings.quadlet_dir,
                &app.spec,
                &app.hash,
                m.enabled,
            ) {
                r.result = Outcome::Failed;
                r.error = Some(problem);
            }
        }
    }
}

/// Orphans (managed containers no manifest claims) in a full run: reported, or with `--prune`
/// removed, unless some manifest is invalid (it may describe the app).
fn handle_orphans(
    ctx: &Ctx,
    plan: &Plan,
    opts: &Options,
    manifests_invalid: bool,
) -> Vec<OrphanResult> {
    if !opts.apps.is_empty() {
        return Vec::new();
    }
    plan.orphans
        .iter()
        .map(|orphan| {
            let mut result = OrphanResult {
                app: orphan.app.clone(),
                container: orphan.container_name.clone(),
                result: OrphanOutcome::Reported,
                detail: None,
            };
            if !opts.prune {
                tracing::warn!(
                    "orphan: container {} (app {}) has no manifest; --prune removes it",
                    orphan.container_name,
                    orphan.app
                );
                result.detail = Some("no manifest; --prune removes it".into());
            } else if manifests_invalid {
                result.result = OrphanOutcome::Kept;
                result.detail = Some(
                    "not pruned: some manifests are invalid, and one of them may describe this app"
                        .into(),
                );
            } else if opts.dry_run {
                result.detail = Some("would be removed (--prune)".into());
            } else {
                match ctx.podman.remove(&orphan.id, 10) {
                    Ok(()) => {
                        tracing::info!(
                            "removed orphan container {} (volumes kept)",
                            orphan.container_name
                        );
                        result.result = OrphanOutcome::Removed;
                    }
                    Err(err) => {
                        result.result = OrphanOutcome::Failed;
                        result.detail = Some(format!("{err:#}"));
                    }
                }
            }
            result
        })
        .collect()
}

/// The report and its exit code: invalid manifests (of the apps asked for) → 2, any failure → 1.
fn finish(
    opts: &Options,
    apps: Vec<AppResult>,
    orphans: Vec<OrphanResult>,
    render: RenderOutcome,
    managed: Vec<Container>,
    loaded: Loaded,
) -> Report {
    let mut manifest_errors = loaded.errors;
    // Unknown-app manifest errors scoped to the apps asked for.
    if !opts.apps.is_empty() {
        manifest_errors.retain(|e| e.app.as_ref().is_some_and(|a| opts.apps.contains(a)));
    }
    let any_failed = apps.iter().any(|r| r.result == Outcome::Failed)
        || orphans.iter().any(|o| o.result == OrphanOutcome::Failed)
        || render.files.iter().any(|f| f.status == FileStatus::Failed);
    let exit_code = if !manifest_errors.is_empty() {
        crate::exit::INVALID_INPUT
    } else if any_failed {
        crate::exit::FAILURE
    } else {
        crate::exit::SUCCESS
    };
    Report {
        ok: exit_code == 0,
        exit_code,
        dry_run: opts.dry_run,
        apps,
        orphans,
        manifest_errors,
        config_files: render.files,
        managed,
        manifests: loaded.apps,
        health: BTreeMap::new(),
        images: BTreeMap::new(),
    }
}
