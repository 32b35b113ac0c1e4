//! Image-declared (anonymous) volumes across recreates (issue 15): compose carries them over to
//! the replacement container; so does archy, on every recreate and on `--adopt`.

use crate::common::*;
use crate::support::*;

const VOLUME_IMAGE: &str = "localhost/archy-test-volume:latest";

/// The test image plus `VOLUME /data`.
fn build_volume_image(root: &TestRoot) {
    let ctx = root.dir.join("volume-image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {TEST_IMAGE}\nVOLUME /data\n"),
    )
    .unwrap();
    root.podman_ok(&["build", "-q", "-t", VOLUME_IMAGE, ctx.to_str().unwrap()]);
}

fn manifest(root: &TestRoot, app: &str, env: &str) {
    root.manifest(
        app,
        &format!(
            "app: {app}\nimage: {VOLUME_IMAGE}\npull: never\nstop_timeout: 1\ncommand: [\"/bin/sleep\", \"3600\"]\nenv: {{GEN: \"{env}\"}}\n"
        ),
    );
}

fn data_file(root: &TestRoot, container: &str) -> Option<String> {
    let out = root.podman(&["exec", container, "/bin/cat", "/data/blk00000.dat"]);
    (out.code == 0).then(|| out.stdout.trim().to_string())
}

#[test]
fn anonymous_volume_survives_recreates() {
    let mut case = Case::new(
        "container: recreated (env change) with data in an image-declared `VOLUME` no manifest volume covers",
        "the old anonymous volume is mounted again at the same path (as compose does); the file is still there",
    );
    let root = TestRoot::new();
    build_volume_image(&root);
    manifest(&root, "anon", "1");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    root.podman_ok(&[
        "exec",
        "archy-anon",
        "/bin/sh",
        "-c",
        "echo precious-anon > /data/blk00000.dat",
    ]);
    let mut id = root.container_id("archy-anon");
    for generation in 2..=3 {
        case.run();
        manifest(&root, "anon", &generation.to_string());
        let out = root.archy(&["reconcile"]);
        assert_eq!(out.code, 0, "{out:?}");
        let new = root.container_id("archy-anon");
        assert_ne!(new, id, "recreated");
        id = new;
        case.data_kept(
            data_file(&root, "archy-anon").as_deref() == Some("precious-anon"),
            "anonymous volume data",
        );
        // A recreate adds no volume: the same one is reused.
        let volumes = root.podman_ok(&["volume", "ls", "-q"]);
        assert_eq!(volumes.lines().count(), 1, "{volumes}");
        case.pass();
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.container_id("archy-anon"),
        id,
        "no drift from the carried volume"
    );
}

#[test]
fn adopt_keeps_a_legacy_containers_anonymous_volume() {
    let mut case = Case::new(
        "container: a legacy (unmanaged) container with data in an image-declared `VOLUME`, replaced by `--adopt`",
        "the adopted container mounts the legacy container's anonymous volume at the same path; the file is still there",
    );
    let root = TestRoot::new();
    build_volume_image(&root);
    root.podman_ok(&[
        "run",
        "-d",
        "--name",
        "archy-legacy",
        VOLUME_IMAGE,
        "/bin/sleep",
        "3600",
    ]);
    root.podman_ok(&[
        "exec",
        "archy-legacy",
        "/bin/sh",
        "-c",
        "echo precious-legacy > /data/blk00000.dat",
    ]);
    manifest(&root, "legacy", "1");
    case.run();
    let out = root.archy(&["reconcile", "--adopt"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.container("archy-legacy").unwrap()["Labels"]["io.archy.app"],
        "legacy"
    );
    case.data_kept(
        data_file(&root, "archy-legacy").as_deref() == Some("precious-legacy"),
        "legacy anonymous volume data",
    );
    case.pass();
}
