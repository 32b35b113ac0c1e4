//! The disk and memory guard against real podman (issue 25): bounded logs, resource limits on
//! the container, each test in its own isolated podman root.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

mod common;
use common::*;

fn inspect(root: &TestRoot, name: &str, format: &str) -> String {
    root.podman_ok(&["inspect", name, "--format", format])
}

#[test]
fn a_chatty_app_stays_under_its_log_bound_and_gets_its_limits() {
    let root = TestRoot::new();
    root.manifest(
        "chatty",
        &format!(
            "app: chatty\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 1\n\
             command: [\"/bin/sh\", \"-c\", \"while true; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done\"]\n\
             logging: {{max_size: 20k}}\n\
             resources: {{memory: 64m, memory_reservation: 32m, cpus: 0.5, pids_limit: 64, oom_score_adj: 300}}\n"
        ),
    );
    root.simple_manifest("quiet", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-chatty"), "running", "{out:?}");

    assert_eq!(
        inspect(
            &root,
            "archy-chatty",
            "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Size}} {{.HostConfig.Memory}} \
             {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} \
             {{.HostConfig.OomScoreAdj}}"
        ),
        "k8s-file 20kB 67108864 33554432 500000000 64 300"
    );
    // An app whose manifest says nothing is bounded too (the default, 10 MiB), and unlimited.
    assert_eq!(
        inspect(
            &root,
            "archy-quiet",
            "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Size}} {{.HostConfig.Memory}}"
        ),
        "k8s-file 10MB 0"
    );

    // The shell writes ~60 bytes a line as fast as it can: megabytes a second unbounded.
    let log = inspect(&root, "archy-chatty", "{{.HostConfig.LogConfig.Path}}");
    let mut written = false;
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let text = std::fs::read(&log).unwrap();
        assert!(
            text.len() <= 20 * 1024,
            "ctr.log is {} bytes, above 20k",
            text.len()
        );
        written |= String::from_utf8_lossy(&text).contains("aaaa");
    }
    assert!(written, "the app's output reaches its log file");

    // Converged: a second tick changes nothing.
    root.take_podman_calls();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    assert_eq!(
        calls,
        vec!["ps -a --format json --filter label=io.archy.managed=true".to_string()],
        "{calls:?} {out:?}"
    );
}

#[test]
fn a_dbcache_above_the_memory_limit_is_refused_naming_both_numbers() {
    let root = TestRoot::empty();
    let conf = root.dir.join("btc/bitcoin.conf");
    root.manifest(
        "btc",
        &format!(
            "app: btc\nimage: {TEST_IMAGE}\npull: never\nresources: {{memory: 1g}}\n\
             configs:\n  - render: bitcoin.conf\n    path: {}\n    settings: {{dbcache: 2048}}\n",
            conf.display()
        ),
    );
    let out = root.archy(&["reconcile", "--dry-run"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.all().contains(
            "`1g` (1024 MiB) is below bitcoind's dbcache 2048 MiB (configs[0].settings.dbcache) + maxmempool 300 MB (bitcoind's default) = 2334 MiB"
        ),
        "{out:?}"
    );
}
