//! The shipped appliance against a REAL bitcoind: Bitcoin Core master (v31.99, built from
//! source, ../shared/peers/bitcoin-core, needs Debian's libzmq5, which scripts/test installs),
//! run on regtest on loopback ports with its own datadir under the test root, started with the
//! bitcoin.conf archy renders for the shipped manifests (moved into a `[regtest]` section).
//! Knots shares the RPC, rpcauth and rpcwhitelist code with Core.
//!
//! Proves each consumer's whitelist: every call traced to the consumer's source
//! (src/rpc_users.rs) is allowed, every other method bitcoind has is refused with 403, and the
//! real ElectrumX 1.18 server indexes the chain through its rendered user.
#![allow(clippy::disallowed_methods)] // tests drive bitcoind, nginx, ElectrumX and archy directly

mod common;
use common::*;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

/// The real bitcoind (and its README): see the module header.
fn bitcoind_bin() -> PathBuf {
    let bin = std::env::var_os("ARCHY_BITCOIND").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/bitcoin-core/bin/bitcoind"),
        PathBuf::from,
    );
    let bin = if bin.exists() {
        bin
    } else {
        PathBuf::from("/work/shared/peers/bitcoin-core/bin/bitcoind")
    };
    assert!(
        bin.exists(),
        "{} is missing (set ARCHY_BITCOIND to a bitcoind binary)",
        bin.display()
    );
    bin
}

/// The shipped manifests with /var/lib/archy, /etc/containers and /opt/archipelago moved under
/// `<root>/node` (as tests/appliance.rs does).
pub struct Node {
    pub root: TestRoot,
    prefix: PathBuf,
}

impl Node {
    pub fn new(root: TestRoot) -> Self {
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

    pub fn state(&self) -> PathBuf {
        self.prefix.join("var/lib/archy")
    }

    pub fn archy(&self, args: &[&str]) -> Out {
        Out::from(
            self.root
                .archy_cmd()
                .env("ARCHY_STATE_DIR", self.state())
                .args(args)
                .output()
                .unwrap(),
        )
    }

    pub fn render(&self) {
        let out = self.archy(&["render-config"]);
        assert_eq!(out.code, 0, "{out:?}");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.state().join(rel)).unwrap()
    }

    pub fn canonical_password(&self) -> String {
        let text = std::fs::read_to_string(self.state().join("secrets/bitcoin-rpc.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["password"].as_str().unwrap().to_string()
    }

    /// Each consumer's rendered credential, read back from the file the consumer reads.
    pub fn credential(&self, user: &str) -> String {
        let password = match user {
            "lnd" => self
                .read("lnd/lnd.conf")
                .lines()
                .find_map(|l| l.strip_prefix("bitcoind.rpcpass="))
                .unwrap()
                .to_string(),
            "electrumx" => {
                let env = self.read("electrumx/electrumx.env");
                let url = env
                    .lines()
                    .find_map(|l| l.strip_prefix("DAEMON_URL=http://electrumx:"))
                    .unwrap();
                url.split_once('@').unwrap().0.to_string()
            }
            "bitcoin-ui" => {
                // The proxy's Authorization header is the credential itself.
                let conf = self.read("bitcoin-ui/default.conf");
                let token = conf
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("proxy_set_header Authorization \"Basic ")
                    })
                    .unwrap()
                    .trim_end_matches("\";");
                return format!("Basic {token}");
            }
            "archy" => self.canonical_password(),
            other => panic!("no credential for {other}"),
        };
        basic(user, &password)
    }
}

/// A bitcoind on regtest, stopped (by its pid, SIGTERM then SIGKILL) when dropped.
pub struct Bitcoind {
    child: Child,
    pub rpc_port: u16,
    pub datadir: PathBuf,
    admin: String,
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rendered bitcoin.conf as a regtest node's: every line in a `[regtest]` section (Core
/// ignores rpcport/rpcbind of the top section on other networks), bitcoind's container
/// addresses moved to loopback ports of this test, a small dbcache, no p2p listening.
pub fn regtest_conf(rendered: &str, rpc_port: u16, zmq: (u16, u16)) -> String {
    let mut out = String::from("regtest=1\n[regtest]\n");
    for line in rendered.lines() {
        let line = match line.split_once('=').map(|(k, _)| k) {
            Some("rpcbind") => "rpcbind=127.0.0.1".to_string(),
            Some("rpcport") => format!("rpcport={rpc_port}"),
            Some("zmqpubrawblock") => format!("zmqpubrawblock=tcp://127.0.0.1:{}", zmq.0),
            Some("zmqpubrawtx") => format!("zmqpubrawtx=tcp://127.0.0.1:{}", zmq.1),
            Some("dbcache") => "dbcache=16".to_string(),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("listen=0\ndnsseed=0\nfixedseeds=0\n");
    out
}

impl Bitcoind {
    /// Start bitcoind on `node`'s rendered bitcoin.conf with its own datadir under the root.
    pub fn start(node: &Node, extra: &[&str]) -> Self {
        let datadir = node.root.dir.join("bitcoind");
        std::fs::create_dir_all(&datadir).unwrap();
        Self::start_in(node, &datadir, free_port(), extra)
    }

    pub fn start_in(node: &Node, datadir: &Path, rpc_port: u16, extra: &[&str]) -> Self {
        let conf = datadir.join("bitcoin.conf");
        let text = regtest_conf(
            &node.read("bitcoin/bitcoin.conf"),
            rpc_port,
            (free_port(), free_port()),
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(bitcoind_bin())
            .arg(format!("-datadir={}", datadir.display()))
            .arg(format!("-conf={}", conf.display()))
            .args(["-printtoconsole=0", "-debuglogfile=debug.log"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bitcoind runs (needs libzmq5: scripts/test installs it)");
        Bitcoind {
            child,
            rpc_port,
            datadir: datadir.to_path_buf(),
            admin: node.credential("archy"),
        }
    }

    /// One JSON-RPC 1.0 call as the operator (the canonical user).
    pub fn admin(&self, method: &str, params: &str) -> (u16, serde_json::Value) {
        let (status, body) = call(self.rpc_port, &self.admin, method, params);
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    /// Wait until bitcoind answers RPC (not -28 "loading"), fail if it exited.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.datadir.join("regtest/debug.log"))
                    .unwrap_or_default();
                panic!("bitcoind exited: {status}\n{log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.rpc_port)).is_ok()
                && self.admin("getblockchaininfo", "[]").0 == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bitcoind never answered RPC on {}", self.rpc_port);
    }

    /// Mine `n` blocks to an anyone-can-spend script (no wallet on this build).
    pub fn mine(&self, n: u32) {
        let (status, body) = self.admin("generatetodescriptor", &format!("[{n}, \"raw(51)\"]"));
        assert_eq!(status, 200, "{body}");
    }

    pub fn debug_log(&self) -> String {
        std::fs::read_to_string(self.datadir.join("regtest/debug.log")).unwrap_or_default()
    }
}

/// One HTTP/1.1 JSON-RPC 1.0 request (Connection: close); returns the status and the body.
pub fn call(port: u16, auth: &str, method: &str, params: &str) -> (u16, String) {
    let body =
        format!("{{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"{method}\",\"params\":{params}}}");
    http_exchange(
        port,
        &format!("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n"),
        &body,
    )
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What each consumer calls, traced in its source (the citations are in src/rpc_users.rs);
/// written out again here so a whitelist that drifts from the trace fails.
const LND: &[&str] = &[
    "estimatesmartfee",
    "getblock",
    "getblockchaininfo",
    "getblockhash",
    "getblockheader",
    "getdeploymentinfo",
    "getinfo",
    "getmempoolinfo",
    "getnetworkinfo",
    "getpeerinfo",
    "getrawmempool",
    "getrawtransaction",
    "gettxout",
    "gettxspendingprevout",
    "getzmqnotifications",
    "sendrawtransaction",
    "testmempoolaccept",
    "uptime",
];
const ELECTRUMX: &[&str] = &[
    "estimatesmartfee",
    "getblock",
    "getblockcount",
    "getblockhash",
    "getnetworkinfo",
    "getrawmempool",
    "getrawtransaction",
    "sendrawtransaction",
    "submitpackage",
];
const UI: &[&str] = &[
    "getblockchaininfo",
    "getindexinfo",
    "getnetworkinfo",
    "getzmqnotifications",
];
/// Calls the issue found allowed to consumers that never make them; each must be refused to
/// every consumer.
const NEVER: &[&str] = &[
    "fundrawtransaction",
    "scantxoutset",
    "gettxoutsetinfo",
    "getblocktemplate",
    "getblockfrompeer",
    "signrawtransactionwithkey",
    "signmessagewithprivkey",
    "stop",
    "generatetodescriptor",
    "invalidateblock",
    "setban",
];

/// Every method this bitcoind has, from the operator's `help`.
fn all_methods(bitcoind: &Bitcoind) -> BTreeSet<String> {
    let (status, help) = bitcoind.admin("help", "[]");
    assert_eq!(status, 200);
    help["result"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("=="))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn every_consumer_may_make_its_traced_calls_and_no_other() {
    let node = Node::new(TestRoot::empty());
    node.render();
    let conf = node.read("bitcoin/bitcoin.conf");
    for (user, calls) in [("lnd", LND), ("electrumx", ELECTRUMX), ("bitcoin-ui", UI)] {
        assert!(
            conf.contains(&format!("\nrpcwhitelist={user}:{}\n", calls.join(","))),
            "{user}: {conf}"
        );
    }
    let mut bitcoind = Bitcoind::start(&node, &[]);
    bitcoind.wait_ready();
    let methods = all_methods(&bitcoind);
    assert!(methods.len() > 80, "{methods:?}");
    let mut checked = 0;
    for (user, calls) in [("lnd", LND), ("electrumx", ELECTRUMX), ("bitcoin-ui", UI)] {
        let auth = node.credential(user);
        for &method in calls {
            let (status, body) = call(bitcoind.rpc_port, &auth, method, "[]");
            // Allowed: a result, or bitcoind's own error about the (missing) parameters.
            assert!(
                ![401, 403].contains(&status),
                "{user} {method}: {status} {body}"
            );
            let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
            let code = reply["error"]["code"].as_i64();
            if method == "getinfo" {
                // btcd's rpcclient (BackendVersion) needs exactly "method not found".
                assert_eq!((status, code), (404, Some(-32601)), "{body}");
            } else {
                assert_ne!(code, Some(-32601), "{user} {method}: {body}");
                assert!(methods.contains(method), "{method} exists");
            }
            checked += 1;
        }
        for method in methods.iter().filter(|m| !calls.contains(&m.as_str())) {
            let (status, body) = call(bitcoind.rpc_port, &auth, method, "[]");
            assert_eq!(status, 403, "{user} {method}: {body}");
            checked += 1;
        }
        for method in NEVER {
            assert!(!calls.contains(method));
            assert_eq!(
                call(bitcoind.rpc_port, &auth, method, "[]").0,
                403,
                "{user} {method}"
            );
        }
        // A JSON-RPC batch (btcwallet and ElectrumX batch their calls) is refused whole when
        // one of its calls is not on the list.
        let batch = format!(
            "[{{\"method\":\"{}\",\"params\":[],\"id\":1}},{{\"method\":\"getpeerinfo\",\"params\":[],\"id\":2}}]",
            calls[0]
        );
        let (status, _) = http_exchange(
            bitcoind.rpc_port,
            &format!("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"),
            &batch,
        );
        assert_eq!(status, if user == "lnd" { 200 } else { 403 }, "{user}");
    }
    // The operator keeps everything.
    assert_eq!(bitcoind.admin("getpeerinfo", "[]").0, 200);
    eprintln!("{checked} calls checked against {} methods", methods.len());
}

/// The real ElectrumX 1.18.0 server (PyPI `e-x`, the version manifests/electrumx.yaml runs)
/// indexes the regtest chain and answers its clients through its rendered RPC user: bitcoind
/// logs no refused call.
#[test]
fn electrumx_syncs_the_real_chain_through_its_rendered_user() {
    let python = electrumx_python("1.18.0");
    let node = Node::new(TestRoot::empty());
    node.render();
    let mut bitcoind = Bitcoind::start(&node, &[]);
    bitcoind.wait_ready();
    bitcoind.mine(150);

    let rendered = node.read("electrumx/electrumx.env");
    let port = free_port();
    let db = node.root.dir.join("electrumx-db");
    std::fs::create_dir_all(&db).unwrap();
    let mut cmd = Command::new(python.parent().unwrap().join("electrumx_server"));
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    for line in rendered.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.split_once('=').unwrap();
        let value = match key {
            "DAEMON_URL" => value.replace(
                "@bitcoin-knots:8332/",
                &format!("@127.0.0.1:{}/", bitcoind.rpc_port),
            ),
            "DB_DIRECTORY" => db.display().to_string(),
            "SERVICES" => format!("tcp://127.0.0.1:{port}"),
            _ => value.to_string(),
        };
        cmd.env(key, value);
    }
    // Regtest, and root in this sandbox (the image runs it as root too: ALLOW_ROOT=1).
    cmd.env("NET", "regtest").env("ALLOW_ROOT", "1");
    let log = node.root.dir.join("electrumx.log");
    let mut server = Running(
        cmd.stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    // ElectrumX opens its service port once it has caught up with bitcoind.
    let deadline = Instant::now() + Duration::from_secs(180);
    let stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "electrumx exited: {status}\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "electrumx never caught up: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ask = |id: u32, method: &str, params: &str| -> serde_json::Value {
        writeln!(
            &stream,
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}"
        )
        .unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{method}: {e}: {line}"))
    };
    assert!(ask(1, "server.version", "[\"archy-test\", \"1.4\"]")["result"].is_array());
    let tip = ask(2, "blockchain.headers.subscribe", "[]");
    assert_eq!(tip["result"]["height"], 150, "{tip}");
    // Calls that reach bitcoind on a client's behalf: estimatesmartfee, getnetworkinfo,
    // getblockhash + getrawtransaction.
    let fee = ask(3, "blockchain.estimatefee", "[2]");
    assert!(fee["result"].is_number(), "{fee}");
    let relay = ask(4, "blockchain.relayfee", "[]");
    assert!(relay["result"].is_number(), "{relay}");
    let (_, hash) = bitcoind.admin("getblockhash", "[1]");
    let (_, block) = bitcoind.admin("getblock", &format!("[{}, 1]", hash["result"]));
    let txid = block["result"]["tx"][0].clone();
    let tx = ask(5, "blockchain.transaction.get", &format!("[{txid}]"));
    assert!(tx["result"].is_string(), "{tx}");
    drop(server);
    let debug = bitcoind.debug_log();
    assert!(
        !debug.contains("not allowed to call method"),
        "a refused call: {debug}"
    );
}

/// Debian's nginx on the rendered bitcoin-ui server block, its listen port, web root and
/// bitcoind's address moved to this host (as tests/appliance.rs does). Returns nginx and its
/// port.
fn nginx_ui(node: &Node, rpc_port: u16) -> (Running, u16) {
    let dir = node.root.dir.join("nginx");
    let html = dir.join("html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("index.html"), "bitcoin ui\n").unwrap();
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
    assert_eq!(
        server.matches(&format!("listen 127.0.0.1:{port}")).count(),
        2
    );
    std::fs::write(dir.join("default.conf"), &server).unwrap();
    let mut nginx = start_nginx(&dir);
    wait_for_port(port, "nginx", &mut nginx.0);
    (nginx, port)
}

/// The calls bitcoind dispatched for `user` (its `-debug=rpc` log: `ThreadRPCServer method=…
/// user=… id=…`).
fn dispatched(bitcoind: &Bitcoind, user: &str) -> Vec<String> {
    bitcoind
        .debug_log()
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("ThreadRPCServer method=")?.1;
            let (method, rest) = rest.split_once(' ')?;
            (rest.split_whitespace().next()? == format!("user={user}")).then(|| method.to_string())
        })
        .collect()
}

#[test]
fn ui_rpc_proxy_takes_only_same_origin_json_for_its_own_host_names() {
    let node = Node::new(TestRoot::empty());
    node.render();
    let mut bitcoind = Bitcoind::start(&node, &["-debug=rpc"]);
    bitcoind.wait_ready();
    let (_nginx, port) = nginx_ui(&node, bitcoind.rpc_port);
    let origin = format!("http://127.0.0.1:{port}");
    let post = |host: &str, headers: &str, body: &str| {
        http_exchange(
            port,
            &format!("POST /rpc HTTP/1.1\r\nHost: {host}\r\n{headers}"),
            body,
        )
    };
    let json = "Content-Type: application/json\r\n";
    let own = format!("127.0.0.1:{port}");
    let one =
        |m: &str| format!("{{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"{m}\",\"params\":[]}}");
    let batch = |a: &str, b: &str| {
        format!("[{{\"method\":\"{a}\",\"params\":[],\"id\":1}},{{\"method\":\"{b}\",\"params\":[],\"id\":2}}]")
    };

    // The page itself: same origin, JSON.
    let page = format!("{json}Origin: {origin}\r\nSec-Fetch-Site: same-origin\r\n");
    let (status, body) = post(&own, &page, &one("getblockchaininfo"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"chain\":\"regtest\""), "{body}");
    // A non-browser client (no Origin) on a loopback name.
    assert_eq!(
        post(&format!("localhost:{port}"), json, &one("getnetworkinfo")).0,
        200
    );
    let reached = dispatched(&bitcoind, "bitcoin-ui");
    assert_eq!(reached, ["getblockchaininfo", "getnetworkinfo"]);

    // A web page of another origin posting a text/plain batch (no preflight needed).
    let attack = batch("getpeerinfo", "getnodeaddresses");
    let cross = "Content-Type: text/plain\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n";
    assert_eq!(post(&own, cross, &attack).0, 403);
    // The same with JSON (the browser would preflight first; refused anyway), and with only
    // Sec-Fetch-Site.
    let cross_json = "Content-Type: application/json\r\nOrigin: https://evil.example\r\n";
    assert_eq!(post(&own, cross_json, &attack).0, 403);
    assert_eq!(
        post(
            &own,
            &format!("{json}Sec-Fetch-Site: cross-site\r\n"),
            &attack
        )
        .0,
        403
    );
    // DNS rebinding: evil.example resolves to 127.0.0.1, so the page is same-origin with
    // itself; its Host is not one of the UI's names.
    let rebound =
        format!("{json}Origin: http://evil.example:{port}\r\nSec-Fetch-Site: same-origin\r\n");
    assert_eq!(
        post(
            &format!("evil.example:{port}"),
            &rebound,
            &one("getblockchaininfo")
        )
        .0,
        421
    );
    assert_eq!(
        http_exchange(port, "GET / HTTP/1.1\r\nHost: evil.example\r\n", "").0,
        421
    );
    // Same origin but not JSON (a form post).
    let form = format!("Content-Type: application/x-www-form-urlencoded\r\nOrigin: {origin}\r\n");
    assert_eq!(post(&own, &form, &one("getblockchaininfo")).0, 415);
    assert_eq!(post(&own, "", &one("getblockchaininfo")).0, 415);
    // Only POST.
    assert_eq!(
        http_exchange(
            port,
            &format!("OPTIONS /rpc HTTP/1.1\r\nHost: {own}\r\nOrigin: https://evil.example\r\n"),
            ""
        )
        .0,
        403
    );
    assert_eq!(
        dispatched(&bitcoind, "bitcoin-ui"),
        reached,
        "no refused request reached bitcoind"
    );

    // A same-origin batch passes only when every call is the UI's: bitcoind checks each.
    assert_eq!(
        post(&own, &page, &batch("getblockchaininfo", "getpeerinfo")).0,
        403
    );
    let (status, body) = post(&own, &page, &batch("getblockchaininfo", "getindexinfo"));
    assert_eq!(status, 200, "{body}");
    let reached = dispatched(&bitcoind, "bitcoin-ui");
    assert!(!reached.iter().any(|m| m == "getpeerinfo"), "{reached:?}");
    assert_eq!(reached.len(), 4, "{reached:?}");
    // The static UI on its own names.
    assert_eq!(
        http_exchange(port, &format!("GET / HTTP/1.1\r\nHost: {own}\r\n"), ""),
        (200, "bitcoin ui\n".to_string())
    );
}

/// Ticks simulated with `ARCHY_NOW`, 30 s apart (as tests/health.rs does).
struct Clock {
    start: i64,
    tick: i64,
}

impl Clock {
    fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Clock { start, tick: 0 }
    }

    fn now(&self) -> String {
        (self.start + self.tick * 30).to_string()
    }

    fn archy(&self, root: &TestRoot, args: &[&str]) -> Out {
        Out::from(
            root.archy_cmd()
                .env("ARCHY_NOW", self.now())
                .args(args)
                .output()
                .unwrap(),
        )
    }

    fn reconcile(&mut self, root: &TestRoot) -> serde_json::Value {
        let out = self.archy(root, &["reconcile", "--output", "json"]);
        assert_eq!(out.code, 0, "{out:?}");
        self.tick += 1;
        out.json()
    }

    fn status(&self, root: &TestRoot) -> serde_json::Value {
        self.archy(root, &["status", "--output", "json"]).json()
    }
}

fn app<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {doc}"))
}

/// A node app probed by `bitcoin_rpc:` whose bitcoin.conf archy renders, and a dependent that
/// waits for it `synced`. The real bitcoind runs on the host from that rendered file.
fn chain_root() -> (TestRoot, u16) {
    let root = TestRoot::new();
    let rpc_port = free_port();
    let conf = root.state_dir.join("bitcoin/bitcoin.conf");
    root.simple_manifest(
        "node",
        &format!(
            "health:\n  bitcoin_rpc: 127.0.0.1:{rpc_port}\n  failures: 1\n  start_period: 0\nconfigs:\n  - render: bitcoin.conf\n    path: {}\n",
            conf.display()
        ),
    );
    root.simple_manifest("dep", "depends_on: {node: synced}\n");
    (root, rpc_port)
}

fn start_rendered(root: &TestRoot, rpc_port: u16, extra: &[&str]) -> Bitcoind {
    let datadir = root.dir.join("bitcoind");
    std::fs::create_dir_all(&datadir).unwrap();
    let conf = datadir.join("bitcoin.conf");
    let rendered = std::fs::read_to_string(root.state_dir.join("bitcoin/bitcoin.conf")).unwrap();
    std::fs::write(
        &conf,
        regtest_conf(&rendered, rpc_port, (free_port(), free_port())),
    )
    .unwrap();
    let secret: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.state_dir.join("secrets/bitcoin-rpc.json")).unwrap(),
    )
    .unwrap();
    let child = Command::new(bitcoind_bin())
        .arg(format!("-datadir={}", datadir.display()))
        .arg(format!("-conf={}", conf.display()))
        .args(["-printtoconsole=0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Bitcoind {
        child,
        rpc_port,
        datadir,
        admin: basic(
            secret["user"].as_str().unwrap(),
            secret["password"].as_str().unwrap(),
        ),
    }
}

#[test]
fn a_synced_dependent_waits_through_start_and_ibd_of_the_real_bitcoind() {
    let (root, rpc_port) = chain_root();
    let mut clock = Clock::new();
    // No bitcoind yet: refused, inside nothing (start_period 0) → unhealthy; dep waits.
    let doc = clock.reconcile(&root);
    assert_eq!(app(&doc, "dep")["result"], "waiting", "{doc}");
    assert_eq!(root.state("archy-dep"), "missing");
    let conf = std::fs::read_to_string(root.state_dir.join("bitcoin/bitcoin.conf")).unwrap();
    assert!(
        conf.contains("\nrpcwhitelist=archy-probe:getblockchaininfo\n"),
        "{conf}"
    );

    // A fresh regtest chain: its tip (genesis) is old, so bitcoind is in IBD.
    let mut bitcoind = start_rendered(&root, rpc_port, &[]);
    bitcoind.wait_ready();
    let doc = clock.reconcile(&root);
    let dep = app(&doc, "dep");
    assert_eq!(dep["result"], "waiting", "{doc}");
    let why = dep["error"].as_str().unwrap();
    assert!(
        why.starts_with("waiting for `node` to become synced (it is syncing "),
        "{why}"
    );
    assert!(why.contains(", 0/0 blocks"), "{why}");
    let status = clock.status(&root);
    let node = app(&status, "node");
    assert_eq!(node["health"]["status"], "syncing", "{node}");
    assert_eq!(node["health"]["chain"]["blocks"], 0, "{node}");
    assert_eq!(node["health"]["chain"]["initial_block_download"], true);
    assert_eq!(app(&status, "dep")["state"], "waiting", "{status}");
    let text = clock.archy(&root, &["status"]);
    assert!(
        text.stdout.contains("chain: syncing, 0/0 blocks"),
        "{text:?}"
    );
    let prom = clock.archy(&root, &["status", "--output", "prometheus"]);
    assert!(
        prom.stdout
            .contains("archy_chain_initial_block_download{app=\"node\"} 1\n"),
        "{prom:?}"
    );
    promtool_check(&root, &prom.stdout);

    // A block with a recent time ends IBD: the dependent is created in the same tick. (300 of
    // them, so that the -reindex below takes a while.)
    bitcoind.mine(300);
    let doc = clock.reconcile(&root);
    assert_eq!(app(&doc, "dep")["result"], "changed", "{doc}");
    assert_eq!(root.state("archy-dep"), "running");
    let status = clock.status(&root);
    let node = app(&status, "node");
    assert_eq!(node["health"]["status"], "healthy", "{node}");
    assert_eq!(node["health"]["chain"]["blocks"], 300, "{node}");
    assert_eq!(node["health"]["chain"]["initial_block_download"], false);
    let prom = clock.archy(&root, &["status", "--output", "prometheus"]);
    assert!(
        prom.stdout
            .contains("archy_chain_blocks{app=\"node\"} 300\n"),
        "{prom:?}"
    );

    // A no-op tick with the chain probe stays one podman call.
    root.take_podman_calls();
    clock.reconcile(&root);
    let calls = root.take_podman_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let started = Instant::now();
    for _ in 0..5 {
        clock.reconcile(&root);
    }
    eprintln!(
        "no-op tick with a bitcoin_rpc probe: {} ms (mean of 5)",
        started.elapsed().as_millis() / 5
    );

    // Restarted with -reindex: bitcoind answers -28 while it loads. The probe says starting
    // (never a failure), the running dependent's failures would not count, and it ends
    // healthy again.
    drop(bitcoind);
    bitcoind = start_rendered(&root, rpc_port, &["-reindex"]);
    // (Refused before its RPC server is up would count: start_period is 0 here.)
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err() {
        assert!(Instant::now() < deadline, "bitcoind never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut seen = Vec::new();
    loop {
        let doc = clock.reconcile(&root);
        let node = app(&doc, "node");
        assert_eq!(node["result"], "ok", "no restart: {doc}");
        let status = clock.status(&root);
        let health = &app(&status, "node")["health"];
        let word = health["status"].as_str().unwrap().to_string();
        if word == "starting" {
            seen.push(health["evidence"].as_str().unwrap_or_default().to_string());
        }
        if word == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?} {status}");
    }
    drop(bitcoind);
    eprintln!("while reindexing: {seen:?}");
    assert!(
        seen.iter().any(|e| e.starts_with("bitcoind is starting: ")),
        "-28 observed as starting: {seen:?}"
    );
}

fn promtool_check(root: &TestRoot, text: &str) {
    let file = root.dir.join("metrics.prom");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (scripts/test installs prometheus)");
    assert!(out.status.success(), "{out:?}\n{text}");
}

/// A stand-in for lnd's REST state service: HTTPS (self-signed, as lnd's own tls.cert) answering
/// `GET /v1/state` with `{"state":"<name>"}`, the names of `enum WalletState` in
/// lightningnetwork/lnd v0.18.4-beta lnrpc/stateservice.proto (NON_EXISTING, LOCKED, UNLOCKED,
/// RPC_ACTIVE, SERVER_ACTIVE, WAITING_TO_START; REST mapping `get: "/v1/state"` in
/// lnrpc/stateservice.yaml). The answer is whatever `state` holds: a state name, or `500`.
/// Every request is counted.
struct LndStandin {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<String>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LndStandin {
    fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new("NON_EXISTING".to_string()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (state.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                r.fetch_add(1, Ordering::SeqCst);
                let current = s.lock().unwrap().clone();
                let (status, body) = if !line.starts_with("GET /v1/state ") {
                    ("404 Not Found", "{}".to_string())
                } else if current == "500" {
                    ("500 Internal Server Error", "{}".to_string())
                } else {
                    ("200 OK", format!("{{\"state\":\"{current}\"}}"))
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        LndStandin {
            port,
            state,
            requests,
        }
    }

    fn set(&self, state: &str) {
        *self.state.lock().unwrap() = state.to_string();
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_locked_lnd_waits_for_its_operator_and_is_never_restarted() {
    let root = TestRoot::new();
    let lnd = LndStandin::start();
    root.simple_manifest(
        "lnd",
        &format!(
            "health:\n  lnd_state: https://127.0.0.1:{}\n  failures: 1\n  start_period: 0\n",
            lnd.port
        ),
    );
    let mut clock = Clock::new();
    let doc = clock.reconcile(&root);
    assert_eq!(app(&doc, "lnd")["result"], "changed", "created: {doc}");
    let started = root.podman_ok(&["inspect", "--format", "{{.State.StartedAt}}", "archy-lnd"]);
    // Hours of NON_EXISTING, then LOCKED (ticks 30 s apart): never a failure, never acted on.
    for (state, ticks) in [("NON_EXISTING", 40), ("LOCKED", 40)] {
        lnd.set(state);
        for _ in 0..ticks {
            let doc = clock.reconcile(&root);
            assert_eq!(app(&doc, "lnd")["action"], "ok", "{state}: {doc}");
        }
        let status = clock.archy(&root, &["status", "--output", "json"]);
        assert_eq!(status.code, 0, "waiting is not failing: {status:?}");
        let doc = status.json();
        let health = &app(&doc, "lnd")["health"];
        assert_eq!(health["status"], "waiting-for-operator", "{health}");
        assert_eq!(health["failures"], 0, "{health}");
        let what = health["operator"].as_str().unwrap();
        let expected = if state == "LOCKED" {
            "lncli unlock"
        } else {
            "lncli create"
        };
        assert!(what.contains(expected), "{what}");
        let text = clock.archy(&root, &["status"]);
        assert!(text.stdout.contains("waiting-for-operator"), "{text:?}");
        assert!(text.stdout.contains(expected), "{text:?}");
    }
    assert_eq!(
        root.podman_ok(&["inspect", "--format", "{{.State.StartedAt}}", "archy-lnd"]),
        started,
        "zero restarts while waiting for the operator"
    );
    assert!(
        lnd.requests() >= 80,
        "probed every tick: {}",
        lnd.requests()
    );
    // Unlocked: starting; then SERVER_ACTIVE: healthy.
    lnd.set("RPC_ACTIVE");
    clock.reconcile(&root);
    assert_eq!(
        app(&clock.status(&root), "lnd")["health"]["status"],
        "starting"
    );
    lnd.set("SERVER_ACTIVE");
    clock.reconcile(&root);
    assert_eq!(
        app(&clock.status(&root), "lnd")["health"]["status"],
        "healthy"
    );
    assert_eq!(
        root.podman_ok(&["inspect", "--format", "{{.State.StartedAt}}", "archy-lnd"]),
        started
    );
    // A 500 is a failure as before: with failures: 1 the next tick restarts it.
    lnd.set("500");
    let doc = clock.reconcile(&root);
    assert_eq!(app(&doc, "lnd")["action"], "restart", "{doc}");
    assert!(
        app(&doc, "lnd")["reason"]
            .as_str()
            .unwrap()
            .contains("GET /v1/state: HTTP 500"),
        "{doc}"
    );
}
