//! `archy reconcile`: converge podman's containers to the manifests (level-triggered).
//!
//! Decide (load, resolve, hash, one listing, plan) is pure and cheap; a no-op run makes exactly
//! one podman call. Acting goes layer by layer in dependency order, apps of one layer in
//! parallel (bounded by `--jobs`), each under its own lock; one app failing never stops the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Ctx;
use crate::health::tick as health;
use crate::images::{self, EnsureOptions};
use crate::lock::Mode;
use crate::manifest::{Loaded, Manifest};
use crate::output::OutputFormat;
use crate::plan::{self, Action, AppPlan, Desired, Plan};
use crate::podman::LABEL_SUBNET;
use crate::spec::{ContainerSpec, Resolved};

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
/// created or started, result `waiting`) until that app's probe passes.
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
}

/// How often a name held by an unlisted container is looked up again, and how long apart.
const NAME_RECOVERY_ATTEMPTS: u32 = 4;
const NAME_RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Default parallelism, measured on a 2-core node (BENCHMARKS.md (d), `scripts/bench`): cold
/// converge of 20 apps vs 20 sequential `podman run -d` took 1.21× with --jobs 1, 0.83× with 2,
/// 0.76× with 4 and 0.77× with 8 (medians). podman's own work saturates the machine at about 4
/// concurrent `podman run`s; 8 buys nothing, so 4 it is.
pub const DEFAULT_JOBS: u16 = 4;

/// The outcome of one app.
#[derive(Debug, Clone, Serialize)]
pub struct AppResult {
    pub app: String,
    pub container: String,
    pub action: Action,
    pub reason: String,
    /// "ok", "changed", "failed", "skipped", or in a dry run "planned" / "conflict".
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanResult {
    pub app: String,
    pub container: String,
    /// "reported", "removed", "failed" or "kept".
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: u8,
    pub dry_run: bool,
    pub apps: Vec<AppResult>,
    pub orphans: Vec<OrphanResult>,
    pub manifest_errors: Vec<crate::manifest::ManifestError>,
    pub config_files: Vec<crate::render::FileResult>,
    /// The podman listing this run planned from (status reuses it instead of listing again).
    #[serde(skip)]
    pub managed: Vec<crate::podman::Container>,
    /// The valid manifests this run loaded.
    #[serde(skip)]
    pub manifests: Vec<Manifest>,
    /// Every probed app's health after this run (recorded health in a dry run).
    #[serde(skip)]
    pub health: BTreeMap<String, crate::health::HealthState>,
}

pub fn run(ctx: &Ctx, args: &ReconcileArgs) -> Result<u8> {
    let report = reconcile(ctx, args)?;
    print_report(&report, ctx.global.output);
    crate::state::record(
        &ctx.global.state_dir,
        "reconcile",
        serde_json::json!({
            "exit_code": report.exit_code,
            "dry_run": report.dry_run,
            "changed": report.apps.iter().filter(|a| a.result == "changed").count(),
            "failed": report.apps.iter().filter(|a| a.result == "failed").count(),
            "manifest_errors": report.manifest_errors.len(),
        }),
    );
    Ok(report.exit_code)
}

/// Everything `reconcile` decided and did.
pub fn reconcile(ctx: &Ctx, args: &ReconcileArgs) -> Result<Report> {
    // A targeted run shares the run lock with other targeted runs (per-app locks keep them
    // apart); a full run is exclusive. Both wait for heal-podman to finish.
    let run_mode = if args.apps.is_empty() {
        Mode::Exclusive
    } else {
        Mode::Shared
    };
    let _run_lock = if args.dry_run {
        None
    } else {
        Some(ctx.lock("reconcile", run_mode)?)
    };
    let _heal_lock = if args.dry_run {
        None
    } else {
        Some(ctx.lock("heal-podman", Mode::Shared)?)
    };
    // The one podman listing runs (under the locks) while archy loads, renders and hashes: its
    // ~35 ms of podman start-up hides all of archy's own work on a no-op tick (BENCHMARKS.md).
    let podman = ctx.podman.clone();
    let listing = std::thread::spawn(move || podman.list_managed());
    let loaded = ctx.load_manifests_for(&args.apps)?;
    let gateway = ctx.gateway()?;

    let selected: Vec<&Manifest> = loaded
        .apps
        .iter()
        .filter(|m| args.apps.is_empty() || args.apps.contains(&m.app))
        .collect();
    let mut manifest_errors = loaded.errors.clone();
    // Host-side health probes run beside the listing (no podman call); a dry run only reads
    // the recorded health.
    let now = crate::health::now()?;
    let host_probes = (!args.dry_run)
        .then(|| crate::health::probe::spawn(&ctx.podman, health::host_jobs(&selected)));

    // Configs first: their content is part of the consumers' spec hash.
    let render = crate::render::render_apps(ctx, &selected, &loaded.apps, !args.dry_run)?;
    let mut results: Vec<AppResult> = Vec::new();
    let mut specs: BTreeMap<String, (ContainerSpec, String, images::Resolved)> = BTreeMap::new();
    let hash_cache = Mutex::new(images::HashCache::load(&ctx.global.state_dir));
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for m in &selected {
        match desired_spec(ctx, m, &gateway, &render.file_hashes, Some(&hash_cache)) {
            Ok((spec, resolved)) => {
                let hash = spec.hash();
                specs.insert(m.app.clone(), (spec, hash, resolved));
            }
            Err(err) => {
                failed.insert(m.app.clone());
                results.push(AppResult {
                    app: m.app.clone(),
                    container: m.container_name(),
                    action: Action::Create,
                    reason: "could not resolve the desired container".into(),
                    result: "failed",
                    error: Some(crate::output::redact(&format!("{err:#}"))),
                });
            }
        }
    }
    if !args.dry_run {
        hash_cache
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .save();
    }
    for (app, error) in &render.app_errors {
        failed.insert(app.clone());
        results.retain(|r| &r.app != app);
        let m = loaded
            .get(app)
            .expect("rendered apps come from the manifests");
        results.push(AppResult {
            app: app.clone(),
            container: m.container_name(),
            action: Action::Create,
            reason: "a config file could not be rendered".into(),
            result: "failed",
            error: Some(error.clone()),
        });
    }

    let desired: Vec<Desired> = selected
        .iter()
        .filter(|m| !failed.contains(&m.app))
        .map(|m| Desired {
            app: m.app.clone(),
            container_name: m.container_name(),
            spec_hash: specs[&m.app].1.clone(),
            enabled: m.enabled,
            owner: m.owner,
            restart_reason: render
                .changed_consumers
                .contains(&m.app)
                .then(|| "a config file it consumes was rewritten".to_string()),
        })
        .collect();
    let mut managed = listing
        .join()
        .map_err(|_| anyhow::anyhow!("the podman listing thread panicked"))??;
    if !args.dry_run
        && args.apps.is_empty()
        && subnet_changed(&managed, &ctx.global.network, &ctx.global.subnet)
    {
        migrate_network(ctx, &managed, &loaded)?;
        managed = ctx.podman.list_managed()?;
    }
    let known_apps: BTreeSet<String> = loaded
        .apps
        .iter()
        .map(|m| m.app.clone())
        .chain(loaded.errors.iter().filter_map(|e| e.app.clone()))
        .collect();
    let options = plan::Options { adopt: args.adopt };
    let mut the_plan = plan::plan(&desired, &managed, None, &known_apps, options);
    if the_plan.apps.iter().any(|a| a.action == Action::Create) {
        // Only when something must be created: one full listing reveals unmanaged name holders.
        let all = ctx.podman.list_all()?;
        the_plan = plan::plan(&desired, &managed, Some(&all), &known_apps, options);
    }

    let tick = health_tick(
        ctx,
        &selected,
        &loaded,
        &managed,
        &mut the_plan,
        host_probes,
        now,
    )?;
    let orphans = handle_orphans(ctx, &the_plan, args, !manifest_errors.is_empty());
    if args.dry_run {
        for app_plan in &the_plan.apps {
            let waiting = loaded
                .get(&app_plan.app)
                .filter(|_| starts(app_plan.action))
                .and_then(|m| health::waiting_for(m, &loaded.apps, &tick.health));
            results.push(AppResult {
                app: app_plan.app.clone(),
                container: app_plan.container_name.clone(),
                action: app_plan.action,
                reason: app_plan.reason.clone(),
                result: if waiting.is_some() {
                    "waiting"
                } else if app_plan.action == Action::Conflict {
                    "conflict"
                } else if app_plan.action.changes() || !app_plan.duplicates.is_empty() {
                    "planned"
                } else {
                    "ok"
                },
                error: waiting,
            });
        }
    } else {
        let layers =
            plan::dependency_layers(&loaded.apps).expect("cycles were rejected at load time");
        let executor = Executor {
            ctx,
            specs: &specs,
            managed: &managed,
            mirrors: &args.mirrors,
            network_ready: Mutex::new(None),
            health: &tick.health,
        };
        results.extend(executor.run_layers(
            &the_plan,
            &layers,
            &loaded,
            args.jobs as usize,
            &mut failed,
        ));
        tick.persist(&ctx.global.state_dir);
    }
    // owner: systemd apps: the container is systemd's; only check that its Quadlet unit is current.
    for r in results
        .iter_mut()
        .filter(|r| r.action == Action::Delegated && r.result == "ok")
    {
        if let (Some((spec, hash, _)), Some(m)) = (specs.get(&r.app), loaded.get(&r.app)) {
            if let Err(problem) =
                super::quadlet::check_unit(&ctx.global.quadlet_dir, spec, hash, m.enabled)
            {
                r.result = "failed";
                r.error = Some(problem);
            }
        }
    }
    results.sort_by_key(|r| selected.iter().position(|m| m.app == r.app));

    // Unknown-app manifest errors scoped to the apps asked for.
    if !args.apps.is_empty() {
        manifest_errors.retain(|e| e.app.as_ref().is_some_and(|a| args.apps.contains(a)));
    }
    let any_failed = results.iter().any(|r| r.result == "failed")
        || orphans.iter().any(|o| o.result == "failed")
        || render.files.iter().any(|f| f.status == "failed");
    let exit_code = if !manifest_errors.is_empty() {
        crate::exit::INVALID_INPUT
    } else if any_failed {
        crate::exit::FAILURE
    } else {
        crate::exit::SUCCESS
    };
    Ok(Report {
        ok: exit_code == 0,
        exit_code,
        dry_run: args.dry_run,
        apps: results,
        orphans,
        manifest_errors,
        config_files: render.files,
        managed,
        manifests: loaded.apps,
        health: tick.health,
    })
}

/// The container an app should have: image resolved, consumed files hashed (also used by
/// `archy quadlet`, so a unit carries the same spec hash reconcile computes).
pub fn desired_spec(
    ctx: &Ctx,
    m: &Manifest,
    gateway: &str,
    rendered: &BTreeMap<String, String>,
    cache: Option<&Mutex<images::HashCache>>,
) -> Result<(ContainerSpec, images::Resolved)> {
    let resolved = images::resolve_with(m, cache)?;
    let mut file_hashes = BTreeMap::new();
    for config in &m.configs {
        let key = config.path.display().to_string();
        if let Some(hash) = rendered.get(&key) {
            file_hashes.insert(key, hash.clone());
        }
    }
    for file in &m.env_files {
        let key = file.display().to_string();
        let hash = match rendered.get(&key) {
            Some(hash) => hash.clone(),
            None => crate::spec::sha256_hex(
                &std::fs::read(file)
                    .with_context(|| format!("failed to read env file {key} of app {}", m.app))?,
            ),
        };
        file_hashes.insert(key, hash);
    }
    let spec = ContainerSpec::from_manifest(
        m,
        Resolved {
            image: resolved.reference.clone(),
            default_network: &ctx.global.network,
            subnet: &ctx.global.subnet,
            gateway,
            file_hashes,
        },
    );
    Ok((spec, resolved))
}

fn handle_orphans(
    ctx: &Ctx,
    plan: &Plan,
    args: &ReconcileArgs,
    manifests_invalid: bool,
) -> Vec<OrphanResult> {
    if !args.apps.is_empty() {
        return Vec::new();
    }
    plan.orphans
        .iter()
        .map(|orphan| {
            let mut result = OrphanResult {
                app: orphan.app.clone(),
                container: orphan.container_name.clone(),
                result: "reported",
                detail: None,
            };
            if !args.prune {
                tracing::warn!(
                    "orphan: container {} (app {}) has no manifest; --prune removes it",
                    orphan.container_name,
                    orphan.app
                );
                result.detail = Some("no manifest; --prune removes it".into());
            } else if manifests_invalid {
                result.result = "kept";
                result.detail = Some(
                    "not pruned: some manifests are invalid, and one of them may describe this app"
                        .into(),
                );
            } else if args.dry_run {
                result.detail = Some("would be removed (--prune)".into());
            } else {
                match ctx.podman.remove(&orphan.id, 10) {
                    Ok(()) => {
                        tracing::info!(
                            "removed orphan container {} (volumes kept)",
                            orphan.container_name
                        );
                        result.result = "removed";
                    }
                    Err(err) => {
                        result.result = "failed";
                        result.detail = Some(format!("{err:#}"));
                    }
                }
            }
            result
        })
        .collect()
}

struct Executor<'a> {
    ctx: &'a Ctx<'a>,
    /// Every app's health after this tick's probes (recorded health for apps not probed).
    health: &'a BTreeMap<String, crate::health::HealthState>,
    specs: &'a BTreeMap<String, (ContainerSpec, String, images::Resolved)>,
    /// The managed containers of this run's listing.
    managed: &'a [crate::podman::Container],
    mirrors: &'a [String],
    /// The network check runs once per run, and only when something is created.
    network_ready: Mutex<Option<Result<(), String>>>,
}

impl Executor<'_> {
    fn run_layers(
        &self,
        plan: &Plan,
        layers: &[Vec<String>],
        loaded: &Loaded,
        jobs: usize,
        failed: &mut BTreeSet<String>,
    ) -> Vec<AppResult> {
        let mut results = Vec::new();
        let by_app: BTreeMap<&str, &AppPlan> =
            plan.apps.iter().map(|a| (a.app.as_str(), a)).collect();
        for layer in layers {
            let mut work = Vec::new();
            for app in layer {
                let Some(app_plan) = by_app.get(app.as_str()) else {
                    continue;
                };
                let m = loaded.get(app).expect("planned apps have manifests");
                if let Some(dep) = m.dependency_ids().find(|d| failed.contains(*d)) {
                    failed.insert(app.clone());
                    results.push(AppResult {
                        app: app.clone(),
                        container: app_plan.container_name.clone(),
                        action: app_plan.action,
                        reason: app_plan.reason.clone(),
                        result: "skipped",
                        error: Some(format!("dependency `{dep}` failed to converge")),
                    });
                    continue;
                }
                if starts(app_plan.action) {
                    if let Some(reason) = health::waiting_for(m, &loaded.apps, self.health) {
                        tracing::info!("{app}: {reason}");
                        results.push(AppResult {
                            app: app.clone(),
                            container: app_plan.container_name.clone(),
                            action: app_plan.action,
                            reason: app_plan.reason.clone(),
                            result: "waiting",
                            error: Some(reason),
                        });
                        continue;
                    }
                }
                work.push(*app_plan);
            }
            let layer_results = self.run_parallel(&work, jobs);
            for r in &layer_results {
                if r.result == "failed" {
                    failed.insert(r.app.clone());
                }
            }
            results.extend(layer_results);
        }
        results
    }

    fn run_parallel(&self, work: &[&AppPlan], jobs: usize) -> Vec<AppResult> {
        // Only apps that change anything need a worker; the rest report at once.
        let (busy, idle): (Vec<&AppPlan>, Vec<&AppPlan>) = work.iter().partition(|p| {
            p.action.changes() || !p.duplicates.is_empty() || p.action == Action::Conflict
        });
        let mut results: Vec<AppResult> = idle.iter().map(|p| self.result(p, "ok", None)).collect();
        if busy.is_empty() {
            return results;
        }
        let next = AtomicUsize::new(0);
        let collected = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(busy.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(app_plan) = busy.get(index) else {
                        break;
                    };
                    let result = self.converge_app(app_plan);
                    collected
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(result);
                });
            }
        });
        results.extend(collected.into_inner().unwrap_or_else(|p| p.into_inner()));
        results
    }

    fn result(&self, p: &AppPlan, result: &'static str, error: Option<String>) -> AppResult {
        AppResult {
            app: p.app.clone(),
            container: p.container_name.clone(),
            action: p.action,
            reason: p.reason.clone(),
            result,
            error,
        }
    }

    fn converge_app(&self, p: &AppPlan) -> AppResult {
        let outcome = self
            .ctx
            .lock(&format!("locks/{}", p.app), Mode::Exclusive)
            .and_then(|_app_lock| self.act(p));
        match outcome {
            Ok(changed) => {
                // Whatever the action, the container now runs with (or without) the current files.
                crate::render::clear_pending(&self.ctx.global.state_dir, &p.app);
                if changed {
                    tracing::info!("{}: {} ({}) done", p.app, p.action.as_str(), p.reason);
                }
                self.result(p, if changed { "changed" } else { "ok" }, None)
            }
            Err(err) => {
                let message = crate::output::redact(&format!("{err:#}"));
                tracing::error!("{}: {} failed: {message}", p.app, p.action.as_str());
                self.result(p, "failed", Some(message))
            }
        }
    }

    /// Carry out one app's action; Ok(true) when something changed.
    fn act(&self, p: &AppPlan) -> Result<bool> {
        let (spec, hash, resolved) = &self.specs[&p.app];
        let podman = &self.ctx.podman;
        let stop_timeout = spec.stop_timeout.unwrap_or(10);
        let mut changed = false;
        for duplicate in &p.duplicates {
            podman.remove(duplicate, stop_timeout).with_context(|| {
                format!(
                    "failed to remove duplicate container {duplicate} of {}",
                    p.app
                )
            })?;
            changed = true;
        }
        match p.action {
            Action::Ok | Action::Absent | Action::Delegated => Ok(changed),
            Action::Conflict => anyhow::bail!("{}", p.reason),
            Action::Start => match podman.start(&p.container_name) {
                Ok(()) => Ok(true),
                Err(err) => {
                    // A container that cannot start (its network or image vanished) is recreated.
                    tracing::warn!("{}: start failed ({err:#}); recreating", p.app);
                    self.create(p, spec, hash, resolved, p.existing.as_deref(), stop_timeout)?;
                    Ok(true)
                }
            },
            Action::Restart => {
                podman.restart(&p.container_name, stop_timeout)?;
                Ok(true)
            }
            Action::Unpause => {
                podman.unpause(&p.container_name)?;
                Ok(true)
            }
            Action::Remove => {
                podman.remove(
                    p.existing.as_deref().unwrap_or(&p.container_name),
                    stop_timeout,
                )?;
                Ok(true)
            }
            Action::Create => {
                self.create(p, spec, hash, resolved, None, stop_timeout)?;
                Ok(true)
            }
            Action::Recreate => {
                self.create(p, spec, hash, resolved, p.existing.as_deref(), stop_timeout)?;
                Ok(true)
            }
            Action::Adopt => {
                self.create(p, spec, hash, resolved, p.squatter.as_deref(), stop_timeout)?;
                Ok(true)
            }
        }
    }

    /// Make the image and network present, remove `replacing` (volumes kept), run the container.
    fn create(
        &self,
        p: &AppPlan,
        spec: &ContainerSpec,
        hash: &str,
        resolved: &images::Resolved,
        replacing: Option<&str>,
        stop_timeout: u32,
    ) -> Result<()> {
        let podman = &self.ctx.podman;
        let options = EnsureOptions {
            force: false,
            mirrors: self.mirrors.to_vec(),
            // A spinner with the current build step on a terminal; plain lines otherwise.
            progress: crate::logging::show_progress(self.ctx.global.quiet)
                && self.ctx.global.output == OutputFormat::Text,
        };
        // A listed container created from this very reference proves the image is present (podman
        // refuses to remove an image a container uses): a recreate skips `podman image exists`,
        // one podman start-up (~40 ms) of the drift path (BENCHMARKS.md (e)). Untagging an image
        // in use is the exception; the run then fails and is retried after ensuring the image.
        let proven = replacing.is_some_and(|old| {
            self.managed
                .iter()
                .any(|c| c.id == old && c.image == resolved.reference)
        }) && !images::always_pulls(resolved);
        if !proven {
            images::ensure(podman, &p.app, resolved, &options).with_context(|| {
                format!("failed to make image {} available", resolved.reference)
            })?;
        }
        // Likewise a replaced container attached to archy's network, labelled with the configured
        // subnet, proves the network is right: podman refuses to remove a network in use, so it
        // cannot have been recreated under the container. The drift path skips the inspect.
        let network_proven = replacing.is_some_and(|old| {
            self.managed.iter().any(|c| {
                c.id == old
                    && c.networks.contains(&spec.network)
                    && c.labels.get(LABEL_SUBNET) == Some(&self.ctx.global.subnet)
            })
        });
        if spec.network == self.ctx.global.network && !network_proven {
            self.ensure_network()?;
        }
        if let Some(old) = replacing {
            podman
                .remove(old, stop_timeout)
                .with_context(|| format!("failed to remove the old container of {}", p.app))?;
        }
        let run = || podman.run_detached(&spec.run_args(hash)).map(|_| ());
        let created = match run() {
            Err(err) if proven && !podman.image_exists(&resolved.reference).unwrap_or(true) => {
                tracing::warn!(
                    "{}: {err:#}; making the image available and retrying",
                    p.app
                );
                images::ensure(podman, &p.app, resolved, &options).with_context(|| {
                    format!("failed to make image {} available", resolved.reference)
                })?;
                run()
            }
            other => other,
        };
        match created {
            Ok(()) => Ok(()),
            Err(err)
                if crate::exec::failed_stderr(&err)
                    .is_some_and(|e| e.contains("is already in use")) =>
            {
                self.recover_name_in_use(spec, hash, stop_timeout)
            }
            Err(err) => {
                Err(err).with_context(|| format!("failed to create container {}", spec.name))
            }
        }
    }

    /// `podman run` found the name taken although the listing did not show it: a `podman run`
    /// of an earlier, killed archy run finished in between, or left a half-created container in
    /// storage. Look again and converge on what is there.
    fn recover_name_in_use(
        &self,
        spec: &ContainerSpec,
        hash: &str,
        stop_timeout: u32,
    ) -> Result<()> {
        let podman = &self.ctx.podman;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let holder = podman
                .list_all()?
                .into_iter()
                .find(|c| c.name() == spec.name);
            match holder {
                Some(c) if c.is_managed() && c.spec_hash() == Some(hash) => {
                    tracing::info!("{}: container {} appeared meanwhile with the desired spec", spec.app, spec.name);
                    if c.state != "running" {
                        podman.start(&c.id)?;
                    }
                    return Ok(());
                }
                Some(c) if c.is_managed() => {
                    tracing::info!("{}: replacing container {} that appeared meanwhile with another spec", spec.app, spec.name);
                    podman.remove(&c.id, stop_timeout)?;
                }
                Some(c) => anyhow::bail!("unmanaged container {} ({}) took the name meanwhile; left alone (use --adopt to replace it)", spec.name, c.short_id()),
                None if attempt < NAME_RECOVERY_ATTEMPTS => {
                    // An orphaned `podman run` may still be finishing its create: give it a moment.
                    std::thread::sleep(NAME_RECOVERY_WAIT);
                    continue;
                }
                None => {
                    // Only in storage. A live conmon means the old container still runs behind
                    // podman's back (its database was lost): removing its storage would start a
                    // second copy beside it. That is heal-podman's repair (it kills the ghost).
                    let holder = podman.list_external()?.into_iter().find(|c| c.name() == spec.name);
                    let id = holder.map(|c| c.id).unwrap_or_else(|| spec.name.clone());
                    if crate::heal::system::has_live_conmon(&id) {
                        anyhow::bail!(
                            "the name {} is held by container {} that podman's database does not know but whose process still runs (lost or deleted podman database); run `archy heal-podman`",
                            spec.name,
                            &id[..id.len().min(12)]
                        );
                    }
                    tracing::warn!("{}: removing the half-created container {} left in storage", spec.app, spec.name);
                    podman.remove_storage(&id)?;
                }
            }
            return podman
                .run_detached(&spec.run_args(hash))
                .map(|_| ())
                .with_context(|| format!("failed to create container {}", spec.name));
        }
    }

    fn ensure_network(&self) -> Result<()> {
        let mut state = self.network_ready.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(ensure_network(self.ctx).map_err(|e| format!("{e:#}")));
        }
        state.clone().expect("just set").map_err(anyhow::Error::msg)
    }
}

/// Whether an action creates or starts a container (what a `healthy` dependency holds back).
fn starts(action: Action) -> bool {
    matches!(
        action,
        Action::Create | Action::Recreate | Action::Adopt | Action::Start | Action::Unpause
    )
}

/// This tick's health: the probes' results decided against the recorded states.
struct HealthTick {
    assessment: health::Assessment,
    /// Recorded states overlaid with this tick's decisions.
    health: BTreeMap<String, crate::health::HealthState>,
}

impl HealthTick {
    /// Write the states that changed (atomically); a failure is logged, not fatal.
    fn persist(&self, state_dir: &std::path::Path) {
        for a in self.assessment.apps.values().filter(|a| a.changed()) {
            if let Err(err) = crate::health::store::save(state_dir, &a.app, &a.decision.state) {
                tracing::warn!("{err:#}");
            }
        }
    }
}

/// Join the host-side probes, run the `exec` ones, decide every probed app, log what health
/// saw, and turn its restarts and recreates into the plan of apps that are otherwise fine. A dry
/// run (no probes) reads the recorded states only.
fn health_tick(
    ctx: &Ctx,
    selected: &[&Manifest],
    loaded: &Loaded,
    managed: &[crate::podman::Container],
    the_plan: &mut Plan,
    host_probes: Option<std::thread::JoinHandle<BTreeMap<String, crate::health::ProbeResult>>>,
    now: i64,
) -> Result<HealthTick> {
    let state_dir = &ctx.global.state_dir;
    let mut recorded: BTreeMap<String, crate::health::HealthState> = loaded
        .apps
        .iter()
        .filter(|m| m.health.is_some())
        .map(|m| (m.app.clone(), crate::health::store::load(state_dir, &m.app)))
        .collect();
    let Some(host_probes) = host_probes else {
        return Ok(HealthTick {
            assessment: health::Assessment::default(),
            health: recorded,
        });
    };
    let mut results = host_probes
        .join()
        .map_err(|_| anyhow::anyhow!("the health probe thread panicked"))?;
    results.extend(crate::health::probe::run_all(
        &ctx.podman,
        &health::exec_jobs(selected, managed),
    ));
    let converging = |app: &str| {
        the_plan
            .apps
            .iter()
            .any(|p| p.app == app && p.action.changes())
    };
    let assessment = health::assess(selected, managed, &recorded, &converging, &results, now);
    for a in assessment.apps.values() {
        if let Some(message) = &a.decision.message {
            if a.decision.state.status == crate::health::Status::Healthy {
                tracing::info!("{}: health: {message}", a.app);
            } else if a.delegated && a.decision.action != crate::health::HealthAction::None {
                tracing::warn!(
                    "{}: health: unhealthy, not acted on (owner: systemd): {message}",
                    a.app
                );
            } else {
                tracing::warn!("{}: health: {message}", a.app);
            }
        }
    }
    for (app, action, reason) in assessment.actions() {
        if let Some(p) = the_plan
            .apps
            .iter_mut()
            .find(|p| p.app == app && p.action == Action::Ok)
        {
            p.action = match action {
                crate::health::HealthAction::Recreate => Action::Recreate,
                _ => Action::Restart,
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

/// Whether some managed container on archy's network was created for another subnet: the
/// `--subnet` setting changed. Containers from before the subnet label say nothing. Pure.
pub fn subnet_changed(managed: &[crate::podman::Container], network: &str, subnet: &str) -> bool {
    managed.iter().any(|c| {
        c.networks.iter().any(|n| n == network)
            && c.labels
                .get(LABEL_SUBNET)
                .is_some_and(|recorded| recorded != subnet)
    })
}

/// Move archy's network to the configured subnet: podman only removes a network nothing uses,
/// and every container on it is recreated in this run anyway (its host alias changed), so
/// archy's containers on it are removed first (volumes kept, each with its stop timeout).
/// Unmanaged containers on the network make the network removal fail with podman's error.
fn migrate_network(ctx: &Ctx, managed: &[crate::podman::Container], loaded: &Loaded) -> Result<()> {
    let name = &ctx.global.network;
    if let Some(network) = ctx.podman.inspect_network(name)? {
        if network
            .subnets
            .iter()
            .any(|s| s.subnet == ctx.global.subnet)
        {
            return Ok(());
        }
    }
    tracing::warn!(
        "the subnet of network {name} changes to {}: recreating it and the containers on it",
        ctx.global.subnet
    );
    for c in managed
        .iter()
        .filter(|c| c.networks.iter().any(|n| n == name))
    {
        let stop_timeout = c
            .app()
            .and_then(|app| loaded.get(app))
            .and_then(|m| m.stop_timeout)
            .unwrap_or(10);
        ctx.podman.remove(&c.id, stop_timeout).with_context(|| {
            format!(
                "failed to remove container {} to move network {name}",
                c.name()
            )
        })?;
    }
    ensure_network(ctx)
}

/// Create archy's network if missing; recreate it when its subnet is wrong and nothing uses it.
pub fn ensure_network(ctx: &Ctx) -> Result<()> {
    let name = &ctx.global.network;
    let subnet = &ctx.global.subnet;
    let gateway = ctx.gateway()?;
    match ctx.podman.inspect_network(name)? {
        Some(network) if network.subnets.iter().any(|s| &s.subnet == subnet) => Ok(()),
        Some(network) => {
            let found: Vec<&str> = network.subnets.iter().map(|s| s.subnet.as_str()).collect();
            tracing::warn!(
                "network {name} has subnet {} instead of {subnet}; recreating it",
                found.join(",")
            );
            ctx.podman.remove_network(name).with_context(|| {
                format!(
                    "network {name} has the wrong subnet ({}) and could not be removed",
                    found.join(",")
                )
            })?;
            ctx.podman.create_network(name, subnet, &gateway)
        }
        None => {
            tracing::info!("creating network {name} ({subnet}, gateway {gateway})");
            ctx.podman.create_network(name, subnet, &gateway)
        }
    }
}

fn print_report(report: &Report, format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            crate::output::print_json(&serde_json::to_value(report).expect("report serialises"))
        }
        OutputFormat::Text => {
            for file in &report.config_files {
                if file.status != "unchanged" {
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
                    (true, "planned") => format!("would {}", r.action.as_str()),
                    (_, "conflict") => "conflict".to_string(),
                    (_, "ok") => "ok".to_string(),
                    (_, "changed") => r.action.past_tense().to_string(),
                    (_, other) => format!("{} {other}", r.action.as_str()),
                };
                let mut line = format!("{:<20} {:<14} {}", r.app, verb, r.reason);
                if let Some(error) = &r.error {
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
            let count = |result: &str| report.apps.iter().filter(|a| a.result == result).count();
            let prefix = if report.dry_run {
                "reconcile (dry run)"
            } else {
                "reconcile"
            };
            println!(
                "{prefix}: {} apps, {} ok, {} {}, {} failed, {} skipped, {} orphans, {} invalid manifests",
                report.apps.len(),
                count("ok"),
                if report.dry_run { count("planned") } else { count("changed") },
                if report.dry_run { "to change" } else { "changed" },
                count("failed"),
                count("skipped"),
                report.orphans.len(),
                report.manifest_errors.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::Container;

    fn on(network: &str, subnet: Option<&str>) -> Container {
        let mut c = Container {
            id: "x".into(),
            networks: vec![network.into()],
            ..Default::default()
        };
        if let Some(subnet) = subnet {
            c.labels.insert(LABEL_SUBNET.into(), subnet.into());
        }
        c
    }

    #[test]
    fn subnet_change_is_seen_only_on_archys_network_with_a_recorded_subnet() {
        assert!(subnet_changed(
            &[on("archy", Some("10.89.0.0/24"))],
            "archy",
            "10.90.0.0/24"
        ));
        assert!(!subnet_changed(
            &[on("archy", Some("10.89.0.0/24"))],
            "archy",
            "10.89.0.0/24"
        ));
        assert!(
            !subnet_changed(&[on("archy", None)], "archy", "10.90.0.0/24"),
            "no label: unknown, not changed"
        );
        assert!(!subnet_changed(
            &[on("other", Some("10.89.0.0/24"))],
            "archy",
            "10.90.0.0/24"
        ));
    }
}
