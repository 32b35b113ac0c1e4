//! The system side of [`super::network`]: read libcni's cache, host-local's reservations and
//! the iptables rules, and release what a forgotten container left, replaying its CNI DEL
//! first and removing by hand only what names that container.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::netavark::{DnsEntry, FirewallDriver, Forward};
use super::network::{
    container_chain, del_calls, is_container_chain, is_podman_bridge_name, parse_addresses,
    parse_addresses_of, parse_cache_entry, parse_netns_ids, parse_veths, rule_container_id,
    rule_network, split_rule, CacheEntry, Debris, OrphanBridge, StaleNamespace,
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

/// The network backend podman uses (`podman info`: `host.networkBackend`).
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// libcni with containernetworking-plugins (podman 4 only): per-container state in libcni's
    /// cache and host-local's reservations, iptables rules commented with the container id.
    #[default]
    Cni,
    /// netavark (podman 4 with the netavark package, the only backend of podman 5).
    Netavark(NetavarkHost),
}

impl Backend {
    /// `cni`, `netavark` as podman names them.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cni => "cni",
            Backend::Netavark(_) => "netavark",
        }
    }

    pub fn firewall(&self) -> Option<FirewallDriver> {
        match self {
            Backend::Cni => Some(FirewallDriver::Iptables),
            Backend::Netavark(nv) => Some(nv.firewall),
        }
    }
}

/// What replaying netavark's teardown needs on this host.
#[derive(Debug, Clone)]
pub struct NetavarkHost {
    /// netavark's `--config` dir (aardvark-dns's entries live in `aardvark-dns/` below it):
    /// `/run/containers/networks` for root, `<runroot>/networks` rootless (containers/common
    /// `libnetwork/network/interface.go`: rootful roots share one, like the network namespace).
    pub config_dir: PathBuf,
    pub netavark: Option<PathBuf>,
    pub aardvark: Option<PathBuf>,
    pub firewall: FirewallDriver,
    /// `podman network inspect` of each of archy's networks (what podman passes netavark).
    pub networks: BTreeMap<String, serde_json::Value>,
}

/// podman's default `helper_binaries_dir` (containers.conf), where netavark and aardvark-dns
/// are installed (`/usr/lib/podman` on Debian 12, `/usr/libexec/podman` on Debian 13).
const HELPER_DIRS: &[&str] = &[
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
];

/// Find the backend from podman info's `networkBackend` (empty or unknown: CNI, podman 4's
/// default before netavark).
pub fn detect_backend(reported: &str, rootless: bool, run_root: Option<&Path>) -> Backend {
    if reported != "netavark" {
        return Backend::Cni;
    }
    let helper = |name: &str| {
        HELPER_DIRS
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    };
    let config_dir = match (rootless, run_root) {
        (true, Some(run)) => run.join("networks"),
        _ => PathBuf::from(NETAVARK_RUN_DIR),
    };
    // netavark 1.14 programs `table inet netavark`; 1.4 (and a host without `nft`) iptables.
    let firewall = if Cmd::new("nft")
        .args(["list", "table", "inet", "netavark"])
        .run()
        .is_ok()
    {
        FirewallDriver::Nftables
    } else {
        FirewallDriver::Iptables
    };
    Backend::Netavark(NetavarkHost {
        config_dir,
        netavark: helper("netavark"),
        aardvark: helper("aardvark-dns"),
        firewall,
        // Only a repair needs podman's description of the networks (`with_networks`): the
        // probe reads forwards by chain (named by the network's name on iptables, by its
        // subnet and id on nftables), so a healthy run makes no extra podman call.
        networks: BTreeMap::new(),
    })
}

fn describe_networks(
    scope: &NetScope,
    network_json: impl Fn(&str) -> Option<serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    scope
        .names
        .iter()
        .filter_map(|n| Some((n.clone(), network_json(n)?)))
        .collect()
}

/// The backend with podman's description of archy's networks filled in (for a repair).
pub fn with_networks(
    backend: &Backend,
    scope: &NetScope,
    network_json: impl Fn(&str) -> Option<serde_json::Value>,
) -> Backend {
    match backend {
        Backend::Netavark(nv) if nv.networks.is_empty() => Backend::Netavark(NetavarkHost {
            networks: describe_networks(scope, network_json),
            ..nv.clone()
        }),
        other => other.clone(),
    }
}

/// Rootful netavark's run dir (containers/common `libnetwork/network/interface.go`).
const NETAVARK_RUN_DIR: &str = "/run/containers/networks";

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
    /// netavark: forwards to addresses nothing holds that no other finding accounts for.
    pub dead_forwards: Vec<super::netavark::DeadForward>,
    /// netavark: podman's IPAM reservations on archy's networks nothing will release.
    pub ipam_leaks: Vec<super::ipam::Leak>,
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
    /// netavark: aardvark-dns's entries on archy's networks (network, entry).
    dns: Vec<(String, DnsEntry)>,
    /// netavark: the port forwards in archy's networks' own firewall chains (network, forward).
    forwards: Vec<(String, Forward)>,
    notes: Vec<String>,
}

fn read_host(scope: &NetScope, backend: &Backend) -> HostNet {
    let mut host = match backend {
        Backend::Cni => read_cni(),
        Backend::Netavark(nv) => read_netavark(scope, nv),
    };
    host.notes.sort();
    host
}

/// netavark's state for archy's networks: aardvark-dns entries, then the firewall's port
/// forwards (iptables rules on 1.4, kept in `rules` too for the DNAT jumps that name their
/// container; the nftables table on 1.14, where no rule names a container).
fn read_netavark(scope: &NetScope, nv: &NetavarkHost) -> HostNet {
    let mut host = HostNet::default();
    for name in &scope.names {
        let file = nv.config_dir.join("aardvark-dns").join(name);
        if let Ok(text) = std::fs::read_to_string(&file) {
            host.dns.extend(
                super::netavark::parse_dns_entries(&text)
                    .into_iter()
                    .map(|e| (name.clone(), e)),
            );
        }
    }
    match nv.firewall {
        FirewallDriver::Iptables => {
            read_iptables(&mut host);
            let nat: Vec<String> = host
                .rules
                .iter()
                .filter(|(t, _)| *t == "nat")
                .map(|(_, l)| l.clone())
                .collect();
            for name in &scope.names {
                host.forwards.extend(
                    super::netavark::iptables_forwards(&nat, name)
                        .into_iter()
                        .map(|f| (name.clone(), f)),
                );
            }
        }
        FirewallDriver::Nftables => {
            match Cmd::new("nft")
                .args(["-j", "list", "table", "inet", "netavark"])
                .run()
            {
                Ok(out) => {
                    // Every DNAT chain of archy's subnet: the network's own and any an earlier
                    // network of that name and subnet left (its config deleted behind podman's
                    // back, then created again with a new id), whose jumps come first.
                    let chains = super::netavark::nft_dnat_chains_for(&out.stdout, &scope.subnet)
                        .unwrap_or_else(|err| {
                            host.notes.push(format!("{err:#}"));
                            Vec::new()
                        });
                    for name in &scope.names {
                        for (chain, _) in &chains {
                            match super::netavark::nft_forwards(&out.stdout, chain) {
                                Ok(list) => host
                                    .forwards
                                    .extend(list.into_iter().map(|f| (name.clone(), f))),
                                Err(err) => host.notes.push(format!("{err:#}")),
                            }
                        }
                    }
                }
                Err(err) => host
                    .notes
                    .push(format!("nftables rules not checked: {err:#}")),
            }
        }
    }
    host
}

fn read_iptables(host: &mut HostNet) {
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
}

fn read_cni() -> HostNet {
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
    read_iptables(&mut host);
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
    backend: &Backend,
    known: &BTreeSet<String>,
    running: &BTreeSet<String>,
    list_networks: impl FnOnce() -> Result<Vec<PodmanNetwork>>,
) -> Scan {
    let host = read_host(scope, backend);
    let unknown = |id: &str| !known.contains(id);
    let mut debris = collect(&host, |id, net| scope.names.contains(net) && unknown(id));
    if matches!(backend, Backend::Netavark(_)) {
        // netavark keeps no record of a container's namespace: find it by its address.
        let namespaces = namespace_addresses();
        for d in &mut debris {
            d.netns = namespaces
                .iter()
                .find(|(_, addrs)| d.ips.iter().any(|ip| addrs.contains(ip)))
                .map(|(path, _)| path.to_string_lossy().into_owned());
        }
    }
    debris.retain(|d| {
        host.cache
            .iter()
            .filter(|(_, e)| e.container_id == d.container_id)
            .filter_map(|(_, e)| e.sandbox())
            .chain(d.netns.clone())
            .all(|ns| netns_user(Path::new(&ns)).is_none())
    });
    let mut scan = Scan {
        debris,
        notes: host.notes.clone(),
        ..Scan::default()
    };

    let busy = busy_netns();
    if matches!(backend, Backend::Netavark(_)) && !host.forwards.is_empty() {
        let live = live_addresses(&busy);
        let covered: BTreeSet<&String> = scan.debris.iter().flat_map(|d| &d.ips).collect();
        scan.dead_forwards = host
            .forwards
            .iter()
            .filter(|(_, f)| !live.contains(&f.dest_ip) && !covered.contains(&f.dest_ip))
            .map(|(network, f)| super::netavark::DeadForward {
                network: network.clone(),
                forward: f.clone(),
            })
            .collect();
    }
    if let Backend::Netavark(nv) = backend {
        match ipam_leaks(nv, scope, known, &busy) {
            Ok(leaks) => scan.ipam_leaks = leaks,
            Err(err) => scan.notes.push(format!("{err:#}")),
        }
    }
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
    // A forgotten container's namespace is part of its debris (netavark: found by address).
    scan.stale_namespaces = stale
        .into_iter()
        .filter(|s| {
            !scan
                .debris
                .iter()
                .any(|d| d.netns.as_deref() == Some(s.path.as_str()))
        })
        .collect();
    // A stale namespace's forwards are released with it.
    let in_stale: BTreeSet<&String> = scan.stale_namespaces.iter().flat_map(|s| &s.ips).collect();
    scan.dead_forwards
        .retain(|d| !in_stale.contains(&d.forward.dest_ip));
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
                .map(std::string::ToString::to_string)
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
        // Neither cache nor veth named the network: an address in archy's subnet does, and so
        // does the name of a scratch namespace an earlier heal-podman made for a teardown and
        // did not live to delete (killed between `ip netns add` and `ip netns delete`).
        let network = network.or_else(|| {
            let in_scope = ips.iter().any(|ip| in_subnet(ip, &scope.subnet))
                || super::network::scratch_netns_pid(&name)
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            in_scope
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
pub fn release_namespace(
    stale: &StaleNamespace,
    scope: &NetScope,
    backend: &Backend,
) -> Result<Vec<String>> {
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
    if let Backend::Netavark(nv) = backend {
        return release_namespace_netavark(stale, scope, nv);
    }
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_host(scope, backend);
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
    let host = read_host(scope, backend);
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
    match delete_rules_of_addresses(&host, &ips, scope) {
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
    for (net, entry) in &host.dns {
        if let Some(d) = slot(&mut by_id, &wanted, &entry.container_id, net) {
            d.dns_entries.push(net.clone());
            for ip in &entry.ipv4 {
                if !d.ips.contains(ip) {
                    d.ips.push(ip.clone());
                }
            }
        }
    }
    // A forward to a forgotten container's address is its own unless a container podman knows
    // holds that address now (then the rule is the live one's too: netavark adds it once).
    let held = held_addresses(host, &wanted);
    for d in by_id.values_mut() {
        for (net, f) in &host.forwards {
            if d.networks.contains(net)
                && d.ips.contains(&f.dest_ip)
                && !held.contains(&(net.clone(), f.dest_ip.clone()))
            {
                d.port_forwards.push(f.describe());
            }
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

/// (network, address) pairs aardvark-dns lists for containers `wanted` does not pick (the ones
/// podman knows).
fn held_addresses(
    host: &HostNet,
    wanted: &dyn Fn(&str, &str) -> bool,
) -> BTreeSet<(String, String)> {
    host.dns
        .iter()
        .filter(|(net, e)| !wanted(&e.container_id, net))
        .flat_map(|(net, e)| e.ipv4.iter().map(move |ip| (net.clone(), ip.clone())))
        .collect()
}

/// The IPv4 addresses of the mounted namespaces a process is in (`busy`: their inodes).
fn live_addresses(busy: &BTreeSet<u64>) -> BTreeSet<String> {
    namespace_addresses()
        .into_iter()
        .filter(|(path, _)| std::fs::metadata(path).is_ok_and(|m| busy.contains(&m.ino())))
        .flat_map(|(_, addrs)| addrs)
        .collect()
}

/// Release port forwards to addresses nothing holds (re-checked: an address a live namespace
/// holds now is left alone): netavark's teardown replayed under a container id no entry has,
/// in a scratch namespace, one per network and chain.
pub fn release_dead_forwards(
    dead: &[&super::netavark::DeadForward],
    scope: &NetScope,
    backend: &Backend,
) -> Result<Vec<String>> {
    let Backend::Netavark(nv) = backend else {
        return Ok(Vec::new());
    };
    let netavark = nv.netavark.as_deref().with_context(|| {
        format!(
            "netavark not found in {}: dead port forwards cannot be replayed away",
            HELPER_DIRS.join(":")
        )
    })?;
    let live = live_addresses(&busy_netns());
    // One replay per address: netavark tears down the forwards of one container address.
    let mut by_address: BTreeMap<(&str, &str), Vec<&Forward>> = BTreeMap::new();
    let mut touched = Vec::new();
    for d in dead {
        if live.contains(&d.forward.dest_ip) {
            touched.push(format!(
                "{}: address {} is held again now; left alone",
                d.forward.describe(),
                d.forward.dest_ip
            ));
            continue;
        }
        by_address
            .entry((&d.network, &d.forward.dest_ip))
            .or_default()
            .push(&d.forward);
    }
    let mut errors = Vec::new();
    for ((network, ip), forwards) in by_address {
        let ns = scratch_netns()?;
        let ips = [ip.to_string()];
        let replay = Replay {
            netavark,
            nv,
            scope,
            network,
            container_id: NO_CONTAINER,
            container_name: "archy-heal",
            ips: &ips,
            ns: &ns,
        };
        match replay.run(&forwards) {
            Ok(count) => touched.push(format!(
                "netavark teardown replayed for {count} dead port forward(s) on {network} ({})",
                forwards
                    .iter()
                    .map(|f| f.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(err) => errors.push(format!("{err:#}")),
        }
        if let Err(err) = delete_netns(&ns) {
            errors.push(format!("{err:#}"));
        }
    }
    super::repair_outcome(touched, errors)
}

/// podman's IPAM database for netavark networks (containers/common `libnetwork/netavark/
/// network.go`: `ipamDBPath` is `ipam.db` in the network run dir, netavark's `--config`).
fn ipam_db(nv: &NetavarkHost) -> PathBuf {
    nv.config_dir.join("ipam.db")
}

/// How long archy waits for podman to let go of `ipam.db` (it holds the lock for the length of
/// one allocation; bbolt's default wait is for ever).
const IPAM_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Open `ipam.db` (never following a link, never creating it), locked as bbolt locks it
/// (flock: shared to read, exclusive to write), and read it whole (bounded). `None`: no file,
/// nothing allocated yet.
fn open_ipam(path: &Path, write: bool) -> Result<Option<(std::fs::File, super::boltdb::Db)>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        // Non-blocking: a FIFO planted there must not hang the scan (it is refused below).
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to open {}", path.display())),
    };
    let meta = file.metadata()?;
    anyhow::ensure!(
        meta.is_file() && meta.uid() == crate::procinfo::euid(),
        "{} is not a regular file of this user: left alone",
        path.display()
    );
    let deadline = std::time::Instant::now() + IPAM_LOCK_WAIT;
    loop {
        let locked = if write {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match locked {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} stayed locked by podman for {} s: its IP reservations were not read",
                path.display(),
                IPAM_LOCK_WAIT.as_secs()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()))
            }
        }
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(super::boltdb::MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let db = super::boltdb::Db::parse(&bytes)
        .with_context(|| format!("podman's IPAM database {}", path.display()))?;
    Ok(Some((file, db)))
}

/// The leaks of archy's networks in podman's IPAM database. The addresses live namespaces
/// hold are asked of the kernel only when there is a candidate (a healthy run reads one file).
fn ipam_leaks(
    nv: &NetavarkHost,
    scope: &NetScope,
    known: &BTreeSet<String>,
    busy: &BTreeSet<u64>,
) -> Result<Vec<super::ipam::Leak>> {
    let Some((_, db)) = open_ipam(&ipam_db(nv), false)? else {
        return Ok(Vec::new());
    };
    let candidates = super::ipam::leaks(&db.root, &scope.names, known, &BTreeSet::new());
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let live = live_ips(busy);
    Ok(super::ipam::leaks(&db.root, &scope.names, known, &live))
}

fn live_ips(busy: &BTreeSet<u64>) -> BTreeSet<std::net::IpAddr> {
    live_addresses(busy)
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// Release the IPAM reservations of container `id`, which podman forgot (the caller's word).
fn release_ipam_of(id: &str, scope: &NetScope, nv: &NetavarkHost) -> Result<Vec<String>> {
    let Some((_, db)) = open_ipam(&ipam_db(nv), false)? else {
        return Ok(Vec::new());
    };
    let mut known = BTreeSet::new();
    let leaks: Vec<super::ipam::Leak> =
        super::ipam::leaks(&db.root, &scope.names, &known, &BTreeSet::new())
            .into_iter()
            .filter(|l| l.container_id == id)
            .collect();
    if leaks.is_empty() {
        return Ok(Vec::new());
    }
    // Forgotten by podman: every other id counts as known, so only its entries qualify.
    known.extend(
        super::ipam::allocated_ids(&db.root, &scope.names)
            .into_iter()
            .filter(|other| other != id),
    );
    let refs: Vec<&super::ipam::Leak> = leaks.iter().collect();
    release_ipam_leaks(&refs, scope, &Backend::Netavark(nv.clone()), &known)
}

/// Release IPAM leaks as podman's `deallocIPs` would: under the database's exclusive lock,
/// re-read, each leak re-checked (still reserved for the same container, still forgotten by
/// podman — `known` is listed right before —, its address still in no live namespace), then
/// one bbolt transaction: the new pages, a data sync, the new meta, a data sync. A kill at
/// any point leaves the database as it was or as it is meant to be.
pub fn release_ipam_leaks(
    leaks: &[&super::ipam::Leak],
    scope: &NetScope,
    backend: &Backend,
    known: &BTreeSet<String>,
) -> Result<Vec<String>> {
    use std::os::unix::fs::FileExt;
    let Backend::Netavark(nv) = backend else {
        return Ok(Vec::new());
    };
    let path = ipam_db(nv);
    let Some((file, db)) = open_ipam(&path, true)? else {
        return Ok(vec![format!(
            "{} is gone: nothing reserved",
            path.display()
        )]);
    };
    let now = super::ipam::leaks(&db.root, &scope.names, known, &live_ips(&busy_netns()));
    let confirmed: Vec<super::ipam::Leak> =
        now.into_iter().filter(|l| leaks.contains(&l)).collect();
    let (tree, mut touched) = super::ipam::without(&db.root, &confirmed);
    if touched.is_empty() {
        touched.push("no reservation to release any more".into());
        return Ok(touched);
    }
    let commit = db.commit(&tree)?;
    let write = |offset: u64, bytes: &[u8]| {
        file.write_all_at(bytes, offset)
            .with_context(|| format!("failed to write {}", path.display()))
    };
    for (offset, bytes) in &commit.pages {
        write(*offset, bytes)?;
    }
    file.sync_data()
        .with_context(|| format!("failed to sync {}", path.display()))?;
    write(commit.meta.0, &commit.meta.1)?;
    file.sync_data()
        .with_context(|| format!("failed to sync {}", path.display()))?;
    Ok(touched)
}

/// Every mounted network namespace with its IPv4 and IPv6 addresses (no prefix): one `ip` call each,
/// made only when a forgotten container's namespace is looked for.
fn namespace_addresses() -> Vec<(PathBuf, Vec<String>)> {
    netns_mounts()
        .into_iter()
        .filter(|(path, _)| path.parent() == Some(Path::new(NETNS_DIR)))
        .filter_map(|(path, _)| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let out = Cmd::new("ip")
                .args(["-n", &name, "-j", "addr", "show"])
                .run()
                .ok()?;
            let addrs = parse_addresses_of(&out.stdout, &["inet", "inet6"])
                .ok()?
                .into_iter()
                .map(|a| a.split('/').next().unwrap_or(&a).to_string())
                .collect();
            Some((path, addrs))
        })
        .collect()
}

/// Release everything the host holds for container `id` (any network): replay its CNI DEL
/// from libcni's cache, delete its network namespace once no process is in it, then remove
/// the iptables rules and host-local reservations still naming it. Returns what it did.
pub fn release(id: &str, scope: &NetScope, backend: &Backend) -> Result<Vec<String>> {
    if let Backend::Netavark(nv) = backend {
        return release_netavark(id, scope, nv);
    }
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_host(scope, backend);
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
    let host = read_host(scope, backend);
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

/// Release what netavark holds for container `id`, which podman forgot: per archy network
/// where aardvark-dns still lists it, replay `netavark teardown` as podman would have at its
/// exit (containers/common `libnetwork/netavark/run.go` `Teardown`: the network's JSON, the
/// container's addresses and its port forwards as read from the network's own chain), in the
/// container's old namespace when it is still mounted (then delete it: its veth pair goes
/// with it), else in a fresh empty one (netavark then fails only on the missing interface,
/// after removing the firewall rules and the DNS entry: `src/commands/teardown.rs`). A forward
/// to an address another container holds now is not passed (the rule is that one's too).
/// Then delete what still names it by hand: netavark 1.4's DNAT jump rules (commented with
/// its id). The caller has podman set up its running containers' networks again (`podman
/// network reload --all`): a teardown removes rules identical to a live container's.
fn release_netavark(id: &str, scope: &NetScope, nv: &NetavarkHost) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_netavark(scope, nv);
    let others = |cid: &str, net: &str| cid != id && scope.names.contains(net);
    let held: BTreeSet<(String, String)> = host
        .dns
        .iter()
        .filter(|(net, e)| others(&e.container_id, net))
        .flat_map(|(net, e)| e.ipv4.iter().map(move |ip| (net.clone(), ip.clone())))
        .collect();
    let namespaces = namespace_addresses();
    for (net, entry) in host
        .dns
        .iter()
        .filter(|(net, e)| e.container_id == id && scope.names.contains(net))
    {
        let ips = &entry.ipv4;
        let forwards: Vec<&Forward> = host
            .forwards
            .iter()
            .filter(|(n, f)| {
                n == net
                    && ips.contains(&f.dest_ip)
                    && !held.contains(&(n.clone(), f.dest_ip.clone()))
            })
            .map(|(_, f)| f)
            .collect();
        let old_ns = namespaces
            .iter()
            .find(|(_, addrs)| ips.iter().any(|ip| addrs.contains(ip)))
            .map(|(path, _)| path.clone());
        if let Some(ns) = &old_ns {
            if let Some(pid) = netns_user(ns) {
                anyhow::bail!(
                    "network namespace {} of container {} is still in use by pid {pid}; nothing of its network released",
                    ns.display(),
                    crate::podman::short_id(id)
                );
            }
        }
        let Some(netavark) = &nv.netavark else {
            errors.push(format!(
                "netavark not found in {}: the teardown of container {} cannot be replayed",
                HELPER_DIRS.join(":"),
                crate::podman::short_id(id)
            ));
            continue;
        };
        let name = entry
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| crate::podman::short_id(id).to_string());
        let (ns, scratch) = match &old_ns {
            Some(path) => (path.clone(), false),
            None => match scratch_netns() {
                Ok(path) => (path, true),
                Err(err) => {
                    errors.push(format!("{err:#}"));
                    continue;
                }
            },
        };
        let replay = Replay {
            netavark,
            nv,
            scope,
            network: net,
            container_id: id,
            container_name: &name,
            ips,
            ns: &ns,
        };
        match replay.run(&forwards) {
            Ok(count) => touched.push(format!(
                "netavark teardown replayed for {} on {net} (address {}; {count} port forward(s); DNS entry)",
                crate::podman::short_id(id),
                ips.join(", "),
            )),
            Err(err) => errors.push(format!("{err:#}")),
        }
        match delete_netns(&ns) {
            Ok(()) if !scratch => {
                touched.push(format!("network namespace {} deleted", ns.display()));
            }
            Ok(()) => {}
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    // Jump rules still naming it (netavark 1.4 comments them with its id): a container with no
    // DNS entry to replay from, or a teardown that failed.
    let host = read_netavark(scope, nv);
    match delete_rules(&host, id, &BTreeSet::new()) {
        Ok(done) => touched.extend(done),
        Err(err) => errors.push(format!("{err:#}")),
    }
    // Its addresses in podman's IPAM database: podman's teardown would have deallocated them.
    match release_ipam_of(id, scope, nv) {
        Ok(done) => touched.extend(done),
        Err(err) => errors.push(format!("{err:#}")),
    }
    super::repair_outcome(touched, errors)
}

/// A namespace an earlier attachment left, on netavark: its port forwards (to its address, in
/// the network's own chain) and DNS entries are replayed away with netavark's teardown in the
/// namespace itself, unless a live namespace holds that address now (then they are its). A
/// container that started again elsewhere (same id, new address: podman's refresh after its
/// runtime dirs were wiped) keeps its DNAT ahead of the stale one otherwise; the teardown runs
/// under the id of the DNS entry naming the old address (or one no container has), and the
/// caller's `podman network reload --all` puts back what the live container shares with it.
/// Then the namespace goes, and its veth pair with it.
fn release_namespace_netavark(
    stale: &StaleNamespace,
    scope: &NetScope,
    nv: &NetavarkHost,
) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    let host = read_netavark(scope, nv);
    // Held: the address is on an interface of a namespace a process is in (the kernel's word,
    // not aardvark-dns's file, which may still list the old address beside the new one).
    let busy = busy_netns();
    let held: BTreeSet<String> = namespace_addresses()
        .into_iter()
        .filter(|(path, _)| std::fs::metadata(path).is_ok_and(|m| busy.contains(&m.ino())))
        .flat_map(|(_, addrs)| addrs)
        .collect();
    let ips: Vec<String> = stale
        .ips
        .iter()
        .filter(|ip| !held.contains(ip.as_str()))
        .cloned()
        .collect();
    // A DNS entry still naming the old address: the teardown runs under its container's id,
    // which removes all of that container's entries (the reload puts the live one back).
    let dns_owner = host
        .dns
        .iter()
        .filter(|(net, _)| *net == stale.network)
        .find(|(_, e)| e.ipv4.iter().any(|ip| ips.contains(ip)))
        .map(|(_, e)| e.container_id.clone());
    let forwards: Vec<&Forward> = host
        .forwards
        .iter()
        .filter(|(net, f)| *net == stale.network && ips.contains(&f.dest_ip))
        .map(|(_, f)| f)
        .collect();
    if !forwards.is_empty() || dns_owner.is_some() {
        match &nv.netavark {
            Some(netavark) => {
                let replay = Replay {
                    netavark,
                    nv,
                    scope,
                    network: &stale.network,
                    container_id: dns_owner.as_deref().unwrap_or(NO_CONTAINER),
                    container_name: "archy-heal",
                    ips: &ips,
                    ns: Path::new(&stale.path),
                };
                match replay.run(&forwards) {
                    Ok(count) => touched.push(format!(
                        "netavark teardown replayed for namespace {} on {} (address {}; {count} port forward(s))",
                        stale.path,
                        stale.network,
                        ips.join(", "),
                    )),
                    Err(err) => errors.push(format!("{err:#}")),
                }
            }
            None => errors.push(format!(
                "netavark not found in {}: the port forwards to {} cannot be replayed away",
                HELPER_DIRS.join(":"),
                ips.join(", ")
            )),
        }
    }
    match delete_netns(Path::new(&stale.path)) {
        Ok(()) => touched.push(format!("network namespace {} deleted", stale.path)),
        Err(err) => errors.push(format!("{err:#}")),
    }
    super::repair_outcome(touched, errors)
}

/// One container's teardown on one network, replayed in namespace `ns`.
struct Replay<'a> {
    netavark: &'a Path,
    nv: &'a NetavarkHost,
    scope: &'a NetScope,
    network: &'a str,
    container_id: &'a str,
    container_name: &'a str,
    ips: &'a [String],
    ns: &'a Path,
}

impl Replay<'_> {
    /// One `netavark teardown` per firewall chain the forwards sit in (nftables names a chain by
    /// the network's id, and a network created again has a new one), at least one (the DNS
    /// entry). Returns how many port forwards were passed.
    fn run(&self, forwards: &[&Forward]) -> Result<usize> {
        let mut chains: BTreeMap<Option<&str>, Vec<super::netavark::PortMapping>> = BTreeMap::new();
        for f in forwards {
            chains
                .entry(f.chain_id.as_deref())
                .or_default()
                .push(f.mapping.clone());
        }
        if chains.is_empty() {
            chains.insert(None, Vec::new());
        }
        let mut count = 0;
        for (chain_id, mut mappings) in chains {
            mappings.sort();
            mappings.dedup();
            count += mappings.len();
            let network_json = network_json_for(self.nv, self.scope, self.network, chain_id);
            let options = super::netavark::teardown_options(
                self.container_id,
                self.container_name,
                self.network,
                self.ips,
                &mappings,
                &network_json,
            );
            netavark_teardown(self.netavark, self.nv, self.ns, &options)?;
        }
        Ok(count)
    }
}

/// The container id a namespace-only teardown is replayed under: no container has it, so
/// netavark finds no DNS entry and no DNAT jump (1.4 comments those with the id) of it.
const NO_CONTAINER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The network's JSON for a teardown of forwards in the chain named by `chain_id`: podman's
/// description when it names that chain (or on iptables, where chains are named by the
/// network's name), else what netavark's teardown needs of it — when podman no longer knows
/// the network (its config deleted behind podman's back) or knows a newer one of that name: the
/// name, archy's subnet and gateway, and an id beginning with the chain's prefix. The interface
/// name is a placeholder: the link removal it is used for fails and teardown goes on.
fn network_json_for(
    nv: &NetavarkHost,
    scope: &NetScope,
    name: &str,
    chain_id: Option<&str>,
) -> serde_json::Value {
    let known = nv.networks.get(name);
    let known_id = known
        .and_then(|j| j.get("id"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if let Some(json) = known {
        if chain_id.is_none_or(|id| known_id.starts_with(id)) {
            return json.clone();
        }
    }
    let id = chain_id.unwrap_or(known_id);
    let gateway = scope
        .subnet
        .split_once('/')
        .and_then(|(net, _)| net.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
        .unwrap_or_default();
    serde_json::json!({
        "name": name,
        "id": format!("{id:0<64}"),
        "driver": "bridge",
        "network_interface": "archy-gone0",
        "subnets": [{"subnet": scope.subnet, "gateway": gateway}],
        "ipv6_enabled": false,
        "internal": false,
        "dns_enabled": true,
        "ipam_options": {"driver": "host-local"},
    })
}

/// `netavark teardown NS` with `options` on stdin, as podman calls it (`--config`,
/// `--rootless`, `--aardvark-binary`; the firewall driver it found through `NETAVARK_FW`,
/// which netavark 1.14 reads and 1.4 ignores).
fn netavark_teardown(
    netavark: &Path,
    nv: &NetavarkHost,
    ns: &Path,
    options: &serde_json::Value,
) -> Result<()> {
    let mut cmd = Cmd::new(netavark)
        .arg(format!("--config={}", nv.config_dir.display()))
        .arg(format!("--rootless={}", crate::procinfo::euid() != 0))
        .env("NETAVARK_FW", nv.firewall.as_str());
    if let Some(aardvark) = &nv.aardvark {
        cmd = cmd.arg(format!("--aardvark-binary={}", aardvark.display()));
    }
    let cmd = cmd
        .arg("teardown")
        .arg(ns)
        .stdin_bytes(serde_json::to_vec(options).context("failed to encode netavark's options")?);
    let out = cmd.run_unchecked()?;
    // netavark reports its error as JSON on stdout (`{"error": "…"}`), logs on stderr.
    let said = format!("{}\n{}", out.stdout.trim(), out.stderr.trim());
    if out.success() || super::netavark::only_already_gone(&said) {
        return Ok(());
    }
    Err(cmd.failure(&out)).with_context(|| format!("netavark teardown failed: {}", said.trim()))
}

/// A fresh, empty network namespace to replay a teardown in when the container's own is gone.
fn scratch_netns() -> Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "{}{}-{}",
        super::network::SCRATCH_NETNS_PREFIX,
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    Cmd::new("ip")
        .args(["netns", "add", &name])
        .run()
        .context("failed to make a scratch network namespace for netavark's teardown")?;
    Ok(Path::new(NETNS_DIR).join(name))
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

/// Delete CNI's iptables rules about addresses `ips` on archy's networks (port forwards to
/// them, their masquerade and forward rules), then the per-container chains only they jumped
/// to. A rule is archy's when its comment names one of archy's networks, or it sits in a
/// per-container chain such a rule jumps to, or in CNI's firewall plugin's `CNI-FORWARD`:
/// another network's (or another podman root's, or netavark's) rules for the same address are
/// never touched.
fn delete_rules_of_addresses(
    host: &HostNet,
    ips: &BTreeSet<String>,
    scope: &NetScope,
) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    let mut chains: Vec<(&str, String)> = Vec::new();
    if ips.is_empty() {
        return Ok(touched);
    }
    for (table, line) in super::network::cni_rules_of_addresses(&host.rules, ips, &scope.names) {
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
