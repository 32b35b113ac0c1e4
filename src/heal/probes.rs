//! heal-podman's named probes: the facts [`super::system`] gathered, turned into a verdict
//! with evidence per probe (pure).

use std::path::PathBuf;

use serde::Serialize;

use super::parse::{Conmon, EngineError, EnginePaths, OciContainer, StorageOnly};
use super::{netavark, netsys, network};
use crate::podman::short_id;

/// Everything the probes found, as data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub paths: EnginePaths,
    pub podman_version: Option<String>,
    /// `None`: podman info answered.
    pub engine_error: Option<EngineError>,
    /// `None` when it could not be looked at (engine down).
    pub storage_only: Option<Vec<StorageOnly>>,
    /// OCI containers under podman's roots that podman's database does not know.
    pub ghosts: Option<Vec<OciContainer>>,
    /// conmon processes for this graph root whose container podman's database does not know.
    pub ghost_conmons: Option<Vec<Conmon>>,
    /// Volume directories podman does not list.
    pub orphan_volumes: Option<Vec<String>>,
    /// Network namespaces, veths, port forwards and IP reservations on archy's networks of
    /// containers podman does not know (`None`: not looked at, engine down).
    pub network_debris: Option<Vec<network::Debris>>,
    /// Network namespaces on archy's networks an earlier attachment left (no process, no
    /// running container's).
    pub stale_namespaces: Option<Vec<network::StaleNamespace>>,
    /// Bridges no podman network claims, nothing attached, holding archy's subnet.
    pub orphan_bridges: Option<Vec<network::OrphanBridge>>,
    /// netavark: port forwards on archy's networks to addresses nothing holds.
    pub dead_forwards: Option<Vec<netavark::DeadForward>>,
    /// netavark: addresses of archy's networks podman's IPAM keeps reserved for a container
    /// that will never release them (forgotten, or set up again elsewhere).
    pub ipam_leaks: Option<Vec<super::ipam::Leak>>,
    /// Why the runtime dirs look stale (`Some(vec![])` = checked, consistent).
    pub stale_runtime: Option<Vec<String>>,
    /// Why clearing the runtime dirs is not safe now (live containers or mounts), if it is not.
    pub runtime_busy: Vec<String>,
    /// Notes from probes that could not look (missing tools, unknown paths).
    pub notes: Vec<String>,
    /// The network backend podman reports (`netavark`, `cni`) and the firewall it programs
    /// (`iptables`, `nftables`): where the network-debris probe looks and how it releases.
    pub network_backend: Option<&'static str>,
    pub firewall_driver: Option<netavark::FirewallDriver>,
    /// archy's networks and the backend, for the repairs.
    #[serde(skip)]
    pub net: NetContext,
}

/// archy's networks and the backend podman uses for them.
#[derive(Debug, Clone, Default)]
pub struct NetContext {
    pub scope: netsys::NetScope,
    pub backend: netsys::Backend,
}

/// The named probes, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeName {
    Engine,
    Database,
    StorageOnly,
    GhostOci,
    NetworkDebris,
    OrphanVolumes,
    RuntimeDirs,
}

impl ProbeName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeName::Engine => "engine",
            ProbeName::Database => "database",
            ProbeName::StorageOnly => "storage-only",
            ProbeName::GhostOci => "ghost-oci",
            ProbeName::NetworkDebris => "network-debris",
            ProbeName::OrphanVolumes => "orphan-volumes",
            ProbeName::RuntimeDirs => "runtime-dirs",
        }
    }
}

/// ok, broken, or not checked (a probe that needs a working engine while it is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Broken,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Broken => "broken",
            Status::Unknown => "unknown",
        }
    }
}

/// One probe's verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub name: ProbeName,
    pub status: Status,
    pub evidence: Vec<String>,
}

#[allow(clippy::ref_option)] // called with the paths struct's fields as they are
pub(super) fn display(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "?".into(), |p| p.display().to_string())
}

/// Turn facts into the six named probes (pure).
pub fn probes(facts: &Facts) -> Vec<Probe> {
    vec![
        probe_engine(facts),
        probe_database(facts),
        probe_storage_only(facts),
        probe_ghost_oci(facts),
        probe_network_debris(facts),
        probe_orphan_volumes(facts),
        probe_runtime_dirs(facts),
    ]
}

fn unknown_while_podman_is_down() -> Vec<String> {
    vec!["not checked: podman does not answer".to_string()]
}

/// Probe: podman answers `podman info`.
fn probe_engine(facts: &Facts) -> Probe {
    match &facts.engine_error {
        None => Probe {
            name: ProbeName::Engine,
            status: Status::Ok,
            evidence: vec![format!(
                "podman {} answers `podman info` (graph root {}, run root {})",
                facts.podman_version.as_deref().unwrap_or("?"),
                display(&facts.paths.graph_root),
                display(&facts.paths.run_root)
            )],
        },
        Some(err) => Probe {
            name: ProbeName::Engine,
            status: Status::Broken,
            evidence: vec![format!("`podman info` fails: {}", err.describe())],
        },
    }
}

/// Probe: podman's state database opens.
fn probe_database(facts: &Facts) -> Probe {
    match &facts.engine_error {
        None => Probe {
            name: ProbeName::Database,
            status: Status::Ok,
            evidence: vec![format!("{} opens", display(&facts.paths.db))],
        },
        Some(err @ (EngineError::DbCorrupt { .. } | EngineError::ConfigMismatch { .. })) => Probe {
            name: ProbeName::Database,
            status: Status::Broken,
            evidence: vec![err.describe()],
        },
        Some(_) => Probe {
            name: ProbeName::Database,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: every container in storage is in podman's database (or a build's working container,
/// which the database never holds).
fn probe_storage_only(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    let builds: Vec<String> = facts
        .storage_only
        .iter()
        .flatten()
        .filter(|s| s.buildah)
        .map(|s| {
            format!(
                "{} ({}) is a buildah working container (a build's; not damage)",
                s.name,
                short_id(&s.id)
            )
        })
        .collect();
    let damaged = facts
        .storage_only
        .as_ref()
        .map(|l| l.iter().filter(|s| !s.buildah).collect::<Vec<_>>());
    match (&damaged, engine_down) {
        (Some(list), false) if list.is_empty() => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Ok,
            evidence: std::iter::once(
                "every container in storage is in podman's database or a build's".to_string(),
            )
            .chain(builds)
            .collect(),
        },
        (Some(list), false) => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Broken,
            evidence: list
                .iter()
                .map(|s| {
                    format!(
                        "{} ({}) exists only in storage{}",
                        s.name,
                        short_id(&s.id),
                        if s.managed { "" } else { "; not archy's" }
                    )
                })
                .collect(),
        },
        _ => Probe {
            name: ProbeName::StorageOnly,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: no OCI container or conmon runs behind podman's back.
fn probe_ghost_oci(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    match (&facts.ghosts, &facts.ghost_conmons, engine_down) {
        (Some(ghosts), Some(conmons), false) if ghosts.is_empty() && conmons.is_empty() => Probe {
            name: ProbeName::GhostOci,
            status: Status::Ok,
            evidence: vec![format!(
                "no OCI container or conmon under {} unknown to podman (runtime root {})",
                display(&facts.paths.graph_root),
                display(&facts.paths.oci_root)
            )],
        },
        (Some(ghosts), Some(conmons), false) => {
            let mut evidence: Vec<String> = ghosts
                .iter()
                .map(|g| {
                    format!(
                        "OCI container {} is {} (pid {}) but podman's database does not know it",
                        short_id(&g.id),
                        g.status,
                        g.pid
                    )
                })
                .collect();
            evidence.extend(
                conmons
                    .iter()
                    .filter(|c| !ghosts.iter().any(|g| g.id == c.id))
                    .map(|c| {
                        format!(
                            "conmon pid {} for unknown container {}",
                            c.pid,
                            short_id(&c.id)
                        )
                    }),
            );
            Probe {
                name: ProbeName::GhostOci,
                status: Status::Broken,
                evidence,
            }
        }
        (_, _, false) => Probe {
            name: ProbeName::GhostOci,
            status: Status::Unknown,
            evidence: vec![format!(
                "not checked: the OCI runtime's containers could not be listed (runtime {}, state root {})",
                display(&facts.paths.oci_runtime),
                display(&facts.paths.oci_root)
            )],
        },
        _ => Probe {
            name: ProbeName::GhostOci,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: no network state on archy's network that nothing owns: of a container podman does
/// not know, a namespace an earlier attachment left, or a bridge no network claims.
fn probe_network_debris(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    let Some(debris) = facts.network_debris.as_ref().filter(|_| !engine_down) else {
        return Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        };
    };
    let evidence: Vec<String> = debris
        .iter()
        .map(network::Debris::describe)
        .chain(
            facts
                .stale_namespaces
                .iter()
                .flatten()
                .map(network::StaleNamespace::describe),
        )
        .chain(
            facts
                .orphan_bridges
                .iter()
                .flatten()
                .map(network::OrphanBridge::describe),
        )
        .chain(
            facts
                .dead_forwards
                .iter()
                .flatten()
                .map(netavark::DeadForward::describe),
        )
        .chain(
            facts
                .ipam_leaks
                .iter()
                .flatten()
                .map(|l| format!("IP reservation {}", l.describe())),
        )
        .collect();
    if evidence.is_empty() {
        Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Ok,
            evidence: vec![
                "no network namespace, veth, port forward or IP reservation of a container podman does not know".into(),
            ],
        }
    } else {
        Probe {
            name: ProbeName::NetworkDebris,
            status: Status::Broken,
            evidence,
        }
    }
}

/// Probe: every volume dir is a podman volume.
fn probe_orphan_volumes(facts: &Facts) -> Probe {
    let engine_down = facts.engine_error.is_some();
    match (&facts.orphan_volumes, engine_down) {
        (Some(list), false) if list.is_empty() => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Ok,
            evidence: vec![format!(
                "every volume dir in {} is known to podman",
                display(&facts.paths.volume_path)
            )],
        },
        (Some(list), false) => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Broken,
            evidence: list
                .iter()
                .map(|v| {
                    format!(
                        "volume dir {}/{v} is not a podman volume",
                        display(&facts.paths.volume_path)
                    )
                })
                .collect(),
        },
        _ => Probe {
            name: ProbeName::OrphanVolumes,
            status: Status::Unknown,
            evidence: unknown_while_podman_is_down(),
        },
    }
}

/// Probe: podman's tmp dir and run root belong to this boot.
fn probe_runtime_dirs(facts: &Facts) -> Probe {
    match &facts.stale_runtime {
        Some(reasons) if reasons.is_empty() => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Ok,
            evidence: vec![format!(
                "{} and {} belong to this boot",
                display(&facts.paths.tmp_dir),
                display(&facts.paths.run_root)
            )],
        },
        Some(reasons) => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Broken,
            evidence: reasons.clone(),
        },
        None => Probe {
            name: ProbeName::RuntimeDirs,
            status: Status::Unknown,
            evidence: vec!["not checked: podman's tmp dir is unknown".into()],
        },
    }
}

/// Healthy: every probe ok (an unknown probe means podman is down, which is broken).
pub fn healthy(probes: &[Probe]) -> bool {
    probes.iter().all(|p| p.status == Status::Ok)
}
