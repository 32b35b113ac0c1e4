//! The system side of [`super::network`]: read libcni's cache, host-local's reservations and
//! the iptables rules, and release what a forgotten container left, replaying its CNI DEL
//! first and removing by hand only what names that container.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::network::{
    container_chain, del_calls, is_container_chain, parse_cache_entry, rule_container_id,
    rule_network, split_rule, CacheEntry, Debris,
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

/// Debris on `networks` of containers not in `known` (podman's database), leaving out those
/// whose network namespace a process still uses (a running ghost: the ghost probe's business,
/// and released when it is killed).
pub fn debris(networks: &BTreeSet<String>, known: &BTreeSet<String>) -> (Vec<Debris>, Vec<String>) {
    let host = read_host();
    let unknown = |id: &str| !known.contains(id);
    let mut list = collect(&host, |id, net| networks.contains(net) && unknown(id));
    list.retain(|d| {
        host.cache
            .iter()
            .filter(|(_, e)| e.container_id == d.container_id)
            .filter_map(|(_, e)| e.sandbox())
            .all(|ns| netns_user(Path::new(&ns)).is_none())
    });
    (list, host.notes)
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
        let mut ok = true;
        match del_calls(entry) {
            Ok(calls) => {
                for call in calls {
                    match cni_del(entry, netns.as_deref(), &call.plugin, &call.stdin) {
                        Ok(()) => touched.push(format!(
                            "CNI {} DEL for {} on {}",
                            call.plugin,
                            crate::podman::short_id(id),
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
        if let Some(ns) = &netns {
            match delete_netns(Path::new(ns)) {
                Ok(()) => touched.push(format!("network namespace {ns} deleted")),
                Err(err) => errors.push(format!("{err:#}")),
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
        let mut args = split_rule(line);
        if let Some(chain) = container_chain(&args) {
            chains.push((table, chain.to_string()));
        }
        // A per-container chain's own rules go when the chain is flushed.
        if let Some(own) = args.get(1).filter(|c| is_container_chain(c)) {
            chains.push((table, own.clone()));
            continue;
        }
        args[0] = "-D".into();
        Cmd::new("iptables")
            .args(["-t", table])
            .args(&args)
            .run()
            .with_context(|| format!("failed to delete iptables rule `{line}`"))?;
        touched.push(format!("iptables -t {table}: {line} deleted"));
    }
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
