//! Last-known-good images in a tick ([`crate::images::lkg`] decides): the desire stage runs an
//! app whose manifest names a bad image on its last-known-good id instead ([`apply_records`]);
//! after the probes, [`rollback_stage`] counts healthy ticks and turns an image that did not
//! become healthy within its window into a recreate from the last-known-good id, with the
//! dependents that are down because of it restarted after it.

use std::collections::BTreeMap;

use super::desired::DesiredApp;
use crate::health::HealthState;
use crate::images::lkg::{self, ImageRecord};
use crate::images::{Resolved, Source};
use crate::manifest::{Loaded, Owner, PullPolicy};
use crate::plan::{Action, Plan};
use crate::podman::Container;

/// An app's image as the manifest names it, and its record.
#[derive(Debug, Clone, Default)]
pub struct AppImages {
    /// The reference the manifest resolves to (before any rollback).
    pub reference: String,
    pub record: ImageRecord,
}

impl AppImages {
    /// Whether the app runs its last-known-good image in place of a bad one the manifest names.
    pub fn held_back(&self) -> bool {
        self.record.refuses(&self.reference).is_some() && self.record.last_known_good.is_some()
    }
}

/// Read every desired app's record; `--retry` clears an app's bad images (tried again this
/// tick), `--acknowledge` ends its rollback alarm (both written at once, not in a dry run).
/// An app whose manifest names a bad image runs its last-known-good image id instead.
pub fn apply_records(
    state_dir: &std::path::Path,
    apps: &mut BTreeMap<String, DesiredApp>,
    retry: &[String],
    acknowledge: &[String],
    dry_run: bool,
) -> BTreeMap<String, AppImages> {
    let mut out = BTreeMap::new();
    for (app, desired) in apps.iter_mut() {
        let mut record = lkg::load(state_dir, app);
        let before = record.clone();
        if retry.contains(app) {
            record.bad_images.clear();
            record.rolled_back = None;
            record.lost_good = None;
        }
        if acknowledge.contains(app) {
            if let Some(r) = record.rolled_back.as_mut() {
                r.acknowledged = true;
            }
            record.lost_good = None;
        }
        if record != before && !dry_run {
            match lkg::save(state_dir, app, &record) {
                Ok(()) => tracing::info!(
                    "{app}: {}",
                    if retry.contains(app) {
                        "bad images cleared (--retry): the manifest's image is tried again"
                    } else {
                        "rollback acknowledged"
                    }
                ),
                Err(err) => tracing::warn!("{err:#}"),
            }
        }
        let images = AppImages {
            reference: desired.image.reference.clone(),
            record,
        };
        if images.held_back() {
            let good = images.record.last_known_good.as_ref().expect("held back");
            run_on(desired, &good.id);
        }
        out.insert(app.clone(), images);
    }
    out
}

/// Make `desired` run the local image `id` (never pulled: it is the app's way back).
fn run_on(desired: &mut DesiredApp, id: &str) {
    desired.spec.image = id.to_string();
    desired.hash = desired.spec.hash();
    desired.image = Resolved {
        reference: id.to_string(),
        source: Source::Registry {
            pull: PullPolicy::Never,
        },
    };
}

/// What the rollback stage needs of the tick.
pub struct Tick<'a> {
    pub state_dir: &'a std::path::Path,
    pub loaded: &'a Loaded,
    pub managed: &'a [Container],
    /// Every probed app's health after this tick's probes.
    pub health: &'a BTreeMap<String, HealthState>,
    pub now: i64,
    /// Whether an image id is in local storage (`podman image exists`): asked only on the
    /// rollback path, so a steady tick stays one podman call.
    pub image_exists: &'a dyn Fn(&str) -> anyhow::Result<bool>,
}

/// Step every desired app's record (written when it changed); an app whose tried image did not
/// become healthy within its window is recreated from its last-known-good id (plan and desire
/// changed), and its dependents that are down are restarted after it.
pub fn rollback_stage(
    tick: &Tick,
    apps: &mut BTreeMap<String, DesiredApp>,
    images: &mut BTreeMap<String, AppImages>,
    plan: &mut Plan,
) {
    let mut rolled_back = Vec::new();
    for (app, desired) in apps.iter_mut() {
        let Some(m) = tick
            .loaded
            .get(app)
            .filter(|m| m.enabled && m.owner == Owner::Archy)
        else {
            continue;
        };
        let Some(images) = images.get_mut(app) else {
            continue;
        };
        let Some(c) = crate::health::tick::container_of(m, tick.managed) else {
            continue;
        };
        let health = tick.health.get(app);
        // The manifest's reference when the container is the one it asks for (podman lists a
        // digest-pinned `name:tag@sha256:…` as `name@sha256:…`), else what podman lists.
        let current = c.spec_hash() == Some(desired.hash.as_str()) && !images.held_back();
        let seen = lkg::Seen {
            image_id: c.image_id.clone(),
            reference: if current {
                images.reference.clone()
            } else {
                c.image.clone()
            },
            running: c.state == crate::podman::ContainerState::Running,
            start_key: format!("{}@{}", c.id, c.started_at),
            probe_healthy: m
                .health
                .as_ref()
                .map(|_| health.is_some_and(|h| h.status.answers())),
            evidence: health
                .and_then(|h| h.last_error.clone())
                .unwrap_or_default(),
        };
        let (mut record, rollback) = lkg::step(&images.record, &seen, lkg::window(m), tick.now);
        let rollback = match rollback.map(|rb| ((tick.image_exists)(&rb.id), rb)) {
            None => None,
            Some((Ok(true), rb)) => Some(rb),
            Some((Ok(false), _)) => {
                record = lkg::good_image_gone(&images.record, record, tick.now);
                if let Some(lost) = &record.lost_good {
                    tracing::error!("{app}: {}", lost.describe());
                }
                None
            }
            Some((Err(err), rb)) => {
                // Decided again next tick; nothing recorded meanwhile.
                tracing::warn!(
                    "{app}: rollback to {} put off: {err:#}",
                    crate::podman::short_id(&rb.id)
                );
                continue;
            }
        };
        if record != images.record {
            if let Err(err) = lkg::save(tick.state_dir, app, &record) {
                tracing::warn!("{err:#}");
            }
            if let Some(good) = record
                .last_known_good
                .as_ref()
                .filter(|g| images.record.last_known_good.as_ref() != Some(*g))
            {
                tracing::info!(
                    "{app}: image {} ({}) is its last-known-good",
                    good.reference,
                    crate::podman::short_id(&good.id)
                );
            }
            images.record = record;
        }
        let Some(rollback) = rollback else {
            continue;
        };
        tracing::warn!("{app}: rollback: {}", rollback.reason);
        run_on(desired, &rollback.id);
        if let Some(p) = plan.apps.iter_mut().find(|p| &p.app == app) {
            p.action = Action::Recreate;
            p.reason = format!("rollback: {}", rollback.reason);
        }
        rolled_back.push(app.clone());
    }
    restart_dependents(tick, &rolled_back, plan);
}

/// A dependent of a rolled-back app that is down (its last probe failed, or its container is
/// not running) is restarted after it (the executor runs dependency layers in order).
fn restart_dependents(tick: &Tick, rolled_back: &[String], plan: &mut Plan) {
    for m in tick.loaded.apps.iter().filter(|m| {
        m.enabled
            && m.owner == Owner::Archy
            && m.dependency_ids()
                .any(|d| rolled_back.iter().any(|r| r == d))
    }) {
        let up = match &m.health {
            Some(_) => tick
                .health
                .get(&m.app)
                .is_some_and(|h| h.status.answers() && h.consecutive_failures == 0),
            None => crate::health::tick::container_of(m, tick.managed)
                .is_some_and(|c| c.state == crate::podman::ContainerState::Running),
        };
        if up {
            continue;
        }
        if let Some(p) = plan
            .apps
            .iter_mut()
            .find(|p| p.app == m.app && p.action == Action::Ok)
        {
            p.action = Action::Restart;
            p.reason = "a dependency was rolled back to its last-known-good image".into();
        }
    }
}

/// What status shows of an app's images (absent while there is nothing to say).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImagesView {
    /// `<id12> (<reference>)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_known_good: Option<String>,
    /// `<reference> (<id12>): <evidence>`, oldest first.
    pub bad_images: Vec<String>,
    /// `rolled back to <id12> (<ref>): <bad ref> (<id12>) <evidence>` while the manifest still
    /// names the bad image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    /// The operator acknowledged it (`archy reconcile --acknowledge APP`): status does not fail.
    pub acknowledged: bool,
    /// `cannot roll back: last-known-good image <id12> (<ref>) is gone; …`: status exits 1
    /// until a new image becomes last-known-good, `--acknowledge` or `--retry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cannot_roll_back: Option<String>,
}

impl ImagesView {
    /// A rollback not acknowledged: status exits 1.
    pub fn alarm(&self) -> bool {
        self.rolled_back.is_some() && !self.acknowledged
    }
}

/// The status view of an app's images (pure); None while nothing is known (a first image on
/// trial).
pub fn view(images: &AppImages) -> Option<ImagesView> {
    let r = &images.record;
    if r.last_known_good.is_none()
        && r.bad_images.is_empty()
        && r.rolled_back.is_none()
        && r.lost_good.is_none()
    {
        return None;
    }
    let rolled_back = r
        .rolled_back
        .as_ref()
        .filter(|rb| rb.from_reference == images.reference);
    Some(ImagesView {
        last_known_good: r
            .last_known_good
            .as_ref()
            .map(|g| format!("{} ({})", crate::podman::short_id(&g.id), g.reference)),
        bad_images: r
            .bad_images
            .iter()
            .map(|b| {
                format!(
                    "{} ({}): {}",
                    b.reference,
                    crate::podman::short_id(&b.id),
                    b.evidence
                )
            })
            .collect(),
        rolled_back: rolled_back.map(lkg::Rollback::describe),
        acknowledged: rolled_back.is_some_and(|rb| rb.acknowledged),
        cannot_roll_back: r.lost_good.as_ref().map(lkg::LostGood::describe),
    })
}
