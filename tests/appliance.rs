//! The shipped appliance (`manifests/` and the configs archy renders for it) checked against the
//! real programs, as a node runs them: Debian's nginx serving the rendered UI config in front of
//! a stand-in bitcoind that authenticates exactly as Bitcoin Core does (tests/support/
//! standin_bitcoind.py), ElectrumX's own Env and daemon client (PyPI `e-x`, the version the
//! pinned image runs) loading the rendered env file, lnd's sample config and Bitcoin Core's
//! option list (fixtures naming their sources), and the image's container user reading
//! bitcoin.conf through real podman.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
const STANDIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/standin_bitcoind.py"
);

/// uid and gid of the `bitcoin` user in the pinned bitcoind image: `ARG UID=101`, `ARG GID=101`
/// in yasutakumi/bitcoinknots-docker 28.1.knots20250305/Dockerfile (the entrypoint drops to it
/// with gosu).
const BITCOIN_IMAGE_UID: u32 = 101;
const BITCOIN_IMAGE_GID: u32 = 101;
/// `ENV BITCOIN_DATA=/home/bitcoin/.bitcoin` and `VOLUME ["/home/bitcoin/.bitcoin"]` in the same
/// Dockerfile; docker-entrypoint.sh appends `-datadir="$BITCOIN_DATA"`.
const BITCOIN_IMAGE_DATA: &str = "/home/bitcoin/.bitcoin";

/// The shipped manifests with /var/lib/archy, /etc/containers and /opt/archipelago moved under
/// `<root>/node`, as on a fresh node: only what the archy package ships exists
/// (/etc/containers/containers.conf.d, see packaging/debian/postinst).
struct Node {
    root: TestRoot,
    prefix: PathBuf,
}

impl Node {
    fn new(root: TestRoot) -> Self {
        let prefix = root.dir.join("node");
        let p = prefix.display().to_string();
        for entry in std::fs::read_dir(SHIPPED).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/var/lib/archy", &format!("{p}/var/lib/archy"))
                .replace("/etc/containers", &format!("{p}/etc/containers"))
                .replace("/opt/archipelago", &format!("{p}/opt/archipelago"));
            std::fs::write(root.manifests.join(path.file_name().unwrap()), text).unwrap();
        }
        std::fs::create_dir_all(prefix.join("etc/containers/containers.conf.d")).unwrap();
        Node { root, prefix }
    }

    fn state(&self) -> PathBuf {
        self.prefix.join("var/lib/archy")
    }

    fn archy(&self, args: &[&str]) -> Out {
        Out::from(
            self.root
                .archy_cmd()
                .env("ARCHY_STATE_DIR", self.state())
                .args(args)
                .output()
                .unwrap(),
        )
    }

    fn render(&self) -> Out {
        let out = self.archy(&["render-config"]);
        assert_eq!(out.code, 0, "{out:?}");
        out
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.state().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    fn canonical_password(&self) -> String {
        let text = std::fs::read_to_string(self.state().join("secrets/bitcoin-rpc.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["password"].as_str().unwrap().to_string()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn shipped_manifests_render_on_a_fresh_tree() {
    let node = Node::new(TestRoot::empty());
    assert!(!node.state().exists(), "fresh: no state dir yet");
    let dry = node.archy(&["render-config", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(dry.stdout.matches("would create").count(), 7, "{dry:?}");
    assert!(!node.state().exists(), "a dry run creates nothing");
    let out = node.render();
    for (rel, want) in [
        ("bitcoin/bitcoin.conf", 0o640),
        ("lnd/lnd.conf", 0o600),
        ("electrumx/electrumx.env", 0o600),
        ("bitcoin-ui/default.conf", 0o600),
        ("lnd-ui/default.conf", 0o644),
        ("electrs-ui/default.conf", 0o644),
    ] {
        assert_eq!(mode(&node.file(rel)), want, "{rel}: {out:?}");
        let dir = node.file(rel).parent().unwrap().to_path_buf();
        assert_eq!(mode(&dir), 0o700, "archy made {} 0700", dir.display());
    }
    let dropin = node
        .prefix
        .join("etc/containers/containers.conf.d/50-archy.conf");
    assert_eq!(
        std::fs::read_to_string(&dropin)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("host_containers_internal_ip")),
        Some(format!("host_containers_internal_ip = \"{}\"", node.root.gateway).as_str())
    );
    assert_eq!(mode(&dropin), 0o644);
    // The group from the manifest (the image's bitcoin gid), not root's.
    assert_eq!(
        std::fs::metadata(node.file("bitcoin/bitcoin.conf"))
            .unwrap()
            .gid(),
        BITCOIN_IMAGE_GID
    );
    // Host names follow the bare container names.
    assert!(node
        .read("lnd/lnd.conf")
        .contains("bitcoind.rpchost=bitcoin-knots:8332"));
    assert!(node
        .read("bitcoin-ui/default.conf")
        .contains("proxy_pass http://bitcoin-knots:8332/;"));
    // UIs that do not talk to bitcoind get no credential at all.
    for ui in ["lnd-ui", "electrs-ui"] {
        let text = node.read(&format!("{ui}/default.conf"));
        assert!(
            !text.contains("Authorization") && !text.contains("proxy_pass"),
            "{ui}: {text}"
        );
    }
    let bitcoin_conf = node.read("bitcoin/bitcoin.conf");
    let users: Vec<&str> = bitcoin_conf
        .lines()
        .filter_map(|l| l.strip_prefix("rpcauth="))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        users,
        ["archy", "archy-probe", "bitcoin-ui", "electrumx", "lnd"]
    );
    assert!(bitcoin_conf.contains("\nrpcwhitelist=archy-probe:getblockchaininfo\n"));
    for consumer in ["bitcoin-ui", "electrumx", "lnd"] {
        assert!(
            bitcoin_conf.contains(&format!("rpcwhitelist={consumer}:")),
            "{bitcoin_conf}"
        );
    }
    // A pre-created file with the wrong group is drift: rewritten with the manifest's group.
    std::os::unix::fs::chown(node.file("bitcoin/bitcoin.conf"), Some(0), Some(0)).unwrap();
    let fix = node.archy(&["render-config"]);
    assert!(fix.stdout.contains("written (drift)"), "{fix:?}");
    assert_eq!(
        std::fs::metadata(node.file("bitcoin/bitcoin.conf"))
            .unwrap()
            .gid(),
        BITCOIN_IMAGE_GID
    );
    // Second run: nothing to do.
    let again = node.archy(&["render-config", "--check"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        !again.stdout.contains("would"),
        "everything unchanged: {again:?}"
    );
    // A missing parent outside the state dir stays an error, for that file only.
    std::fs::remove_dir_all(node.prefix.join("etc/containers/containers.conf.d")).unwrap();
    std::fs::remove_dir_all(node.file("lnd")).unwrap();
    let out = node.archy(&["render-config"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("containers.conf.d") && out.stdout.contains("does not exist"),
        "{out:?}"
    );
    assert!(
        node.file("lnd/lnd.conf").exists(),
        "state-dir parent recreated"
    );
}

/// Keys of an INI-style lnd.conf as `[Section] key`.
fn lnd_keys(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if let Some((key, _)) = line.split_once('=') {
            if !line.starts_with(['#', ';']) {
                keys.push(format!("{section} {key}"));
            }
        }
    }
    keys
}

fn fixture_lines(name: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn lnd_conf_keys_exist_in_lnds_sample_config() {
    let node = Node::new(TestRoot::empty());
    node.render();
    // lightningnetwork/lnd sample-lnd.conf at v0.18.4-beta, the tag manifests/lnd.yaml pins.
    let known = fixture_lines("lnd-v0.18.4-beta-sample-keys.txt");
    assert!(
        known.contains("[Bitcoind] bitcoind.rpcuser"),
        "fixture sanity"
    );
    let keys = lnd_keys(&node.read("lnd/lnd.conf"));
    assert!(keys.len() >= 8, "{keys:?}");
    for key in &keys {
        assert!(known.contains(key), "lnd v0.18.4-beta has no option {key}");
    }
    // The check can fail: an option lnd does not know.
    assert!(!known.contains("[Bitcoind] bitcoind.rpcpassword"));
    // The manifest passes lnd only arguments (the image's ENTRYPOINT is ["lnd"]).
    let manifest = std::fs::read_to_string(Path::new(SHIPPED).join("lnd.yaml")).unwrap();
    assert!(manifest.contains("command: [\"--configfile=/root/.lnd/lnd.conf\"]"));
    assert!(manifest.contains("\"lnd-data:/root/.lnd\""));
}

#[test]
fn bitcoin_conf_is_readable_by_the_image_user_and_names_only_known_options() {
    let node = Node::new(TestRoot::new());
    node.render();
    let conf = node.file("bitcoin/bitcoin.conf");
    // The image's user reads it through the bind mount, as the manifest mounts it.
    let mount = format!("{}:/etc/bitcoin/bitcoin.conf:ro", conf.display());
    let cat = |user: &str| {
        node.root.podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            user,
            "-v",
            &mount,
            TEST_IMAGE,
            "/bin/cat",
            "/etc/bitcoin/bitcoin.conf",
        ])
    };
    let ids = format!("{BITCOIN_IMAGE_UID}:{BITCOIN_IMAGE_GID}");
    let read = cat(&ids);
    assert_eq!(read.code, 0, "{read:?}");
    assert_eq!(read.stdout, node.read("bitcoin/bitcoin.conf"));
    let other = cat("4242:4242");
    assert_ne!(other.code, 0, "other users cannot read it: {other:?}");

    // Options Bitcoin Core knows: bitcoin/bitcoin src/init.cpp (fixture names the commit).
    let known = fixture_lines("bitcoin-core-init-options.txt");
    let text = node.read("bitcoin/bitcoin.conf");
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('=').expect("key=value").0.to_string())
        .collect();
    let manifest = archy::manifest::load_file(
        &node.root.manifests.join("bitcoin-knots.yaml"),
        &archy::manifest::Policy::default(),
    )
    .unwrap();
    let command = manifest.command.clone().unwrap();
    assert_eq!(command[0], "bitcoind");
    names.extend(command[1..].iter().map(|a| {
        a.trim_start_matches('-')
            .split('=')
            .next()
            .unwrap()
            .to_string()
    }));
    for name in &names {
        assert!(known.contains(name), "Bitcoin Core has no option -{name}");
    }
    assert!(
        !known.contains("rpcwhitelistdefaults"),
        "the check can fail"
    );
    // The data volume sits where the image keeps its data; no -datadir (the entrypoint appends
    // its own, and the last one wins); the config is mounted outside the tree the entrypoint
    // chowns.
    assert!(manifest
        .volumes
        .iter()
        .any(|v| v.as_str() == format!("bitcoin-data:{BITCOIN_IMAGE_DATA}")));
    assert!(!names.contains(&"datadir".to_string()));
    assert!(manifest
        .volumes
        .iter()
        .filter(|v| v.as_str().ends_with(":ro"))
        .all(|v| !v
            .as_str()
            .split(':')
            .nth(1)
            .unwrap()
            .starts_with("/home/bitcoin")));
}

/// Start the stand-in bitcoind on `conf`; returns it and its port.
fn standin(conf: &Path, log: &Path) -> (Running, u16) {
    let mut child = Command::new("python3")
        .args([STANDIN, conf.to_str().unwrap(), log.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the stand-in bitcoind");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("stand-in prints its port");
    (Running(child), port)
}

/// One HTTP/1.1 request (Connection: close); returns the status and the body.
fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    http_exchange(
        port,
        &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"),
        body,
    )
}

fn rpc(method: &str) -> String {
    format!("{{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"{method}\",\"params\":[]}}")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// A scenario test: its steps read top to bottom, each checking what the one before left.
#[allow(clippy::too_many_lines)]
#[test]
fn nginx_serves_the_ui_and_proxies_rpc_as_the_uis_own_user() {
    let node = Node::new(TestRoot::empty());
    node.render();
    let dir = node.root.dir.join("nginx");
    let html = dir.join("html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("index.html"), "bitcoin ui\n").unwrap();
    let log = dir.join("standin.log");
    let (_bitcoind, rpc_port) = standin(&node.file("bitcoin/bitcoin.conf"), &log);

    // The rendered server block, with the container's addresses moved to this host: its
    // listen port, the web root, and bitcoind's address.
    let port = free_port();
    let rendered = node.read("bitcoin-ui/default.conf");
    let server = rendered
        .replace("listen 80", &format!("listen 127.0.0.1:{port}"))
        .replace(
            "root /usr/share/nginx/html;",
            &format!("root {};", html.display()),
        )
        .replace(
            "http://bitcoin-knots:8332/",
            &format!("http://127.0.0.1:{rpc_port}/"),
        );
    assert_ne!(server, rendered, "the rewrite applied");
    std::fs::write(dir.join("default.conf"), &server).unwrap();
    let mut nginx = start_nginx(&dir);
    wait_for_port(port, "nginx", &mut nginx.0);

    let (status, body) = http(port, "GET", "/", None, "");
    assert_eq!((status, body.as_str()), (200, "bitcoin ui\n"));

    // A whitelisted call reaches bitcoind as `bitcoin-ui`.
    let (status, body) = http(port, "POST", "/rpc", None, &rpc("getblockchaininfo"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"authenticated_as\": \"bitcoin-ui\""),
        "{body}"
    );
    // `stop` is not on the UI's whitelist.
    let (status, _) = http(port, "POST", "/rpc", None, &rpc("stop"));
    assert_eq!(status, 403);
    // A client sending the full-admin credential still gets the UI's identity, not its own.
    let admin = basic("archy", &node.canonical_password());
    let (status, body) = http(
        port,
        "POST",
        "/rpc",
        Some(&admin),
        &rpc("getblockchaininfo"),
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("\"authenticated_as\": \"bitcoin-ui\""),
        "{body}"
    );
    let (status, _) = http(port, "POST", "/rpc", Some(&admin), &rpc("stop"));
    assert_eq!(status, 403, "the client's Authorization was replaced");
    // Only POST is proxied.
    let (status, _) = http(port, "GET", "/rpc", None, "");
    assert_eq!(status, 403);

    // Controls straight at the stand-in: the admin may stop, a wrong password is refused, and
    // lnd's derived credential works within its own whitelist.
    assert_eq!(
        http(rpc_port, "POST", "/", Some(&admin), &rpc("stop")).0,
        200
    );
    assert_eq!(
        http(
            rpc_port,
            "POST",
            "/",
            Some(&basic("archy", "wrong")),
            &rpc("help")
        )
        .0,
        401
    );
    let lnd = node.read("lnd/lnd.conf");
    let lnd_pass = lnd
        .lines()
        .find_map(|l| l.strip_prefix("bitcoind.rpcpass="))
        .unwrap();
    let lnd_auth = basic("lnd", lnd_pass);
    assert_eq!(
        http(
            rpc_port,
            "POST",
            "/",
            Some(&lnd_auth),
            &rpc("getblockchaininfo")
        )
        .0,
        200
    );
    assert_eq!(
        http(rpc_port, "POST", "/", Some(&lnd_auth), &rpc("stop")).0,
        403
    );

    let log = std::fs::read_to_string(&log).unwrap();
    let via_nginx: Vec<&str> = log.lines().take(4).collect();
    assert_eq!(
        via_nginx,
        [
            "200 bitcoin-ui getblockchaininfo",
            "403 bitcoin-ui stop",
            "200 bitcoin-ui getblockchaininfo",
            "403 bitcoin-ui stop"
        ],
        "{log}"
    );
}

/// Load the env file as podman's --env-file does (KEY=VALUE lines, # comments), build
/// ElectrumX's own Env from it, and ask bitcoind for its height with ElectrumX's daemon client.
const ELECTRUMX_PROBE: &str = r##"
import asyncio, os, sys
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line and not line.startswith("#"):
        key, value = line.split("=", 1)
        os.environ[key] = value
import electrumx
from electrumx.server.env import Env
env = Env()
print("version", electrumx.version)
print("coin", env.coin.NAME, "engine", env.db_engine)
async def main():
    async with env.coin.DAEMON(env.coin, env.daemon_url) as daemon:
        print("height", await daemon.height())
asyncio.run(asyncio.wait_for(main(), 30))
"##;

/// Render the shipped manifests, start the stand-in bitcoind, and run ElectrumX `version`'s own
/// Env and daemon client on the rendered env file (bitcoind's address moved to the stand-in).
/// Returns the probe's output for the env file without its DB_ENGINE line.
fn electrumx_against_standin(version: &str) -> Out {
    let python = electrumx_python(version);
    let node = Node::new(TestRoot::empty());
    node.render();
    let log = node.root.dir.join("standin.log");
    let (_bitcoind, rpc_port) = standin(&node.file("bitcoin/bitcoin.conf"), &log);
    let rendered = node.read("electrumx/electrumx.env");
    let env = rendered.replace("@bitcoin-knots:8332/", &format!("@127.0.0.1:{rpc_port}/"));
    assert_ne!(env, rendered, "the rewrite applied");
    let env_file = node.root.dir.join("electrumx.env");
    std::fs::write(&env_file, &env).unwrap();
    let out = Out::from(
        Command::new(&python)
            .args(["-c", ELECTRUMX_PROBE, env_file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("version ElectrumX {version}")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("coin Bitcoin engine leveldb"),
        "{out:?}"
    );
    assert!(out.stdout.contains("height 840000"), "{out:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("200 electrumx getblockcount"), "{log}");
    assert!(!log.contains(" archy "), "never the canonical user: {log}");
    let without: String = env
        .lines()
        .filter(|l| !l.starts_with("DB_ENGINE="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env_file, without).unwrap();
    Out::from(
        Command::new(&python)
            .args(["-c", ELECTRUMX_PROBE, env_file.to_str().unwrap()])
            .output()
            .unwrap(),
    )
}

/// The version the pinned image runs: lukechilds/docker-electrumx's Dockerfile at its 1.18.0
/// commit installs spesmilo/electrumx tag 1.18.0 = PyPI e-x 1.18.0.
#[test]
fn electrumx_loads_the_rendered_env_and_authenticates_to_bitcoind() {
    let without_engine = electrumx_against_standin("1.18.0");
    assert_eq!(
        without_engine.code, 0,
        "1.x defaults to leveldb: {without_engine:?}"
    );
}

/// The maintained 2.x line refuses to start without DB_ENGINE; the rendered env keeps working
/// when the image moves to it.
#[test]
fn electrumx_2_accepts_the_rendered_env_too() {
    let without_engine = electrumx_against_standin("2.0.0");
    assert_ne!(without_engine.code, 0, "{without_engine:?}");
    assert!(
        without_engine.stderr.contains("DB_ENGINE"),
        "2.x names the missing variable: {without_engine:?}"
    );
}
