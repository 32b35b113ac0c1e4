//! Build faults (issue 15): special files in a build context, non-UTF-8 build output, a context
//! edited while it builds, buildah working containers left by an interrupted build, and
//! heal-podman against a running build.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::support::*;

/// A `build:` app whose Containerfile is `containerfile` (FROM the test image).
fn build_app(root: &TestRoot, app: &str, containerfile: &str) -> std::path::PathBuf {
    let ctx = root.dir.join(format!("ctx-{app}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    std::fs::write(ctx.join("payload.txt"), "original\n").unwrap();
    root.manifest(
        app,
        &format!(
            "app: {app}\nbuild:\n  context: {}\nstop_timeout: 1\ncommand: [\"/bin/sleep\", \"3600\"]\n",
            ctx.display()
        ),
    );
    ctx
}

/// A podman wrapper: on `build`, run `hook` (a shell snippet) first, then podman itself.
fn wrap_build(root: &TestRoot, hook: &str) -> std::path::PathBuf {
    let path = root.dir.join("podman-build-hook");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = build ]; then\n{hook}\nfi\nexec podman \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn special_files_in_a_build_context() {
    let mut case = Case::new(
        "input: FIFO, socket or device node in a build context",
        "an error for that app naming the file (no hang in the context hasher); other apps converge",
    );
    let root = TestRoot::new();
    root.simple_manifest("other", "");
    let ctx = build_app(
        &root,
        "img",
        &format!("FROM {TEST_IMAGE}\nCOPY payload.txt /\n"),
    );
    for (name, make) in [
        ("pipe", vec!["mkfifo"]),
        ("null", vec!["mknod", "-m", "666"]),
    ] {
        case.run();
        let path = ctx.join(name);
        let mut cmd = std::process::Command::new(make[0]);
        cmd.args(&make[1..]).arg(&path);
        if name == "null" {
            cmd.args(["c", "1", "3"]);
        }
        assert!(cmd.status().unwrap().success());
        for args in [
            vec!["build-image", "--dry-run"],
            vec!["reconcile"],
            vec!["status"],
        ] {
            let out = root.archy(&args);
            assert_eq!(out.code, 1, "{args:?}: {out:?}");
            assert!(
                out.all().contains(&format!("{name} in build context"))
                    && out.all().contains(if name == "pipe" {
                        "FIFO"
                    } else {
                        "character device"
                    }),
                "{args:?}: {out:?}"
            );
        }
        assert_eq!(root.state("archy-other"), "running");
        std::fs::remove_file(&path).unwrap();
        case.pass();
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-img"), "running");
}

#[test]
fn non_utf8_build_output() {
    let mut case = Case::new(
        "build: a RUN step prints bytes that are not UTF-8",
        "logged lossily; the build succeeds and the app runs",
    );
    let root = TestRoot::new();
    build_app(
        &root,
        "img",
        &format!("FROM {TEST_IMAGE}\nRUN [\"/bin/sh\", \"-c\", \"echo -e 'caf\\\\xe9 \\\\xff\\\\xfe'\"]\n"),
    );
    case.run();
    let out = root.archy(&["-v", "build-image", "img"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("caf\u{FFFD}"),
        "lossy line logged: {out:?}"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-img"), "running");
    let leftovers = root.podman_ok(&["ps", "-a", "--external", "--format", "{{.Names}}"]);
    assert!(
        !leftovers.contains("working-container"),
        "no buildah container left: {leftovers}"
    );
    case.pass();
}

#[test]
fn context_edited_while_it_builds() {
    let mut case = Case::new(
        "build: a context file edited while the image builds",
        "the tag of the hashed content is not left on an image of other content: the build fails for that app, the next run builds the edited content",
    );
    let root = TestRoot::new();
    let ctx = build_app(
        &root,
        "img",
        &format!("FROM {TEST_IMAGE}\nCOPY payload.txt /\n"),
    );
    let payload = ctx.join("payload.txt");
    // The edit lands after archy hashed the context and before podman reads it.
    let hook = format!("echo edited > '{}'", payload.display());
    let wrapper = wrap_build(&root, &hook);
    case.run();
    let before = root.archy(&["build-image", "--dry-run", "--output", "json"]);
    let tag = before.json()["images"][0]["image"]
        .as_str()
        .unwrap_or_else(|| panic!("{before:?}"))
        .to_string();
    let out = root
        .archy_cmd()
        .args(["build-image", "img"])
        .env("ARCHY_PODMAN", &wrapper)
        .output()
        .unwrap();
    let out = Out::from(out);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.all().contains("changed while"), "{out:?}");
    assert_eq!(
        root.image_id(&tag),
        None,
        "tag {tag} (hash of 'original') must not name an image built from 'edited'"
    );
    let out = root.archy(&["build-image", "img", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let built = out.json()["images"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(built, tag);
    let content = root.podman_ok(&["run", "--rm", &built, "/bin/cat", "/payload.txt"]);
    assert_eq!(content, "edited");
    case.pass();
}

#[test]
fn buildah_working_containers_and_heal_podman() {
    let mut case = Case::new(
        "build: buildah working container left by an interrupted build; heal-podman during a build",
        "heal-podman names it as a build's container, not damage (healthy, exit 0), never removes it; it waits for a running build (shared heal lock)",
    );
    let root = TestRoot::new();
    build_app(
        &root,
        "img",
        &format!("FROM {TEST_IMAGE}\nRUN [\"/bin/sleep\", \"60\"]\n"),
    );
    case.run();
    // Interrupt a build mid-RUN (SIGKILL to archy's and podman's process group).
    let mut child = root
        .archy_cmd()
        .args(["build-image", "img"])
        .process_group(0)
        .spawn()
        .unwrap();
    let mut working = String::new();
    for _ in 0..600 {
        working = root.podman_ok(&["ps", "-a", "--external", "--format", "{{.ID}} {{.Names}}"]);
        if working.contains("working-container") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(working.contains("working-container"), "{working}");
    // While the build runs, heal-podman (exclusive heal lock) cannot start.
    let busy = root.archy(&["heal-podman", "--lock-wait", "0"]);
    assert_eq!(busy.code, 75, "{busy:?}");
    unsafe_kill_group(child.id());
    let _ = child.wait();
    let id = working.split_whitespace().next().unwrap().to_string();
    for args in [vec!["heal-podman"], vec!["heal-podman", "--yes"]] {
        let out = root.archy(&args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.all().contains("buildah working container"), "{out:?}");
        let still = root.podman_ok(&["ps", "-a", "--external", "--format", "{{.ID}}"]);
        assert!(
            still.contains(&id),
            "{args:?} removed the build's container"
        );
    }
    let status = root.archy(&["status"]);
    assert!(!status.all().contains("storage-only"), "{status:?}");
    case.pass();
}

use std::os::unix::process::CommandExt;

fn unsafe_kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}
