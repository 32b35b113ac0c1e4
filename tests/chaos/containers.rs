//! Container faults: kill, stop, rm -f, left in `created`, image removed, renamed by hand, an
//! unmanaged container squatting another app's host port.

use crate::common::*;
use crate::support::*;

/// Inject `fault` on a converged app with data, reconcile, assert: running, one container, the
/// volume file intact, the image unchanged.
fn repaired(fault: &str, response: &str, inject: impl Fn(&TestRoot)) {
    let mut case = Case::new(fault, response);
    let root = TestRoot::new();
    let data = app_with_data(&root, "svc", "");
    let image = root.image_id(TEST_IMAGE).unwrap();
    for i in 0..iterations(1, 3) {
        case.run();
        inject(&root);
        assert_ne!(
            root.state("archy-svc"),
            "running",
            "fault {fault} took effect"
        );
        let out = root.archy(&["reconcile"]);
        assert_eq!(out.code, 0, "{fault} #{i}: {out:?}");
        assert_eq!(root.state("archy-svc"), "running", "{fault} #{i}: {out:?}");
        assert_eq!(containers_of(&root, "svc"), 1, "{fault} #{i}");
        case.data_kept(
            volume_file(&root, "svc").as_deref() == Some(data.as_str()),
            "volume file",
        );
        case.data_kept(
            root.image_id(TEST_IMAGE).as_deref() == Some(image.as_str()),
            "image id",
        );
        case.pass();
    }
}

#[test]
fn podman_kill() {
    repaired(
        "container: `podman kill`",
        "started again (same container)",
        |r| {
            r.podman_ok(&["kill", "archy-svc"]);
            for _ in 0..50 {
                if r.state("archy-svc") != "running" {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        },
    );
}

#[test]
fn podman_stop() {
    repaired(
        "container: `podman stop`",
        "started again (same container)",
        |r| {
            r.podman_ok(&["stop", "-t", "0", "archy-svc"]);
        },
    );
}

#[test]
fn podman_rm_f() {
    repaired(
        "container: `podman rm -f`",
        "created again; named volume reattached",
        |r| {
            r.podman_ok(&["rm", "-f", "-t", "0", "archy-svc"]);
        },
    );
}

#[test]
fn left_in_created_state() {
    repaired(
        "container: left in `created` state",
        "started (or recreated when its spec differs)",
        |r| {
            // What a crash between create and start leaves: the same labels, never started.
            let labels = r.podman_ok(&[
                "inspect",
                "--format",
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}",
                "archy-svc",
            ]);
            r.podman_ok(&["rm", "-f", "-t", "0", "archy-svc"]);
            let mut args = vec!["create".to_string(), "--name".into(), "archy-svc".into()];
            for l in labels.lines().filter(|l| l.starts_with("io.archy.")) {
                args.push("--label".into());
                args.push(l.to_string());
            }
            args.extend(["-v".into(), "svc-data:/data".into(), TEST_IMAGE.into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            r.podman_ok(&args);
            assert_eq!(r.state("archy-svc"), "created");
        },
    );
}

#[test]
fn renamed_by_hand() {
    let mut case = Case::new(
        "container: renamed by hand (`podman rename`)",
        "renamed one removed (volumes kept), recreated under its name",
    );
    let root = TestRoot::new();
    let data = app_with_data(&root, "svc", "");
    case.run();
    root.podman_ok(&["rename", "archy-svc", "someone-elses"]);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-svc"), "running", "{out:?}");
    assert_eq!(root.state("someone-elses"), "missing", "{out:?}");
    assert_eq!(containers_of(&root, "svc"), 1);
    case.data_kept(
        volume_file(&root, "svc").as_deref() == Some(data.as_str()),
        "volume file",
    );
    let again = root.archy(&["reconcile"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("1 ok"),
        "second run is a no-op: {again:?}"
    );
    case.pass();
}

#[test]
fn image_removed_under_a_build_app() {
    let mut case = Case::new(
        "container: its image removed (`podman rmi -f`, which removes the container too)",
        "image rebuilt offline from the build context, container recreated",
    );
    let root = TestRoot::empty();
    let ctx = root.test_context("ctx");
    root.manifest(
        "built",
        &format!(
            "app: built\nbuild: {{context: {}}}\nstop_timeout: 1\nvolumes: [\"built-data:/data\"]\n",
            ctx.display()
        ),
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    root.podman_ok(&[
        "exec",
        "archy-built",
        "/bin/sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let image = root.container("archy-built").unwrap()["Image"]
        .as_str()
        .unwrap()
        .to_string();
    case.run();
    root.podman_ok(&["rmi", "-f", &image]);
    assert_eq!(
        root.state("archy-built"),
        "missing",
        "rmi -f removed the container"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-built"), "running", "{out:?}");
    assert!(root.image_id(&image).is_some(), "same tag rebuilt: {image}");
    let kept = root.podman(&["exec", "archy-built", "/bin/cat", "/data/f"]);
    case.data_kept(kept.stdout.trim() == "kept", "volume file");
    case.pass();
}

#[test]
fn port_held_by_an_unmanaged_container() {
    let mut case = Case::new(
        "container: an unmanaged container holds another app's host port",
        "that app fails naming the port; the others converge; converges once the squatter goes",
    );
    let root = TestRoot::new();
    let port = free_port();
    root.simple_manifest("web", &format!("ports: [\"127.0.0.1:{port}:80\"]\n"));
    root.simple_manifest("other", "");
    case.run();
    root.podman_ok(&[
        "run",
        "-d",
        "--name",
        "squatter",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        TEST_IMAGE,
    ]);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.all().contains(&port.to_string()),
        "error names the port: {out:?}"
    );
    assert!(
        out.all().contains("address already in use") || out.all().contains("in use"),
        "{out:?}"
    );
    assert_eq!(root.state("archy-other"), "running", "{out:?}");
    assert_eq!(
        root.state("squatter"),
        "running",
        "the squatter is left alone"
    );
    root.podman_ok(&["rm", "-f", "-t", "0", "squatter"]);
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-web"), "running", "{out:?}");
    assert_eq!(
        containers_of(&root, "web"),
        1,
        "no half-created container left behind"
    );
    case.pass();
}
