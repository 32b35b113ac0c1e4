//! `archy build-image` and `build:` apps in reconcile, with real podman builds of busybox
//! `FROM scratch` contexts.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

fn build_app(root: &TestRoot, app: &str) -> std::path::PathBuf {
    let ctx = root.test_context(&format!("ctx-{app}"));
    std::fs::write(ctx.join(".containerignore"), "*.log\n").unwrap();
    std::fs::create_dir_all(ctx.join("site")).unwrap();
    std::fs::write(ctx.join("site/index.html"), format!("hello from {app}\n")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\nCOPY site /site\nCMD [\"/bin/sleep\", \"3600\"]\n",
    )
    .unwrap();
    root.manifest(
        app,
        &format!(
            "app: {app}\nbuild:\n  context: {}\nstop_timeout: 1\n",
            ctx.display()
        ),
    );
    ctx
}

fn archy_images(root: &TestRoot, app: &str) -> Vec<String> {
    let out = root.podman_ok(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference=localhost/archy-{app}"),
    ]);
    out.lines()
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn builds_once_then_up_to_date_and_ignored_files_change_nothing() {
    let root = TestRoot::empty();
    let ctx = build_app(&root, "web");
    let out = root.archy(&["build-image"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("built"), "{out:?}");
    let tags = archy_images(&root, "web");
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(
        tags[0].starts_with("localhost/archy-web:")
            && tags[0].len() == "localhost/archy-web:".len() + 12,
        "{tags:?}"
    );
    let label = root.podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"io.archy.context-hash\"}}",
        &tags[0],
    ]);
    assert_eq!(label.len(), 64);
    assert!(label.starts_with(tags[0].rsplit(':').next().unwrap()));
    let id = root.image_id(&tags[0]).unwrap();
    root.take_podman_calls();

    let out = root.archy(&["build-image"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("up to date"), "{out:?}");
    assert!(
        !root
            .take_podman_calls()
            .iter()
            .any(|c| c.starts_with("build")),
        "no podman build on the second run"
    );
    assert_eq!(root.image_id(&tags[0]).unwrap(), id);

    std::fs::write(ctx.join("debug.log"), "ignored noise").unwrap();
    let out = root.archy(&["build-image", "--dry-run"]);
    assert!(
        out.stdout.contains("up to date"),
        "a .containerignore'd file changes nothing: {out:?}"
    );
}

#[test]
fn context_edit_rebuilds_and_recreates_only_that_app() {
    let root = TestRoot::new();
    let ctx = build_app(&root, "ui-a");
    build_app(&root, "ui-b");
    root.simple_manifest("plain", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let ids = |a: &str| root.container_id(&format!("archy-{a}"));
    let (a, b, plain) = (ids("ui-a"), ids("ui-b"), ids("plain"));
    let served = root.podman_ok(&["exec", "archy-ui-a", "cat", "/site/index.html"]);
    assert_eq!(served, "hello from ui-a");

    std::fs::write(ctx.join("site/index.html"), "new release\n").unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_ne!(ids("ui-a"), a, "rebuilt app recreated");
    assert_eq!(ids("ui-b"), b);
    assert_eq!(ids("plain"), plain);
    assert_eq!(
        root.podman_ok(&["exec", "archy-ui-a", "cat", "/site/index.html"]),
        "new release"
    );
    assert_eq!(
        archy_images(&root, "ui-a").len(),
        2,
        "old image kept until pruned"
    );

    let dry = root.archy(&["build-image", "--prune", "--dry-run"]);
    assert!(dry.stdout.contains("would remove"), "{dry:?}");
    assert_eq!(archy_images(&root, "ui-a").len(), 2);
    let out = root.archy(&["build-image", "--prune"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        archy_images(&root, "ui-a").len(),
        1,
        "only the unreferenced image removed"
    );
    assert_eq!(archy_images(&root, "ui-b").len(), 1);
    assert!(
        root.image_id(TEST_IMAGE).is_some(),
        "non-archy images untouched"
    );
}

#[test]
fn broken_containerfile_fails_that_app_with_podmans_error_and_others_converge() {
    let root = TestRoot::new();
    let ctx = build_app(&root, "broken");
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY does-not-exist /x\n",
    )
    .unwrap();
    root.simple_manifest("fine", "");
    let out = root.archy(&["reconcile", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let json = out.json();
    let broken = json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "broken")
        .unwrap();
    assert_eq!(broken["result"], "failed");
    let error = broken["error"].as_str().unwrap();
    assert!(
        error.contains("does-not-exist"),
        "podman's error tail is in the error: {error}"
    );
    assert_eq!(root.state("archy-fine"), "running");
}
