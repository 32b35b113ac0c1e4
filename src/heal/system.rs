//! heal-podman's contact with the system: gather [`Facts`] (podman, the OCI runtime, `/proc`,
//! the volume and runtime dirs) and perform one [`Step`]. Decisions live in the parent module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::{
    classify_engine_error, engine_paths, parse_btime, parse_conmon_argv, parse_debug_paths,
    parse_info, parse_runc_list, split_external, under_any, Conmon, EnginePaths, Facts,
    OciContainer, Step, StepKind,
};
use crate::exec::Cmd;
use crate::podman::{ContainerState, Podman};

/// How long a killed ghost (and its conmon) gets to exit before the next escalation.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for a process to exit.
const POLL: Duration = Duration::from_millis(50);

/// The effective uid.
pub fn euid() -> u32 {
    crate::procinfo::euid()
}

/// Look at everything the probes need. Never changes anything.
///
/// Long, and kept whole on purpose: it is one read-only pass, fact by fact in the order the
/// probes use them, where each later fact depends on what the earlier ones found (the engine's
/// paths, whether podman answers); split up, every piece would need the same half-built state.
/// `networks`: the networks whose debris heal-podman may release (archy's).
#[allow(clippy::too_many_lines)]
pub fn gather(
    podman: &Podman,
    manifest_names: &BTreeSet<String>,
    networks: &super::netsys::NetScope,
) -> Result<Facts> {
    let out = podman.info_debug()?;
    let debug = parse_debug_paths(&out.stderr);
    let (info, engine_error) = if out.success() {
        match parse_info(&out.stdout) {
            Ok(info) => (Some(info), None),
            Err(err) => (
                None,
                Some(super::EngineError::Other {
                    detail: format!("{err:#}"),
                }),
            ),
        }
    } else {
        (None, Some(classify_engine_error(&out.stderr)))
    };
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let paths = engine_paths(
        info.as_ref(),
        &debug,
        engine_error.as_ref(),
        euid(),
        xdg.as_deref(),
    );
    // podman 5's SQLite errors name no path, and podman prints its paths only after opening
    // the database: read them from its config files instead.
    let paths = match (&engine_error, &paths.db) {
        (Some(super::EngineError::DbCorrupt { db, .. }), None) if db.as_os_str().is_empty() => {
            let (graph_root, static_dir) = configured_roots(euid());
            EnginePaths {
                db: super::sqlite_db_path(static_dir.as_deref(), graph_root.as_deref()),
                graph_root: paths.graph_root.clone().or(graph_root),
                static_dir: paths.static_dir.clone().or(static_dir),
                ..paths
            }
        }
        _ => paths,
    };
    // The corrupt database named by its path from here on (probe evidence, the repair).
    let engine_error = match (engine_error, &paths.db) {
        (Some(super::EngineError::DbCorrupt { db, reason }), Some(path))
            if db.as_os_str().is_empty() =>
        {
            Some(super::EngineError::DbCorrupt {
                db: path.clone(),
                reason,
            })
        }
        (other, _) => other,
    };
    let mut facts = Facts {
        podman_version: info.as_ref().map(|i| i.version.version.clone()),
        engine_error,
        ..Facts::default()
    };

    // OCI containers and conmons under podman's roots, whether or not the engine answers.
    let roots: Vec<&Path> = [&paths.graph_root, &paths.run_root]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    let oci = match oci_list(&paths) {
        Ok(list) => Some(
            list.into_iter()
                .filter(|c| !roots.is_empty() && under_any(&c.bundle, &roots))
                .collect::<Vec<_>>(),
        ),
        Err(err) => {
            facts.notes.push(format!("{err:#}"));
            None
        }
    };
    let conmons: Vec<Conmon> = if roots.is_empty() {
        Vec::new()
    } else {
        let engine_uid = euid();
        conmon_processes(paths.conmon.as_deref())
            .into_iter()
            .filter(|c| under_any(&c.bundle, &roots))
            .filter(|c| match super::unidentified_conmon(c, engine_uid) {
                None => true,
                Some(note) => {
                    tracing::warn!("{note}");
                    facts.notes.push(note);
                    false
                }
            })
            .collect()
    };

    if facts.engine_error.is_none() {
        let names_listing = podman.list_external()?;
        let (known, storage) = split_external(&names_listing, manifest_names);
        facts.storage_only = Some(storage);
        facts.ghosts = oci.as_ref().map(|list| {
            list.iter()
                .filter(|c| !known.contains(&c.id))
                .cloned()
                .collect()
        });
        facts.ghost_conmons = Some(
            conmons
                .iter()
                .filter(|c| !known.contains(&c.id))
                .cloned()
                .collect(),
        );
        // Debris of containers in podman's database only: a storage-only container's network
        // state is debris too once no process uses its namespace (a running ghost's is not).
        let running: BTreeSet<String> = names_listing
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.id.clone())
            .collect();
        let info = info.as_ref();
        let backend = super::netsys::detect_backend(
            info.map_or("", |i| i.host.network_backend.as_str()),
            paths.rootless,
            paths.run_root.as_deref(),
        );
        facts.network_backend = Some(backend.name());
        facts.firewall_driver = backend.firewall();
        let scan = super::netsys::scan(networks, &backend, &known, &running, || {
            Ok(podman
                .list_networks()?
                .into_iter()
                .map(|n| super::netsys::PodmanNetwork {
                    name: n.name,
                    bridge: n.network_interface,
                })
                .collect())
        });
        facts.net = super::NetContext {
            scope: networks.clone(),
            backend,
        };
        facts.network_debris = Some(scan.debris);
        facts.stale_namespaces = Some(scan.stale_namespaces);
        facts.orphan_bridges = Some(scan.orphan_bridges);
        facts.dead_forwards = Some(scan.dead_forwards);
        facts.ipam_leaks = Some(scan.ipam_leaks);
        facts.notes.extend(scan.notes);
        facts.orphan_volumes = match &paths.volume_path {
            Some(dir) => Some(orphan_volumes(podman, dir)?),
            None => None,
        };
    }

    facts.stale_runtime = paths.tmp_dir.as_deref().map(stale_runtime_reasons);
    // Clearing runtime dirs is only safe with nothing of this root running or mounted.
    for c in oci.iter().flatten().filter(|c| c.status != "stopped") {
        facts.runtime_busy.push(format!(
            "OCI container {} is {}",
            crate::podman::short_id(&c.id),
            c.status
        ));
    }
    for c in &conmons {
        facts
            .runtime_busy
            .push(format!("conmon pid {} runs", c.pid));
    }
    let mut mount_roots: Vec<PathBuf> = paths
        .graph_root
        .iter()
        .flat_map(|g| [g.join("overlay"), g.join("overlay-containers")])
        .collect();
    mount_roots.extend(paths.run_root.iter().cloned());
    mount_roots.extend(paths.tmp_dir.iter().cloned());
    for m in busy_mounts(&mount_roots) {
        facts.runtime_busy.push(format!("{m} is mounted"));
    }
    facts.paths = paths;
    Ok(facts)
}

/// The graph root and static dir podman's config files set, read as podman reads them for
/// root (`$CONTAINERS_STORAGE_CONF` else `/etc/containers/storage.conf` else
/// `/usr/share/containers/storage.conf`; `$CONTAINERS_CONF` else `/usr/share/containers/`,
/// `/etc/containers/containers.conf` and its `.d` drop-ins, later ones winning), defaulting to
/// `/var/lib/containers/storage` for root. Rootless roots are not guessed (`None`).
fn configured_roots(euid: u32) -> (Option<PathBuf>, Option<PathBuf>) {
    if euid != 0 {
        return (None, None);
    }
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let storage_files: Vec<PathBuf> = match std::env::var_os("CONTAINERS_STORAGE_CONF") {
        Some(f) => vec![PathBuf::from(f)],
        None => [
            "/etc/containers/storage.conf",
            "/usr/share/containers/storage.conf",
        ]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .take(1)
        .collect(),
    };
    let graph_root = storage_files
        .iter()
        .filter_map(|f| read(f))
        .find_map(|t| super::toml_string(&t, "storage", "graphroot"))
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/var/lib/containers/storage")));
    let conf_files: Vec<PathBuf> = if let Some(f) = std::env::var_os("CONTAINERS_CONF") {
        vec![PathBuf::from(f)]
    } else {
        let mut files = vec![
            PathBuf::from("/usr/share/containers/containers.conf"),
            PathBuf::from("/etc/containers/containers.conf"),
        ];
        let mut dropins: Vec<PathBuf> = std::fs::read_dir("/etc/containers/containers.conf.d")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        dropins.sort();
        files.extend(dropins);
        files
    };
    // The last file that sets it wins.
    let static_dir = conf_files
        .iter()
        .rev()
        .filter_map(|f| read(f))
        .find_map(|t| super::toml_string(&t, "engine", "static_dir"))
        .map(PathBuf::from);
    (graph_root, static_dir)
}

/// The OCI runtime's containers (`runc --root <root> list --format json`).
fn oci_list(paths: &EnginePaths) -> Result<Vec<OciContainer>> {
    let (Some(runtime), Some(root)) = (&paths.oci_runtime, &paths.oci_root) else {
        anyhow::bail!("ghost check skipped: the OCI runtime or its state root is unknown");
    };
    if !root.exists() {
        return Ok(Vec::new());
    }
    // `runc list` reads every container's state file and fails as a whole when one of them
    // vanishes mid-read (another container being deleted): retry before calling it unknown.
    let list = oci_cmd(runtime, root).args(["list", "--format", "json"]);
    let mut attempt = 1;
    loop {
        match list.run() {
            Ok(out) => return parse_runc_list(&out.stdout),
            Err(_) if attempt < OCI_LIST_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("failed to list OCI containers in {}", root.display())
                })
            }
        }
    }
}

/// How often `runc list` is tried before the ghost probe says "unknown".
const OCI_LIST_ATTEMPTS: u32 = 10;

fn oci_cmd(runtime: &Path, root: &Path) -> Cmd {
    Cmd::new(runtime).arg("--root").arg(root)
}

/// Whether a live conmon still runs container `id`: its process runs although podman's
/// database may not know it (a ghost).
pub fn has_live_conmon(id: &str) -> bool {
    conmon_processes(None).iter().any(|c| c.id == id)
}

/// Whether `exe` is the conmon binary: the engine's (`podman info`), or while that is unknown
/// a file named conmon that only root can change.
fn is_conmon_binary(exe: &Path, engine_conmon: Option<&Path>) -> bool {
    use std::os::unix::fs::MetadataExt;
    match engine_conmon {
        Some(bin) => exe == bin || crate::procinfo::same_file(exe, bin),
        None => {
            exe.file_name().is_some_and(|n| n == "conmon")
                && std::fs::metadata(exe).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
        }
    }
}

/// Every process whose argv looks like conmon's (callers filter by bundle path and identify
/// it by owner and executable).
fn conmon_processes(engine_conmon: Option<&Path>) -> Vec<Conmon> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let mut conmon = parse_conmon_argv(pid, &argv)?;
            conmon.uid = crate::procinfo::uid_of(pid);
            conmon.exe_is_conmon = crate::procinfo::exe_of(pid)
                .is_some_and(|exe| is_conmon_binary(&exe, engine_conmon));
            Some(conmon)
        })
        .filter(|c| alive(c.pid))
        .collect()
}

/// A process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Mount points at or under any of `roots` (from `/proc/self/mountinfo`), excluding the roots'
/// own bind mounts (c/storage bind-mounts `<graphroot>/overlay` onto itself).
fn busy_mounts(roots: &[PathBuf]) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|mp| {
            let mp = Path::new(mp);
            roots.iter().any(|r| mp.starts_with(r) && mp != r)
        })
        .map(String::from)
        .collect()
}

/// Volume directories (`<dir>/<name>/_data`) podman's database does not list.
fn orphan_volumes(podman: &Podman, dir: &Path) -> Result<Vec<String>> {
    let known: BTreeSet<String> = podman.volume_names()?.into_iter().collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read volume dir {}", dir.display()))
        }
    };
    let mut orphans: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("_data").is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|name| !known.contains(name))
        .collect();
    orphans.sort();
    Ok(orphans)
}

/// Why podman's tmp dir looks like state from a previous boot (empty: consistent).
fn stale_runtime_reasons(tmp_dir: &Path) -> Vec<String> {
    let mut reasons = Vec::new();
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(parse_btime);
    let alive_file = tmp_dir.join("alive");
    if let (Some(btime), Ok(meta)) = (btime, std::fs::metadata(&alive_file)) {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if let Some(mtime) = mtime.filter(|m| *m < btime) {
            let at = |secs: i64| {
                humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64),
                )
            };
            reasons.push(format!(
                "{} dates from {}, before this boot at {}: podman's runtime state survived a reboot and will not be refreshed",
                alive_file.display(),
                at(mtime),
                at(btime)
            ));
        }
    }
    let pause = tmp_dir.join("pause.pid");
    if let Ok(text) = std::fs::read_to_string(&pause) {
        if let Ok(pid) = text.trim().parse::<u32>() {
            if !alive(pid) {
                reasons.push(format!(
                    "{} names pid {pid}, which is not running",
                    pause.display()
                ));
            }
        }
    }
    reasons
}

/// Perform one step; returns what it touched (paths, ids, names).
///
/// Long, and kept whole on purpose: one arm per step kind, each a thin call into the repair; a
/// match listing every kind is what keeps a new kind from being left without one.
#[allow(clippy::too_many_lines)]
pub fn perform(
    podman: &Podman,
    facts: &Facts,
    step: &Step,
    now_rfc3339: &str,
) -> Result<Vec<String>> {
    match step.kind {
        StepKind::SystemMigrate => {
            podman.system_migrate()?;
            Ok(vec!["podman system migrate".into()])
        }
        StepKind::SystemRenumber => {
            renumber_when_idle(podman, &other_podman_processes)?;
            Ok(vec!["podman system renumber".into()])
        }
        StepKind::ClearRuntimeDirs => {
            if !facts.runtime_busy.is_empty() {
                anyhow::bail!(
                    "not clearing runtime dirs while this root is in use: {}",
                    facts.runtime_busy.join("; ")
                );
            }
            let mut touched = Vec::new();
            for dir in &step.targets {
                touched.extend(clear_dir(Path::new(dir))?);
            }
            Ok(touched)
        }
        StepKind::MoveDbAside => {
            let mut touched = Vec::new();
            for db in &step.targets {
                touched.push(move_aside(Path::new(db), now_rfc3339)?);
            }
            Ok(touched)
        }
        StepKind::RemoveStorageOnly => {
            let mut touched = Vec::new();
            let mut errors = Vec::new();
            for id in &step.targets {
                // Podman mounts a container's /dev/shm itself; with the database gone nothing
                // unmounts it, and `rm --storage` then fails with "device or resource busy".
                let mut done = Vec::new();
                if let Some(graph) = &facts.paths.graph_root {
                    let dir = graph.join("overlay-containers").join(id);
                    for m in busy_mounts(std::slice::from_ref(&dir)) {
                        match Cmd::new("umount").arg(&m).run() {
                            Ok(_) => done.push(format!("unmounted {m}")),
                            Err(err) => errors.push(format!("{err:#}")),
                        }
                    }
                }
                match podman.remove_storage(id) {
                    Ok(()) => {
                        touched.extend(done);
                        touched.push(format!("storage container {id} removed"));
                    }
                    Err(err) => errors.push(format!("{err:#}")),
                }
            }
            super::repair_outcome(touched, errors)
        }
        StepKind::KillGhosts => {
            reload_after_teardown(podman, facts, kill_ghosts(podman, facts, &step.targets))
        }
        StepKind::ReleaseNetworkDebris => {
            let backend = repair_backend(podman, facts);
            let done = release_each(step.targets.iter(), |id| {
                super::netsys::release(id, &facts.net.scope, &backend)
            });
            reload_after_teardown(podman, facts, done)
        }
        StepKind::ReleaseStaleNamespaces => {
            let backend = repair_backend(podman, facts);
            let done = release_each(
                facts
                    .stale_namespaces
                    .iter()
                    .flatten()
                    .filter(|s| step.targets.contains(&s.path)),
                |stale| super::netsys::release_namespace(stale, &facts.net.scope, &backend),
            );
            reload_after_teardown(podman, facts, done)
        }
        StepKind::ReleaseDeadForwards => {
            let backend = repair_backend(podman, facts);
            let dead: Vec<&super::netavark::DeadForward> = facts
                .dead_forwards
                .iter()
                .flatten()
                .filter(|d| step.targets.contains(&d.target()))
                .collect();
            let done = super::netsys::release_dead_forwards(&dead, &facts.net.scope, &backend);
            reload_after_teardown(podman, facts, done)
        }
        StepKind::ReleaseIpamLeaks => {
            // Re-checked against what podman knows now (one listing), under the file's lock.
            let known: BTreeSet<String> =
                podman.list_external()?.into_iter().map(|c| c.id).collect();
            let leaks: Vec<&super::ipam::Leak> = facts
                .ipam_leaks
                .iter()
                .flatten()
                .filter(|l| step.targets.contains(&l.target()))
                .collect();
            super::netsys::release_ipam_leaks(&leaks, &facts.net.scope, &facts.net.backend, &known)
        }
        StepKind::RemoveOrphanBridges => release_each(
            facts
                .orphan_bridges
                .iter()
                .flatten()
                .filter(|b| step.targets.contains(&b.name)),
            super::netsys::remove_orphan_bridge,
        ),
        StepKind::RegisterVolumes => {
            let dir = facts
                .paths
                .volume_path
                .as_deref()
                .context("podman's volume path is unknown")?;
            let mut touched = Vec::new();
            let mut errors = Vec::new();
            let mut renumbered = false;
            for name in &step.targets {
                let mut result = register_volume(podman, dir, name);
                // Every volume takes one of podman's locks. A lost database leaves the locks of
                // everything it knew allocated in the lock table (shm, or the lock files), so a
                // node that lost it more than once can run out ("exceeded num_locks"): `podman
                // system renumber` reallocates the table from the database, then retry once.
                if !renumbered && result.as_ref().is_err_and(crate::podman::lock_table_full) {
                    renumbered = true;
                    match renumber_when_idle(podman, &other_podman_processes) {
                        Ok(()) => {
                            touched.push(
                                "podman system renumber (podman's lock table was full)".into(),
                            );
                            result = register_volume(podman, dir, name);
                        }
                        Err(err) => errors.push(format!("{err:#}")),
                    }
                }
                match result {
                    Ok(()) => touched.push(name.clone()),
                    Err(err) => errors.push(format!("{err:#}")),
                }
            }
            super::repair_outcome(touched, errors)
        }
    }
}

/// `podman system renumber`, only when podman allows it: no container running (in this root)
/// and no other podman process on the host (`other_podmans`; several roots may share the
/// rootful SHM lock table, and renumbering under a running podman can hand out locks another
/// holds). Otherwise an error that gives the exact manual procedure.
fn renumber_when_idle(podman: &Podman, other_podmans: &dyn Fn() -> Vec<u32>) -> Result<()> {
    let mut blockers = Vec::new();
    match podman.list_all() {
        Ok(containers) => {
            let running: Vec<String> = containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| c.name().to_string())
                .collect();
            if !running.is_empty() {
                blockers.push(format!("containers are running ({})", running.join(", ")));
            }
        }
        Err(err) => blockers.push(format!("could not list containers ({err:#})")),
    }
    let others = other_podmans();
    if !others.is_empty() {
        let shown: Vec<String> = others
            .iter()
            .map(|pid| crate::procinfo::Process::inspect(*pid).to_string())
            .collect();
        blockers.push(format!("other podman processes run: {}", shown.join("; ")));
    }
    if blockers.is_empty() {
        return podman.system_renumber();
    }
    anyhow::bail!(
        "not running `podman system renumber`: {}. podman requires that no container and no          other podman process runs meanwhile. By hand: `systemctl stop archy-reconcile.timer          archy-reconcile.service`, `podman stop --all`, check that `pgrep -a podman` prints          nothing, run `podman system renumber`, then `systemctl start archy-reconcile.timer`",
        blockers.join("; ")
    )
}

/// Pids of podman processes on the host (by executable name), from `/proc`. Tests see the
/// list they set (other agents' podman runs on a shared machine).
#[cfg(not(test))]
fn other_podman_processes() -> Vec<u32> {
    podman_processes()
}

#[cfg(test)]
fn other_podman_processes() -> Vec<u32> {
    tests::PODMANS.with(|p| p.borrow().clone())
}

/// Every process whose executable (or argv[0]) is named `podman`.
fn podman_processes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let named = |p: &Path| p.file_name().is_some_and(|n| n == "podman");
            crate::procinfo::exe_of(*pid).is_some_and(|exe| named(&exe))
                || crate::procinfo::cmdline_of(*pid)
                    .first()
                    .is_some_and(|a0| named(Path::new(a0)))
        })
        .collect()
}

/// Release every target, going on past failures; one outcome for them all.
/// The backend with archy's networks described by podman: what a netavark teardown needs.
fn repair_backend(podman: &Podman, facts: &Facts) -> super::netsys::Backend {
    super::netsys::with_networks(&facts.net.backend, &facts.net.scope, |name| {
        podman.network_json(name).ok().flatten()
    })
}

/// After netavark teardowns were replayed: have podman set up its running containers'
/// networks again (`podman network reload --all`), since a teardown removes every rule equal to
/// one it built, and a live container on the same port has equal ones (netavark 1.14's DNAT
/// jump, 1.4's mark rules). Nothing to do on CNI, or when nothing was torn down.
fn reload_after_teardown(
    podman: &Podman,
    facts: &Facts,
    done: Result<Vec<String>>,
) -> Result<Vec<String>> {
    let needs_reload = matches!(facts.net.backend, super::netsys::Backend::Netavark(_))
        && match &done {
            Ok(touched) => touched.iter().any(|t| t.starts_with("netavark teardown")),
            Err(err) => format!("{err:#}").contains("netavark teardown"),
        };
    if !needs_reload {
        return done;
    }
    // Best effort: podman refuses the whole reload when one running container's network is
    // gone (its config deleted behind podman's back), and nothing can be reloaded for that one
    // anyway. Said, not failed: the re-probe judges what is left.
    let said = match podman.network_reload_all() {
        Ok(()) => "podman network reload --all".to_string(),
        Err(err) => format!("podman network reload --all did not complete: {err:#}"),
    };
    match done {
        Ok(mut touched) => {
            touched.push(said);
            Ok(touched)
        }
        Err(err) => Err(err.context(said)),
    }
}

fn release_each<T>(
    targets: impl Iterator<Item = T>,
    release: impl Fn(T) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    for target in targets {
        match release(target) {
            Ok(done) => touched.extend(done),
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    super::repair_outcome(touched, errors)
}

/// Remove everything inside a runtime dir (the dir itself stays).
fn clear_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read runtime dir {}", dir.display()))
        }
    };
    let mut touched = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let result = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.with_context(|| format!("failed to remove {}", path.display()))?;
        touched.push(path.display().to_string());
    }
    Ok(touched)
}

/// Rename the database to `<db>.broken-<UTC>` in the same dir (never deleted).
/// Move the database aside, and SQLite's `-wal` and `-shm` files with it (they belong to that
/// file: left behind, SQLite would replay the old journal into the new database).
fn move_aside(db: &Path, now_rfc3339: &str) -> Result<String> {
    let mut said = move_one_aside(db, now_rfc3339)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        if side.exists() {
            said.push_str(&format!(", {}", move_one_aside(&side, now_rfc3339)?));
        }
    }
    Ok(said)
}

fn move_one_aside(db: &Path, now_rfc3339: &str) -> Result<String> {
    let mut target = super::broken_db_path(db, now_rfc3339);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!(
            "{}-{n}",
            super::broken_db_path(db, now_rfc3339).display()
        ));
        n += 1;
    }
    std::fs::rename(db, &target).with_context(|| {
        format!(
            "failed to move database {} aside to {}",
            db.display(),
            target.display()
        )
    })?;
    if let Some(dir) = db.parent() {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(format!("{} -> {}", db.display(), target.display()))
}

/// Kill and delete ghost OCI containers, then make sure their conmons are gone.
fn kill_ghosts(podman: &Podman, facts: &Facts, targets: &[String]) -> Result<Vec<String>> {
    let backend = repair_backend(podman, facts);
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let ids: Vec<&String> = targets
        .iter()
        .filter(|t| !t.starts_with("conmon:"))
        .collect();
    let mut conmon_pids: Vec<u32> = targets
        .iter()
        .filter_map(|t| t.strip_prefix("conmon:")?.parse().ok())
        .collect();
    if !ids.is_empty() {
        let (Some(runtime), Some(root)) = (&facts.paths.oci_runtime, &facts.paths.oci_root) else {
            anyhow::bail!(
                "cannot kill ghost containers: the OCI runtime or its state root is unknown"
            );
        };
        for id in &ids {
            match kill_one(runtime, root, id) {
                Ok(()) => touched.push(format!("OCI container {id} killed and deleted")),
                Err(err) => {
                    errors.push(format!("{err:#}"));
                    continue;
                }
            }
            // Whatever network the ghost held (namespace, veth, port forwards, IP): podman
            // would have torn it down at the container's exit; it no longer knows the container.
            match super::netsys::release(id, &facts.net.scope, &backend) {
                Ok(done) => touched.extend(done),
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        // Conmons of the killed containers exit on their own once the container is gone.
        conmon_pids.extend(
            facts
                .ghost_conmons
                .iter()
                .flatten()
                .filter(|c| ids.iter().any(|id| **id == c.id))
                .map(|c| c.pid),
        );
    }
    conmon_pids.sort_unstable();
    conmon_pids.dedup();
    for pid in conmon_pids {
        if wait_exit(pid, EXIT_WAIT) {
            touched.push(format!("conmon pid {pid} exited"));
        } else {
            let _ = Cmd::new("kill").args(["-KILL", &pid.to_string()]).run();
            if !wait_exit(pid, EXIT_WAIT) {
                errors.push(format!("conmon pid {pid} survived SIGKILL"));
                continue;
            }
            touched.push(format!("conmon pid {pid} killed"));
        }
    }
    super::repair_outcome(touched, errors)
}

/// `runc kill <id> KILL`, wait until it is stopped, `runc delete -f <id>`.
fn kill_one(runtime: &Path, root: &Path, id: &str) -> Result<()> {
    // Fails harmlessly on a container that is already stopped.
    let _ = oci_cmd(runtime, root).args(["kill", id, "KILL"]).run();
    let started = Instant::now();
    while started.elapsed() < EXIT_WAIT {
        let state = oci_cmd(runtime, root).args(["state", id]).run_unchecked()?;
        if !state.success() || !state.stdout.contains("\"running\"") {
            break;
        }
        std::thread::sleep(POLL);
    }
    let delete = oci_cmd(runtime, root).args(["delete", "--force", id]);
    let out = delete.run_unchecked()?;
    if !out.success() && !out.stderr.contains("does not exist") {
        return Err(delete.failure(&out))
            .with_context(|| format!("failed to delete ghost OCI container {id}"));
    }
    Ok(())
}

fn wait_exit(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while alive(pid) {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// `podman volume create <name>` over an existing data dir, verifying the data is untouched.
fn register_volume(podman: &Podman, volume_path: &Path, name: &str) -> Result<()> {
    let data = volume_path.join(name).join("_data");
    let before = listing(&data)?;
    podman.volume_create(name)?;
    let after = listing(&data)?;
    if before != after {
        anyhow::bail!(
            "volume {name}: the contents of {} changed while re-registering it ({} entries before, {} after); stop and inspect it",
            data.display(),
            before.len(),
            after.len()
        );
    }
    Ok(())
}

/// Top-level entries of a dir with their sizes: a cheap fingerprint (a bitcoind volume has
/// hundreds of GB; never walk it).
fn listing(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to read volume data {}", dir.display()))?
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map_or(0, |m| m.len()),
            )
        })
        .collect();
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::{Facts, Step, StepKind};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sqlite_database_moves_aside_with_its_journal_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sql");
        for (name, text) in [
            ("db.sql", "garbage"),
            ("db.sql-wal", "wal"),
            ("db.sql-shm", "shm"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let said = move_aside(&db, "2026-12-06T01:02:03Z").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "db.sql-shm.broken-20261206T010203Z",
                "db.sql-wal.broken-20261206T010203Z",
                "db.sql.broken-20261206T010203Z"
            ],
            "{said}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("db.sql-wal.broken-20261206T010203Z")).unwrap(),
            "wal"
        );
        // A BoltDB has no journal files: only it moves.
        let bolt = dir.path().join("bolt_state.db");
        std::fs::write(&bolt, "x").unwrap();
        assert!(!move_aside(&bolt, "2026-12-06T01:02:03Z")
            .unwrap()
            .contains(','));
    }

    thread_local! {
        /// The "other podman processes" [`other_podman_processes`] reports in a test.
        pub static PODMANS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A fake podman: `ps -a` lists `ps_json`; `system renumber` is logged.
    fn fake_podman(dir: &Path, ps_json: &str) -> (PathBuf, PathBuf) {
        let calls = dir.join("calls");
        let podman = dir.join("podman");
        std::fs::write(
            &podman,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1 $2\" in\n\
                 'ps -a') echo '{ps_json}'; exit 0 ;;\n\
                 'system renumber') exit 0 ;;\n\
                 esac\nexit 1\n",
                calls = calls.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        (podman, calls)
    }

    /// `podman system renumber` runs only with no container running and no other podman
    /// process; otherwise it is refused with the manual procedure, and never run.
    #[test]
    fn renumber_waits_for_an_idle_podman_and_says_how_otherwise() {
        let renumbered = |calls: &Path| {
            std::fs::read_to_string(calls)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("system renumber"))
        };
        let dir = tempfile::tempdir().unwrap();
        let (podman, calls) = fake_podman(
            dir.path(),
            r#"[{"Id":"a1","Names":["archy-web"],"State":"running","Image":"i","Labels":{}}]"#,
        );
        let err = renumber_when_idle(&Podman::new(&podman), &Vec::new).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("containers are running (archy-web)")
                && text.contains("`podman stop --all`")
                && text.contains("`pgrep -a podman`"),
            "{text}"
        );
        assert!(!renumbered(&calls));

        let dir = tempfile::tempdir().unwrap();
        let (podman, calls) = fake_podman(
            dir.path(),
            r#"[{"Id":"a1","Names":["archy-web"],"State":"exited","Image":"i","Labels":{}}]"#,
        );
        let me = std::process::id();
        let err = renumber_when_idle(&Podman::new(&podman), &|| vec![me]).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("other podman processes run: pid {me}")),
            "{err:#}"
        );
        assert!(!renumbered(&calls));

        renumber_when_idle(&Podman::new(&podman), &Vec::new).unwrap();
        assert!(renumbered(&calls));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test starts the process it looks for
    fn podman_processes_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("podman");
        std::fs::copy("/bin/sleep", &podman).unwrap();
        let mut child = std::process::Command::new(&podman)
            .arg("30")
            .spawn()
            .unwrap();
        let found = podman_processes();
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!found.contains(&std::process::id()));
    }

    /// A podman whose lock table is full until `system renumber` runs (the soak found it: a
    /// root that lost its database many times; podman 4.3.1's own message).
    #[test]
    fn register_volumes_renumbers_once_when_the_lock_table_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = dir.path().join("volumes");
        std::fs::create_dir_all(volumes.join("v1/_data")).unwrap();
        std::fs::write(volumes.join("v1/_data/blk00000.dat"), "precious").unwrap();
        let calls = dir.path().join("calls");
        let podman = dir.path().join("podman");
        std::fs::write(
            &podman,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1 $2\" in\n\
                 'ps -a') echo '[]'; exit 0 ;;\n\
                 'system renumber') touch {state}; exit 0 ;;\n\
                 'volume create') [ -e {state} ] && {{ echo \"$3\"; exit 0; }}\n\
                 echo 'Error: allocating lock for new volume: allocation failed; exceeded num_locks (2048)' >&2; exit 125 ;;\n\
                 esac\nexit 1\n",
                calls = calls.display(),
                state = dir.path().join("renumbered").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut facts = Facts::default();
        facts.paths.volume_path = Some(volumes.clone());
        let step = Step {
            kind: StepKind::RegisterVolumes,
            targets: vec!["v1".into()],
            describe: String::new(),
        };
        let done = perform(&Podman::new(&podman), &facts, &step, "2026-11-27T00:00:00Z").unwrap();
        assert_eq!(
            done,
            [
                "podman system renumber (podman's lock table was full)",
                "v1"
            ]
        );
        let log = std::fs::read_to_string(&calls).unwrap();
        let verbs: Vec<&str> = log.lines().collect();
        assert_eq!(
            verbs
                .iter()
                .filter(|l| l.starts_with("system renumber"))
                .count(),
            1,
            "{log}"
        );
        assert!(log.trim_end().ends_with("volume create v1"), "{log}");
        assert_eq!(
            std::fs::read_to_string(volumes.join("v1/_data/blk00000.dat")).unwrap(),
            "precious"
        );
    }
}
