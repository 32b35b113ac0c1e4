//! Test harness: a real podman in an isolated root per test (own graphroot, runroot, tmp_dir,
//! static_dir, volume_path, network config dir), the archy binary, and a counting podman wrapper.
//! Everything a test creates is removed when the `TestRoot` drops, also when the test panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub mod bolt;
pub mod install;
pub mod lastgood;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The local test image: FROM scratch + static busybox, built into each root.
pub const TEST_IMAGE: &str = "localhost/archy-test-busybox:latest";

/// The network backend every test root sets explicitly in its containers.conf:
/// `ARCHY_TEST_NETWORK_BACKEND` (`netavark`, the default — what `apt install podman` gives and
/// the only backend of podman 5 — or `cni`). `.ci/run` runs the backend-dependent tests once
/// per backend.
pub fn network_backend() -> &'static str {
    match std::env::var("ARCHY_TEST_NETWORK_BACKEND").as_deref() {
        Ok("cni") => "cni",
        Ok("netavark") | Err(_) => "netavark",
        Ok(other) => panic!("ARCHY_TEST_NETWORK_BACKEND={other}: expected netavark or cni"),
    }
}

/// netavark: podman's IP allocations on `network` as (address, container id), read from its
/// IPAM database (containers/common `libnetwork/netavark/ipam.go`: `ipam.db` in the network
/// run dir, shared by rootful roots) under bbolt's shared lock. Empty on CNI.
pub fn ipam_allocations(network: &str) -> Vec<(String, String)> {
    let path = Path::new("/run/containers/networks/ipam.db");
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    file.lock_shared().expect("lock ipam.db");
    let bytes = std::fs::read(path).expect("read ipam.db");
    let db = archy::heal::boltdb::Db::parse(&bytes).expect("ipam.db parses");
    archy::heal::ipam::allocations(&db.root, network)
        .into_iter()
        .map(|(address, id)| (address.to_string(), id))
        .collect()
}

/// What a boot does to podman's IPAM database for `network` (it lives on /run, a tmpfs, so a
/// node boots with nothing reserved) and what podman 5's `network rm` does (4.3's keeps the
/// bucket): the network's bucket dropped, with archy's bbolt writer under bbolt's lock. The
/// file is shared by every rootful root, so only this network's bucket goes.
pub fn forget_ipam_network(network: &str) {
    use std::os::unix::fs::FileExt;
    let path = Path::new("/run/containers/networks/ipam.db");
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return;
    };
    file.lock().expect("lock ipam.db");
    let bytes = std::fs::read(path).expect("read ipam.db");
    let db = archy::heal::boltdb::Db::parse(&bytes).expect("ipam.db parses");
    if db.root.bucket(network.as_bytes()).is_none() {
        return;
    }
    let mut tree = db.root.clone();
    tree.items
        .retain(|(k, _)| k.as_slice() != network.as_bytes());
    let commit = db.commit(&tree).expect("ipam.db commit");
    for (offset, page) in &commit.pages {
        file.write_all_at(page, *offset).expect("write ipam.db");
    }
    file.sync_data().expect("sync ipam.db");
    file.write_all_at(&commit.meta.1, commit.meta.0)
        .expect("write ipam.db");
    file.sync_data().expect("sync ipam.db");
}

/// `promtool check metrics` on the text: its complaints (none expected), and its exit code.
pub fn promtool(text: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `promtool check metrics` finds nothing to say about the text.
pub fn assert_promtool_clean(text: &str) {
    let (code, said) = promtool(text);
    assert_eq!((code, said.as_str()), (0, ""), "promtool on:\n{text}");
}

/// One network config dir for all test roots: podman picks bridge names (podmanN) and serialises
/// `network create` through it, so parallel tests never pick the same bridge. Each root still
/// has its own network name and subnet.
pub const NETWORK_DIR: &str = "/tmp/archy-test-networks";

pub struct TestRoot {
    pub dir: PathBuf,
    pub network: String,
    pub subnet: String,
    pub gateway: String,
    pub manifests: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    env: Vec<(String, String)>,
}

/// Run output as text, for assertions.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Skip-free guard: these tests need podman; fail loudly if it is missing.
pub fn require_podman() {
    let ok = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "podman is required for integration tests (.ci/run installs it)"
    );
}

impl TestRoot {
    /// A fresh isolated podman root with the test image built in it.
    pub fn new() -> Self {
        let root = Self::empty();
        root.build_test_image();
        root
    }

    /// A fresh isolated podman root without any image.
    pub fn empty() -> Self {
        require_podman();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let dir = PathBuf::from(format!("/tmp/archy-test-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Unique per process and root, so parallel tests never share a network or subnet.
        // 10.100.0.0–10.199.255.0: clear of podman's default network (10.88.0.0/16), archy's
        // default (10.89.0.0/24) and the benchmark's (10.230+).
        let slot = (pid * 8 + n) % (100 * 256);
        let subnet = format!("10.{}.{}.0/24", 100 + slot / 256, slot % 256);
        let gateway = format!("10.{}.{}.1", 100 + slot / 256, slot % 256);
        let network = format!("at{}x{}", pid % 1_000_000, n);
        // A name an earlier process with the same pid used (killed before its drop) may still
        // have reservations in the shared IPAM database (podman 4.3's `network rm` keeps them).
        forget_ipam_network(&network);
        let d = dir.display();
        std::fs::write(dir.join("storage.conf"), format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n")).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ntmp_dir = \"{d}/tmp\"\nstatic_dir = \"{d}/static\"\nvolume_path = \"{d}/volumes\"\n[network]\nnetwork_backend = \"{backend}\"\nnetwork_config_dir = \"{NETWORK_DIR}\"\n",
                backend = network_backend()
            ),
        )
        .unwrap();
        let manifests = dir.join("manifests");
        let state_dir = dir.join("state");
        let run_dir = dir.join("runlocks");
        std::fs::create_dir_all(&manifests).unwrap();
        // The counting wrapper: one line per podman invocation.
        let wrapper = dir.join("podman-counting");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{d}/podman-calls.log'\nexec podman \"$@\"\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec![
            (
                "CONTAINERS_CONF".to_string(),
                format!("{d}/containers.conf"),
            ),
            (
                "CONTAINERS_STORAGE_CONF".to_string(),
                format!("{d}/storage.conf"),
            ),
            (
                "ARCHY_MANIFESTS".to_string(),
                manifests.display().to_string(),
            ),
            (
                "ARCHY_STATE_DIR".to_string(),
                state_dir.display().to_string(),
            ),
            ("ARCHY_RUN_DIR".to_string(), run_dir.display().to_string()),
            ("ARCHY_PODMAN".to_string(), wrapper.display().to_string()),
            ("ARCHY_NETWORK".to_string(), network.clone()),
            ("ARCHY_SUBNET".to_string(), subnet.clone()),
        ];
        TestRoot {
            dir,
            network,
            subnet,
            gateway,
            manifests,
            state_dir,
            run_dir,
            env,
        }
    }

    /// Environment for commands in this root (podman config + archy's globals).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn podman_cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Run podman in this root (not counted).
    pub fn podman(&self, args: &[&str]) -> Out {
        Out::from(self.podman_cmd().args(args).output().expect("run podman"))
    }

    /// Run podman and assert success; returns stdout trimmed.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert_eq!(out.code, 0, "podman {args:?} failed: {out:?}");
        out.stdout.trim().to_string()
    }

    pub fn archy_cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_archy"));
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env_remove("ARCHY_LOG");
        cmd
    }

    /// Run archy with these arguments in this root.
    pub fn archy(&self, args: &[&str]) -> Out {
        Out::from(self.archy_cmd().args(args).output().expect("run archy"))
    }

    /// Podman invocations made through archy's counting wrapper since the last call.
    pub fn take_podman_calls(&self) -> Vec<String> {
        let log = self.dir.join("podman-calls.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(String::from).collect()
    }

    /// Build the busybox test image (tag TEST_IMAGE) from a context with a static busybox.
    pub fn build_test_image(&self) {
        let ctx = self.test_context("image-ctx");
        self.podman_ok(&["build", "-q", "-t", TEST_IMAGE, ctx.to_str().unwrap()]);
    }

    /// A build context: bin/busybox (+ applet links) and a Containerfile running sleep.
    pub fn test_context(&self, name: &str) -> PathBuf {
        let ctx = self.dir.join(name);
        make_busybox_context(&ctx);
        ctx
    }

    /// Write a manifest file `<app>.yaml`.
    pub fn manifest(&self, app: &str, yaml: &str) -> PathBuf {
        let path = self.manifests.join(format!("{app}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// A minimal running app on the test image (sleeps; stops fast).
    pub fn simple_manifest(&self, app: &str, extra: &str) -> PathBuf {
        self.manifest(app, &format!("app: {app}\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 1\ncommand: [\"/bin/sleep\", \"3600\"]\n{extra}"))
    }

    /// Containers in this root as (name, id, state, labels) from `podman ps -a`.
    pub fn containers(&self) -> Vec<serde_json::Value> {
        let out = self.podman_ok(&["ps", "-a", "--format", "json"]);
        serde_json::from_str::<Option<Vec<serde_json::Value>>>(&out)
            .unwrap()
            .unwrap_or_default()
    }

    pub fn container(&self, name: &str) -> Option<serde_json::Value> {
        self.containers()
            .into_iter()
            .find(|c| c["Names"][0] == name)
    }

    pub fn container_id(&self, name: &str) -> String {
        self.container(name)
            .unwrap_or_else(|| panic!("no container {name}"))["Id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn state(&self, name: &str) -> String {
        self.container(name).map_or_else(
            || "missing".into(),
            |c| c["State"].as_str().unwrap_or("").to_string(),
        )
    }

    pub fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.podman(&["image", "inspect", "--format", "{{.Id}}", reference]);
        (out.code == 0).then(|| out.stdout.trim().to_string())
    }
}

/// Write a busybox `FROM scratch` context at `ctx`.
pub fn make_busybox_context(ctx: &Path) {
    let bin = ctx.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is required (.ci/run installs it)");
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in [
        "sh", "sleep", "cat", "echo", "httpd", "ls", "true", "wget", "env",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\nCMD [\"/bin/sleep\", \"3600\"]\n",
    )
    .unwrap();
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        // Remove containers fast (busybox ignores SIGTERM), this root's network, then the storage.
        // Not `system reset`: it would delete every test's networks from the shared config dir.
        let bridge = self
            .podman_cmd()
            .args([
                "network",
                "inspect",
                "--format",
                "{{.NetworkInterface}}",
                &self.network,
            ])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|b| !b.is_empty());
        let _ = self
            .podman_cmd()
            .args(["rm", "-a", "-f", "-t", "0"])
            .output();
        // The bridge goes before the network's config: while the config exists no other root can
        // be given the same bridge name (podman numbers them from the shared config dir), so
        // deleting it afterwards could take down a bridge a parallel test has just been given.
        if let Some(bridge) = bridge.as_deref() {
            if Path::new("/sys/class/net").join(bridge).exists() {
                let _ = Command::new("ip").args(["link", "delete", bridge]).output();
            }
        }
        let _ = self
            .podman_cmd()
            .args(["network", "rm", "-f", &self.network])
            .output();
        let _ = self
            .podman_cmd()
            .args(["volume", "rm", "-a", "-f"])
            .output();
        let _ = self.podman_cmd().args(["rmi", "-a", "-f"]).output();
        release_leaked_host_state(&self.dir, &self.gateway, &self.network);
        // The CNI backend's IP reservations of the removed network; netavark's DNS entries of
        // containers killed behind podman's back.
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
        let _ = std::fs::remove_file(
            Path::new("/run/containers/networks/aardvark-dns").join(&self.network),
        );
        if std::env::var_os("ARCHY_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Containers killed behind podman's back (heal-podman and reboot tests) never get their OCI state,
/// network namespace or bridge torn down by podman. Remove what belongs to this root: runc state
/// whose bundle lies under `dir`, network namespaces holding an address of this root's subnet,
/// and this root's firewall rules (its bridge is deleted by `Drop`, before the network's config).
/// (What a reboot clears too, but for the bridge.)
pub fn release_leaked_host_state(dir: &Path, gateway: &str, network: &str) {
    kill_root_processes(dir);
    let prefix = format!(
        "inet {}.",
        gateway.rsplit_once('.').map_or(gateway, |(net, _)| net)
    );
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(out) = Command::new("ip")
                .args(["-n", &name, "-o", "-4", "addr", "show"])
                .output()
            else {
                continue;
            };
            if String::from_utf8_lossy(&out.stdout).contains(&prefix) {
                let _ = Command::new("ip").args(["netns", "delete", &name]).output();
            }
        }
    }
    release_firewall_rules(&prefix["inet ".len()..], network);
    forget_ipam_network(network);
}

/// OCI containers (runc's default root) whose bundle is under `dir`.
pub fn runc_ids_under(dir: &Path) -> Vec<String> {
    runc_ids_under_or_none(dir).expect("runc list keeps failing")
}

/// `runc_ids_under`, None when `runc list` keeps failing (for cleanup paths that must not panic).
fn runc_ids_under_or_none(dir: &Path) -> Option<Vec<String>> {
    // `runc list` fails as a whole when another test's container state vanishes while it reads
    // the shared /run/runc: retry instead of reading that as "no containers".
    let mut out = Command::new("runc")
        .args(["list", "--format", "json"])
        .output()
        .expect("run runc");
    for _ in 0..20 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = Command::new("runc")
            .args(["list", "--format", "json"])
            .output()
            .expect("run runc");
    }
    if !out.status.success() {
        return None;
    }
    let list: Option<Vec<serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c["bundle"]
                .as_str()
                .is_some_and(|b| Path::new(b).starts_with(dir))
        })
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect::<Vec<_>>()
        .into()
}

/// Live conmon processes whose command line mentions `dir`.
pub fn conmons_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            cmd.starts_with("/usr/bin/conmon") && cmd.contains(&needle) && !zombie
        })
        .collect()
}

/// SIGKILL every container process and conmon of the root, and delete the runc state (what a
/// power cut does to them).
pub fn kill_root_processes(dir: &Path) {
    // conmon first, with SIGKILL: a conmon that outlives its container runs podman's exit
    // command (`container cleanup`) later, which would then tear down the *restarted*
    // container of the same id. A real reboot kills everything at once.
    for pid in conmons_under(dir) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .output();
    }
    for _ in 0..100 {
        if conmons_under(dir).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for id in runc_ids_under_or_none(dir).unwrap_or_default() {
        let _ = Command::new("runc").args(["kill", &id, "KILL"]).output();
        for _ in 0..100 {
            let state = Command::new("runc").args(["state", &id]).output().unwrap();
            if !String::from_utf8_lossy(&state.stdout).contains("\"running\"") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    }
    // Any podman process of this root already started (cleanup) finishes before the "boot".
    for _ in 0..100 {
        if !other_processes_mention(dir) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether any process other than this test's mentions `dir` on its command line.
fn other_processes_mention(dir: &Path) -> bool {
    let needle = dir.display().to_string();
    let me = std::process::id();
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .any(|pid| {
                pid != me
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
    })
}

/// netavark's (or CNI's) iptables rules for this root's network (masquerade, forward, port DNAT) that no
/// teardown removed because the containers were killed behind podman's back: rules mentioning
/// the subnet prefix (`10.a.b.`) or `dnat name: <network> `, then the NETAVARK chains only they
/// jumped to. Stale DNAT rules would capture host ports later tests publish.
fn release_firewall_rules(subnet_prefix: &str, network: &str) {
    release_firewall_rules_by_line(subnet_prefix, network);
    // netavark 1.4 names a network's chains by the first 13 hex digits of the SHA-512 of its
    // name (`src/network/core_utils.rs` `create_network_hash`) and keeps them while any of its
    // containers did not get a complete teardown: remove them once nothing jumps to them.
    use sha2::Digest;
    let hash: String = format!("{:X}", sha2::Sha512::digest(network.as_bytes()))[..13].to_string();
    for chain in [format!("NETAVARK-{hash}"), format!("NETAVARK-DN-{hash}")] {
        remove_chain_if_unreferenced("nat", &chain);
    }
}

/// Flush and delete iptables chain `chain` of `table` when no rule jumps to it.
fn remove_chain_if_unreferenced(table: &str, chain: &str) {
    let referenced = Command::new("iptables")
        .args(["-t", table, "-S"])
        .output()
        .map_or(true, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("-A ") && l.ends_with(&format!("-j {chain}")))
        });
    if !referenced {
        let _ = Command::new("iptables")
            .args(["-t", table, "-F", chain])
            .output();
        let _ = Command::new("iptables")
            .args(["-t", table, "-X", chain])
            .output();
    }
}

fn release_firewall_rules_by_line(subnet_prefix: &str, network: &str) {
    let dnat_comment = format!("dnat name: {network} ");
    // The CNI backend (podman 4.3.1 with containernetworking-plugins) quotes the name.
    let cni_comment = format!("name: \\\"{network}\\\"");
    for table in ["nat", "filter"] {
        let Ok(out) = Command::new("iptables").args(["-t", table, "-S"]).output() else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut orphaned_chains = Vec::new();
        for line in listing.lines().filter(|l| {
            l.starts_with("-A ")
                && (l.contains(subnet_prefix)
                    || l.contains(&dnat_comment)
                    || l.contains(&cni_comment))
        }) {
            let mut args = split_rule(line);
            if let Some(pos) = args.iter().position(|a| a == "-j") {
                if let Some(target) = args.get(pos + 1).filter(|t| {
                    (t.starts_with("NETAVARK-") && !t.starts_with("NETAVARK-HOSTPORT"))
                        || (t.starts_with("CNI-")
                            && !t.starts_with("CNI-HOSTPORT")
                            && !["CNI-FORWARD", "CNI-ADMIN"].contains(&t.as_str()))
                }) {
                    orphaned_chains.push(target.clone());
                }
            }
            args[0] = "-D".into();
            let _ = Command::new("iptables")
                .args(["-t", table])
                .args(&args)
                .output();
        }
        for chain in orphaned_chains {
            remove_chain_if_unreferenced(table, &chain);
        }
    }
}

/// Split an `iptables -S` line into arguments, honouring double quotes (CNI's comments hold
/// escaped ones): the product's own splitter, which heal-podman uses the same way.
pub use archy::heal::network::split_rule;

/// The entry of app `name` in a status or reconcile JSON document.
pub fn app<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {doc}"))
}

/// A peer program fetched for the tests: `$env_var` when set, else the path `script` (under
/// .ci/) prints. Not finding it is a failure, not a skip.
pub fn fetched_tool(env_var: &str, script: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env_var) {
        return PathBuf::from(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci")
        .join(script);
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    // The kernel may hand the same just-released port to two calls (seen: two apps of one soak
    // given one port, so their manifests conflicted): never give a port out twice in a run.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The venv with PyPI `e-x` at `version`, made by scripts/test (`ARCHY_EX_VENVS` names the
/// directory holding `e-x-<version>/`; default `<target dir>/venvs`).
pub fn electrumx_python(version: &str) -> PathBuf {
    let venvs = std::env::var_os("ARCHY_EX_VENVS").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
                    PathBuf::from,
                )
                .join("venvs")
        },
        PathBuf::from,
    );
    let python = venvs.join(format!("e-x-{version}/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test (it installs e-x {version} from PyPI into that venv)",
        python.display()
    );
    python
}

/// A running child process stopped (by its id) when dropped: SIGTERM, which nginx's master
/// passes on to its workers before exiting (SIGKILL would orphan them), then SIGKILL.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..200 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (bounded, 10 s) until something listens on loopback `port`; `child` must stay alive.
pub fn wait_for_port(port: u16, what: &str, child: &mut std::process::Child) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what} never listened on {port}");
}

/// Debian's nginx in the foreground under `dir`, serving `dir/default.conf` from an http block
/// like the image's nginx.conf (checked with `nginx -t` first).
pub fn start_nginx(dir: &Path) -> Running {
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    include {d}/default.conf;\n}}\n"
        ),
    )
    .unwrap();
    let test = Command::new("nginx")
        .args(["-t", "-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .output()
        .expect("Debian's nginx is installed (scripts/test installs it)");
    let server = std::fs::read_to_string(dir.join("default.conf")).unwrap_or_default();
    assert!(test.status.success(), "nginx -t: {test:?}\n{server}");
    Running(
        Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .spawn()
            .unwrap(),
    )
}

/// One HTTP/1.1 exchange on loopback `port`: `head` (request line and headers, each ending in
/// CRLF), then `Connection: close`, the body's length and the body; the status and the body.
pub fn http_exchange(port: u16, head: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
