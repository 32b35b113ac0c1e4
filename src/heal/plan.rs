//! heal-podman's repairs and their escalating order: which step the facts call for next, and
//! what to advise when none is left (pure).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::netavark;
use super::parse::{EngineError, StorageOnly, DB_FILE};
use super::probes::{display, Facts};
use crate::podman::short_id;

/// Repairs, in escalating order (least destructive first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    SystemMigrate,
    ClearRuntimeDirs,
    MoveDbAside,
    RemoveStorageOnly,
    KillGhosts,
    ReleaseNetworkDebris,
    ReleaseStaleNamespaces,
    ReleaseDeadForwards,
    ReleaseIpamLeaks,
    RemoveOrphanBridges,
    RegisterVolumes,
    SystemRenumber,
}

impl StepKind {
    pub const ALL: [StepKind; 12] = [
        StepKind::SystemMigrate,
        StepKind::ClearRuntimeDirs,
        StepKind::MoveDbAside,
        StepKind::RemoveStorageOnly,
        StepKind::KillGhosts,
        StepKind::ReleaseNetworkDebris,
        StepKind::ReleaseStaleNamespaces,
        StepKind::ReleaseDeadForwards,
        StepKind::ReleaseIpamLeaks,
        StepKind::RemoveOrphanBridges,
        StepKind::RegisterVolumes,
        StepKind::SystemRenumber,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::SystemMigrate => "system-migrate",
            StepKind::ClearRuntimeDirs => "clear-runtime-dirs",
            StepKind::MoveDbAside => "move-db-aside",
            StepKind::RemoveStorageOnly => "remove-storage-only",
            StepKind::KillGhosts => "kill-ghosts",
            StepKind::ReleaseNetworkDebris => "release-network-debris",
            StepKind::ReleaseStaleNamespaces => "release-stale-namespaces",
            StepKind::ReleaseDeadForwards => "release-dead-forwards",
            StepKind::ReleaseIpamLeaks => "release-ipam-leaks",
            StepKind::RemoveOrphanBridges => "remove-orphan-bridges",
            StepKind::RegisterVolumes => "register-volumes",
            StepKind::SystemRenumber => "system-renumber",
        }
    }
}

/// A planned repair and what it will touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    /// What it acts on: container ids, paths, volume names.
    pub targets: Vec<String>,
    /// Human description for the step list and `--dry-run`.
    pub describe: String,
}

/// Options that widen what heal-podman may remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Remove every storage-only container, not only archy's.
    pub yes: bool,
}

/// Storage-only containers the plan will remove, and those it keeps.
pub fn storage_to_remove(
    list: &[StorageOnly],
    opts: PlanOptions,
) -> (Vec<&StorageOnly>, Vec<&StorageOnly>) {
    list.iter()
        .filter(|s| !s.buildah)
        .partition(|s| s.managed || opts.yes)
}

/// Ghost ids to kill: every ghost except those whose storage-only container is kept.
pub fn ghosts_to_kill(facts: &Facts, opts: PlanOptions) -> (Vec<String>, Vec<u32>) {
    let kept: BTreeSet<&str> = facts
        .storage_only
        .as_deref()
        .map(|l| {
            storage_to_remove(l, opts)
                .1
                .into_iter()
                .map(|s| s.id.as_str())
                .collect()
        })
        .unwrap_or_default();
    let ids: Vec<String> = facts
        .ghosts
        .iter()
        .flatten()
        .filter(|g| !kept.contains(g.id.as_str()))
        .map(|g| g.id.clone())
        .collect();
    let conmons: Vec<u32> = facts
        .ghost_conmons
        .iter()
        .flatten()
        .filter(|c| !kept.contains(c.id.as_str()))
        .map(|c| c.pid)
        .collect();
    (ids, conmons)
}

/// Every repair that applies to these facts, in escalating order (pure). The caller performs
/// the first one not yet tried, re-probes, and asks again.
///
/// Long, and kept whole on purpose: one block per repair in escalation order; that order is
/// the decision, and it is easiest to check when the blocks stand side by side.
#[allow(clippy::too_many_lines)]
pub fn plan(facts: &Facts, opts: PlanOptions) -> Vec<Step> {
    let mut steps = Vec::new();
    let err = facts.engine_error.as_ref();
    let engine_other = matches!(
        err,
        Some(EngineError::Other { .. } | EngineError::NeedsMigrate { .. })
    );
    if matches!(err, Some(EngineError::NeedsMigrate { .. })) || engine_other {
        steps.push(Step {
            kind: StepKind::SystemMigrate,
            targets: vec![],
            describe: "run `podman system migrate` (restarts a stale pause process, migrates containers to the current configuration)".into(),
        });
    }
    let stale = facts.stale_runtime.as_ref().is_some_and(|r| !r.is_empty());
    if stale || engine_other {
        let targets: Vec<String> = [&facts.paths.tmp_dir, &facts.paths.run_root]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        if !targets.is_empty() {
            steps.push(Step {
                kind: StepKind::ClearRuntimeDirs,
                describe: format!(
                    "clear podman's runtime dirs {} (state of a previous boot; podman rebuilds it)",
                    targets.join(" and ")
                ),
                targets,
            });
        }
    }
    if let Some(EngineError::DbCorrupt { db, .. }) = err {
        steps.push(Step {
            kind: StepKind::MoveDbAside,
            targets: vec![db.display().to_string()],
            describe: format!(
                "move the unreadable database {} aside to {}.broken-<UTC time> (kept, never deleted)",
                db.display(),
                db.display()
            ),
        });
    }
    if err.is_none() {
        if let Some(list) = &facts.storage_only {
            let (remove, _) = storage_to_remove(list, opts);
            if !remove.is_empty() {
                steps.push(Step {
                    kind: StepKind::RemoveStorageOnly,
                    targets: remove.iter().map(|s| s.id.clone()).collect(),
                    describe: format!(
                        "remove storage-only containers {} (`podman rm --storage`; images and volumes kept)",
                        remove.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let (ids, conmons) = ghosts_to_kill(facts, opts);
        if !ids.is_empty() || !conmons.is_empty() {
            let mut targets: Vec<String> = ids.clone();
            targets.extend(conmons.iter().map(|p| format!("conmon:{p}")));
            steps.push(Step {
                kind: StepKind::KillGhosts,
                describe: format!(
                    "kill and delete ghost OCI containers {} and their conmon processes",
                    if ids.is_empty() {
                        "(none)".to_string()
                    } else {
                        ids.iter()
                            .map(|i| short_id(i))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                targets,
            });
        }
        if let Some(debris) = facts.network_debris.as_ref().filter(|d| !d.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseNetworkDebris,
                targets: debris.iter().map(|d| d.container_id.clone()).collect(),
                describe: format!(
                    "release the network state of containers podman no longer knows ({}): the backend's teardown replayed (CNI DEL from libcni's cache, or `netavark teardown`), then their network namespace, port forwards, DNS entries and IP reservations",
                    debris.iter().map(|d| short_id(&d.container_id)).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(stale) = facts.stale_namespaces.as_ref().filter(|s| !s.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseStaleNamespaces,
                targets: stale.iter().map(|s| s.path.clone()).collect(),
                describe: format!(
                    "release network namespaces no running container has ({}): the backend's teardown replayed for them (CNI DEL where libcni's cache names them, or `netavark teardown` of the port forwards to their addresses), then the namespace (its veth goes with it) and what is left of their addresses",
                    stale.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(dead) = facts.dead_forwards.as_ref().filter(|d| !d.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseDeadForwards,
                targets: dead.iter().map(netavark::DeadForward::target).collect(),
                describe: format!(
                    "release port forwards to addresses no live container holds ({}): `netavark teardown` replayed for them, then `podman network reload --all`",
                    dead.iter().map(|d| d.forward.describe()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(leaks) = facts.ipam_leaks.as_ref().filter(|l| !l.is_empty()) {
            steps.push(Step {
                kind: StepKind::ReleaseIpamLeaks,
                targets: leaks.iter().map(super::ipam::Leak::target).collect(),
                describe: format!(
                    "release IP reservations podman's IPAM database keeps for containers that will never release them ({}): removed as podman's own deallocation would, in one bbolt transaction under the database's lock",
                    leaks.iter().map(super::ipam::Leak::describe).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(bridges) = facts.orphan_bridges.as_ref().filter(|b| !b.is_empty()) {
            steps.push(Step {
                kind: StepKind::RemoveOrphanBridges,
                targets: bridges.iter().map(|b| b.name.clone()).collect(),
                describe: format!(
                    "delete bridges no podman network claims and nothing is attached to ({}), so archy's subnet can be used again",
                    bridges.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some(volumes) = facts.orphan_volumes.as_ref().filter(|v| !v.is_empty()) {
            steps.push(Step {
                kind: StepKind::RegisterVolumes,
                targets: volumes.clone(),
                describe: format!(
                    "re-register volumes {} with `podman volume create` (their data stays in place)",
                    volumes.join(", ")
                ),
            });
        }
    }
    if matches!(err, Some(EngineError::Locks { .. })) || engine_other {
        steps.push(Step {
            kind: StepKind::SystemRenumber,
            targets: vec![],
            describe: "run `podman system renumber` (reallocates container locks)".into(),
        });
    }
    steps
}

/// The first planned step not tried yet.
pub fn next_step(steps: Vec<Step>, tried: &[StepKind]) -> Option<Step> {
    steps.into_iter().find(|s| !tried.contains(&s.kind))
}

/// What the operator should do when heal-podman could not bring podman back (pure).
pub fn next_advice(facts: &Facts, opts: PlanOptions) -> String {
    match &facts.engine_error {
        Some(EngineError::ConfigMismatch { detail }) => format!(
            "podman's database was created with other storage settings ({detail}). archy does not guess which is right: \
             make containers.conf/storage.conf (or podman's --root/--runroot/--storage-driver flags) match the database again, \
             or, if the new settings are intended, move {} aside and rerun `archy heal-podman`, then `archy reconcile`",
            display(&facts.paths.db)
        ),
        Some(err) => format!(
            "podman still fails ({}); inspect `podman --log-level=debug info`, then rerun `archy heal-podman`",
            err.describe()
        ),
        None => {
            let kept: Vec<String> = facts
                .storage_only
                .as_deref()
                .map(|l| storage_to_remove(l, opts).1.iter().map(|s| s.name.clone()).collect())
                .unwrap_or_default();
            if !kept.is_empty() && !opts.yes {
                format!(
                    "storage-only containers not managed by archy remain ({}); rerun `archy heal-podman --yes` to remove them too (images and volumes are kept)",
                    kept.join(", ")
                )
            } else if facts.runtime_busy.is_empty() {
                "rerun `archy heal-podman -v` and inspect the failing probe's evidence".into()
            } else {
                format!(
                    "runtime dirs could not be cleared while containers run ({}); stop them and rerun `archy heal-podman`",
                    facts.runtime_busy.join("; ")
                )
            }
        }
    }
}

/// `bolt_state.db.broken-20260101T120000Z` next to the database (UTC, from an RFC 3339 time).
pub fn broken_db_path(db: &Path, rfc3339_utc: &str) -> PathBuf {
    let stamp: String = rfc3339_utc
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let name = db
        .file_name()
        .map_or_else(|| DB_FILE.to_string(), |n| n.to_string_lossy().into_owned());
    db.with_file_name(format!("{name}.broken-{stamp}"))
}
