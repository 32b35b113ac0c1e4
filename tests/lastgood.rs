//! Last-known-good images on real podman (issue 26): an image healthy three ticks in a row is an
//! app's last-known-good; a changed image (a new tag, a rebuilt `build:` context) that does not
//! become healthy within its window is rolled back to that image id from local storage, kept in
//! `bad_images`, not tried again until `--retry`, and status fails until acknowledged or the
//! manifest names another image. Ticks are simulated with `ARCHY_NOW` (30 s apart).
#![allow(clippy::disallowed_methods)] // tests drive podman and archy directly

mod common;
use common::*;

use std::path::Path;

use common::lastgood::*;

// A scenario test: its steps read top to bottom, each checking what the one before left.
#[allow(clippy::too_many_lines)]
#[test]
fn a_tag_that_never_answers_is_rolled_back_to_the_last_known_good_image_id() {
    let root = TestRoot::empty();
    let one = build_tag(&root, "1", &serving(1));
    let two = build_tag(&root, "2", SILENT);
    let three = build_tag(&root, "3", &serving(3));
    let port = free_port();
    let data = root.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let write = |image: &str| {
        root.manifest(
            "web",
            &manifest_yaml("web", &format!("image: {image}"), port, &data),
        );
    };
    write("localhost/t:1");
    // A dependent whose probe asks web's server: down while web is, restarted after the
    // rollback (its own ladder is slow: 10 failures).
    root.manifest(
        "client",
        &format!(
            "app: client\nimage: localhost/t:1\npull: never\nstop_timeout: 0\n\
             command: [\"/bin/sleep\", \"3600\"]\ndepends_on: [web]\n\
             health:\n  http: http://127.0.0.1:{port}/\n  failures: 10\n  start_period: 30s\n"
        ),
    );
    let mut clock = Clock::new();

    // Created, then healthy three ticks in a row: :1's image id is the last-known-good.
    start_then_tick(&root, &mut clock, port, 3);
    let rec = record(&root, "web");
    assert_eq!(rec["last_known_good"]["id"], one, "{rec}");
    assert_eq!(rec["last_known_good"]["reference"], "localhost/t:1");
    root.podman_ok(&[
        "exec",
        "archy-web",
        "/bin/sh",
        "-c",
        "echo kept > /data/file",
    ]);

    // A healthy no-op tick: one podman call, the record not rewritten.
    let path = root.state_dir.join("images/web.json");
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();
    root.take_podman_calls();
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(root.take_podman_calls().len(), 1);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written
    );

    // :2 never answers: recreated on it, then back on :1's image id within its window
    // (30 s start period + 2 failed probes: 3 ticks after it was first seen).
    write("localhost/t:2");
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(running_image(&root, "archy-web"), two);
    let switched = clock.tick;
    let out = tick_until_back_on(&root, &mut clock, "archy-web", &one, 6);
    wait_open(port);
    assert!(
        clock.tick - switched <= 4,
        "rolled back {} ticks after :2 ran",
        clock.tick - switched
    );
    let web = app(&out.json(), "web").clone();
    assert_eq!(web["action"], "recreate", "{web}");
    let reason = web["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rollback: image localhost/t:2 (")
            && reason.contains("not healthy within 90s")
            && reason.contains(&format!("back to last-known-good {}", &one[..12])),
        "{reason}"
    );
    assert!(
        out.stderr.contains("web: rollback: image localhost/t:2"),
        "{out:?}"
    );
    let client = app(&out.json(), "client").clone();
    assert_eq!(
        (client["action"].as_str(), client["reason"].as_str()),
        (
            Some("restart"),
            Some("a dependency was rolled back to its last-known-good image")
        ),
        "{client}"
    );
    assert_eq!(
        root.podman_ok(&["exec", "archy-web", "/bin/cat", "/data/file"]),
        "kept",
        "data intact"
    );
    let rec = record(&root, "web");
    assert_eq!(rec["bad_images"][0]["id"], two, "{rec}");
    assert_eq!(rec["bad_images"][0]["reference"], "localhost/t:2");

    // Status names it and exits 1 (text, JSON, metrics), even once the app is healthy again.
    assert_eq!(clock.reconcile(&root).code, 0);
    let out = clock.archy(&root, &["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let images = &app(&doc, "web")["images"];
    assert!(
        images["rolled_back"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "rolled back to {} (localhost/t:1): localhost/t:2 (",
                &one[..12]
            )),
        "{images}"
    );
    assert_eq!(app(&doc, "web")["health"]["status"], "healthy", "{doc}");
    let text = Out::from(
        root.archy_cmd()
            .env("ARCHY_NOW", clock.now())
            .arg("status")
            .output()
            .unwrap(),
    );
    assert!(text.stdout.contains("image: rolled back to"), "{text:?}");
    let prom = Out::from(
        root.archy_cmd()
            .env("ARCHY_NOW", clock.now())
            .args(["status", "--output", "prometheus"])
            .output()
            .unwrap(),
    );
    assert!(
        prom.stdout.contains("archy_app_rolled_back{app=\"web\"} 1")
            && prom.stdout.contains("archy_app_bad_images{app=\"web\"} 1"),
        "{prom:?}"
    );

    // Later ticks do not try :2 again, and a no-op tick is still one podman call.
    root.take_podman_calls();
    for _ in 0..4 {
        assert_eq!(clock.reconcile(&root).code, 0);
    }
    let calls = root.take_podman_calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(running_image(&root, "archy-web"), one);

    // Acknowledged: status passes; the image stays bad.
    assert_eq!(
        clock
            .archy(&root, &["reconcile", "--acknowledge", "web"])
            .code,
        0
    );
    let out = clock.archy(&root, &["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(app(&out.json(), "web")["images"]["acknowledged"], true);

    // --retry tries :2 once more (and it is rolled back again).
    root.take_podman_calls();
    assert_eq!(clock.archy(&root, &["reconcile", "--retry", "web"]).code, 0);
    assert!(
        root.take_podman_calls()
            .iter()
            .any(|c| c.starts_with("run ")),
        "retried"
    );
    assert_eq!(running_image(&root, "archy-web"), two);
    tick_until_back_on(&root, &mut clock, "archy-web", &one, 6);
    wait_open(port);

    // Naming :3 (healthy) is tried and becomes the last-known-good; the alarm ends.
    write("localhost/t:3");
    start_then_tick(&root, &mut clock, port, 3);
    assert_eq!(running_image(&root, "archy-web"), three);
    let rec = record(&root, "web");
    assert_eq!(rec["last_known_good"]["id"], three, "{rec}");
    let out = clock.archy(&root, &["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.podman_ok(&["exec", "archy-web", "/bin/cat", "/data/file"]),
        "kept"
    );
}

#[test]
fn a_build_context_edited_into_a_broken_server_is_rolled_back() {
    let root = TestRoot::empty();
    let (ctx, mut clock, good) = build_app_with_a_good_image(&root);

    // The context edited into a server that never answers: built, run, rolled back.
    write_containerfile(&ctx, SILENT);
    assert_eq!(clock.reconcile(&root).code, 0);
    let broken = running_image(&root, "archy-site");
    assert_ne!(broken, good, "rebuilt");
    tick_until_back_on(&root, &mut clock, "archy-site", &good, 6);
    let rec = record(&root, "site");
    assert_eq!(rec["bad_images"][0]["id"], broken, "{rec}");
    assert!(
        rec["bad_images"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("localhost/archy-site:"),
        "{rec}"
    );
    // Not built or tried again while the context stays as it is.
    root.take_podman_calls();
    for _ in 0..3 {
        assert_eq!(clock.reconcile(&root).code, 0);
    }
    assert_eq!(root.take_podman_calls().len(), 3);
    assert_eq!(running_image(&root, "archy-site"), good);
    assert_eq!(clock.archy(&root, &["status"]).code, 1);
}

/// Debian's `docker-registry` on a loopback port under the test root (scripts/test installs
/// it), with a registries.conf marking it insecure (plain HTTP): its address and that file.
fn start_registry(root: &TestRoot) -> (Running, String, std::path::PathBuf) {
    let dir = root.dir.join("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let conf = dir.join("registries.conf");
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"{address}\"\ninsecure = true\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new("docker-registry")
        .args(["serve", dir.join("config.yml").to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Debian's docker-registry is installed (scripts/test installs it)");
    wait_for_port(port, "docker-registry", &mut child);
    (Running(child), address, conf)
}

/// Push `local` to `remote` in the registry; the digest the registry stores.
fn push(root: &TestRoot, conf: &Path, local: &str, remote: &str) -> String {
    let digest_file = root.dir.join("pushed.digest");
    root.podman_ok(&["tag", local, remote]);
    let out = Out::from(
        root.podman_cmd()
            .env("CONTAINERS_REGISTRIES_CONF", conf)
            .args(["push", "--quiet", "--digestfile"])
            .arg(&digest_file)
            .arg(remote)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_digest_pin_is_pulled_verified_and_kept_through_a_re_pushed_tag() {
    let root = TestRoot::empty();
    let (_registry, address, conf) = start_registry(&root);
    build_tag(&root, "1", &serving(1));
    build_tag(&root, "3", &serving(3));
    let remote = format!("{address}/t:1");
    let digest = push(&root, &conf, "localhost/t:1", &remote);
    assert!(digest.starts_with("sha256:"), "{digest}");
    // Only the registry holds it now: archy must pull it.
    root.podman_ok(&["rmi", &remote]);
    let port = free_port();
    let data = root.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pinned = format!("{remote}@{digest}");
    let yaml =
        manifest_yaml("web", &format!("image: {pinned}"), port, &data).replace("pull: never\n", "");
    root.manifest("web", &yaml);
    let mut clock = Clock::new();
    clock.env = vec![(
        "CONTAINERS_REGISTRIES_CONF".into(),
        conf.display().to_string(),
    )];
    start_then_tick(&root, &mut clock, port, 3);
    let digests = root.podman_ok(&["image", "inspect", "--format", "{{.RepoDigests}}", &pinned]);
    assert!(digests.contains(&digest), "{digests}");
    let out = clock.archy(&root, &["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(app(&doc, "web")["digest"], digest, "{doc}");
    // The last-known-good is recorded under the manifest's reference (podman lists the
    // container's image as `name@sha256:…`, without the tag).
    let rec = record(&root, "web");
    assert_eq!(rec["last_known_good"]["reference"], pinned, "{rec}");

    // The tag re-pushed upstream with other content: the pinned app does not move (no pull,
    // one podman call), while the tag now names another digest.
    let repushed = push(&root, &conf, "localhost/t:3", &remote);
    assert_ne!(repushed, digest);
    root.podman_ok(&["rmi", &remote]);
    root.take_podman_calls();
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(root.take_podman_calls().len(), 1);

    // A pin the registry does not hold is refused for that app, with a clear error.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let yaml = manifest_yaml(
        "other",
        &format!("image: {remote}@{wrong}"),
        free_port(),
        &data,
    )
    .replace("pull: never\n", "");
    root.manifest("other", &yaml);
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 1, "{out:?}");
    let other = app(&out.json(), "other").clone();
    assert_eq!(other["result"], "failed", "{other}");
    let error = other["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "image of app other pinned to {wrong}: the registry must hold that digest"
        )),
        "{error}"
    );
    assert_eq!(root.state("archy-other"), "missing");
    assert_eq!(app(&out.json(), "web")["result"], "ok");
}

/// A bitcoind stand-in answering every request with `getblockchaininfo`: in initial block
/// download while `syncing` is set (authentication not checked: archy's probe user is).
fn fake_bitcoind(syncing: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let ibd = syncing.load(std::sync::atomic::Ordering::SeqCst);
            let (blocks, progress) = if ibd { (500, 0.5) } else { (1000, 1.0) };
            let body = format!(
                r#"{{"result":{{"chain":"main","blocks":{blocks},"headers":1000,"verificationprogress":{progress},"initialblockdownload":{ibd}}},"error":null,"id":"archy"}}"#
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn an_image_change_of_a_syncing_chain_app_waits_unless_forced() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = TestRoot::empty();
    let one = build_tag(&root, "1", &serving(1));
    let three = build_tag(&root, "3", &serving(3));
    let syncing = std::sync::Arc::new(AtomicBool::new(true));
    let rpc_port = fake_bitcoind(syncing.clone());
    let conf = root.state_dir.join("bitcoin/bitcoin.conf");
    let write = |image: &str| {
        root.manifest(
            "node",
            &format!(
                "app: node\nimage: {image}\npull: never\nstop_timeout: 0\ncommand: [\"/bin/sleep\", \"3600\"]\n\
                 health:\n  bitcoin_rpc: 127.0.0.1:{rpc_port}\n  failures: 1\n  start_period: 0\n\
                 configs:\n  - render: bitcoin.conf\n    path: {}\n",
                conf.display()
            ),
        );
    };
    write("localhost/t:1");
    let mut clock = Clock::new();
    for _ in 0..2 {
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = clock.archy(&root, &["status"]);
    assert_eq!(
        app(&out.json(), "node")["health"]["status"],
        "syncing",
        "{out:?}"
    );

    // The image changed while syncing: the recreate waits, tick after tick.
    write("localhost/t:3");
    for _ in 0..2 {
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "{out:?}");
        let node = app(&out.json(), "node").clone();
        assert_eq!(node["result"], "waiting", "{node}");
        assert_eq!(
            node["error"],
            "image update to localhost/t:3 deferred while the chain syncs (50.0 %, 500/1000 blocks) (defer_updates_while: syncing); `archy reconcile --force node` applies it now",
        );
        assert_eq!(running_image(&root, "archy-node"), one);
    }
    // --force applies it now.
    let out = clock.archy(&root, &["reconcile", "--force", "node"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(running_image(&root, "archy-node"), three);

    // Once the chain is synced, a deferred update goes through by itself (the tick after the
    // probe saw it synced: the deferral reads the recorded health).
    write("localhost/t:1");
    assert_eq!(
        app(&clock.reconcile(&root).json(), "node")["result"],
        "waiting"
    );
    syncing.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(clock.reconcile(&root).code, 0);
    }
    assert_eq!(running_image(&root, "archy-node"), one);
}
