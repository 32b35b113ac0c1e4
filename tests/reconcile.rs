//! `archy reconcile` against real podman, each test in its own isolated podman root.

mod common;
use common::*;

#[test]
fn from_empty_apps_come_up_and_a_second_run_does_nothing() {
    let root = TestRoot::new();
    for app in ["alpha", "beta", "gamma"] {
        root.simple_manifest(app, "");
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    for app in ["alpha", "beta", "gamma"] {
        assert_eq!(root.state(&format!("archy-{app}")), "running", "{out:?}");
    }
    let c = root.container("archy-alpha").unwrap();
    assert_eq!(c["Labels"]["io.archy.managed"], "true");
    assert_eq!(c["Labels"]["io.archy.app"], "alpha");
    assert_eq!(
        c["Labels"]["io.archy.spec-hash"].as_str().unwrap().len(),
        64
    );
    let ids: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|a| root.container_id(&format!("archy-{a}")))
        .collect();
    root.take_podman_calls();

    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    assert_eq!(
        calls,
        vec!["ps -a --format json --filter label=io.archy.managed=true".to_string()],
        "a no-op run makes exactly one podman call"
    );
    let ids_after: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|a| root.container_id(&format!("archy-{a}")))
        .collect();
    assert_eq!(ids, ids_after, "no container was recreated");
    assert!(out.stdout.contains("3 ok"), "{out:?}");
}
