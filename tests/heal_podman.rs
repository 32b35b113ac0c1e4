//! `archy heal-podman` against real podman, each case in its own isolated podman root: the
//! state database deleted or corrupted under running apps, runtime dirs from a previous boot,
//! orphaned volumes. Ghost processes of the root are killed on drop, also when a test fails.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

fn db_path(root: &TestRoot) -> PathBuf {
    root.dir.join("static/bolt_state.db")
}

/// An app with a named volume, running, with a file written into the volume.
fn app_with_data(root: &TestRoot) -> (String, String) {
    root.simple_manifest("app", "volumes: [\"vol1:/data\"]\n");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-app"), "running");
    root.podman_ok(&[
        "exec",
        "archy-app",
        "/bin/sh",
        "-c",
        "echo precious-block-data > /data/blk00000.dat",
    ]);
    let image = root.image_id(TEST_IMAGE).expect("test image");
    (image, root.container_id("archy-app"))
}

/// What must hold after a heal: podman answers, no ghost survives, reconcile recreates the app
/// under its name, the image and the volume's data are unchanged, a second heal does nothing.
fn assert_healed_and_recoverable(root: &TestRoot, image: &str) {
    let ps = root.podman(&["ps", "-a"]);
    assert_eq!(ps.code, 0, "{ps:?}");
    assert!(
        runc_ids_under(&root.dir).is_empty(),
        "a ghost OCI container survived"
    );
    assert!(
        conmons_under(&root.dir).is_empty(),
        "a conmon of the test root survived"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-app"), "running", "{out:?}");
    assert_eq!(
        root.image_id(TEST_IMAGE).as_deref(),
        Some(image),
        "image kept"
    );
    let data = root.podman_ok(&["exec", "archy-app", "/bin/cat", "/data/blk00000.dat"]);
    assert_eq!(data, "precious-block-data", "volume data kept");

    let mut again = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    if again.json()["result"] == "healed" {
        // A simulated reboot keeps the kernel's iptables rules (a real one flushes them): when
        // reconcile removed the killed container, podman's CNI teardown found no namespace and
        // left its masquerade rules. heal-podman's network-debris probe releases them, once.
        assert_eq!(
            step_names(&again.json()),
            ["release-network-debris"],
            "{again:?}"
        );
        again = root.archy(&["heal-podman", "--output", "json"]);
        assert_eq!(again.code, 0, "{again:?}");
    }
    let doc = again.json();
    assert_eq!(doc["result"], "healthy", "{again:?}");
    assert_eq!(
        doc["steps"].as_array().unwrap().len(),
        0,
        "second run does nothing"
    );
}

fn step_names(doc: &serde_json::Value) -> Vec<String> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["result"], "done", "{s}");
            s["step"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn healthy_engine_is_left_untouched() {
    let root = TestRoot::new();
    root.take_podman_calls();
    let out = root.archy(&["heal-podman"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("podman healthy"), "{out:?}");
    for probe in [
        "engine",
        "database",
        "storage-only",
        "ghost-oci",
        "orphan-volumes",
        "runtime-dirs",
    ] {
        assert!(
            out.stdout.contains(&format!("ok      {probe}: ")),
            "{probe}: {out:?}"
        );
    }
    let calls = root.take_podman_calls();
    assert!(
        calls.iter().all(|c| c.contains("info")
            || c.starts_with("ps ")
            || c.starts_with("volume ls")
            || c.starts_with("network ls")),
        "a healthy run only looks: {calls:?}"
    );
    let status = std::fs::read_to_string(root.state_dir.join("status/heal-podman.json")).unwrap();
    assert!(status.contains("\"healthy\""), "{status}");
}

#[test]
fn deleted_database_with_running_apps_is_healed() {
    let root = TestRoot::new();
    let (image, old_id) = app_with_data(&root);
    std::fs::remove_file(db_path(&root)).unwrap();

    // The reproduced failure: podman sees nothing, the ghost keeps running and holds the name.
    assert!(root.containers().is_empty());
    assert!(runc_ids_under(&root.dir).contains(&old_id));
    let run = root.podman(&["run", "-d", "--name", "archy-app", TEST_IMAGE]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("is already in use"), "{run:?}");

    // --dry-run changes nothing.
    let dry = root.archy(&["heal-podman", "--dry-run"]);
    assert_eq!(dry.code, 1, "{dry:?}");
    assert!(dry.stdout.contains("would remove-storage-only"), "{dry:?}");
    assert!(
        runc_ids_under(&root.dir).contains(&old_id),
        "dry run killed nothing"
    );
    assert!(
        root.podman_ok(&["volume", "ls", "-q"]).is_empty(),
        "dry run registered nothing"
    );

    let started = std::time::Instant::now();
    let out = root.archy(&["heal-podman", "--output", "json"]);
    eprintln!("heal (deleted db) took {:?}", started.elapsed());
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["result"], "healed", "{out:?}");
    assert_eq!(
        step_names(&doc),
        ["remove-storage-only", "kill-ghosts", "register-volumes"],
        "{out:?}"
    );
    assert_eq!(root.podman_ok(&["volume", "ls", "-q"]), "vol1");
    if network_backend() == "netavark" {
        // podman's IPAM keeps no address for the killed container (its teardown never ran).
        let held = ipam_allocations(&root.network);
        assert!(
            held.iter().all(|(_, id)| *id != old_id),
            "the killed container's address is still reserved: {held:?}"
        );
    }
    assert_healed_and_recoverable(&root, &image);
    if network_backend() == "netavark" {
        let new_id = root.container_id("archy-app");
        assert_eq!(
            ipam_allocations(&root.network)
                .into_iter()
                .map(|(_, id)| id)
                .collect::<Vec<_>>(),
            [new_id],
            "only the recreated app holds an address"
        );
    }
}

#[test]
fn corrupt_database_is_moved_aside_and_healed() {
    let root = TestRoot::new();
    let (image, _) = app_with_data(&root);
    // A torn write: the first page of a real database, nothing after it.
    let db = db_path(&root);
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(4096).unwrap();
    drop(file);
    let ps = root.podman(&["ps"]);
    assert_eq!(ps.code, 125);
    assert!(ps.stderr.contains("file size too small"), "{ps:?}");

    let dry = root.archy(&["heal-podman", "--dry-run"]);
    assert_eq!(dry.code, 1, "{dry:?}");
    assert!(dry.stdout.contains("broken  database: database"), "{dry:?}");
    assert!(dry.stdout.contains("would move-db-aside"), "{dry:?}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        4096,
        "dry run left the database"
    );

    let started = std::time::Instant::now();
    let out = root.archy(&["heal-podman", "--output", "json"]);
    eprintln!("heal (corrupt db) took {:?}", started.elapsed());
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(
        step_names(&doc),
        [
            "move-db-aside",
            "remove-storage-only",
            "kill-ghosts",
            "register-volumes"
        ],
        "{out:?}"
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("bolt_state.db.broken-"))
        .collect();
    assert_eq!(kept.len(), 1, "broken database kept aside");
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), 4096);
    assert_healed_and_recoverable(&root, &image);
}

#[test]
fn runtime_dirs_from_a_previous_boot_are_cleared() {
    let root = TestRoot::new();
    let (image, old_id) = app_with_data(&root);
    // Simulate a reboot that left podman's tmp and run dirs behind: processes and mounts are
    // gone, the `alive` marker predates the boot.
    for id in runc_ids_under(&root.dir) {
        assert!(Command::new("runc")
            .args(["kill", &id, "KILL"])
            .status()
            .unwrap()
            .success());
        for _ in 0..100 {
            let state = Command::new("runc").args(["state", &id]).output().unwrap();
            if !String::from_utf8_lossy(&state.stdout).contains("\"running\"") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(Command::new("runc")
            .args(["delete", "-f", &id])
            .status()
            .unwrap()
            .success());
    }
    for _ in 0..100 {
        if conmons_under(&root.dir).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let graph_overlay = root.dir.join("graph/overlay");
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| Path::new(m).starts_with(&root.dir) && Path::new(m) != graph_overlay)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let st = Command::new("umount").arg(&m).output().unwrap();
        assert!(
            st.status.success(),
            "umount {m}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    // A boot starts /run empty: nothing reserved in podman's IPAM database (netavark).
    forget_ipam_network(&root.network);
    let alive = root.dir.join("tmp/alive");
    assert!(alive.exists());
    let st = Command::new("touch")
        .args(["-d", "2000-01-01T00:00:00Z"])
        .arg(&alive)
        .status()
        .unwrap();
    assert!(st.success());

    let started = std::time::Instant::now();
    let out = root.archy(&["heal-podman", "--output", "json"]);
    eprintln!("heal (stale runtime dirs) took {:?}", started.elapsed());
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    // A simulated reboot keeps /run/netns (a real one starts it empty): the killed container's
    // namespace is left with no process and podman forgets it when it refreshes, so the
    // network-debris probe releases it once the runtime dirs are cleared.
    assert_eq!(
        step_names(&doc),
        ["clear-runtime-dirs", "release-stale-namespaces"],
        "{out:?}"
    );
    let before = doc["initial_probes"].as_array().unwrap();
    assert!(
        before
            .iter()
            .any(|p| p["name"] == "runtime-dirs" && p["status"] == "broken"),
        "{out:?}"
    );
    // The container is still podman's (same id), now known to be stopped; reconcile starts it.
    assert_eq!(root.container_id("archy-app"), old_id);
    assert_healed_and_recoverable(&root, &image);
}
