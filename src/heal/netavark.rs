//! What netavark leaves on the host for a container, read as data (pure): aardvark-dns's
//! per-network entry files, the port forwards in netavark's firewall rules (iptables chains on
//! netavark 1.4, the `inet netavark` nftables table on 1.14), and the options `netavark
//! teardown` takes to undo them. heal-podman replays netavark's own teardown for a container
//! podman forgot (its database lost, or killed behind its back) instead of editing rules by
//! hand: the rules it builds to delete are exactly the ones it built to add them.
//!
//! Sources (containers/netavark): `src/commands/teardown.rs` (teardown keeps going after the
//! container's veth is not found, so a teardown in an empty namespace still removes the
//! firewall rules and the DNS entry), `src/dns/aardvark.rs` (`commit_entry`: the entry line
//! format), `src/firewall/varktables/types.rs` (1.4: `get_port_forwarding_chains`),
//! `src/firewall/nft.rs` (1.14: `get_subnet_chain_name`, `get_dnat_port_rules`), and
//! containers/common `libnetwork/netavark/run.go` (how podman calls it).

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// Which firewall netavark programs, by what is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirewallDriver {
    /// netavark ≤ 1.x built for iptables (Debian 12's 1.4): `NETAVARK-*` chains.
    Iptables,
    /// netavark 1.14 (Debian 13): `table inet netavark`.
    Nftables,
}

impl FirewallDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallDriver::Iptables => "iptables",
            FirewallDriver::Nftables => "nftables",
        }
    }
}

/// One line of aardvark-dns's entry file of a network (`<id> <ipv4,…> <ipv6,…> <name,…>[ <dns,…>]`,
/// netavark `src/dns/aardvark.rs` `commit_entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsEntry {
    pub container_id: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub names: Vec<String>,
}

/// The entries of one aardvark-dns network file. Its first line lists the addresses the DNS
/// server listens on, not a container; a line whose first field is not a 64-hex id is skipped.
pub fn parse_dns_entries(text: &str) -> Vec<DnsEntry> {
    let list = |field: Option<&str>| -> Vec<String> {
        field
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let id = fields.next()?;
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some(DnsEntry {
                container_id: id.to_string(),
                ipv4: list(fields.next()),
                ipv6: list(fields.next()),
                names: list(fields.next()),
            })
        })
        .collect()
}

/// A published port as netavark's `PortMapping` (its JSON field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct PortMapping {
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    pub range: u16,
    pub protocol: String,
}

/// One port forward found in the firewall: `host_ip:host_port/protocol → dest_ip:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub mapping: PortMapping,
    /// The container address it forwards to.
    pub dest_ip: String,
    /// nftables: the first 8 characters of the network id its chain is named by (a network
    /// deleted and created again under the same name gets a new id and a new chain, while the
    /// old chain and its jumps stay ahead of the new one's). `None` on iptables, where netavark
    /// names chains by the network's name.
    pub chain_id: Option<String>,
}

impl Forward {
    /// `127.0.0.1:18080/tcp → 10.89.0.2:80`.
    pub fn describe(&self) -> String {
        let host = if self.mapping.host_ip.is_empty() {
            "*"
        } else {
            &self.mapping.host_ip
        };
        format!(
            "{host}:{}/{} → {}:{}",
            self.mapping.host_port,
            self.mapping.protocol,
            self.dest_ip,
            self.mapping.container_port
        )
    }
}

/// A port forward on one of archy's networks to an address no live container holds and no
/// other debris accounts for: what is left when a container's DNS entry and namespace are gone
/// but its forward is not (its teardown failed half-way, or its network was deleted and created
/// again). Its jump comes before a live container's on the same port, so the port is dark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadForward {
    pub network: String,
    pub forward: Forward,
}

impl DeadForward {
    /// One line for probe evidence.
    pub fn describe(&self) -> String {
        format!(
            "port forward {} on network {}{} goes to an address no live container holds",
            self.forward.describe(),
            self.network,
            self.forward
                .chain_id
                .as_deref()
                .map(|id| format!(" (chain of network id {id}…)"))
                .unwrap_or_default()
        )
    }

    /// The step target naming it.
    pub fn target(&self) -> String {
        format!("{} {}", self.network, self.forward.describe())
    }
}

/// netavark 1.4's port forwards of network `network` from `iptables -t nat -S` lines: the
/// `NETAVARK-HOSTPORT-DNAT` jumps commented `dnat name: <network> id: <container>` name the
/// network's `NETAVARK-DN-<hash>` chain; its `-j DNAT --to-destination` rules are the
/// forwards. Only that chain is read, so another network's (or another podman root's)
/// forwards to the same address are never taken for this one's.
pub fn iptables_forwards(nat_rules: &[String], network: &str) -> Vec<Forward> {
    let split = |l: &String| super::network::split_rule(l);
    let own = iptables_dn_chain(network);
    let chains: std::collections::BTreeSet<String> = std::iter::once(own)
        .chain(
            nat_rules
                .iter()
                .map(split)
                .filter(|a| a.get(1).map(String::as_str) == Some("NETAVARK-HOSTPORT-DNAT"))
                .filter(|a| {
                    arg_after(a, "--comment")
                        .is_some_and(|c| super::network::comment_network(c) == Some(network))
                })
                .filter_map(|a| arg_after(&a, "-j").map(String::from))
                .filter(|c| c.starts_with("NETAVARK-DN-")),
        )
        .collect();
    let mut found = Vec::new();
    for args in nat_rules.iter().map(split) {
        if !args.get(1).is_some_and(|c| chains.contains(c))
            || arg_after(&args, "-j") != Some("DNAT")
        {
            continue;
        }
        let (Some(proto), Some(dport), Some(to)) = (
            arg_after(&args, "-p"),
            arg_after(&args, "--dport"),
            arg_after(&args, "--to-destination"),
        ) else {
            continue;
        };
        let host_ip = arg_after(&args, "-d")
            .map(|d| d.trim_end_matches("/32").to_string())
            .unwrap_or_default();
        let (first, last) = match dport.split_once(':') {
            Some((a, b)) => (a.parse::<u16>().ok(), b.parse::<u16>().ok()),
            None => (dport.parse().ok(), dport.parse().ok()),
        };
        // `10.89.0.2:80`, or for a range `10.89.0.2:80-81/18080`.
        let Some((dest_ip, port)) = to.rsplit_once(':') else {
            continue;
        };
        let container_port = port
            .split(['-', '/'])
            .next()
            .and_then(|p| p.parse::<u16>().ok());
        let (Some(first), Some(last), Some(container_port)) = (first, last, container_port) else {
            continue;
        };
        found.push(Forward {
            mapping: PortMapping {
                host_ip,
                container_port,
                host_port: first,
                range: last.saturating_sub(first).saturating_add(1),
                protocol: proto.to_string(),
            },
            dest_ip: dest_ip.trim_matches(['[', ']']).to_string(),
            chain_id: None,
        });
    }
    found
}

/// netavark 1.4's port-forward chain of a network: `NETAVARK-DN-` and the first 13 hex digits
/// (upper case) of the SHA-512 of the network's name (`src/network/core_utils.rs`
/// `create_network_hash`), so it is found even when no jump to it is left.
pub fn iptables_dn_chain(network: &str) -> String {
    use sha2::Digest;
    let hash = format!("{:X}", sha2::Sha512::digest(network.as_bytes()));
    format!("NETAVARK-DN-{}", &hash[..13])
}

/// The value after flag `flag` in split rule arguments.
fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

/// netavark 1.14's DNAT chain of a network: `nv_<first 8 of its id>_<subnet with . → _ and /
/// → _nm>_dnat` (`src/firewall/nft.rs` `get_subnet_chain_name`).
pub fn nft_dnat_chain(network_id: &str, subnet: &str) -> String {
    let id: String = network_id.chars().take(8).collect();
    let subnet = subnet
        .replace('.', "_")
        .replace(':', "-")
        .replace('/', "_nm");
    format!("nv_{id}_{subnet}_dnat")
}

/// The DNAT chains netavark 1.14 made for `subnet` in `nft -j list table inet netavark`, with
/// the network-id prefix each is named by: the current network's and any an earlier network of
/// the same subnet left behind.
pub fn nft_dnat_chains_for(json: &str, subnet: &str) -> Result<Vec<(String, String)>> {
    let doc: Value = serde_json::from_str(json).context("`nft -j list table` is not JSON")?;
    let suffix = nft_dnat_chain("", subnet);
    let suffix = suffix.trim_start_matches("nv_");
    let mut chains: Vec<(String, String)> = doc
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("chain")?.get("name")?.as_str())
        .filter_map(|name| {
            let id = name.strip_prefix("nv_")?.strip_suffix(suffix)?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_string(), id.to_string()))
        })
        .collect();
    chains.sort();
    chains.dedup();
    Ok(chains)
}

/// netavark 1.14's port forwards in chain `chain` of `nft -j list table inet netavark`:
/// rules `[ip daddr H] <proto> dport P dnat ip to A:C` (`get_dnat_port_rules`: one rule per
/// port, so a range shows as single ports).
pub fn nft_forwards(json: &str, chain: &str) -> Result<Vec<Forward>> {
    let doc: Value = serde_json::from_str(json).context("`nft -j list table` is not JSON")?;
    let mut found = Vec::new();
    for rule in doc
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r.get("chain").and_then(Value::as_str) == Some(chain))
    {
        let mut host_ip = String::new();
        let mut proto_port: Option<(String, u16)> = None;
        let mut dnat: Option<(String, u16)> = None;
        for stmt in rule
            .get("expr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(m) = stmt.get("match") {
                let field = m.pointer("/left/payload/field").and_then(Value::as_str);
                let protocol = m.pointer("/left/payload/protocol").and_then(Value::as_str);
                match (protocol, field) {
                    (Some("ip" | "ip6"), Some("daddr")) => {
                        host_ip = m
                            .get("right")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                    }
                    (Some(p), Some("dport")) => {
                        if let Some(port) = m.get("right").and_then(Value::as_u64) {
                            proto_port = u16::try_from(port).ok().map(|port| (p.to_string(), port));
                        }
                    }
                    _ => {}
                }
            } else if let Some(d) = stmt.get("dnat") {
                let addr = d.get("addr").and_then(Value::as_str);
                let port = d.get("port").and_then(Value::as_u64);
                if let (Some(addr), Some(port)) = (addr, port) {
                    dnat = u16::try_from(port).ok().map(|p| (addr.to_string(), p));
                }
            }
        }
        if let (Some((protocol, host_port)), Some((dest_ip, container_port))) = (proto_port, dnat) {
            found.push(Forward {
                mapping: PortMapping {
                    host_ip: host_ip.clone(),
                    container_port,
                    host_port,
                    range: 1,
                    protocol,
                },
                dest_ip,
                chain_id: chain
                    .strip_prefix("nv_")
                    .and_then(|rest| rest.split('_').next())
                    .map(String::from),
            });
        }
    }
    Ok(found)
}

/// What `netavark teardown` reads on stdin for one container on one network: podman's
/// `NetworkOptions` (containers/common `libnetwork/types/network.go`, JSON names as netavark's
/// `src/network/types.rs`). `network_json`: the network's own JSON (its config file, or
/// `podman network inspect`), passed through as podman does.
pub fn teardown_options(
    container_id: &str,
    container_name: &str,
    network: &str,
    ips: &[String],
    mappings: &[PortMapping],
    network_json: &Value,
) -> Value {
    serde_json::json!({
        "container_id": container_id,
        "container_name": container_name,
        "port_mappings": mappings,
        "networks": {
            network: {
                "static_ips": ips,
                "interface_name": "eth0",
                "aliases": [],
            }
        },
        "network_info": { network: network_json },
    })
}

/// Whether a failed `netavark teardown` failed only on things already gone: the container's
/// interface not in the namespace it was given (what a replay in a fresh, empty namespace
/// reports after removing the firewall rules and the DNS entry: `failed to delete container
/// veth eth0: Netlink error: No such device`), or a chain that no longer exists (iptables: `No
/// chain/target/match by that name`, e.g. after the rules were flushed by a reboot).
pub fn only_already_gone(said: &str) -> bool {
    let text = said.trim();
    !text.is_empty()
        && text.lines().all(|line| {
            let line = line.trim();
            line.is_empty()
                || line.contains("failed to syslog")
                || (line.contains("veth") && line.contains("No such device"))
                || line.contains("No chain/target/match by that name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ed9ceb6f95d148dac50aed9ea2b41806fb6ef0cb56d058d900814e23db0d6a6f";

    /// Captured from netavark 1.4.0 (Debian 12) on this machine kind: two networks publishing
    /// 127.0.0.1:18081 (archy-demo) and 127.0.0.1:18777 (expnet).
    const NAT: &str = include_str!("../../tests/fixtures/heal-netavark-iptables-nat.txt");

    fn nat() -> Vec<String> {
        NAT.lines()
            .filter(|l| l.starts_with("-A "))
            .map(String::from)
            .collect()
    }

    #[test]
    fn dns_entries_skip_the_listen_line_and_keep_empty_fields_apart() {
        let text = format!("10.77.0.1\n{ID} 10.77.0.2  web,ed9ceb6f95d1\nnot an entry line\n");
        assert_eq!(
            parse_dns_entries(&text),
            vec![DnsEntry {
                container_id: ID.into(),
                ipv4: vec!["10.77.0.2".into()],
                ipv6: vec![],
                names: vec!["web".into(), "ed9ceb6f95d1".into()],
            }]
        );
        // netavark 1.14 may add the container's DNS servers as a fifth field.
        let text = format!("10.89.0.1 1.1.1.1\n{ID} 10.89.0.5 fd00::5 app 9.9.9.9\n");
        assert_eq!(parse_dns_entries(&text)[0].ipv6, vec!["fd00::5"]);
        assert!(parse_dns_entries("").is_empty());
    }

    #[test]
    fn iptables_forwards_are_read_from_the_networks_own_chain_only() {
        let forwards = iptables_forwards(&nat(), "expnet");
        assert_eq!(
            forwards,
            vec![Forward {
                mapping: PortMapping {
                    host_ip: "127.0.0.1".into(),
                    container_port: 80,
                    host_port: 18777,
                    range: 1,
                    protocol: "tcp".into(),
                },
                dest_ip: "10.77.0.2".into(),
                chain_id: None,
            }]
        );
        let other = iptables_forwards(&nat(), "archy-demo");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].dest_ip, "10.89.250.4");
        assert!(iptables_forwards(&nat(), "nosuchnet").is_empty());
    }

    #[test]
    fn iptables_chains_are_named_by_the_hash_of_the_network_name() {
        // Both seen in the captured rules: expnet's and archy-demo's chains.
        assert_eq!(iptables_dn_chain("expnet"), "NETAVARK-DN-B5A1A0612E405");
        assert_eq!(iptables_dn_chain("archy-demo"), "NETAVARK-DN-F594E7145C074");
        // With no jump left to it, the chain is still read.
        let rules: Vec<String> = nat()
            .into_iter()
            .filter(|l| !l.starts_with("-A NETAVARK-HOSTPORT-DNAT"))
            .collect();
        assert_eq!(iptables_forwards(&rules, "expnet").len(), 1);
    }

    #[test]
    fn iptables_port_ranges_and_unbound_host_addresses_are_read() {
        let rules: Vec<String> = [
            r#"-A NETAVARK-HOSTPORT-DNAT -p udp -m udp --dport 5000:5001 -m comment --comment "dnat name: n id: abc" -j NETAVARK-DN-AAA"#,
            "-A NETAVARK-DN-AAA -p udp -m udp --dport 5000:5001 -j DNAT --to-destination 10.1.0.9:6000-6001/5000",
        ]
        .map(String::from)
        .to_vec();
        let f = iptables_forwards(&rules, "n");
        assert_eq!(
            f[0].mapping,
            PortMapping {
                host_ip: String::new(),
                container_port: 6000,
                host_port: 5000,
                range: 2,
                protocol: "udp".into()
            }
        );
        assert_eq!(f[0].dest_ip, "10.1.0.9");
    }

    #[test]
    fn dnat_comments_name_network_and_container() {
        use super::super::network::{comment_container, comment_network};
        let c = format!("dnat name: archy id: {ID}");
        assert_eq!(comment_network(&c), Some("archy"));
        assert_eq!(comment_container(&c), Some(ID));
        assert_eq!(comment_network("netavark portfw masq mark"), None);
        assert_eq!(comment_container("dnat name: x id: "), None);
    }

    #[test]
    fn nft_chain_name_follows_netavark() {
        assert_eq!(
            nft_dnat_chain("d3a4145d8a1b42cb", "10.89.0.0/24"),
            "nv_d3a4145d_10_89_0_0_nm24_dnat"
        );
    }

    #[test]
    fn nft_forwards_are_read_from_the_chain() {
        // The shape `nft -j list table inet netavark` prints for netavark 1.14's rules.
        let json = r#"{"nftables":[{"metainfo":{"version":"1.1.3"}},
          {"rule":{"family":"inet","table":"netavark","chain":"nv_d3a4145d_10_89_0_0_nm24_dnat","handle":31,
            "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"127.0.0.1"}},
                    {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":18080}},
                    {"dnat":{"addr":"10.89.0.2","family":"ip","port":80}}]}},
          {"rule":{"family":"inet","table":"netavark","chain":"nv_d3a4145d_10_89_0_0_nm24_dnat","handle":30,
            "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"127.0.0.1"}},
                    {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":18080}},
                    {"jump":{"target":"NETAVARK-HOSTPORT-SETMARK"}}]}},
          {"rule":{"family":"inet","table":"netavark","chain":"nv_ffffffff_10_89_0_0_nm24_dnat","handle":40,
            "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":18080}},
                    {"dnat":{"addr":"10.89.0.2","family":"ip","port":80}}]}}]}"#;
        let f = nft_forwards(json, "nv_d3a4145d_10_89_0_0_nm24_dnat").unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].mapping.host_ip, "127.0.0.1");
        assert_eq!(f[0].mapping.host_port, 18080);
        assert_eq!(f[0].mapping.container_port, 80);
        assert_eq!(f[0].dest_ip, "10.89.0.2");
        assert_eq!(f[0].chain_id.as_deref(), Some("d3a4145d"));
        assert!(nft_forwards("not json", "x").is_err());
    }

    /// archy's network deleted behind podman's back and created again: a new id, a new chain,
    /// while the old chain stays. Both are archy's subnet's; another subnet's is not.
    #[test]
    fn nft_chains_of_a_subnet_include_those_an_earlier_network_left() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.1.3"}},
          {"chain":{"family":"inet","table":"netavark","name":"nv_5abf732f_10_89_0_0_nm24_dnat","handle":9}},
          {"chain":{"family":"inet","table":"netavark","name":"nv_77aa0011_10_89_0_0_nm24_dnat","handle":21}},
          {"chain":{"family":"inet","table":"netavark","name":"nv_77aa0011_10_89_0_0_nm24","handle":20}},
          {"chain":{"family":"inet","table":"netavark","name":"nv_12345678_10_89_1_0_nm24_dnat","handle":30}}]}"#;
        let chains = nft_dnat_chains_for(json, "10.89.0.0/24").unwrap();
        assert_eq!(
            chains,
            vec![
                (
                    "nv_5abf732f_10_89_0_0_nm24_dnat".to_string(),
                    "5abf732f".to_string()
                ),
                (
                    "nv_77aa0011_10_89_0_0_nm24_dnat".to_string(),
                    "77aa0011".to_string()
                ),
            ]
        );
    }

    #[test]
    fn teardown_options_carry_podmans_field_names() {
        let net = serde_json::json!({"name": "archy", "id": "abc"});
        let m = PortMapping {
            host_ip: "127.0.0.1".into(),
            container_port: 80,
            host_port: 18080,
            range: 1,
            protocol: "tcp".into(),
        };
        let v = teardown_options(ID, "archy-web", "archy", &["10.89.0.2".into()], &[m], &net);
        assert_eq!(v["container_id"], ID);
        assert_eq!(v["port_mappings"][0]["host_port"], 18080);
        assert_eq!(v["networks"]["archy"]["static_ips"][0], "10.89.0.2");
        assert_eq!(v["networks"]["archy"]["interface_name"], "eth0");
        assert_eq!(v["network_info"]["archy"]["id"], "abc");
    }

    #[test]
    fn a_replay_fails_benignly_only_on_what_is_already_gone() {
        assert!(only_already_gone(
            r#"{"error":"failed to delete container veth eth0: Netlink error: No such device (os error 19)"}"#
        ));
        assert!(only_already_gone(
            r#"{"error":"code: 1, msg: iptables: No chain/target/match by that name.\n"}"#
        ));
        assert!(!only_already_gone(
            r#"{"error":"unable to delete rule: iptables: Permission denied"}"#
        ));
        assert!(!only_already_gone(""));
    }
}
