//! Network debris of containers podman no longer knows (a ghost killed after a database loss,
//! a container killed behind podman's back): what podman's CNI backend left on the host, and
//! how to release it the way podman would have. Pure parsing and planning; the system side is
//! [`super::netsys`].
//!
//! podman 4.3 with CNI (Debian bookworm: `containernetworking-plugins` 1.1.1) runs each
//! network's plugin list through libcni, which caches what it did per container in
//! `/var/lib/cni/results/<network>-<container id>-<ifname>` (`kind: cniCacheV1`: the network
//! list, CNI args, capability args such as port mappings, and the ADD result naming the network
//! namespace, the interfaces and the addresses). A teardown replays the list's plugins with
//! `CNI_COMMAND=DEL`, in reverse order, each given the cached result as `prevResult` and the
//! capabilities it declares as `runtimeConfig` (libcni `api.go`: `delNetwork`,
//! `buildOneConfig`, `injectRuntimeConfig`; github.com/containernetworking/cni, libcni/api.go).
//! That is exactly what podman does for a container it knows; for one it forgot, archy replays
//! the cached entry. Only what no plugin removes is removed by hand, and only when it names the
//! container: the network namespace (podman unmounts it itself, `netns.UnmountNS`), iptables
//! rules whose comment carries `id: "<container id>"`, and host-local IPAM files holding it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// libcni's cache of one container's attachment to one network.
#[derive(Debug, Clone, Deserialize)]
pub struct CacheEntry {
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network list (conflist JSON), base64-encoded.
    #[serde(default)]
    pub config: String,
    #[serde(rename = "ifName", default)]
    pub if_name: String,
    #[serde(rename = "networkName", default)]
    pub network_name: String,
    #[serde(rename = "cniArgs", default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: Map<String, Value>,
    #[serde(default)]
    pub result: Value,
}

/// Parse one file of libcni's result cache.
pub fn parse_cache_entry(json: &str) -> Result<CacheEntry> {
    serde_json::from_str(json).context("not a libcni cache entry (cniCacheV1)")
}

impl CacheEntry {
    /// The network namespace the ADD attached to (`result.interfaces[].sandbox`).
    pub fn sandbox(&self) -> Option<String> {
        self.interfaces()
            .iter()
            .find_map(|i| i.get("sandbox").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    /// The container's addresses (`10.89.0.2/24`).
    pub fn ips(&self) -> Vec<String> {
        self.result
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.get("address").and_then(Value::as_str).map(String::from))
            .collect()
    }

    /// Host-side veth names (interfaces outside the sandbox other than the bridge).
    pub fn host_veths(&self) -> Vec<String> {
        let bridge = self.bridge();
        self.interfaces()
            .iter()
            .filter(|i| {
                i.get("sandbox")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            })
            .filter_map(|i| i.get("name").and_then(Value::as_str))
            .filter(|n| Some(*n) != bridge.as_deref())
            .map(String::from)
            .collect()
    }

    fn interfaces(&self) -> Vec<Value> {
        self.result
            .get("interfaces")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The bridge the bridge plugin attached to.
    pub fn bridge(&self) -> Option<String> {
        let list = self.network_list().ok()?;
        list.get("plugins")?
            .as_array()?
            .iter()
            .find_map(|p| p.get("bridge").and_then(Value::as_str).map(String::from))
    }

    /// The decoded network list.
    pub fn network_list(&self) -> Result<Value> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.config.trim())
            .context("the cached network list is not base64")?;
        serde_json::from_slice(&raw).context("the cached network list is not JSON")
    }

    /// `CNI_ARGS` as libcni passes it (`K=V;K=V`).
    pub fn cni_args_env(&self) -> String {
        self.cni_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// One plugin invocation of a teardown: the plugin's type (its binary name) and its stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginCall {
    pub plugin: String,
    pub stdin: Value,
}

/// The DEL invocations libcni makes for a cached attachment, in order (the list reversed).
pub fn del_calls(entry: &CacheEntry) -> Result<Vec<PluginCall>> {
    let list = entry.network_list()?;
    let name = list.get("name").cloned().unwrap_or(Value::Null);
    let version = list.get("cniVersion").cloned().unwrap_or(Value::Null);
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .context("the cached network list has no plugins")?;
    let mut calls = Vec::new();
    for plugin in plugins.iter().rev() {
        let Some(mut conf) = plugin.as_object().cloned() else {
            continue;
        };
        let Some(kind) = conf.get("type").and_then(Value::as_str).map(String::from) else {
            continue;
        };
        conf.insert("name".into(), name.clone());
        conf.insert("cniVersion".into(), version.clone());
        if !entry.result.is_null() {
            conf.insert("prevResult".into(), entry.result.clone());
        }
        // injectRuntimeConfig: only the capabilities this plugin declares.
        let mut runtime = Map::new();
        if let Some(caps) = conf.get("capabilities").and_then(Value::as_object) {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(value) = entry.capability_args.get(cap) {
                        runtime.insert(cap.clone(), value.clone());
                    }
                }
            }
        }
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        calls.push(PluginCall {
            plugin: kind,
            stdin: Value::Object(conf),
        });
    }
    Ok(calls)
}

/// The container id in an `iptables -S` rule's CNI comment or netavark 1.4's DNAT comment
/// (`"dnat name: <net> id: <id>"`) (`id: \"<id>\"`), if any.
pub fn rule_container_id(line: &str) -> Option<&str> {
    if let Some(id) = netavark_comment(line).and_then(comment_container) {
        return id.chars().all(|c| c.is_ascii_hexdigit()).then_some(id);
    }
    let start = line.find("id: \\\"")? + "id: \\\"".len();
    let rest = &line[start..];
    let end = rest.find('\\')?;
    let id = &rest[..end];
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

/// The network name in an `iptables -S` rule's CNI comment or netavark 1.4's DNAT comment (`name: \"<net>\"`), if any.
pub fn rule_network(line: &str) -> Option<&str> {
    if let Some(net) = netavark_comment(line).and_then(comment_network) {
        return Some(net);
    }
    let start = line.find("name: \\\"")? + "name: \\\"".len();
    let rest = &line[start..];
    rest.find('\\').map(|end| &rest[..end])
}

/// The network of a netavark 1.4 DNAT comment: `dnat name: <network> id: <container id>`.
pub fn comment_network(comment: &str) -> Option<&str> {
    comment.strip_prefix("dnat name: ")?.split(" id: ").next()
}

/// The container of a netavark 1.4 DNAT comment.
pub fn comment_container(comment: &str) -> Option<&str> {
    let id = comment.strip_prefix("dnat name: ")?.rsplit_once(" id: ")?.1;
    (!id.is_empty()).then_some(id)
}

/// The text of a netavark 1.4 DNAT comment in an `iptables -S` line
/// (`--comment "dnat name: <net> id: <id>"`: no quotes inside, unlike CNI's).
fn netavark_comment(line: &str) -> Option<&str> {
    let start = line.find("--comment \"dnat name: ")? + "--comment \"".len();
    let rest = &line[start..];
    // CNI's portmap comments the same way but quotes the name (`dnat name: \"net\" …`).
    let comment = &rest[..rest.find('"')?];
    (!comment.ends_with('\\')).then_some(comment)
}

/// Split an `iptables -S` line into arguments: double quotes group, `\"` inside them is a
/// literal quote (CNI comments hold quoted names).
pub fn split_rule(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    args.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            _ => {
                current.push(ch);
                any = true;
            }
        }
    }
    if any {
        args.push(current);
    }
    args
}

/// The jump target of a rule (`-j CNI-DN-…`) when it is a per-container CNI chain.
pub fn container_chain(args: &[String]) -> Option<&str> {
    let pos = args.iter().position(|a| a == "-j")?;
    let target = args.get(pos + 1)?;
    is_container_chain(target).then_some(target.as_str())
}

/// Per-container chains (portmap's `CNI-DN-<hash>`, bridge's masquerade `CNI-<hash>`), not the
/// shared ones every container's rules hang off.
pub fn is_container_chain(name: &str) -> bool {
    const SHARED: [&str; 5] = [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-MASQ",
        "CNI-HOSTPORT-SETMARK",
        "CNI-FORWARD",
        "CNI-ADMIN",
    ];
    name.starts_with("CNI-") && !SHARED.contains(&name)
}

/// What one forgotten container left on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Debris {
    pub container_id: String,
    pub networks: Vec<String>,
    /// Network namespace mount (`/run/netns/netns-…`) still present.
    pub netns: Option<String>,
    /// Host-side veths still present.
    pub veths: Vec<String>,
    pub ips: Vec<String>,
    /// iptables rules naming the container (DNAT, masquerade).
    pub rules: Vec<String>,
    /// host-local IPAM reservations holding it.
    pub ipam_files: Vec<PathBuf>,
    /// libcni cache entries (replayed as DEL to release the rest).
    pub cache_files: Vec<PathBuf>,
    /// netavark: networks whose aardvark-dns entries still name it (peers resolve its name to
    /// a dead address).
    pub dns_entries: Vec<String>,
    /// netavark: port forwards to its address in the network's own firewall chain.
    pub port_forwards: Vec<String>,
}

impl Debris {
    pub fn is_empty(&self) -> bool {
        self.netns.is_none()
            && self.veths.is_empty()
            && self.rules.is_empty()
            && self.ipam_files.is_empty()
            && self.cache_files.is_empty()
            && self.dns_entries.is_empty()
            && self.port_forwards.is_empty()
    }

    /// One line for probe evidence.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = &self.netns {
            parts.push(format!("network namespace {ns}"));
        }
        if !self.veths.is_empty() {
            parts.push(format!("veth {}", self.veths.join(", ")));
        }
        if !self.rules.is_empty() {
            parts.push(format!(
                "{} iptables rule(s) (port forwards/masquerade)",
                self.rules.len()
            ));
        }
        if !self.ipam_files.is_empty() {
            parts.push(format!("IP reservation(s) {}", self.ips.join(", ")));
        }
        if !self.cache_files.is_empty() {
            parts.push(format!("{} CNI cache entr(ies)", self.cache_files.len()));
        }
        if !self.port_forwards.is_empty() {
            parts.push(format!("port forward(s) {}", self.port_forwards.join(", ")));
        }
        if !self.dns_entries.is_empty() {
            parts.push(format!(
                "DNS entry on {} (address {})",
                self.dns_entries.join(", "),
                self.ips.join(", ")
            ));
        }
        format!(
            "container {} (unknown to podman) left on network {}: {}",
            crate::podman::short_id(&self.container_id),
            self.networks.join(", "),
            parts.join("; ")
        )
    }
}

/// A network namespace an earlier attachment left behind: no process is in it and no
/// running container's attachment names it, yet it still holds an interface on one of archy's
/// networks. It happens when podman forgets a namespace without tearing it down: its runtime
/// dirs wiped while containers ran (podman's `refresh` resets every container's state and
/// drops its namespace path, libpod `container_internal.go`: `refresh`), then the container
/// started again in a new namespace while the old one keeps its veth, address and port forwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StaleNamespace {
    /// The mount (`/run/netns/netns-…`).
    pub path: String,
    pub network: String,
    /// Host-side veths whose peer is in it.
    pub veths: Vec<String>,
    /// Its IPv4 addresses on the network (no prefix length).
    pub ips: Vec<String>,
    /// The container libcni's cache names for it (a known container that is not running).
    pub container_id: Option<String>,
}

impl StaleNamespace {
    /// One line for probe evidence.
    pub fn describe(&self) -> String {
        let mut parts = vec!["no process in it".to_string()];
        if !self.veths.is_empty() {
            parts.push(format!("veth {}", self.veths.join(", ")));
        }
        if !self.ips.is_empty() {
            parts.push(format!("address {}", self.ips.join(", ")));
        }
        let owner = match &self.container_id {
            Some(id) => format!(
                "an earlier attachment of container {} (not running)",
                crate::podman::short_id(id)
            ),
            None => "an earlier attachment no running container has".to_string(),
        };
        format!(
            "network namespace {} on network {} left by {owner}: {}",
            self.path,
            self.network,
            parts.join("; ")
        )
    }
}

/// A bridge podman's CNI backend created (`cni-podman<N>`) that no network claims and no
/// interface is attached to: what deleting a network's config behind podman's back leaves.
/// While it holds an address in archy's subnet, `podman network create` refuses that subnet
/// ("subnet … is already used on the host").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanBridge {
    pub name: String,
    /// Its IPv4 addresses with prefix length.
    pub addresses: Vec<String>,
}

impl OrphanBridge {
    /// One line for probe evidence.
    pub fn describe(&self) -> String {
        format!(
            "bridge {} ({}) belongs to no podman network and has nothing attached",
            self.name,
            if self.addresses.is_empty() {
                "no address".to_string()
            } else {
                self.addresses.join(", ")
            }
        )
    }
}

/// The names podman gives the bridges it creates: `cni-podman<N>` with the CNI backend (podman 4
/// `libnetwork/cni/network.go`), `podman<N>` with netavark (`libnetwork/netavark/config.go`).
pub fn is_podman_bridge_name(name: &str) -> bool {
    name.strip_prefix("cni-podman")
        .or_else(|| name.strip_prefix("podman"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The name prefix of the scratch namespaces heal-podman replays a teardown in
/// (`archy-heal-<pid>-<n>`).
pub const SCRATCH_NETNS_PREFIX: &str = "archy-heal-";

/// The pid of the heal-podman run that made scratch namespace `name`, if it is one.
pub fn scratch_netns_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(SCRATCH_NETNS_PREFIX)?.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// `ip -j netns list`: namespace name → its id in the host's namespace (only those with one).
pub fn parse_netns_ids(json: &str) -> Result<BTreeMap<String, i64>> {
    let list: Vec<Value> = serde_json::from_str(json).context("`ip -j netns list` is not JSON")?;
    Ok(list
        .iter()
        .filter_map(|n| Some((n.get("name")?.as_str()?.to_string(), n.get("id")?.as_i64()?)))
        .collect())
}

/// One host-side veth from `ip -j link show type veth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVeth {
    pub name: String,
    /// The bridge it is attached to.
    pub master: Option<String>,
    /// The id (in the host's namespace) of the namespace its peer is in.
    pub peer_netnsid: Option<i64>,
}

pub fn parse_veths(json: &str) -> Result<Vec<HostVeth>> {
    let list: Vec<Value> =
        serde_json::from_str(json).context("`ip -j link show type veth` is not JSON")?;
    Ok(list
        .iter()
        .filter_map(|l| {
            Some(HostVeth {
                name: l.get("ifname")?.as_str()?.to_string(),
                master: l.get("master").and_then(Value::as_str).map(String::from),
                peer_netnsid: l.get("link_netnsid").and_then(Value::as_i64),
            })
        })
        .collect())
}

/// IPv4 addresses (`10.89.0.2/24`) in `ip -j addr show` output, interfaces other than `lo`.
pub fn parse_addresses(json: &str) -> Result<Vec<String>> {
    parse_addresses_of(json, &["inet"])
}

/// Addresses of the `families` (`inet`, `inet6`) in `ip -j addr show` output, with their
/// prefix, interfaces other than `lo`.
pub fn parse_addresses_of(json: &str, families: &[&str]) -> Result<Vec<String>> {
    let list: Vec<Value> = serde_json::from_str(json).context("`ip -j addr show` is not JSON")?;
    Ok(list
        .iter()
        .filter(|l| l.get("ifname").and_then(Value::as_str) != Some("lo"))
        .flat_map(|l| {
            l.get("addr_info")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| {
            a.get("family")
                .and_then(Value::as_str)
                .is_some_and(|f| families.contains(&f))
        })
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a.get("local")?.as_str()?,
                a.get("prefixlen")?.as_i64()?
            ))
        })
        .collect())
}

/// The iptables rules (table, `-S` line) of CNI about addresses `ips` that belong to archy's
/// networks `names`: a rule whose comment names one of them, a rule in a per-container chain
/// such a rule jumps to, or one in CNI's firewall plugin's `CNI-FORWARD`. Another network's
/// (another podman root's, netavark's) rules about the same address are not among them.
pub fn cni_rules_of_addresses<'a>(
    rules: &'a [(&'static str, String)],
    ips: &BTreeSet<String>,
    names: &BTreeSet<String>,
) -> Vec<(&'static str, &'a String)> {
    let archys_chains: BTreeSet<String> = rules
        .iter()
        .filter(|(_, l)| rule_network(l).is_some_and(|n| names.contains(n)))
        .filter_map(|(_, l)| container_chain(&split_rule(l)).map(String::from))
        .collect();
    rules
        .iter()
        .filter(|(_, line)| ips.iter().any(|ip| rule_references_ip(line, ip)))
        .filter(|(_, line)| {
            let args = split_rule(line);
            let chain = args.get(1).map_or("", String::as_str);
            rule_network(line).is_some_and(|n| names.contains(n))
                || archys_chains.contains(chain)
                || chain == "CNI-FORWARD"
        })
        .map(|(table, line)| (*table, line))
        .collect()
}

/// Whether an `iptables -S` rule is about address `ip` (`-s/-d ip/32`, `--to-destination ip:…`).
pub fn rule_references_ip(line: &str, ip: &str) -> bool {
    let host = format!("{ip}/32");
    split_rule(line)
        .iter()
        .any(|a| *a == host || a.strip_prefix(ip).is_some_and(|rest| rest.starts_with(':')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from podman 4.3.1 + containernetworking-plugins 1.1.1 on this machine kind: a
    /// container on network x15net publishing 127.0.0.1:18999:80.
    const CACHE: &str = include_str!("../../tests/fixtures/heal-cni-cache-entry.json");
    const NAT: &str = include_str!("../../tests/fixtures/heal-iptables-nat.txt");
    const ID: &str = "5d56896d04d0886b96987fa7c14d72985013ac3a333fc035cb1f8af11fef70ce";

    #[test]
    fn cache_entry_names_netns_addresses_and_veth() {
        let entry = parse_cache_entry(CACHE).unwrap();
        assert_eq!(entry.container_id, ID);
        assert_eq!(entry.network_name, "x15net");
        assert_eq!(
            entry.sandbox().as_deref(),
            Some("/run/netns/netns-528d8f0c-9da7-662b-1ddf-0d2c1b9def53")
        );
        assert_eq!(entry.ips(), vec!["10.199.250.2/24".to_string()]);
        assert_eq!(entry.bridge().as_deref(), Some("cni-podman1"));
        assert_eq!(entry.host_veths(), vec!["vetha80ae7c3".to_string()]);
        assert_eq!(entry.cni_args_env(), "IgnoreUnknown=1;K8S_POD_NAME=x15c");
    }

    #[test]
    fn del_replays_the_list_reversed_with_prev_result_and_declared_capabilities() {
        let entry = parse_cache_entry(CACHE).unwrap();
        let calls = del_calls(&entry).unwrap();
        let kinds: Vec<&str> = calls.iter().map(|c| c.plugin.as_str()).collect();
        assert_eq!(kinds, ["tuning", "firewall", "portmap", "bridge"]);
        let portmap = &calls[2].stdin;
        assert_eq!(portmap["name"], "x15net");
        assert_eq!(portmap["cniVersion"], "0.4.0");
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            18999
        );
        assert_eq!(
            portmap["prevResult"]["ips"][0]["address"],
            "10.199.250.2/24"
        );
        // bridge declares only "ips", which the ADD did not use: no runtimeConfig.
        assert!(calls[3].stdin.get("runtimeConfig").is_none());
        assert!(calls[0].stdin.get("runtimeConfig").is_none());
    }

    #[test]
    fn rules_are_attributed_by_their_comment() {
        let tagged: Vec<&str> = NAT
            .lines()
            .filter(|l| rule_container_id(l) == Some(ID))
            .collect();
        assert_eq!(tagged.len(), 4, "{tagged:#?}");
        assert!(tagged.iter().all(|l| rule_network(l) == Some("x15net")));
        let dnat = tagged
            .iter()
            .find(|l| l.starts_with("-A CNI-HOSTPORT-DNAT"))
            .unwrap();
        let args = split_rule(dnat);
        assert_eq!(container_chain(&args), Some("CNI-DN-4d58f1fe0e81a06acedb9"));
        let comment = args.iter().position(|a| a == "--comment").unwrap();
        assert_eq!(
            args[comment + 1],
            format!("dnat name: \"x15net\" id: \"{ID}\"")
        );
        let shared = split_rule("-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ");
        assert_eq!(container_chain(&shared), None);
    }

    #[test]
    fn ip_json_is_read_for_namespaces_veths_and_addresses() {
        let ids = parse_netns_ids(r#"[{"name":"netns-a","id":3},{"name":"netns-b"}]"#).unwrap();
        assert_eq!(ids.get("netns-a"), Some(&3));
        assert_eq!(ids.get("netns-b"), None);
        let veths = parse_veths(
            r#"[{"ifindex":9,"ifname":"veth1","master":"cni-podman2","link_netnsid":3},{"ifname":"veth2"}]"#,
        )
        .unwrap();
        assert_eq!(veths[0].master.as_deref(), Some("cni-podman2"));
        assert_eq!(veths[0].peer_netnsid, Some(3));
        assert_eq!(veths[1].peer_netnsid, None);
        let addrs = parse_addresses(
            r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
                {"ifname":"eth0","addr_info":[{"family":"inet","local":"10.199.7.2","prefixlen":24},
                                              {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#,
        )
        .unwrap();
        assert_eq!(addrs, ["10.199.7.2/24"]);
    }

    #[test]
    fn rules_are_matched_to_an_address_exactly() {
        let dnat = "-A CNI-DN-4d58f1fe0e81a06acedb9 -d 127.0.0.1/32 -p tcp -m tcp --dport 18999 -j DNAT --to-destination 10.199.250.2:80";
        assert!(rule_references_ip(dnat, "10.199.250.2"));
        assert!(!rule_references_ip(dnat, "10.199.250.20"));
        assert!(!rule_references_ip(dnat, "10.199.250"));
        let post =
            "-A POSTROUTING -s 10.199.250.2/32 -m comment --comment \"name: \\\"x\\\"\" -j CNI-abc";
        assert!(rule_references_ip(post, "10.199.250.2"));
        assert!(!rule_references_ip(post, "10.199.250.22"));
        assert!(is_podman_bridge_name("cni-podman12"));
        assert!(!is_podman_bridge_name("cni-podman"));
        assert!(!is_podman_bridge_name("cni-podmanx"));
        assert!(!is_podman_bridge_name("docker0"));
        assert!(is_podman_bridge_name("podman3"));
        assert!(!is_podman_bridge_name("podman"));
        assert!(!is_podman_bridge_name("podmanx"));
    }

    /// The hostile case: another podman root uses an overlapping subnet, so its container has
    /// the same address as archy's stale one. Only archy's network's rules are selected.
    #[test]
    fn rules_of_an_address_are_archys_only() {
        let rules: Vec<(&'static str, String)> = [
            ("nat", r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"archy\" id: \"aa\"" -m multiport --dports 18080 -j CNI-DN-1"#),
            ("nat", "-A CNI-DN-1 -d 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.89.0.2:80"),
            ("nat", r#"-A POSTROUTING -s 10.89.0.2/32 -m comment --comment "name: \"archy\" id: \"aa\"" -j CNI-7"#),
            ("filter", "-A CNI-FORWARD -d 10.89.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            // Another root's network with the same address: CNI and netavark.
            ("nat", r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"other\" id: \"bb\"" -m multiport --dports 19090 -j CNI-DN-2"#),
            ("nat", "-A CNI-DN-2 -d 127.0.0.1/32 -p tcp -m tcp --dport 19090 -j DNAT --to-destination 10.89.0.2:80"),
            ("nat", "-A NETAVARK-DN-B5A1A0612E405 -d 127.0.0.1/32 -p tcp -m tcp --dport 18777 -j DNAT --to-destination 10.89.0.2:80"),
        ]
        .map(|(t, l)| (t, l.to_string()))
        .to_vec();
        let ips = BTreeSet::from(["10.89.0.2".to_string()]);
        let picked: Vec<&str> =
            cni_rules_of_addresses(&rules, &ips, &BTreeSet::from(["archy".to_string()]))
                .into_iter()
                .map(|(_, l)| l.as_str())
                .collect();
        assert_eq!(
            picked,
            [
                rules[1].1.as_str(),
                rules[2].1.as_str(),
                rules[3].1.as_str()
            ]
        );
    }

    #[test]
    fn scratch_namespaces_are_known_by_name() {
        assert_eq!(scratch_netns_pid("archy-heal-4242-0"), Some(4242));
        assert_eq!(scratch_netns_pid("archy-heal-4242"), None);
        assert_eq!(scratch_netns_pid("archy-heal-x-1"), None);
        assert_eq!(scratch_netns_pid("netns-0aba3b17-61c7"), None);
    }

    #[test]
    fn netavark_dnat_comments_name_container_and_network() {
        let line = "-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 18777 -m comment --comment \"dnat name: expnet id: ed9ceb6f95d148dac50aed9ea2b41806fb6ef0cb56d058d900814e23db0d6a6f\" -j NETAVARK-DN-B5A1A0612E405";
        assert_eq!(
            rule_container_id(line),
            Some("ed9ceb6f95d148dac50aed9ea2b41806fb6ef0cb56d058d900814e23db0d6a6f")
        );
        assert_eq!(rule_network(line), Some("expnet"));
        let masq = "-A NETAVARK-HOSTPORT-MASQ -m comment --comment \"netavark portfw masq mark\" -j MASQUERADE";
        assert_eq!(rule_container_id(masq), None);
        assert_eq!(rule_network(masq), None);
    }
}
