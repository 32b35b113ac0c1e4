//! Hostile findings on the last-known-good rollback (issue 26) on real podman, in an isolated
//! TestRoot, ticks simulated with `ARCHY_NOW` as tests/lastgood.rs does.
#![allow(clippy::disallowed_methods)] // tests drive podman and archy directly
#![allow(dead_code)]

mod common;
use common::*;

use common::lastgood::*;

/// The last-known-good image was removed (an operator's `podman rmi`, an image prune by hand)
/// while the app runs a new image that never answers. The rollback cannot happen: archy must
/// not record and report "rolled back to <id>" (status, metrics) while the container still
/// runs the broken image, and must say why.
#[test]
fn a_removed_last_known_good_image_is_not_reported_as_a_rollback() {
    let root = TestRoot::empty();
    let one = build_tag(&root, "1", &serving(1));
    let two = build_tag(&root, "2", SILENT);
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
    let mut clock = Clock::new();
    start_then_tick(&root, &mut clock, port, 3);
    assert_eq!(record(&root, "web")["last_known_good"]["id"], one);
    write("localhost/t:2");
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(running_image(&root, "archy-web"), two);
    root.podman_ok(&["rmi", "-f", "localhost/t:1"]);
    let mut codes = Vec::new();
    for _ in 0..6 {
        let out = clock.reconcile(&root);
        codes.push(out.code);
        eprintln!("tick {}: code {} {}", clock.tick, out.code, out.stderr);
    }
    let rec = record(&root, "web");
    eprintln!("record: {rec}");
    let status = clock.archy(&root, &["status"]);
    eprintln!("status: {} {}", status.code, status.stdout);
    let running = running_image(&root, "archy-web");
    eprintln!("running {running}");
    assert_eq!(
        running, two,
        "still on the broken image (nothing to go back to)"
    );
    let doc = status.json();
    let images = &app(&doc, "web")["images"];
    assert!(
        images["rolled_back"].is_null(),
        "status claims a rollback that did not happen: {images}"
    );
    // Said clearly, status failing; the broken image stays refused, no rollback retried.
    assert_eq!(status.code, 1, "{status:?}");
    let why = images["cannot_roll_back"].as_str().unwrap_or_default();
    assert!(
        why.starts_with(&format!(
            "cannot roll back: last-known-good image {} (localhost/t:1) is gone",
            &one[..12]
        )),
        "{images}"
    );
    assert_eq!(rec["bad_images"][0]["id"], two, "{rec}");
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
}

/// `archy reconcile --retry/--acknowledge/--force <app it does not know>` (a typo): a clear error naming the app,
/// not a silent success that leaves the bad image refused.
#[test]
fn retry_or_acknowledge_of_an_unknown_app_is_an_error() {
    let root = TestRoot::empty();
    let clock = Clock::new();
    for flag in ["--retry", "--acknowledge", "--force"] {
        let out = clock.archy(&root, &["reconcile", flag, "no-such-app"]);
        assert_eq!(out.code, 2, "{flag} no-such-app: {out:?}");
        // With --output json the error is the JSON document on stdout.
        let doc = out.json();
        assert!(doc["error"].to_string().contains(flag), "{out:?}");
        assert!(doc["error"].to_string().contains("no-such-app"), "{out:?}");
    }
}

/// A kill -9 of the whole tick (archy and the podman it runs, as systemd kills the unit's
/// cgroup) at several moments of the rollback tick: the next tick converges on the
/// last-known-good image, one container, the data intact, the bad image recorded once.
#[test]
fn a_kill_during_the_rollback_tick_converges_on_the_next_tick() {
    use std::os::unix::process::CommandExt;
    let root = TestRoot::empty();
    let one = build_tag(&root, "1", &serving(1));
    let two = build_tag(&root, "2", SILENT);
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
    let mut clock = Clock::new();
    start_then_tick(&root, &mut clock, port, 3);
    root.podman_ok(&[
        "exec",
        "archy-web",
        "/bin/sh",
        "-c",
        "echo kept > /data/file",
    ]);
    write("localhost/t:2");
    for (round, delay_ms) in [150u64, 400, 800, 1500].into_iter().enumerate() {
        let first = if round == 0 {
            clock.reconcile(&root)
        } else {
            let out = clock.archy(&root, &["reconcile", "--retry", "web"]);
            clock.tick += 1;
            out
        };
        assert_eq!(first.code, 0, "{first:?}");
        assert_eq!(running_image(&root, "archy-web"), two, "round {round}");
        let mut back = false;
        for _ in 0..8 {
            // The killed tick, then a normal one at the same simulated time.
            let mut child = root
                .archy_cmd()
                .env("ARCHY_NOW", clock.now())
                .args(["reconcile", "--output", "json"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let out = clock.reconcile(&root);
            assert!(out.code == 0 || out.code == 1, "{out:?}");
            if running_image(&root, "archy-web") == one {
                back = true;
                break;
            }
        }
        assert!(
            back,
            "round {round} (kill after {delay_ms} ms): not rolled back"
        );
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "round {round}: {out:?}");
        assert_eq!(running_image(&root, "archy-web"), one);
        let names = root.podman_ok(&["ps", "-a", "--format", "{{.Names}}"]);
        assert_eq!(names.lines().count(), 1, "round {round}: {names}");
        let rec = record(&root, "web");
        assert_eq!(rec["bad_images"].as_array().unwrap().len(), 1, "{rec}");
        assert_eq!(rec["last_known_good"]["id"], one, "{rec}");
        wait_open(port);
        assert_eq!(
            root.podman_ok(&["exec", "archy-web", "/bin/cat", "/data/file"]),
            "kept"
        );
    }
}

/// `archy build-image --prune` while a rebuilt `build:` app runs its new, broken image: the
/// app's last-known-good image (`localhost/archy-<app>:<old hash>`, now referenced by neither
/// the manifest nor a container) is its way back and must be kept (lkg::kept_image_ids says
/// so; the prune never asks it), else the rollback that follows cannot happen.
#[test]
fn build_image_prune_keeps_the_last_known_good_image() {
    let root = TestRoot::empty();
    let (ctx, mut clock, good) = build_app_with_a_good_image(&root);
    write_containerfile(&ctx, SILENT);
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_ne!(running_image(&root, "archy-site"), good, "rebuilt");
    let pruned = clock.archy(&root, &["build-image", "--prune"]);
    eprintln!("prune: {} {}", pruned.stdout, pruned.stderr);
    assert!(
        root.podman(&["image", "exists", &good]).code == 0,
        "the last-known-good image {good} was pruned: {}",
        pruned.stdout
    );
    tick_until_back_on(&root, &mut clock, "archy-site", &good, 6);
}
