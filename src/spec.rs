//! The desired container of an app, reduced to a spec hash, and the `podman run` argv that
//! creates it. Pure: everything here is decided from the manifest and resolved inputs.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use crate::podman::{LABEL_APP, LABEL_MANAGED, LABEL_SPEC_HASH, LABEL_SUBNET};

/// Hostname containers use to reach the host, mapped to the network's gateway with `--add-host`:
/// never `host.containers.internal`, which some podman versions resolve to the LAN gateway.
pub const HOST_ALIAS: &str = "host.archipelago";

/// Bumped when the meaning of a spec changes, so every container is recreated once.
const SPEC_VERSION: &str = "archy-spec-v1";

/// Everything that shapes an app's container. Field order and BTreeMaps make the JSON encoding
/// canonical, so equal specs always hash equal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub app: String,
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub env_files: Vec<String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub network: String,
    pub add_hosts: Vec<String>,
    pub restart: Option<String>,
    pub stop_timeout: Option<u32>,
    /// sha256 of every file the app consumes (rendered configs, env files), by path: a changed
    /// file changes the hash, so the consumer is recreated and reads it.
    pub file_hashes: BTreeMap<String, String>,
    /// The log driver and bound the container gets (always one: the default bounds a manifest
    /// that says nothing, see `manifest::resources::DEFAULT_LOG_MAX_SIZE`).
    pub logging: crate::manifest::Logging,
    /// Memory, CPU and process limits; left out of the encoding when none is given, so an app
    /// without `resources:` hashes as before the key existed.
    #[serde(skip_serializing_if = "crate::manifest::Resources::is_empty")]
    pub resources: crate::manifest::Resources,
    /// The subnet of archy's network when the container joins it, recorded as a label so a
    /// recreate can skip re-checking the network (not hashed: the gateway in `add_hosts` already
    /// changes the hash when the subnet changes).
    #[serde(skip)]
    pub subnet: Option<String>,
    /// The app's probe: archy runs it from outside the container, so it is not part of the
    /// container (not hashed, no `--health-cmd`); Quadlet units map `exec` probes to `HealthCmd=`.
    #[serde(skip)]
    pub health: Option<crate::manifest::HealthSpec>,
}

/// Inputs resolved outside the manifest.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub image: String,
    pub default_network: &'a str,
    pub subnet: &'a str,
    pub gateway: &'a str,
    pub file_hashes: BTreeMap<String, String>,
}

impl ContainerSpec {
    pub fn from_manifest(m: &Manifest, resolved: Resolved<'_>) -> Self {
        let network = m.network_or(resolved.default_network).to_string();
        let add_hosts = if matches!(network.as_str(), "host" | "none") {
            Vec::new()
        } else {
            vec![format!("{HOST_ALIAS}:{}", resolved.gateway)]
        };
        let subnet = (network == resolved.default_network).then(|| resolved.subnet.to_string());
        ContainerSpec {
            subnet,
            app: m.app.clone(),
            name: m.container_name(),
            image: resolved.image,
            command: m.command.clone(),
            env: m
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            env_files: m
                .env_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            ports: m
                .ports
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            volumes: m
                .volumes
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            network,
            add_hosts,
            restart: m.restart.map(|r| r.to_string()),
            stop_timeout: m.stop_timeout,
            file_hashes: resolved.file_hashes,
            logging: crate::manifest::Logging::effective(m.logging.as_ref()),
            resources: m.resources.clone().unwrap_or_default(),
            health: m.health.clone(),
        }
    }

    /// sha256 (hex) over the canonical encoding.
    pub fn hash(&self) -> String {
        let encoded = serde_json::to_vec(self).expect("a spec always serialises");
        let mut hasher = Sha256::new();
        hasher.update(SPEC_VERSION.as_bytes());
        hasher.update(b"\n");
        hasher.update(&encoded);
        hex::encode(hasher.finalize())
    }

    /// Arguments after `podman run`: detached, labelled, never pulling (the image was resolved
    /// before), the image and command last.
    pub fn run_args(&self, spec_hash: &str) -> Vec<String> {
        self.run_args_carrying(spec_hash, &[])
    }

    /// Container paths the spec mounts a volume or bind mount on (`src:dst[:opts]` or `dst`).
    pub fn volume_destinations(&self) -> Vec<String> {
        self.volumes.iter().map(|v| volume_destination(v)).collect()
    }

    /// `run_args` plus `--volume NAME:DEST` for each carried-over anonymous volume (not part of
    /// the spec hash: the same container again carries the same volumes).
    pub fn run_args_carrying(&self, spec_hash: &str, carried: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-d".into(),
            "--pull=never".into(),
            "--name".into(),
            self.name.clone(),
        ];
        for (key, value) in [
            (LABEL_MANAGED, "true"),
            (LABEL_APP, self.app.as_str()),
            (LABEL_SPEC_HASH, spec_hash),
        ] {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        if let Some(subnet) = &self.subnet {
            args.push("--label".into());
            args.push(format!("{LABEL_SUBNET}={subnet}"));
        }
        args.push("--network".into());
        args.push(self.network.clone());
        for host in &self.add_hosts {
            args.push("--add-host".into());
            args.push(host.clone());
        }
        for file in &self.env_files {
            args.push("--env-file".into());
            args.push(file.clone());
        }
        for (key, value) in &self.env {
            args.push("--env".into());
            args.push(format!("{key}={value}"));
        }
        for port in &self.ports {
            args.push("--publish".into());
            args.push(port.clone());
        }
        for volume in self.volumes.iter().chain(carried) {
            args.push("--volume".into());
            args.push(volume.clone());
        }
        if let Some(restart) = &self.restart {
            args.push("--restart".into());
            args.push(restart.clone());
        }
        if let Some(timeout) = self.stop_timeout {
            args.push("--stop-timeout".into());
            args.push(timeout.to_string());
        }
        args.extend(self.logging.podman_args());
        let mut resources = self.resources.podman_args();
        // A negative OOM score needs CAP_SYS_RESOURCE: without it the container would not start
        // at all, which is worse than the kernel's default order. Left out, with a warning.
        if let Some(at) = resources.iter().position(|a| a == "--oom-score-adj") {
            let negative = resources.get(at + 1).is_some_and(|v| v.starts_with('-'));
            if negative && !crate::procinfo::can_lower_oom_score() {
                tracing::warn!(
                    "{}: oom_score_adj {} not applied: lowering an OOM score needs CAP_SYS_RESOURCE, which this process lacks",
                    self.app,
                    resources[at + 1]
                );
                resources.drain(at..at + 2);
            }
        }
        args.extend(resources);
        // `--` keeps an image or command starting with `-` from being read as an option.
        args.push("--".into());
        args.push(self.image.clone());
        if let Some(command) = &self.command {
            args.extend(command.iter().cloned());
        }
        args
    }
}

/// sha256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The gateway of an IPv4 subnet in CIDR form: its first host address.
pub fn gateway_of(subnet: &str) -> Result<String, String> {
    let (addr, prefix) = subnet
        .split_once('/')
        .ok_or_else(|| format!("`{subnet}` is not CIDR (a.b.c.d/N)"))?;
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{subnet}`: `{addr}` is not an IPv4 address"))?;
    let prefix: u32 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("`{subnet}`: prefix must be 8..30"))?;
    let mask = u32::MAX << (32 - prefix);
    let network = u32::from(addr) & mask;
    if network != u32::from(addr) {
        return Err(format!(
            "`{subnet}`: host bits are set (network address is {}/{prefix})",
            std::net::Ipv4Addr::from(network)
        ));
    }
    Ok(std::net::Ipv4Addr::from(network + 1).to_string())
}

/// The container path of a `--volume` value: `src:dst[:opts]` → dst, `dst` → dst.
pub fn volume_destination(volume: &str) -> String {
    let mut parts = volume.split(':');
    let first = parts.next().unwrap_or("");
    parts.next().unwrap_or(first).to_string()
}

/// podman names an anonymous volume (an image's `VOLUME` without a manifest volume there) with
/// 64 random hex digits.
pub fn is_anonymous_volume_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The anonymous volumes of a container being replaced that its replacement must mount again at
/// the same paths (compose does the same): volume mounts with a podman-generated name on a path
/// the new spec does not mount anything on. Returns `NAME:DEST` values for `--volume`.
pub fn carried_anonymous_volumes(
    old: &[crate::podman::Mount],
    new_destinations: &[String],
) -> Vec<String> {
    old.iter()
        .filter(|m| m.kind == "volume" && is_anonymous_volume_name(&m.name))
        .filter(|m| !new_destinations.iter().any(|d| d == &m.destination))
        .map(|m| format!("{}:{}", m.name, m.destination))
        .collect()
}

/// Whether a listed container (ps `Mounts`: destinations) may hold a volume the spec does not
/// declare, so that carrying anonymous volumes over needs an inspect.
pub fn may_hold_anonymous_volumes(listed_mounts: &[String], new_destinations: &[String]) -> bool {
    listed_mounts
        .iter()
        .any(|m| !new_destinations.iter().any(|d| d == m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;

    fn spec(yaml: &str) -> ContainerSpec {
        let m = parse(yaml).unwrap();
        ContainerSpec::from_manifest(
            &m,
            Resolved {
                image: m.image.clone().unwrap_or_default(),
                default_network: "archy",
                subnet: "10.89.0.0/24",
                gateway: "10.89.0.1",
                file_hashes: BTreeMap::new(),
            },
        )
    }

    #[test]
    fn anonymous_volumes_are_carried_to_paths_the_spec_leaves_free() {
        use crate::podman::Mount;
        let anon = "32d8e92d96b94f96debbc13e99315ec5974fe2e09c327969b5c4807e6b1f27c1";
        let old = vec![
            Mount {
                kind: "volume".into(),
                name: anon.into(),
                destination: "/data".into(),
                ..Default::default()
            },
            Mount {
                kind: "volume".into(),
                name: "named1".into(),
                destination: "/named".into(),
                ..Default::default()
            },
            Mount {
                kind: "bind".into(),
                name: String::new(),
                destination: "/etc/x".into(),
                ..Default::default()
            },
            Mount {
                kind: "volume".into(),
                name: anon.replace('3', "4"),
                destination: "/taken".into(),
                ..Default::default()
            },
        ];
        let s = spec("app: web\nimage: localhost/web:1\nvolumes: [\"named1:/named\", \"/srv/t:/taken:ro\"]\n");
        let dests = s.volume_destinations();
        assert_eq!(dests, ["/named", "/taken"]);
        let carried = carried_anonymous_volumes(&old, &dests);
        assert_eq!(carried, [format!("{anon}:/data")]);
        let args = s.run_args_carrying("h", &carried);
        let pos = args.iter().position(|a| a == &carried[0]).unwrap();
        assert_eq!(args[pos - 1], "--volume");
        assert!(pos < args.iter().position(|a| a == "localhost/web:1").unwrap());
        assert!(may_hold_anonymous_volumes(
            &["/data".into(), "/named".into()],
            &dests
        ));
        assert!(!may_hold_anonymous_volumes(&["/named".into()], &dests));
        assert!(!is_anonymous_volume_name("named1"));
    }

    #[test]
    fn run_args_are_exact() {
        let s = spec("app: web\nimage: localhost/web:1\ncommand: [httpd, -f]\nenv: {B: 2, A: x y}\nports: [\"127.0.0.1:8081:80\"]\nvolumes: [\"data:/data\"]\nrestart: unless-stopped\nstop_timeout: 600\n");
        let args = s.run_args("abc");
        let expected: Vec<&str> = vec![
            "-d",
            "--pull=never",
            "--name",
            "archy-web",
            "--label",
            "io.archy.managed=true",
            "--label",
            "io.archy.app=web",
            "--label",
            "io.archy.spec-hash=abc",
            "--label",
            "io.archy.subnet=10.89.0.0/24",
            "--network",
            "archy",
            "--add-host",
            "host.archipelago:10.89.0.1",
            "--env",
            "A=x y",
            "--env",
            "B=2",
            "--publish",
            "127.0.0.1:8081:80",
            "--volume",
            "data:/data",
            "--restart",
            "unless-stopped",
            "--stop-timeout",
            "600",
            "--log-driver",
            "k8s-file",
            "--log-opt",
            "max-size=10m",
            "--",
            "localhost/web:1",
            "httpd",
            "-f",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = spec("app: web\nimage: i\nenv: {A: 1, B: 2}\n");
        let b = spec("app: web\nimage: i\nenv: {B: 2, A: 1}\n");
        assert_eq!(a.hash(), b.hash(), "key order does not matter");
        assert_eq!(a.hash().len(), 64);
        let c = spec("app: web\nimage: i\nenv: {A: 1, B: 3}\n");
        assert_ne!(a.hash(), c.hash());
        let mut d = a.clone();
        d.file_hashes.insert("/x".into(), "00".into());
        assert_ne!(a.hash(), d.hash());
    }

    #[test]
    fn logging_and_resources_are_hashed_and_passed_and_absent_resources_leave_no_trace() {
        let plain = spec("app: web\nimage: i\n");
        let encoded = serde_json::to_string(&plain).unwrap();
        assert!(
            encoded.contains(r#""logging":{"driver":"k8s-file","max_size":"10m"}"#),
            "{encoded}"
        );
        assert!(!encoded.contains("resources"), "{encoded}");
        let bounded = spec("app: web\nimage: i\nlogging: {max_size: 1m}\n");
        assert_ne!(plain.hash(), bounded.hash());
        let limited = spec("app: web\nimage: i\nresources: {memory: 64m, oom_score_adj: 500}\n");
        assert_ne!(plain.hash(), limited.hash());
        let args = limited.run_args("h");
        let tail: Vec<&str> = args[args.len() - 10..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--log-driver",
                "k8s-file",
                "--log-opt",
                "max-size=10m",
                "--memory",
                "64m",
                "--oom-score-adj",
                "500",
                "--",
                "i"
            ]
        );
    }

    #[test]
    fn host_network_gets_no_add_host() {
        assert!(spec("app: a\nimage: i\nnetwork: host\n")
            .add_hosts
            .is_empty());
    }

    #[test]
    fn gateway_is_first_host_address() {
        assert_eq!(gateway_of("10.89.0.0/24").unwrap(), "10.89.0.1");
        assert_eq!(gateway_of("10.89.16.0/20").unwrap(), "10.89.16.1");
        assert!(gateway_of("10.89.0.5/24").is_err());
        assert!(gateway_of("10.89.0.0").is_err());
        assert!(gateway_of("fe80::/64").is_err());
    }
}
