//! The soak's invariants, checked after every fault.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{consumer_password, http_get, rpcauth_hmac, sha256, Node, APPS};
use crate::common::*;

impl Node {
    // ---- the invariants ----

    pub(super) fn check(&mut self, after: &str) {
        let containers = self.root.containers();
        let stray: Vec<String> = containers
            .iter()
            .filter_map(|c| {
                let name = c["Names"][0].as_str().unwrap_or("?");
                let app = name.strip_prefix("archy-");
                let ok = app.is_some_and(|a| APPS.contains(&a))
                    && c["Labels"]["io.archy.app"].as_str() == app
                    && c["State"] == "running";
                (!ok).then(|| format!("{name} ({})", c["State"].as_str().unwrap_or("?")))
            })
            .collect();
        if !stray.is_empty() || containers.len() != APPS.len() {
            self.fail(&format!(
                "after {after}: containers not exactly the running apps: {stray:?}"
            ));
        }
        let inspect = self.inspect();
        self.check_processes(&inspect);
        self.check_network(&inspect);
        let status = self.archy(&["status"]);
        self.expect(&status, 0, &format!("after {after}: archy status"));
        let check = self.archy(&["render-config", "--check"]);
        self.expect(&check, 0, &format!("after {after}: render-config --check"));
        self.check_configs(&inspect);
        self.check_data();
        self.check_releases();
    }

    fn check_configs(&self, inspect: &[serde_json::Value]) {
        let Some((user, password)) = self.secret() else {
            self.fail("the canonical secret is unreadable");
        };
        let read = |f: &str| std::fs::read_to_string(self.cfg.join(f)).unwrap_or_default();
        let bitcoin = read("bitcoin.conf");
        // bitcoin.conf's rpcauth line for `u` proves password `p` (Bitcoin Core's rpcauth.py).
        let authorised = |u: &str, p: &str| {
            bitcoin
                .lines()
                .filter_map(|l| l.strip_prefix("rpcauth="))
                .filter_map(|v| v.split_once(':'))
                .filter_map(|(lu, rest)| rest.split_once('$').map(|(s, h)| (lu, s, h)))
                .filter(|(lu, _, _)| *lu == u)
                .map(|(_, salt, h)| h == rpcauth_hmac(salt, p))
                .collect::<Vec<_>>()
                == [true]
        };
        // A consumer's credentials: the canonical ones, or (least-privilege RPC users) its own
        // user with a password derived from the canonical one.
        let derived = |u: &str, p: &str| {
            (u == user && p == password) || (u != user && p == consumer_password(&password, u))
        };
        let canonical_ok = authorised(&user, &password);
        let lnd = read("lnd.conf");
        let value = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .to_string()
        };
        let (lu, lp) = (
            value(&lnd, "bitcoind.rpcuser="),
            value(&lnd, "bitcoind.rpcpass="),
        );
        let lnd_ok = derived(&lu, &lp) && authorised(&lu, &lp);
        let env = read("electrumx.env");
        let daemon = env
            .lines()
            .find(|l| l.starts_with("DAEMON_URL="))
            .unwrap_or("");
        let (eu, ep) = daemon
            .strip_prefix("DAEMON_URL=http://")
            .and_then(|r| r.split_once('@'))
            .and_then(|(cred, _)| cred.split_once(':'))
            .unwrap_or(("", ""));
        let env_ok = derived(eu, ep) && authorised(eu, ep);
        if !(canonical_ok && lnd_ok && env_ok) {
            self.fail(&format!(
                "configs inconsistent with the secret: bitcoin.conf canonical rpcauth {canonical_ok}, lnd.conf (user {lu}) {lnd_ok}, electrumx.env (user {eu}) {env_ok}"
            ));
        }
        let indexer = inspect
            .iter()
            .find(|c| c["Name"] == "archy-indexer")
            .unwrap();
        let sees = indexer["Config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(daemon)));
        if !sees {
            self.fail("archy-indexer's environment lacks electrumx.env's DAEMON_URL");
        }
        for (app, file) in [("node", "bitcoin.conf"), ("lnd", "lnd.conf")] {
            let served = self.get(app, &format!("/etc/{file}"));
            if served != read(file).as_bytes() {
                self.fail(&format!(
                    "archy-{app} sees another {file} than the rendered one"
                ));
            }
        }
    }

    /// GET with retries (a container just started may not listen yet); fails the soak when the
    /// app never answers 200.
    fn get(&self, app: &str, path: &str) -> Vec<u8> {
        let port = self.ports[app];
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match http_get(port, path) {
                Ok((200, body)) => return body,
                other if Instant::now() > until => self.fail(&format!(
                    "archy-{app} does not answer GET {path} on 127.0.0.1:{port}: {:?}",
                    other.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
                )),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    fn check_data(&self) {
        for what in ["node", "lnd", "indexer", "cache"] {
            let path = self.blob_path(what);
            let on_disk = std::fs::read(&path).map(|b| sha256(&b)).unwrap_or_default();
            if on_disk != self.sums[what] {
                self.fail(&format!("data lost: {} changed or missing", path.display()));
            }
            let (app, url) = match what {
                "cache" => ("indexer", "/cache/blob"),
                app => (app, "/data/blob"),
            };
            if sha256(&self.get(app, url)) != self.sums[what] {
                self.fail(&format!(
                    "archy-{app} serves another {url} than its volume holds"
                ));
            }
        }
    }

    fn check_releases(&self) {
        let whole = |link: &str| {
            let target = self.link(link);
            let v = target.strip_prefix("releases/").unwrap_or("?");
            let dir = self.opt.join(&target);
            std::fs::read_to_string(dir.join("web-ui/index.html")).ok()
                == Some(format!("release {v}"))
                && dir.join("bin/archipelago").exists()
        };
        if !whole("current") || !whole("previous") {
            self.fail(&format!(
                "not a whole release: current -> {}, previous -> {}",
                self.link("current"),
                self.link("previous")
            ));
        }
        let extra: Vec<String> = std::fs::read_dir(&self.opt)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !["releases", "current", "previous"].contains(&n.as_str()))
            .collect();
        if !extra.is_empty() {
            self.fail(&format!("left in the install root: {extra:?}"));
        }
    }

    fn check_processes(&self, inspect: &[serde_json::Value]) {
        let ids: BTreeSet<String> = inspect
            .iter()
            .map(|c| c["Id"].as_str().unwrap().to_string())
            .collect();
        let runc: BTreeSet<String> = runc_ids_under(&self.root.dir).into_iter().collect();
        if runc != ids {
            self.fail(&format!(
                "OCI containers {runc:?}, podman's {ids:?}: a ghost"
            ));
        }
        let conmons = conmons_under(&self.root.dir).len();
        if conmons != APPS.len() {
            self.fail(&format!(
                "{conmons} conmon processes for {} containers",
                APPS.len()
            ));
        }
    }

    fn prefix(&self) -> String {
        let (net, _) = self.root.gateway.rsplit_once('.').unwrap();
        format!("{net}.")
    }

    fn check_network(&self, inspect: &[serde_json::Value]) {
        let prefix = self.prefix();
        let mut sandboxes: BTreeSet<String> = BTreeSet::new();
        for c in inspect {
            let key = c["NetworkSettings"]["SandboxKey"].as_str().unwrap_or("");
            sandboxes.insert(key.rsplit('/').next().unwrap_or("").to_string());
        }
        let mut netns = BTreeSet::new();
        for e in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let out = Command::new("ip")
                .args(["-n", &name, "-o", "-4", "addr", "show"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("inet {prefix}")) {
                netns.insert(name);
            }
        }
        if netns != sandboxes {
            self.fail(&format!(
                "network namespaces on {prefix}0/24: {netns:?}, the containers': {sandboxes:?}"
            ));
        }
        let addrs = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .unwrap();
        let holders: Vec<String> = String::from_utf8_lossy(&addrs.stdout)
            .lines()
            .filter(|l| l.contains(&format!("inet {}/", self.root.gateway)))
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        let Some(bridge) = self.bridge() else {
            self.fail("archy's network has no bridge");
        };
        if holders != [bridge.clone()] {
            self.fail(&format!(
                "interfaces holding the gateway {}: {holders:?} (bridge {bridge})",
                self.root.gateway
            ));
        }
        let veths = Command::new("ip")
            .args(["-o", "link", "show", "master", &bridge])
            .output()
            .unwrap();
        let veths = String::from_utf8_lossy(&veths.stdout).lines().count();
        if veths != APPS.len() {
            self.fail(&format!(
                "{veths} veths on {bridge} for {} containers",
                APPS.len()
            ));
        }
        if network_backend() == "netavark" {
            // podman's IPAM reserves one address per live container, none for a dead one.
            let mut held: Vec<String> = ipam_allocations(&self.root.network)
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            held.sort();
            let mut live: Vec<String> = inspect
                .iter()
                .filter_map(|c| c["Id"].as_str().map(String::from))
                .collect();
            live.sort();
            if held != live {
                self.fail(&format!(
                    "IP reservations on {}: {held:?}, the containers: {live:?}",
                    self.root.network
                ));
            }
        }
        let rules = self.firewall_rules(inspect);
        if rules != self.firewall_baseline {
            let extra: Vec<&String> = rules
                .iter()
                .filter(|r| !self.firewall_baseline.contains(r))
                .collect();
            let missing: Vec<&String> = self
                .firewall_baseline
                .iter()
                .filter(|r| !rules.contains(r))
                .collect();
            self.fail(&format!("firewall rules differ from the first converge's: extra {extra:#?}, missing {missing:#?}"));
        }
    }

    /// The firewall rules (nat and filter) that mention this root's subnet, network or ports,
    /// normalised: a live container's id and address become its app's name, per-container
    /// chain names a placeholder; anything else stays as is (and so shows up as a difference).
    pub(super) fn firewall_rules(&self, inspect: &[serde_json::Value]) -> Vec<String> {
        let prefix = self.prefix();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for c in inspect {
            let app = c["Name"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches("archy-")
                .to_string();
            names.insert(
                c["Id"].as_str().unwrap_or("?").to_string(),
                format!("<{app}-id>"),
            );
            let ip = c["NetworkSettings"]["Networks"][&self.root.network]["IPAddress"]
                .as_str()
                .unwrap_or("?");
            names.insert(ip.to_string(), format!("<{app}-ip>"));
        }
        let ports: Vec<String> = self
            .ports
            .values()
            .map(std::string::ToString::to_string)
            .collect();
        let net = format!("\\\"{}\\\"", self.root.network);
        let mut rules = Vec::new();
        for table in ["nat", "filter"] {
            let out = Command::new("iptables")
                .args(["-t", table, "-S"])
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mentions = line.contains(&prefix)
                    || line.contains(&net)
                    || line
                        .split(|c: char| !c.is_ascii_digit())
                        .any(|t| ports.iter().any(|p| p == t));
                if !line.starts_with("-A ") || !mentions {
                    continue;
                }
                let normal: Vec<String> = line
                    .split(' ')
                    .map(|tok| {
                        let bare = tok.trim_matches(|c| c == '"' || c == '\\');
                        let (addr, rest) = match bare.find(['/', ':']) {
                            Some(i) => bare.split_at(i),
                            None => (bare, ""),
                        };
                        if let Some(n) = names.get(addr) {
                            format!("{n}{rest}")
                        } else if (bare.starts_with("CNI-") || bare.starts_with("NETAVARK-"))
                            && bare.rsplit('-').next().is_some_and(|h| {
                                h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit())
                            })
                        {
                            let kind = bare.rsplit_once('-').unwrap().0;
                            format!("{kind}-<chain>")
                        } else {
                            tok.to_string()
                        }
                    })
                    .collect();
                rules.push(format!("{table}: {}", normal.join(" ")));
            }
        }
        rules.sort();
        rules
    }
}
