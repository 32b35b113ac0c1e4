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
    let again = root.archy(&["heal-podman", "--output", "json"]);
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
