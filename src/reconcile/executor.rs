//! The act stage: carry out a plan. Layers in dependency order, apps of one layer in parallel
//! (bounded by `--jobs`), each under its own lock; one app failing never stops the rest. Also
//! the recovery when `podman run` finds an app's name taken by a container the listing missed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::desired::DesiredApp;
use super::{AppResult, Outcome};
use crate::ctx::Ctx;
use crate::images::{self, EnsureOptions};
use crate::lock::Mode;
use crate::manifest::Loaded;
use crate::output::OutputFormat;
use crate::plan::{Action, AppPlan, Plan};
use crate::podman::{Container, ContainerState, LABEL_SUBNET};
use crate::spec::ContainerSpec;

/// How often a name held by an unlisted container is looked up again, and how long apart.
const NAME_RECOVERY_ATTEMPTS: u32 = 4;
const NAME_RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Carries out a plan: layer by layer, apps of one layer in parallel.
pub struct Executor<'a> {
    pub ctx: &'a Ctx<'a>,
    pub apps: &'a BTreeMap<String, DesiredApp>,
    /// The managed containers of this run's listing.
    pub managed: &'a [Container],
    pub mirrors: &'a [String],
    /// The network check runs once per run, and only when something is created.
    pub network_ready: Mutex<Option<Result<(), String>>>,
    /// Every app's health after this tick's probes (recorded health for apps not probed).
    pub health: &'a BTreeMap<String, crate::health::HealthState>,
}

impl Executor<'_> {
    /// Converge the planned apps in dependency order; an app whose dependency failed is skipped
    /// (and counts as failed for its own dependants).
    pub fn run_layers(
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
                        result: Outcome::Skipped,
                        error: Some(format!("dependency `{dep}` failed to converge")),
                    });
                    continue;
                }
                if super::starts(app_plan.action) {
                    let health = crate::health::tick::waiting_for(m, &loaded.apps, self.health);
                    if let Some(reason) = health {
                        tracing::info!("{app}: {reason}");
                        results.push(AppResult {
                            app: app.clone(),
                            container: app_plan.container_name.clone(),
                            action: app_plan.action,
                            reason: app_plan.reason.clone(),
                            result: Outcome::Waiting,
                            error: Some(reason),
                        });
                        continue;
                    }
                }
                work.push(*app_plan);
            }
            let layer_results = self.run_parallel(&work, jobs);
            for r in &layer_results {
                if r.result == Outcome::Failed {
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
        let mut results: Vec<AppResult> = idle
            .iter()
            .map(|p| self.result(p, Outcome::Ok, None))
            .collect();
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
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(result);
                });
            }
        });
        results.extend(
            collected
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        results
    }

    #[allow(clippy::unused_self)] // one of the executor's steps, called as such
    fn result(&self, p: &AppPlan, result: Outcome, error: Option<String>) -> AppResult {
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
                crate::render::clear_pending(&self.ctx.settings.state_dir, &p.app);
                if changed {
                    tracing::info!("{}: {} ({}) done", p.app, p.action.as_str(), p.reason);
                }
                let outcome = if changed {
                    Outcome::Changed
                } else {
                    Outcome::Ok
                };
                self.result(p, outcome, None)
            }
            Err(err) => {
                let message = crate::output::redact(&format!("{err:#}"));
                tracing::error!("{}: {} failed: {message}", p.app, p.action.as_str());
                self.result(p, Outcome::Failed, Some(message))
            }
        }
    }

    /// Carry out one app's action; Ok(true) when something changed.
    fn act(&self, p: &AppPlan) -> Result<bool> {
        let desired = &self.apps[&p.app];
        let spec = &desired.spec;
        let podman = &self.ctx.podman;
        let stop_timeout = spec.stop_timeout.unwrap_or(10);
        let mut changed = false;
        let mut existing = p.existing.as_deref();
        // A container listed as `stopping` was left so by a podman killed mid-stop (a recreate's
        // `podman rm -f` whose archy was SIGKILLed dies of SIGPIPE at its next write). podman
        // 4.3.1's `rm -f` drops such a container from its database without stopping it: its
        // process and conmon (which holds its published ports) live on as a ghost, and the new
        // container cannot bind the ports. `podman stop` finishes the stop first.
        // That podman may still be running and finish the removal between the listing and this
        // stop: a container gone by then is simply created anew.
        if let Some(old) = existing {
            if self
                .managed
                .iter()
                .any(|c| c.id == old && c.state == ContainerState::Stopping)
            {
                match podman.stop(old, stop_timeout) {
                    Ok(()) => {}
                    Err(err) if no_such_container(&err) => {
                        tracing::warn!(
                            "{}: the stopping container {} was removed meanwhile; creating it anew",
                            p.app,
                            crate::podman::short_id(old)
                        );
                        existing = None;
                    }
                    Err(err) => {
                        return Err(err).with_context(|| {
                            format!("failed to finish stopping the container of {}", p.app)
                        })
                    }
                }
                changed = true;
            }
        }
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
            Action::Start => match podman.start(&p.container_name, stop_timeout) {
                Ok(()) => Ok(true),
                Err(err) => {
                    // A container that cannot start (its network or image vanished) is recreated.
                    tracing::warn!("{}: start failed ({err:#}); recreating", p.app);
                    self.create(p, desired, existing, stop_timeout)?;
                    Ok(true)
                }
            },
            Action::Restart => {
                podman.restart(&p.container_name, stop_timeout)?;
                Ok(true)
            }
            Action::Unpause => {
                podman.unpause(&p.container_name, stop_timeout)?;
                Ok(true)
            }
            Action::Remove => {
                if p.existing.is_none() || existing.is_some() {
                    podman.remove(existing.unwrap_or(&p.container_name), stop_timeout)?;
                }
                Ok(true)
            }
            Action::Create => {
                self.create(p, desired, None, stop_timeout)?;
                Ok(true)
            }
            Action::Recreate => {
                self.create(p, desired, existing, stop_timeout)?;
                Ok(true)
            }
            Action::Adopt => {
                self.adopt(p, desired)?;
                Ok(true)
            }
        }
    }

    /// The anonymous volumes (an image's `VOLUME` no manifest volume covers) of the container
    /// being replaced, as `NAME:DEST` to mount again at the same paths: compose carries them
    /// over too, or their data would stay behind in an unused volume. The listing's mount paths
    /// spare the inspect when the old container mounts nothing beyond the spec (the usual case).
    fn anonymous_volumes_to_carry(
        &self,
        app: &str,
        old: &str,
        spec: &crate::spec::ContainerSpec,
    ) -> Result<Vec<String>> {
        let destinations = spec.volume_destinations();
        if let Some(listed) = self.managed.iter().find(|c| c.id == old) {
            if !crate::spec::may_hold_anonymous_volumes(&listed.mounts, &destinations) {
                return Ok(Vec::new());
            }
        }
        let mounts = self
            .ctx
            .podman
            .inspect_container(old)
            .with_context(|| format!("failed to read the volumes of the old container of {app}"))?
            .mounts;
        let carried = crate::spec::carried_anonymous_volumes(&mounts, &destinations);
        if !carried.is_empty() {
            tracing::info!(
                "{app}: the new container keeps the anonymous volume(s) {}",
                carried.join(", ")
            );
        }
        Ok(carried)
    }

    /// Replace the unmanaged container holding the name: refused when its data is not where
    /// archy's container mounts its volumes (crate::adopt); otherwise stopped with its own stop
    /// timeout and removed (volumes kept) before archy's is created, so its host ports are free.
    fn adopt(&self, p: &AppPlan, desired: &DesiredApp) -> Result<()> {
        let squatter = p
            .squatter
            .as_deref()
            .context("adopt planned without the container holding the name")?;
        let legacy = self.ctx.podman.inspect_container(squatter)?;
        crate::adopt::check_data(&p.container_name, &desired.spec.volumes, &legacy)
            .map_err(anyhow::Error::msg)?;
        self.create(p, desired, Some(squatter), legacy.config.stop_timeout)
    }

    /// Make the image and network present, remove `replacing` (volumes kept), run the container.
    fn create(
        &self,
        p: &AppPlan,
        desired: &DesiredApp,
        replacing: Option<&str>,
        stop_timeout: u32,
    ) -> Result<()> {
        let DesiredApp {
            spec,
            hash,
            image: resolved,
        } = desired;
        let podman = &self.ctx.podman;
        let options = EnsureOptions {
            force: false,
            mirrors: self.mirrors.to_vec(),
            // A spinner with the current build step on a terminal; plain lines otherwise.
            progress: crate::logging::show_progress(self.ctx.settings.quiet)
                && self.ctx.settings.output == OutputFormat::Text,
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
                    && c.labels.get(LABEL_SUBNET) == Some(&self.ctx.settings.subnet)
            })
        });
        if spec.network == self.ctx.settings.network && !network_proven {
            self.ensure_network()?;
        }
        let carried = match replacing {
            Some(old) => self.anonymous_volumes_to_carry(&p.app, old, spec)?,
            None => Vec::new(),
        };
        if let Some(old) = replacing {
            podman
                .remove(old, stop_timeout)
                .with_context(|| format!("failed to remove the old container of {}", p.app))?;
        }
        let run = || {
            podman
                .run_detached(&spec.run_args_carrying(hash, &carried), stop_timeout)
                .map(|_| ())
        };
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
                    if c.state != ContainerState::Running {
                        podman.start(&c.id, stop_timeout)?;
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
                    let id = holder.map_or_else(|| spec.name.clone(), |c| c.id);
                    if crate::heal::system::has_live_conmon(&id) {
                        anyhow::bail!(
                            "the name {} is held by container {} that podman's database does not know but whose process still runs (lost or deleted podman database); run `archy heal-podman`",
                            spec.name,
                            crate::podman::short_id(&id)
                        );
                    }
                    tracing::warn!("{}: removing the half-created container {} left in storage", spec.app, spec.name);
                    podman.remove_storage(&id)?;
                }
            }
            return podman
                .run_detached(&spec.run_args(hash), stop_timeout)
                .map(|_| ())
                .with_context(|| format!("failed to create container {}", spec.name));
        }
    }

    fn ensure_network(&self) -> Result<()> {
        let mut state = self
            .network_ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.is_none() {
            *state = Some(super::network::ensure_network(self.ctx).map_err(|e| format!("{e:#}")));
        }
        state.clone().expect("just set").map_err(anyhow::Error::msg)
    }
}

/// Whether a podman failure says the container is not (any more) in its database.
fn no_such_container(err: &anyhow::Error) -> bool {
    crate::podman::ErrorKind::of(err) == Some(crate::podman::ErrorKind::NoSuchContainer)
}
