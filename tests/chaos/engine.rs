//! Engine faults (heal-podman, then reconcile) and a simulated reboot with the boot order
//! heal-podman → render-config → reconcile → verify-update. Heavy: `#[ignore]`, run by
//! `scripts/chaos-matrix`. tests/heal_podman.rs checks the heal steps in detail.

use crate::common::*;
use crate::support::*;

fn db(root: &TestRoot) -> std::path::PathBuf {
    root.dir.join("static/bolt_state.db")
}

/// heal-podman, then reconcile: converged, no ghost left, image and volume data kept, a second
/// heal does nothing.
fn heal_and_check(case: &mut Case, root: &TestRoot, image: &str, data: &str) {
    let out = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        runc_ids_under(&root.dir).is_empty(),
        "a ghost OCI container survived: {out:?}"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-app"), "running", "{out:?}");
    assert_eq!(containers_of(root, "app"), 1);
    case.data_kept(
        root.image_id(TEST_IMAGE).as_deref() == Some(image),
        "image id",
    );
    case.data_kept(
        volume_file(root, "app").as_deref() == Some(data),
        "volume file",
    );
    let mut again = root.archy(&["heal-podman", "--output", "json"]);
    if again.json()["result"] == "healed" {
        // A simulated reboot keeps the kernel's iptables rules (a real one flushes them): when
        // reconcile removed the killed container, podman's CNI teardown found no namespace and
        // left its masquerade rules. The network-debris probe releases them, once.
        let steps: Vec<String> = again.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect();
        // Killed containers started again get new addresses; the old ones stay reserved in
        // podman's IPAM database (netavark) until the probe releases them, once.
        assert!(
            !steps.is_empty()
                && steps
                    .iter()
                    .all(|s| s == "release-network-debris" || s == "release-ipam-leaks"),
            "{again:?}"
        );
        again = root.archy(&["heal-podman", "--output", "json"]);
    }
    assert_eq!(again.json()["result"], "healthy", "{again:?}");
}

fn engine_fault(fault: &str, response: &str, inject: impl Fn(&TestRoot)) {
    let mut case = Case::new(fault, response);
    let root = TestRoot::new();
    let data = app_with_data(&root, "app", "");
    let image = root.image_id(TEST_IMAGE).unwrap();
    case.run();
    inject(&root);
    heal_and_check(&mut case, &root, &image, &data);
    case.pass();
}

#[test]
#[ignore = "full chaos matrix: scripts/chaos-matrix"]
fn engine_db_deleted() {
    engine_fault(
        "engine: podman's state DB deleted under running apps",
        "heal-podman: storage-only containers removed, ghosts killed, volumes registered; reconcile recreates",
        |r| std::fs::remove_file(db(r)).unwrap(),
    );
}

#[test]
#[ignore = "full chaos matrix: scripts/chaos-matrix"]
fn engine_db_corrupt() {
    engine_fault(
        "engine: podman's state DB corrupt (truncated to one page)",
        "heal-podman: DB moved aside (kept), then as for a deleted DB; reconcile recreates",
        |r| {
            let f = std::fs::OpenOptions::new().write(true).open(db(r)).unwrap();
            f.set_len(4096).unwrap();
        },
    );
}

#[test]
#[ignore = "full chaos matrix: scripts/chaos-matrix"]
fn engine_runtime_dir_wiped() {
    engine_fault(
        "engine: runtime dirs (tmp_dir, runroot) wiped under killed containers",
        "heal-podman clears/refreshes runtime state; reconcile starts the apps again",
        |r| {
            kill_root_processes(&r.dir);
            unmount_runtime(&r.dir);
            let _ = std::fs::remove_dir_all(r.dir.join("tmp"));
            let _ = std::fs::remove_dir_all(r.dir.join("run"));
        },
    );
}

#[test]
#[ignore = "full chaos matrix: scripts/chaos-matrix"]
fn engine_ghost_oci_container() {
    let mut case = Case::new(
        "engine: ghost OCI container (running under runc, unknown to podman's DB)",
        "heal-podman kills the ghost and frees its name; reconcile recreates",
    );
    let root = TestRoot::new();
    // The root's own DB from before the app existed (same paths, no container in it).
    root.podman_ok(&["ps"]);
    let before = root.dir.join("bolt_state.db.before");
    std::fs::copy(db(&root), &before).unwrap();
    let data = app_with_data(&root, "app", "");
    let image = root.image_id(TEST_IMAGE).unwrap();
    let ghost = root.container_id("archy-app");
    case.run();
    std::fs::copy(&before, db(&root)).unwrap();
    assert!(
        runc_ids_under(&root.dir).contains(&ghost),
        "runc still runs it"
    );
    heal_and_check(&mut case, &root, &image, &data);
    case.pass();
}

#[test]
#[ignore = "full chaos matrix: scripts/chaos-matrix"]
fn boot_after_a_simulated_reboot() {
    let mut case = Case::new(
        "boot: reboot simulated (processes killed, podman tmp dir and runroot wiped)",
        "heal-podman → render-config → reconcile → verify-update (nothing pending): all converge",
    );
    let root = TestRoot::new();
    let cfg = root.dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    root.simple_manifest(
        "app",
        &format!(
            "volumes: [\"app-data:/data\"]\nconfigs:\n  - render: bitcoin.conf\n    path: {}/bitcoin.conf\n",
            cfg.display()
        ),
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    root.podman_ok(&[
        "exec",
        "archy-app",
        "/bin/sh",
        "-c",
        "echo precious-app > /data/blk00000.dat",
    ]);
    let conf = std::fs::read(cfg.join("bitcoin.conf")).unwrap();
    let image = root.image_id(TEST_IMAGE).unwrap();
    for i in 0..iterations(1, 2) {
        case.run();
        kill_root_processes(&root.dir);
        unmount_runtime(&root.dir);
        let _ = std::fs::remove_dir_all(root.dir.join("tmp"));
        let _ = std::fs::remove_dir_all(root.dir.join("run"));
        for step in [
            vec!["heal-podman"],
            vec!["render-config"],
            vec!["reconcile"],
        ] {
            let out = root.archy(&step);
            assert_eq!(out.code, 0, "boot #{i} {step:?}: {out:?}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = root
            .archy_cmd()
            .args(["verify-update"])
            .env("ARCHY_INSTALL_ROOT", tmp.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains("nothing pending"), "{stdout}");
        assert_eq!(root.state("archy-app"), "running");
        assert_eq!(containers_of(&root, "app"), 1);
        case.data_kept(
            volume_file(&root, "app").as_deref() == Some("precious-app"),
            "volume",
        );
        case.data_kept(
            std::fs::read(cfg.join("bitcoin.conf")).unwrap() == conf,
            "config",
        );
        case.data_kept(
            root.image_id(TEST_IMAGE).as_deref() == Some(image.as_str()),
            "image",
        );
        case.pass();
    }
}

/// An HTTP GET of `path` on 127.0.0.1:`port`: the body, or why it failed.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("not 200: {head}"));
    }
    Ok(body.trim().to_string())
}

/// What the host holds for container `id` on the network, read before the fault through podman
/// and the kernel (no backend's private files): its netns path, host veth and address.
struct HostSide {
    netns: String,
    /// The host veth's interface index: netavark hands out names (`veth3`) again, the kernel
    /// does not reuse an index soon.
    veth_index: i64,
    veth: String,
    ip: String,
}

fn network_of(root: &TestRoot, id: &str) -> HostSide {
    let netns = root
        .podman_ok(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id])
        .trim()
        .to_string();
    let ip = root
        .podman_ok(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            id,
        ])
        .trim()
        .to_string();
    let name = std::path::Path::new(&netns)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let eth0 = std::process::Command::new("ip")
        .args(["-n", &name, "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    let eth0: serde_json::Value = serde_json::from_slice(&eth0.stdout).unwrap();
    let peer = eth0[0]["link_index"].as_i64().expect("eth0's peer index");
    let links = std::process::Command::new("ip")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    let veth = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"].as_i64() == Some(peer))
        .and_then(|l| l["ifname"].as_str())
        .expect("the host veth of eth0")
        .to_string();
    assert!(!netns.is_empty() && !ip.is_empty(), "{netns} {ip}");
    HostSide {
        netns,
        veth_index: peer,
        veth,
        ip,
    }
}

/// Nothing of container `id` left on the host: netns, veth, firewall rules naming it or
/// forwarding to its address (unless `now` holds that address again), its DNS entry; on CNI
/// also its IP reservation and libcni cache entry.
fn assert_no_network_debris(root: &TestRoot, id: &str, old: &HostSide, now: &str) {
    assert!(
        !std::path::Path::new(&old.netns).exists(),
        "netns {} left",
        old.netns
    );
    let links = std::process::Command::new("ip")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    assert!(
        !links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifindex"].as_i64() == Some(old.veth_index)),
        "veth {} (index {}) left",
        old.veth,
        old.veth_index
    );
    let now_ip = network_of(root, now).ip;
    for table in ["nat", "filter"] {
        let rules = std::process::Command::new("iptables")
            .args(["-t", table, "-S"])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            !rules.contains(id),
            "iptables {table} rules of the ghost left:\n{rules}"
        );
        if now_ip != old.ip {
            assert!(
                !rules.contains(&format!("--to-destination {}:", old.ip)),
                "a port forward to the dead address {} left:\n{rules}",
                old.ip
            );
        }
    }
    if network_backend() == "netavark" {
        let dns = std::path::Path::new("/run/containers/networks/aardvark-dns").join(&root.network);
        let dns = std::fs::read_to_string(dns).unwrap_or_default();
        assert!(!dns.contains(id), "DNS entry of the ghost left:\n{dns}");
        assert_only_holder_of_addresses(root, now);
    }
    if network_backend() == "cni" {
        let ipam = std::path::Path::new("/var/lib/cni/networks").join(&root.network);
        for entry in std::fs::read_dir(&ipam).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !text.contains(id),
                "IP reservation {} left",
                entry.path().display()
            );
        }
        assert!(!std::path::Path::new("/var/lib/cni/results")
            .join(format!("{}-{id}-eth0", root.network))
            .exists());
    }
}

/// netavark: podman's IPAM database reserves exactly one address on the root's network, the
/// running container's (a dead or earlier attachment's reservation would be released by no
/// one, and a /24 runs out after 253).
fn assert_only_holder_of_addresses(root: &TestRoot, now: &str) {
    let held = ipam_allocations(&root.network);
    assert_eq!(
        held.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        [now],
        "IP reservations on {}: {held:?}",
        root.network
    );
}

/// An app publishing 127.0.0.1:`port` with busybox httpd serving /etc (so GET /hostname names
/// the container that answered: podman writes its short id there).
fn web_app(root: &TestRoot, port: u16) -> String {
    root.manifest(
        "web",
        &format!(
            "app: web\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 1\ncommand: [\"/bin/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/etc\"]\nports: [\"127.0.0.1:{port}:80\"]\n"
        ),
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = root.container_id("archy-web");
    assert_eq!(http_get(port, "/hostname").as_deref(), Ok(&id[..12]));
    id
}

/// The network-debris probe as `heal-podman --dry-run` reports it.
fn network_debris_probe(root: &TestRoot) -> serde_json::Value {
    let dry = root.archy(&["heal-podman", "--dry-run", "--output", "json"]);
    dry.json()["initial_probes"]
        .as_array()
        .unwrap_or_else(|| panic!("{dry:?}"))
        .iter()
        .find(|p| p["name"] == "network-debris")
        .cloned()
        .unwrap_or_else(|| panic!("{dry:?}"))
}

fn port_answers_after_db_loss(
    case: &mut Case,
    root: &TestRoot,
    port: u16,
    ghost: &str,
    old: &HostSide,
) {
    let heal = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let new = root.container_id("archy-web");
    assert_ne!(new, ghost);
    case.data_kept(true, "");
    assert_eq!(
        http_get(port, "/hostname").as_deref(),
        Ok(&new[..12]),
        "the published port must answer from the new container"
    );
    assert_no_network_debris(root, ghost, old, &new);
    let again = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(again.json()["result"], "healthy", "{again:?}");
}

#[test]
fn engine_db_deleted_under_a_published_port() {
    let mut case = Case::new(
        "engine: podman's state DB deleted under an app publishing a port (ghost keeps netns, veth, DNAT, IP)",
        "heal-podman kills the ghost and replays its CNI teardown (netns, veth, DNAT, IP released); reconcile recreates; the port answers from the new container",
    );
    let root = TestRoot::new();
    let port = free_port();
    let ghost = web_app(&root, port);
    let old = network_of(&root, &ghost);
    case.run();
    std::fs::remove_file(db(&root)).unwrap();
    port_answers_after_db_loss(&mut case, &root, port, &ghost, &old);
    case.pass();
}

#[test]
fn engine_network_debris_without_a_ghost() {
    let mut case = Case::new(
        "engine: container killed behind podman's back, then its DB lost (no ghost process; netns, DNAT, IP left)",
        "heal-podman's network-debris probe reports the forgotten container's network state and releases it; the port answers from the new container",
    );
    let root = TestRoot::new();
    let port = free_port();
    let ghost = web_app(&root, port);
    let old = network_of(&root, &ghost);
    case.run();
    kill_root_processes(&root.dir);
    std::fs::remove_file(db(&root)).unwrap();
    let probe = network_debris_probe(&root);
    assert_eq!(probe["status"], "broken", "{probe}");
    assert!(
        probe["evidence"][0]
            .as_str()
            .unwrap()
            .contains(&ghost[..12]),
        "{probe}"
    );
    port_answers_after_db_loss(&mut case, &root, port, &ghost, &old);
    case.pass();
}

#[test]
fn engine_forward_with_no_owner_left() {
    let mut case = Case::new(
        "engine: container killed behind podman's back, its DB lost, its namespace and DNS entry gone too (only its port forward and the jump to it left, ahead of the next container's)",
        "heal-podman reports the forward to an address no live container holds and replays it away (netavark: `netavark teardown`; CNI: DEL from libcni's cache); the port answers from the new container",
    );
    let root = TestRoot::new();
    let port = free_port();
    let ghost = web_app(&root, port);
    let old = network_of(&root, &ghost);
    case.run();
    kill_root_processes(&root.dir);
    std::fs::remove_file(db(&root)).unwrap();
    let name = std::path::Path::new(&old.netns)
        .file_name()
        .unwrap()
        .to_owned();
    let out = std::process::Command::new("ip")
        .args(["netns", "delete"])
        .arg(&name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    if network_backend() == "netavark" {
        std::fs::remove_file(
            std::path::Path::new("/run/containers/networks/aardvark-dns").join(&root.network),
        )
        .unwrap();
    }
    let rules = String::from_utf8_lossy(
        &std::process::Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        rules.contains(&format!("{}:80", old.ip)),
        "the forward to the dead address must still be there: {rules}"
    );
    port_answers_after_db_loss(&mut case, &root, port, &ghost, &old);
    case.pass();
}

/// Network namespaces under /run/netns with no process in them holding an address on `subnet`
/// (the stand-in for "nothing of the old attachments is left").
fn idle_namespaces_on(subnet_prefix: &str) -> Vec<String> {
    let busy: std::collections::BTreeSet<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("ns/net")).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let mut idle = Vec::new();
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if busy.contains(&format!("net:[{}]", meta.ino())) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let addrs = std::process::Command::new("ip")
            .args(["-n", &name, "-4", "-o", "addr", "show"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&addrs.stdout).contains(subnet_prefix) {
            idle.push(name);
        }
    }
    idle
}

#[test]
fn engine_runtime_dirs_wiped_under_a_published_port() {
    let mut case = Case::new(
        "engine: container processes killed and podman's runtime dirs wiped under an app publishing a port (podman forgets the namespace; netns, veth, DNAT, IP left)",
        "a tick restarts the app in a new namespace; heal-podman's network-debris probe names the old namespace and releases it (CNI DEL, netns, its port forwards and IP); the port answers",
    );
    let root = TestRoot::new();
    let port = free_port();
    let id = web_app(&root, port);
    let old_netns = network_of(&root, &id).netns;
    case.run();
    kill_root_processes(&root.dir);
    unmount_runtime_except(&root.dir, &[&root.state_dir]);
    let _ = std::fs::remove_dir_all(root.dir.join("tmp"));
    let _ = std::fs::remove_dir_all(root.dir.join("run"));
    // The timer fires first (podman refreshes its state, archy starts the app again), then
    // the operator heals, then the next tick.
    let _ = root.archy(&["reconcile"]);
    let probe = network_debris_probe(&root);
    assert_eq!(probe["status"], "broken", "{probe}");
    assert!(
        probe["evidence"].to_string().contains(&old_netns),
        "the old namespace must be named: {probe}"
    );
    let heal = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    case.data_kept(true, "");
    let now = root.container_id("archy-web");
    assert_eq!(http_get(port, "/hostname").as_deref(), Ok(&now[..12]));
    assert!(
        !std::path::Path::new(&old_netns).exists(),
        "old namespace {old_netns} left"
    );
    let prefix = root.subnet.rsplit_once('.').unwrap().0.to_string() + ".";
    assert_eq!(idle_namespaces_on(&prefix), Vec::<String>::new());
    if network_backend() == "netavark" {
        // The restart allocated a new address under the same id: the old one is released.
        assert_only_holder_of_addresses(&root, &now);
    }
    let again = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(again.json()["result"], "healthy", "{again:?}");
    case.pass();
}

#[test]
fn engine_orphan_bridge_holds_the_subnet() {
    let mut case = Case::new(
        "network: archy's network config deleted behind podman's back while its bridge stays (the bridge holds the subnet: `podman network create` says \"already used on the host\")",
        "reconcile fails naming the cause and `archy heal-podman`; heal-podman deletes the bridge no network claims; reconcile recreates the network; the port answers",
    );
    let root = TestRoot::new();
    let port = free_port();
    web_app(&root, port);
    let bridge = bridge_of(&root);
    case.run();
    // The network's config file (`<name>.json` for netavark, `<name>.conflist` for CNI) goes
    // first, then the container: netavark removes a bridge when its last container leaves, but
    // cannot tear down a network podman no longer knows, so the bridge stays (CNI never
    // removes bridges).
    let config = match network_backend() {
        "cni" => format!("{}.conflist", root.network),
        _ => format!("{}.json", root.network),
    };
    std::fs::remove_file(std::path::Path::new(NETWORK_DIR).join(config)).unwrap();
    let _ = root.podman(&["rm", "-f", "-t", "0", "archy-web"]);
    assert!(std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("already used on the host") && out.stderr.contains("archy heal-podman"),
        "{out:?}"
    );
    let heal = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    assert!(heal.stdout.contains("remove-orphan-bridges"), "{heal:?}");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let now = root.container_id("archy-web");
    assert_eq!(http_get(port, "/hostname").as_deref(), Ok(&now[..12]));
    case.data_kept(true, "");
    case.pass();
}

/// The firewall rules that name `network` or forward to `port` (iptables on CNI and netavark
/// 1.4), sorted: what another root's published port consists of.
fn rules_of(network: &str, port: u16) -> Vec<String> {
    let mut rules = Vec::new();
    for table in ["nat", "filter"] {
        let out = std::process::Command::new("iptables")
            .args(["-t", table, "-S"])
            .output()
            .unwrap();
        rules.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(network) || l.contains(&format!("--dport {port} ")))
                .map(|l| format!("{table}: {l}")),
        );
    }
    rules.sort();
    rules
}

/// The bridge podman gives `root`'s network.
fn bridge_of(root: &TestRoot) -> String {
    root.podman_ok(&[
        "network",
        "inspect",
        "--format",
        "{{.NetworkInterface}}",
        &root.network,
    ])
    .trim()
    .to_string()
}

/// Another podman root with its own network config dir (as another podman install has) and a
/// network on `subnet` under another name and bridge; returns the root and its bridge's name.
fn other_root_on(subnet: &str) -> (TestRoot, String) {
    let other = TestRoot::new();
    let conf = other.dir.join("containers.conf");
    let own_dir = other.dir.join("networks");
    std::fs::create_dir_all(&own_dir).unwrap();
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace(NETWORK_DIR, own_dir.to_str().unwrap());
    std::fs::write(&conf, text).unwrap();
    other.podman_ok(&["network", "create", "--subnet", subnet, &other.network]);
    let numbered = bridge_of(&other);
    // Its bridge is named apart (podman numbered it from the other config dir alone, and
    // podman 4.3 has no --interface-name): the name in its config file replaced.
    let unique = format!("ov{}", std::process::id() % 100_000);
    for entry in std::fs::read_dir(&own_dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let renamed = text.replace(&format!("\"{numbered}\""), &format!("\"{unique}\""));
        std::fs::write(entry.path(), renamed).unwrap();
    }
    (other, unique)
}

#[test]
fn engine_another_roots_network_on_the_same_subnet_is_left_alone() {
    let mut case = Case::new(
        "engine: another podman root (its own network config) runs a network on archy's subnet, its container on the address of archy's app; archy's app is killed and its DB lost",
        "heal-podman releases archy's dead namespace, forwards and reservations only: the other root's firewall rules, address reservation and namespace are untouched",
    );
    let root = TestRoot::new();
    let port = free_port();
    web_app(&root, port);
    // No bridge may hold the subnet while the other root creates its network (podman refuses
    // a subnet a host interface holds): archy's app stopped, its bridge gone (CNI keeps it).
    let bridge = bridge_of(&root);
    root.podman_ok(&["stop", "-t", "0", "archy-web"]);
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", &bridge])
        .output();
    let (other, other_bridge) = other_root_on(&root.subnet);
    // archy's app runs again, then the other root's container takes the very same address.
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let ghost = root.container_id("archy-web");
    let old = network_of(&root, &ghost);
    let other_port = free_port();
    other.podman_ok(&[
        "run",
        "-d",
        "--name",
        "other-web",
        "--network",
        &other.network,
        "--ip",
        &old.ip,
        "-p",
        &format!("127.0.0.1:{other_port}:80"),
        TEST_IMAGE,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let other_rules = rules_of(&other.network, other_port);
    assert!(
        other_rules
            .iter()
            .any(|r| r.contains(&format!("{}:80", old.ip))),
        "the other root forwards its port to the shared address: {other_rules:#?}"
    );
    let other_ipam = ipam_allocations(&other.network);
    let other_ns = other.podman_ok(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        "other-web",
    ]);
    case.run();
    kill_root_processes(&root.dir);
    std::fs::remove_file(db(&root)).unwrap();
    let heal = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    assert!(
        !std::path::Path::new(&old.netns).exists(),
        "archy's dead namespace {} left",
        old.netns
    );
    assert_eq!(
        rules_of(&other.network, other_port),
        other_rules,
        "the other root's rules changed"
    );
    assert_eq!(ipam_allocations(&other.network), other_ipam);
    assert_eq!(other.state("other-web"), "running");
    let held = std::process::Command::new("nsenter")
        .arg(format!("--net={}", other_ns.trim()))
        .args(["ip", "-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&held.stdout).contains(&format!("inet {}/", old.ip)),
        "the other root's container keeps its address"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    case.data_kept(true, "");
    other.podman_ok(&["rm", "-f", "-t", "0", "other-web"]);
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", &other_bridge])
        .output();
    case.pass();
}
