//! Rules across manifests: unique app ids, container names and host ports; dependencies that
//! exist, have a probe when required healthy, and form no cycle; the dependency layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Condition, Dependency, Manifest, ManifestError};

/// Cross-manifest rules: unique app ids, container names and host ports; dependencies that exist and form
/// no cycle. Offending manifests move to the error list; the rest stay usable.
///
/// Long, and kept whole on purpose: the rules run in a fixed order (ids, names, ports, missing
/// dependencies, healthy conditions, cycles), each on what the earlier ones left, and that
/// order is what decides which of two clashing files is refused.
#[allow(clippy::too_many_lines)]
pub fn validate_set(parsed: Vec<Manifest>) -> (Vec<Manifest>, Vec<ManifestError>) {
    let mut errors = Vec::new();
    let mut seen_apps: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut seen_names: BTreeMap<String, String> = BTreeMap::new();
    let mut unique = Vec::new();
    for m in parsed {
        if let Some(first) = seen_apps.get(&m.app) {
            errors.push(error_for(
                &m,
                format!(
                    "key `app`: `{}` is already defined in {}",
                    m.app,
                    first.display()
                ),
            ));
            continue;
        }
        let name = m.container_name();
        if let Some(owner) = seen_names.get(&name) {
            errors.push(error_for(
                &m,
                format!("key `container_name`: `{name}` is already used by app `{owner}`"),
            ));
            continue;
        }
        if let Some(clash) = host_port_clash(&m, &unique) {
            errors.push(error_for(&m, clash));
            continue;
        }
        seen_apps.insert(m.app.clone(), m.file.clone());
        seen_names.insert(name, m.app.clone());
        unique.push(m);
    }
    // Drop apps with missing dependencies until stable (dropping one may orphan another).
    loop {
        let ids: BTreeSet<String> = unique.iter().map(|m| m.app.clone()).collect();
        let bad = unique
            .iter()
            .position(|m| m.dependency_ids().any(|d| !ids.contains(d)));
        let Some(index) = bad else { break };
        let m = unique.remove(index);
        let missing: Vec<&str> = m.dependency_ids().filter(|d| !ids.contains(*d)).collect();
        errors.push(error_for(
            &m,
            format!(
                "key `depends_on`: no valid manifest defines app `{}`",
                missing.join("`, `")
            ),
        ));
    }
    // A `healthy` condition needs a probe that runs (an enabled app's) to pass: without one
    // the dependent would wait forever.
    let probed: BTreeSet<String> = unique
        .iter()
        .filter(|m| m.health.is_some() && m.enabled)
        .map(|m| m.app.clone())
        .collect();
    let disabled: BTreeSet<String> = unique
        .iter()
        .filter(|m| !m.enabled)
        .map(|m| m.app.clone())
        .collect();
    // `synced` needs the chain-aware probe: only it knows initial block download.
    let chain_probed: BTreeSet<String> = unique
        .iter()
        .filter(|m| m.enabled)
        .filter(|m| {
            m.health
                .as_ref()
                .is_some_and(|h| matches!(h.probe(), super::health::Probe::BitcoinRpc { .. }))
        })
        .map(|m| m.app.clone())
        .collect();
    let unmet = |d: &Dependency| match d.condition {
        Condition::Started => false,
        Condition::Healthy => !probed.contains(&d.app),
        Condition::Synced => !chain_probed.contains(&d.app),
    };
    let (kept, unprobed): (Vec<Manifest>, Vec<Manifest>) = unique
        .into_iter()
        .partition(|m| !m.depends_on.iter().any(unmet));
    for m in &unprobed {
        let unsynced: Vec<&str> = m
            .depends_on
            .iter()
            .filter(|d| d.condition == Condition::Synced && unmet(d) && probed.contains(&d.app))
            .map(|d| d.app.as_str())
            .collect();
        let apps: Vec<&str> = m
            .depends_on
            .iter()
            .filter(|d| unmet(d) && !unsynced.contains(&d.app.as_str()))
            .map(|d| d.app.as_str())
            .collect();
        let (off, unprobed): (Vec<&str>, Vec<&str>) =
            apps.into_iter().partition(|a| disabled.contains(*a));
        let mut why = Vec::new();
        if !unprobed.is_empty() {
            why.push(format!(
                "`{}` is required healthy but has no `health:` probe",
                unprobed.join("`, `")
            ));
        }
        if !off.is_empty() {
            why.push(format!(
                "`{}` is required healthy but is `enabled: false` (its probe never runs)",
                off.join("`, `")
            ));
        }
        if !unsynced.is_empty() {
            why.push(format!(
                "`{}` is required synced but its probe is not `bitcoin_rpc:` (only that one knows initial block download)",
                unsynced.join("`, `")
            ));
        }
        errors.push(error_for(
            m,
            format!("key `depends_on`: {}", why.join("; ")),
        ));
    }
    unique = kept;
    if let Err(cycle) = dependency_layers(&unique) {
        let (cyclic, rest): (Vec<Manifest>, Vec<Manifest>) =
            unique.into_iter().partition(|m| cycle.contains(&m.app));
        for m in &cyclic {
            errors.push(error_for(
                m,
                format!(
                    "key `depends_on`: dependency cycle among `{}`",
                    cycle.join("`, `")
                ),
            ));
        }
        unique = rest;
    }
    (unique, errors)
}

/// Group apps into dependency layers: every app comes after all of its dependencies; apps in one
/// layer are independent of each other. Err carries the apps on a cycle.
pub fn dependency_layers(apps: &[Manifest]) -> Result<Vec<Vec<String>>, Vec<String>> {
    let ids: BTreeSet<&str> = apps.iter().map(|m| m.app.as_str()).collect();
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = apps
        .iter()
        .map(|m| {
            (
                m.app.as_str(),
                m.dependency_ids().filter(|d| ids.contains(d)).collect(),
            )
        })
        .collect();
    let mut layers = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(app, _)| *app)
            .collect();
        if ready.is_empty() {
            return Err(remaining
                .keys()
                .map(std::string::ToString::to_string)
                .collect());
        }
        for app in &ready {
            remaining.remove(app);
        }
        for deps in remaining.values_mut() {
            for app in &ready {
                deps.remove(app);
            }
        }
        layers.push(ready.iter().map(std::string::ToString::to_string).collect());
    }
    Ok(layers)
}

/// The first host port of `m` already published by an earlier enabled app, as an error naming
/// both apps (two containers cannot bind one host port: the second would fail at start).
fn host_port_clash(m: &Manifest, earlier: &[Manifest]) -> Option<String> {
    if !m.enabled {
        return None;
    }
    for spec in &m.ports {
        let Some((ip, lo, hi, proto)) = spec.host_binding() else {
            continue;
        };
        for other in earlier.iter().filter(|o| o.enabled) {
            for other_spec in &other.ports {
                let Some((oip, olo, ohi, oproto)) = other_spec.host_binding() else {
                    continue;
                };
                let same_address = ip.is_empty() || oip.is_empty() || ip == oip;
                if proto == oproto && same_address && lo <= ohi && olo <= hi {
                    return Some(format!(
                        "key `ports`: `{spec}` of app `{}` uses the host port of `{other_spec}` of app `{}` ({})",
                        m.app,
                        other.app,
                        other.file.display()
                    ));
                }
            }
        }
    }
    None
}

fn error_for(m: &Manifest, message: String) -> ManifestError {
    ManifestError {
        file: m.file.clone(),
        app: Some(m.app.clone()),
        message,
    }
}
