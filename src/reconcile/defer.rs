//! Image updates held back while a chain syncs: an app with `defer_updates_while: syncing` (by
//! default, apps probed by `bitcoin_rpc:`) whose image changed is not recreated while its
//! recorded health says `syncing` (initial block download: a recreate then costs hours of
//! progress); it is reported `waiting`, and `archy reconcile --force APP` applies it at once.
//! Decided before the probes from the recorded health, so the app keeps being probed as before.

use std::collections::BTreeMap;

use super::desired::DesiredApp;
use super::{AppResult, Outcome};
use crate::health::{HealthState, Status};
use crate::manifest::Loaded;
use crate::plan::{Action, Plan};
use crate::podman::Container;

/// Take the deferred recreates out of the plan; a `waiting` result for each. `recorded` gives
/// an app's last recorded health (read only for the apps concerned).
pub fn defer_image_updates(
    loaded: &Loaded,
    apps: &BTreeMap<String, DesiredApp>,
    managed: &[Container],
    recorded: &dyn Fn(&str) -> HealthState,
    plan: &mut Plan,
    force: &[String],
) -> Vec<AppResult> {
    let mut results = Vec::new();
    plan.apps.retain(|p| {
        if p.action != Action::Recreate {
            return true;
        }
        let (Some(m), Some(desired)) = (loaded.get(&p.app), apps.get(&p.app)) else {
            return true;
        };
        if !m.defers_while_syncing() {
            return true;
        }
        let Some(c) = crate::health::tick::container_of(m, managed) else {
            return true;
        };
        if crate::images::same_image(&c.image, &desired.spec.image) {
            return true;
        }
        let health = recorded(&p.app);
        // Syncing, or starting again (restarted) with the chain last seen in initial block
        // download.
        let in_ibd = health.status == Status::Syncing
            || (health.status == Status::Starting && health.chain.is_some_and(|c| c.ibd));
        if !in_ibd {
            return true;
        }
        let progress = health
            .chain
            .map_or_else(String::new, |c| format!(" ({})", c.describe()));
        if force.contains(&p.app) {
            tracing::warn!(
                "{}: image update to {} applied while the chain syncs{progress} (--force {})",
                p.app,
                desired.spec.image,
                p.app
            );
            return true;
        }
        let why = format!(
            "image update to {} deferred while the chain syncs{progress} (defer_updates_while: syncing); `archy reconcile --force {}` applies it now",
            desired.spec.image,
            p.app
        );
        tracing::info!("{}: {why}", p.app);
        results.push(AppResult {
            app: p.app.clone(),
            container: p.container_name.clone(),
            action: p.action,
            reason: p.reason.clone(),
            result: Outcome::Waiting,
            error: Some(why),
        });
        false
    });
    results
}
