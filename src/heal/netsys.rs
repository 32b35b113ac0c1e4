//! The system side of [`super::network`]: read libcni's cache, host-local's reservations and
//! the iptables rules, and release what a forgotten container left, replaying its CNI DEL
//! first and removing by hand only what names that container.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::network::{
    container_chain, del_calls, is_container_chain, is_podman_bridge_name, parse_addresses,
    parse_cache_entry, parse_netns_ids, parse_veths, rule_container_id, rule_network,
    rule_references_ip, split_rule, CacheEntry, Debris, OrphanBridge, StaleNamespace,
};
use crate::exec::Cmd;

/// libcni's result cache (podman 4 passes no cache dir, so libcni's default).
pub const CNI_CACHE_DIR: &str = "/var/lib/cni/results";
/// host-local IPAM's reservations: `<dir>/<network>/<ip>` holding "<container id>\n<ifname>".
pub const CNI_IPAM_DIR: &str = "/var/lib/cni/networks";
/// podman's default `cni_plugin_dirs` (containers.conf).
const PLUGIN_DIRS: &[&str] = &[
    "/usr/local/libexec/cni",
    "/usr/libexec/cni",
    "/usr/local/lib/cni",
    "/usr/lib/cni",
    "/opt/cni/bin",
];

/// Where podman (`ip netns add` does the same) mounts network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Which networks are archy's: heal-podman looks at and releases state on these only.
#[derive(Debug, Clone, Default)]
pub struct NetScope {
    pub names: BTreeSet<String>,
    /// archy's subnet (`10.89.0.0/24`): a bridge left holding an address in it blocks
    /// `podman network create`.
    pub subnet: String,
}

/// What podman says about one network: its name and the bridge it uses.
#[derive(Debug, Clone, Default)]
pub struct PodmanNetwork {
    pub name: String,
    pub bridge: String,
}

/// What the network-debris probe found.
#[derive(Debug, Default)]
pub struct Scan {
    pub debris: Vec<Debris>,
    pub stale_namespaces: Vec<StaleNamespace>,
    pub orphan_bridges: Vec<OrphanBridge>,
    pub notes: Vec<String>,
}

/// One host-local reservation.
#[derive(Debug, Clone)]
struct Reservation {
    path: PathBuf,
    network: String,
    ip: String,
    container_id: String,
}

/// What the host holds, read once.
#[derive(Debug, Default)]
struct HostNet {
    cache: Vec<(PathBuf, CacheEntry)>,
    /// (table, `iptables -S` line)
    rules: Vec<(&'static str, String)>,
    reservations: Vec<Reservation>,
    notes: Vec<String>,
}

fn read_host() -> HostNet {
    let mut host = HostNet::default();
    if let Ok(entries) = std::fs::read_dir(CNI_CACHE_DIR) {
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Ok(parsed) = parse_cache_entry(&text) {
                host.cache.push((path, parsed));
            }
        }
    }
    for table in ["nat", "filter"] {
        match Cmd::new("iptables").args(["-t", table, "-S"]).run() {
            Ok(out) => host.rules.extend(
                out.stdout
                    .lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(|l| (table, l.to_string())),
            ),
            Err(err) => host
                .notes
                .push(format!("iptables rules not checked: {err:#}")),
        }
    }
    if let Ok(networks) = std::fs::read_dir(CNI_IPAM_DIR) {
        for net in networks.flatten() {
            let network = net.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(net.path()) else {
                continue;
            };
            for file in files.flatten() {
                let ip = file.file_name().to_string_lossy().into_owned();
                if ip == "lock" || ip.starts_with("last_reserved_ip") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(file.path()) else {
                    continue;
                };
                if let Some(id) = text.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                    host.reservations.push(Reservation {
                        path: file.path(),
                        network: network.clone(),
                        ip,
                        container_id: id.to_string(),
                    });
                }
            }
        }
    }
    host
}

/// Network state on archy's networks nothing owns any more: of containers not in `known`
/// (podman's database), leaving out those whose network namespace a process still uses (a
/// running ghost: the ghost probe's business, and released when it is killed); namespaces an
/// earlier attachment left (no process in them, no running container's); and bridges no
/// network claims that hold archy's subnet. `running`: the known containers podman reports
/// running. `list_networks` (one podman call) runs only when there is a candidate to attribute.
pub fn scan(
    scope: &NetScope,
    known: &BTreeSet<String>,
    running: &BTreeSet<String>,
    list_networks: impl FnOnce() -> Result<Vec<PodmanNetwork>>,
) -> Scan {
    let host = read_host();
    let unknown = |id: &str| !known.contains(id);
    let mut debris = collect(&host, |id, net| scope.names.contains(net) && unknown(id));
    debris.retain(|d| {
        host.cache
            .iter()
            .filter(|(_, e)| e.container_id == d.container_id)
            .filter_map(|(_, e)| e.sandbox())
            .all(|ns| netns_user(Path::new(&ns)).is_none())
    });
    let mut scan = Scan {
        debris,
        notes: host.notes.clone(),
        ..Scan::default()
    };

    let busy = busy_netns();
    let idle: Vec<PathBuf> = netns_mounts()
        .into_iter()
        .filter(|(_, ino)| !busy.contains(ino))
        .map(|(path, _)| path)
        .collect();
    // Only a bridge holding archy's subnet is archy's business.
    let bridge_candidates: Vec<OrphanBridge> = empty_podman_bridges()
        .into_iter()
        .filter_map(|name| {
            let addresses = Cmd::new("ip")
                .args(["-j", "addr", "show", "dev", &name])
                .run()
                .ok()
                .and_then(|out| parse_addresses(&out.stdout).ok())
                .unwrap_or_default();
            addresses
                .iter()
                .any(|a| in_subnet(a, &scope.subnet))
                .then_some(OrphanBridge { name, addresses })
        })
        .collect();
    if idle.is_empty() && bridge_candidates.is_empty() {
        return scan;
    }
    let networks = match list_networks() {
        Ok(list) => list,
        Err(err) => {
            scan.notes.push(format!(
                "network namespaces and bridges not attributed: {err:#}"
            ));
            return scan;
        }
    };
    let network_of_bridge: BTreeMap<&str, &str> = networks
        .iter()
        .map(|n| (n.bridge.as_str(), n.name.as_str()))
        .collect();
    let (stale, notes) = stale_namespaces(&host, &idle, scope, known, running, &network_of_bridge);
    scan.stale_namespaces = stale;
    scan.notes.extend(notes);
    scan.orphan_bridges = bridge_candidates
        .into_iter()
        .filter(|b| !network_of_bridge.contains_key(b.name.as_str()))
        .collect();
    scan
}

/// Idle namespaces (`idle`) that belong to archy's networks and to no running container.
fn stale_namespaces(
    host: &HostNet,
    idle: &[PathBuf],
    scope: &NetScope,
    known: &BTreeSet<String>,
    running: &BTreeSet<String>,
    network_of_bridge: &BTreeMap<&str, &str>,
) -> (Vec<StaleNamespace>, Vec<String>) {
    let mut stale = Vec::new();
    let mut notes = Vec::new();
    // The veths first: the kernel gives a peer's namespace its id when a dump needs it, so
    // listing the namespaces afterwards sees every id the veths name.
    let veths = Cmd::new("ip")
        .args(["-j", "link", "show", "type", "veth"])
        .run()
        .ok()
        .and_then(|out| parse_veths(&out.stdout).ok())
        .unwrap_or_default();
    let ids = Cmd::new("ip")
        .args(["-j", "netns", "list"])
        .run()
        .ok()
        .and_then(|out| parse_netns_ids(&out.stdout).ok())
        .unwrap_or_default();
    for path in idle {
        let path_str = path.to_string_lossy().into_owned();
        let cached: Vec<&CacheEntry> = host
            .cache
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.sandbox().as_deref() == Some(path_str.as_str()))
            .collect();
        // A forgotten container's namespace is part of its debris, released with it.
        if cached.iter().any(|e| !known.contains(&e.container_id)) {
            continue;
        }
        if let Some(e) = cached.iter().find(|e| running.contains(&e.container_id)) {
            notes.push(format!(
                "network namespace {path_str}: podman reports container {} running in it, but no process is in it; left to podman",
                crate::podman::short_id(&e.container_id)
            ));
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let peers: Vec<&super::network::HostVeth> = ids
            .get(&name)
            .map(|id| {
                veths
                    .iter()
                    .filter(|v| v.peer_netnsid == Some(*id))
                    .collect()
            })
            .unwrap_or_default();
        let network = cached.first().map(|e| e.network_name.clone()).or_else(|| {
            peers
                .iter()
                .filter_map(|v| network_of_bridge.get(v.master.as_deref()?))
                .map(|n| n.to_string())
                .next()
        });
        let mut ips: Vec<String> = cached.iter().flat_map(|e| e.ips()).collect();
        if ips.is_empty() {
            ips = Cmd::new("ip")
                .args(["-n", &name, "-j", "addr", "show"])
                .run()
                .ok()
                .and_then(|out| parse_addresses(&out.stdout).ok())
                .unwrap_or_default();
        }
        // Neither cache nor veth named the network: an address in archy's subnet does.
        let network = network.or_else(|| {
            ips.iter()
                .any(|ip| in_subnet(ip, &scope.subnet))
                .then(|| scope.names.iter().next().cloned())
                .flatten()
        });
        let Some(network) = network.filter(|n| scope.names.contains(n)) else {
            continue;
        };
        stale.push(StaleNamespace {
            path: path_str,
            network,
            veths: peers.iter().map(|v| v.name.clone()).collect(),
            ips: ips
                .iter()
                .map(|ip| ip.split('/').next().unwrap_or(ip).to_string())
                .collect(),
            container_id: cached.first().map(|e| e.container_id.clone()),
        });
    }
    (stale, notes)
}

/// Release a namespace an earlier attachment left: replay the CNI DEL of the cache entry that
/// names it (a known container that is not running), delete the namespace (its veth pair goes
/// with it), then remove the IP reservations and iptables rules of its addresses that no
/// running container holds now. Re-checked first: a process in it now means it is in use.
pub fn release_namespace(stale: &StaleNamespace) -> Result<Vec<String>> {
    let ns = Path::new(&stale.path);
    if !ns.exists() {
        return Ok(vec![format!(
            "network namespace {} already gone",
            stale.path
        )]);
    }
    if let Some(pid) = netns_user(ns) {
        anyhow::bail!(
            "network namespace {} is in use by pid {pid} now; left alone",
            stale.path
        );
    }
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_host();
    for (path, entry) in host
        .cache
        .iter()
        .filter(|(_, e)| e.sandbox().as_deref() == Some(stale.path.as_str()))
    {
        replay_del(path, entry, Some(&stale.path), &mut touched, &mut errors);
    }
    match delete_netns(ns) {
        Ok(()) => touched.push(format!("network namespace {} deleted", stale.path)),
        Err(err) => errors.push(format!("{err:#}")),
    }
    // Addresses a running container holds now (the same address may have been handed out
    // again) are not this namespace's to release.
    let host = read_host();
    let busy = busy_netns();
    let live: BTreeSet<String> = host
        .cache
        .iter()
        .filter(|(_, e)| {
            e.sandbox()
                .is_some_and(|ns| std::fs::metadata(&ns).is_ok_and(|m| busy.contains(&m.ino())))
        })
        .flat_map(|(_, e)| e.ips())
        .map(|ip| ip.split('/').next().unwrap_or(&ip).to_string())
        .collect();
    let ips: BTreeSet<String> = stale
        .ips
        .iter()
        .filter(|ip| !live.contains(*ip))
        .cloned()
        .collect();
    for r in host
        .reservations
        .iter()
        .filter(|r| r.network == stale.network && ips.contains(&r.ip))
    {
        match std::fs::remove_file(&r.path) {
            Ok(()) => touched.push(format!("IP reservation {} on {} released", r.ip, r.network)),
            Err(e) => errors.push(format!("failed to remove {}: {e}", r.path.display())),
        }
    }
    match delete_rules_of_addresses(&host, &ips) {
        Ok(done) => touched.extend(done),
        Err(err) => errors.push(format!("{err:#}")),
    }
    super::repair_outcome(touched, errors)
}

/// Delete an orphan bridge (`ip link delete`), re-checking first that nothing is attached and
/// it is still a podman-named bridge.
pub fn remove_orphan_bridge(bridge: &OrphanBridge) -> Result<Vec<String>> {
    if !empty_podman_bridges().contains(&bridge.name) {
        return Ok(vec![format!(
            "bridge {} is gone or has an interface attached now; left alone",
            bridge.name
        )]);
    }
    Cmd::new("ip")
        .args(["link", "delete", &bridge.name])
        .run()
        .with_context(|| format!("failed to delete bridge {}", bridge.name))?;
    Ok(vec![format!("bridge {} deleted", bridge.name)])
}

/// Podman-named bridges (`cni-podman<N>`) with no interface attached.
fn empty_podman_bridges() -> Vec<String> {
    let Ok(links) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut found: Vec<String> = links
        .flatten()
        .filter_map(|l| l.file_name().to_str().map(String::from))
        .filter(|name| is_podman_bridge_name(name))
        .filter(|name| {
            let brif = Path::new("/sys/class/net").join(name).join("brif");
            std::fs::read_dir(brif).is_ok_and(|mut ports| ports.next().is_none())
        })
        .collect();
    found.sort();
    found
}

/// Whether `addr` (`10.89.0.1` or `10.89.0.1/24`) lies in `subnet` (`10.89.0.0/24`).
pub fn in_subnet(addr: &str, subnet: &str) -> bool {
    let parse = |a: &str| a.split('/').next()?.parse::<std::net::Ipv4Addr>().ok();
    let Some((net, prefix)) = subnet.split_once('/') else {
        return false;
    };
    let (Some(addr), Some(net), Ok(prefix)) = (parse(addr), parse(net), prefix.parse::<u32>())
    else {
        return false;
    };
    if prefix > 32 {
        return false;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Mounted network namespaces and their inodes.
fn netns_mounts() -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut mounts: Vec<(PathBuf, u64)> = entries
        .flatten()
        .filter_map(|e| Some((e.path(), std::fs::metadata(e.path()).ok()?.ino())))
        .collect();
    mounts.sort();
    mounts
}

/// The inode of every process's network namespace, read once.
fn busy_netns() -> BTreeSet<u64> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| {
            let link = std::fs::read_link(e.path().join("ns/net")).ok()?;
            link.to_str()?
                .strip_prefix("net:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Group the host's network state by forgotten container.
fn collect(host: &HostNet, wanted: impl Fn(&str, &str) -> bool) -> Vec<Debris> {
    let mut by_id: BTreeMap<String, Debris> = BTreeMap::new();
    fn slot<'a>(
        by_id: &'a mut BTreeMap<String, Debris>,
        wanted: &dyn Fn(&str, &str) -> bool,
        id: &str,
        net: &str,
    ) -> Option<&'a mut Debris> {
        if !wanted(id, net) {
            return None;
        }
        let d = by_id.entry(id.to_string()).or_insert_with(|| Debris {
            container_id: id.to_string(),
            ..Debris::default()
        });
        if !d.networks.iter().any(|n| n == net) {
            d.networks.push(net.to_string());
        }
        Some(d)
    }
    for (path, entry) in &host.cache {
        if let Some(d) = slot(
            &mut by_id,
            &wanted,
            &entry.container_id,
            &entry.network_name,
        ) {
            d.cache_files.push(path.clone());
            if let Some(ns) = entry.sandbox().filter(|p| Path::new(p).exists()) {
                d.netns = Some(ns);
            }
            d.veths.extend(
                entry
                    .host_veths()
                    .into_iter()
                    .filter(|v| Path::new("/sys/class/net").join(v).exists()),
            );
            d.ips.extend(entry.ips());
        }
    }
    for (table, line) in &host.rules {
        let (Some(id), Some(net)) = (rule_container_id(line), rule_network(line)) else {
            continue;
        };
        if let Some(d) = slot(&mut by_id, &wanted, id, net) {
            d.rules.push(format!("{table}: {line}"));
        }
    }
    for r in &host.reservations {
        if let Some(d) = slot(&mut by_id, &wanted, &r.container_id, &r.network) {
            d.ipam_files.push(r.path.clone());
            if !d
                .ips
                .iter()
                .any(|ip| ip.split('/').next() == Some(r.ip.as_str()))
            {
                d.ips.push(r.ip.clone());
            }
        }
    }
    by_id.into_values().filter(|d| !d.is_empty()).collect()
}

/// Release everything the host holds for container `id` (any network): replay its CNI DEL
/// from libcni's cache, delete its network namespace once no process is in it, then remove
/// the iptables rules and host-local reservations still naming it. Returns what it did.
pub fn release(id: &str) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_host();
    let entries: Vec<&(PathBuf, CacheEntry)> = host
        .cache
        .iter()
        .filter(|(_, e)| e.container_id == id)
        .collect();
    // A process still in the container's namespace means it runs: release nothing of it.
    for (_, entry) in &entries {
        if let Some(ns) = entry.sandbox().filter(|p| Path::new(p).exists()) {
            if let Some(pid) = netns_user(Path::new(&ns)) {
                anyhow::bail!(
                    "network namespace {ns} of container {} is still in use by pid {pid}; nothing of its network released",
                    crate::podman::short_id(id)
                );
            }
        }
    }
    for (path, entry) in entries {
        let netns = entry.sandbox().filter(|p| Path::new(p).exists());
        replay_del(path, entry, netns.as_deref(), &mut touched, &mut errors);
        if let Some(ns) = &netns {
            match delete_netns(Path::new(ns)) {
                Ok(()) => touched.push(format!("network namespace {ns} deleted")),
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
    }
    // What no plugin removed (cache missing or a plugin failed), scoped to this container.
    let host = read_host();
    let mut ips: BTreeSet<String> = BTreeSet::new();
    for r in host.reservations.iter().filter(|r| r.container_id == id) {
        ips.insert(r.ip.clone());
        match std::fs::remove_file(&r.path) {
            Ok(()) => touched.push(format!("IP reservation {} on {} released", r.ip, r.network)),
            Err(e) => errors.push(format!("failed to remove {}: {e}", r.path.display())),
        }
    }
    match delete_rules(&host, id, &ips) {
        Ok(done) => touched.extend(done),
        Err(err) => errors.push(format!("{err:#}")),
    }
    super::repair_outcome(touched, errors)
}

/// Replay the CNI DEL of one cached attachment (libcni's order), then drop the cache entry
/// once every plugin succeeded.
fn replay_del(
    path: &Path,
    entry: &CacheEntry,
    netns: Option<&str>,
    touched: &mut Vec<String>,
    errors: &mut Vec<String>,
) {
    let mut ok = true;
    match del_calls(entry) {
        Ok(calls) => {
            for call in calls {
                match cni_del(entry, netns, &call.plugin, &call.stdin) {
                    Ok(()) => touched.push(format!(
                        "CNI {} DEL for {} on {}",
                        call.plugin,
                        crate::podman::short_id(&entry.container_id),
                        entry.network_name
                    )),
                    Err(err) => {
                        ok = false;
                        errors.push(format!("{err:#}"));
                    }
                }
            }
        }
        Err(err) => {
            ok = false;
            errors.push(format!("{err:#} ({})", path.display()));
        }
    }
    if ok {
        match std::fs::remove_file(path) {
            Ok(()) => touched.push(format!("CNI cache entry {} removed", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("failed to remove {}: {e}", path.display())),
        }
    }
}

/// Run one plugin with `CNI_COMMAND=DEL`, as libcni does.
fn cni_del(
    entry: &CacheEntry,
    netns: Option<&str>,
    plugin: &str,
    stdin: &serde_json::Value,
) -> Result<()> {
    let binary = PLUGIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(plugin))
        .find(|p| p.is_file())
        .with_context(|| format!("CNI plugin {plugin} not found in {}", PLUGIN_DIRS.join(":")))?;
    let bytes = serde_json::to_vec(stdin).context("failed to encode a CNI plugin config")?;
    Cmd::new(&binary)
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", &entry.container_id)
        .env("CNI_NETNS", netns.unwrap_or(""))
        .env("CNI_IFNAME", &entry.if_name)
        .env("CNI_ARGS", entry.cni_args_env())
        .env("CNI_PATH", PLUGIN_DIRS.join(":"))
        .stdin_bytes(bytes)
        .run()
        .with_context(|| {
            format!(
                "CNI {plugin} DEL for container {} on network {} failed",
                crate::podman::short_id(&entry.container_id),
                entry.network_name
            )
        })?;
    Ok(())
}

/// A process whose network namespace is this mount, if any.
fn netns_user(ns: &Path) -> Option<u32> {
    let ino = std::fs::metadata(ns).ok()?.ino();
    let wanted = format!("net:[{ino}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|l| l.to_string_lossy() == wanted)
        })
}

/// Unmount and remove a network namespace file, as podman's `netns.UnmountNS` does
/// (`ip netns delete` for those under /run/netns).
fn delete_netns(ns: &Path) -> Result<()> {
    if ns.parent() == Some(Path::new("/run/netns")) {
        let name = ns.file_name().unwrap_or_default();
        Cmd::new("ip").args(["netns", "delete"]).arg(name).run()?;
    } else {
        Cmd::new("umount").arg(ns).run()?;
        std::fs::remove_file(ns)
            .with_context(|| format!("failed to remove network namespace {}", ns.display()))?;
    }
    Ok(())
}

/// Delete the iptables rules naming container `id` (and its own chains once unreferenced), and
/// the firewall plugin's CNI-FORWARD rules for its addresses `ips`.
fn delete_rules(host: &HostNet, id: &str, ips: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut chains: Vec<(&str, String)> = Vec::new();
    let forward_match = |line: &str| {
        line.starts_with("-A CNI-FORWARD ")
            && ips.iter().any(|ip| {
                line.contains(&format!("-d {ip}/32 ")) || line.contains(&format!("-s {ip}/32 "))
            })
    };
    for (table, line) in &host.rules {
        if rule_container_id(line) != Some(id) && !(*table == "filter" && forward_match(line)) {
            continue;
        }
        let args = split_rule(line);
        if let Some(chain) = container_chain(&args) {
            chains.push((table, chain.to_string()));
        }
        // A per-container chain's own rules go when the chain is flushed.
        if let Some(own) = args.get(1).filter(|c| is_container_chain(c)) {
            chains.push((table, own.clone()));
            continue;
        }
        touched.push(delete_rule(table, args, line)?);
    }
    touched.extend(remove_unreferenced_chains(chains)?);
    Ok(touched)
}

/// Delete the iptables rules about addresses `ips` (port forwards to them, their masquerade
/// and forward rules), then the per-container chains only they jumped to.
fn delete_rules_of_addresses(host: &HostNet, ips: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut chains: Vec<(&str, String)> = Vec::new();
    if ips.is_empty() {
        return Ok(touched);
    }
    for (table, line) in &host.rules {
        if !ips.iter().any(|ip| rule_references_ip(line, ip)) {
            continue;
        }
        let args = split_rule(line);
        if let Some(chain) = container_chain(&args) {
            chains.push((table, chain.to_string()));
        }
        touched.push(delete_rule(table, args, line)?);
    }
    touched.extend(remove_unreferenced_chains(chains)?);
    Ok(touched)
}

/// `iptables -D` the rule `line` (split into `args`) of `table`.
fn delete_rule(table: &str, mut args: Vec<String>, line: &str) -> Result<String> {
    args[0] = "-D".into();
    Cmd::new("iptables")
        .args(["-t", table])
        .args(&args)
        .run()
        .with_context(|| format!("failed to delete iptables rule `{line}`"))?;
    Ok(format!("iptables -t {table}: {line} deleted"))
}

/// Flush and delete the per-container chains nothing jumps to any more.
fn remove_unreferenced_chains(mut chains: Vec<(&str, String)>) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    chains.sort();
    chains.dedup();
    for (table, chain) in chains {
        let still_jumped_to = Cmd::new("iptables")
            .args(["-t", table, "-S"])
            .run()?
            .stdout
            .lines()
            .any(|l| {
                l.starts_with("-A ")
                    && split_rule(l)
                        .windows(2)
                        .any(|w| w[0] == "-j" && w[1] == chain)
            });
        if still_jumped_to {
            continue;
        }
        Cmd::new("iptables")
            .args(["-t", table, "-F", &chain])
            .run()?;
        Cmd::new("iptables")
            .args(["-t", table, "-X", &chain])
            .run()?;
        touched.push(format!("iptables -t {table}: chain {chain} removed"));
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::in_subnet;

    #[test]
    fn addresses_are_placed_in_a_subnet_by_their_prefix() {
        assert!(in_subnet("10.89.0.1/24", "10.89.0.0/24"));
        assert!(in_subnet("10.89.0.254", "10.89.0.0/24"));
        assert!(!in_subnet("10.89.1.1", "10.89.0.0/24"));
        assert!(in_subnet("10.89.1.1", "10.89.0.0/16"));
        assert!(!in_subnet("10.89.0.1", "not a subnet"));
        assert!(!in_subnet("fe80::1", "10.89.0.0/24"));
    }
}
