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

/// Wait until podman lists the container as exited (at most 30 s).
fn wait_exited(root: &TestRoot, name: &str) -> serde_json::Value {
    for _ in 0..300 {
        if let Some(c) = root.container(name) {
            if matches!(c["State"].as_str(), Some("exited" | "stopped")) {
                return c;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{name} did not exit: {:?}", root.container(name));
}

#[test]
fn a_memory_hog_is_reported_oom_killed_and_a_plain_sigkill_is_not() {
    let root = TestRoot::new();
    // Doubling a shell variable: past 32 MiB within a second.
    root.manifest(
        "hog",
        &format!(
            "app: hog\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 1\n\
             command: [\"/bin/sh\", \"-c\", \"sleep 1; x=a; while true; do x=$x$x; done\"]\n\
             resources: {{memory: 32m}}\n"
        ),
    );
    root.simple_manifest("victim", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let hog = wait_exited(&root, "archy-hog");
    assert_eq!(hog["ExitCode"], 137, "{hog}");
    // A SIGKILL that is not the OOM killer's: also exit 137.
    root.podman_ok(&["kill", "--signal", "KILL", "archy-victim"]);
    let victim = wait_exited(&root, "archy-victim");
    assert_eq!(victim["ExitCode"], 137, "{victim}");

    root.take_podman_calls();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("app hog: container ")
            && out
                .stderr
                .contains("was OOM-killed (memory limit 32 MiB; evidence: "),
        "{out:?}"
    );
    assert!(!out.stderr.contains("app victim: container"), "{out:?}");
    // Both exits were inspected once each; the tick then started both again.
    let calls = root.take_podman_calls();
    let inspects = calls
        .iter()
        .filter(|c| c.starts_with("container inspect"))
        .count();
    assert_eq!(inspects, 2, "{calls:?}");

    let status = root.archy(&["status", "--output", "json"]);
    let doc = status.json();
    let kills = doc["oom_kills"].as_array().unwrap();
    assert_eq!(kills.len(), 1, "{doc}");
    assert_eq!(kills[0]["app"], "hog");
    assert_eq!(kills[0]["kills"], 1);
    assert_eq!(kills[0]["memory_limit"], 33_554_432);
    // podman 4.3 on this cgroup-v1 host says OOMKilled=false: the kernel log tells.
    assert!(
        matches!(
            kills[0]["evidence"].as_str(),
            Some("kernel-log" | "podman-oom-killed")
        ),
        "{doc}"
    );
    let text = root.archy(&["status"]);
    assert!(
        text.stdout
            .contains("oom:       app hog: OOM-killed 1 time, last at "),
        "{text:?}"
    );
    let prom = root.archy(&["status", "--output", "prometheus"]);
    assert!(
        prom.stdout
            .contains("archy_app_oom_kills_total{app=\"hog\"} 1\n"),
        "{prom:?}"
    );
    assert!(
        prom.stdout
            .contains("archy_app_oom_kills_total{app=\"victim\"} 0\n"),
        "{prom:?}"
    );
    assert_promtool_clean(&prom.stdout);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn a_full_state_dir_fails_status_naming_it_and_the_metric_drops() {
    let root = TestRoot::new();
    let state = Tmpfs::mount(root.dir.join("statefs"), "16m");
    let state_dir = state.0.join("archy");
    let archy = |args: &[&str]| {
        Out::from(
            root.archy_cmd()
                .env("ARCHY_STATE_DIR", &state_dir)
                .env("ARCHY_MIN_FREE", "8m")
                .args(args)
                .output()
                .unwrap(),
        )
    };
    root.simple_manifest("app", "");
    assert_eq!(archy(&["reconcile"]).code, 0);
    let out = archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    let fs = |doc: &serde_json::Value, role: &str| {
        doc["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {doc}"))
            .clone()
    };
    // podman's paths are read from its config files, as `podman info` reports them.
    let info = root.podman_ok(&[
        "info",
        "--format",
        "{{.Store.GraphRoot}} {{.Store.VolumePath}}",
    ]);
    assert_eq!(
        format!(
            "{} {}",
            fs(&doc, "graphroot")["path"].as_str().unwrap(),
            fs(&doc, "volumes")["path"].as_str().unwrap()
        ),
        info
    );
    let before = fs(&doc, "state-dir");
    assert_eq!(before["size_bytes"], 16 * 1024 * 1024, "{before}");
    assert_eq!(before["low"], false);

    // Fill the tmpfs to 12 of 16 MiB: 4 MiB free, below --min-free 8m.
    std::fs::write(state.0.join("filler"), vec![0u8; 12 * 1024 * 1024]).unwrap();
    let out = archy(&["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "problem: low disk space: archy's state dir {}: ",
            state_dir.display()
        )) && out.stdout.contains("below --min-free 8m"),
        "{out:?}"
    );
    let doc = archy(&["status", "--output", "json"]).json();
    let after = fs(&doc, "state-dir");
    assert_eq!(after["low"], true, "{after}");
    assert!(
        after["free_bytes"].as_u64() < Some(5 * 1024 * 1024),
        "{after}"
    );
    let prom = archy(&["status", "--output", "prometheus"]);
    assert_eq!(prom.code, 1);
    let series = format!(
        "archy_filesystem_low{{fs=\"state-dir\",path=\"{}\"}} 1\n",
        state_dir.display()
    );
    assert!(prom.stdout.contains(&series), "{prom:?}");
    let free_line = prom
        .stdout
        .lines()
        .find(|l| l.starts_with("archy_filesystem_free_bytes{fs=\"state-dir\""))
        .unwrap();
    let free: f64 = free_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(free < 5.0 * 1024.0 * 1024.0, "{free_line}");
    assert_promtool_clean(&prom.stdout);
}

#[test]
fn a_build_is_refused_up_front_when_the_graph_root_lacks_its_context_size() {
    let root = TestRoot::empty();
    let graph = Tmpfs::mount(root.dir.join("graphfs"), "8m");
    let storage = root.dir.join("storage-small.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}/run-small\"\n",
            graph.0.join("graph").display(),
            root.dir.display()
        ),
    )
    .unwrap();
    let ctx = root.test_context("big-ctx");
    // 16 MiB of context (the image's layer holds it) on an 8 MiB graph root.
    std::fs::write(ctx.join("blob"), vec![7u8; 16 * 1024 * 1024]).unwrap();
    root.manifest(
        "big",
        &format!(
            "app: big\nbuild:\n  context: {}\nstop_timeout: 1\n",
            ctx.display()
        ),
    );
    root.take_podman_calls();
    let out = Out::from(
        root.archy_cmd()
            .env("CONTAINERS_STORAGE_CONF", &storage)
            .args(["build-image"])
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.all()
            .contains("not enough disk space for building localhost/archy-big:")
            && out.all().contains(&format!(
                "on the file system of {}",
                graph.0.join("graph").display()
            )),
        "{out:?}"
    );
    let calls = root.take_podman_calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("build")),
        "no build started: {calls:?}"
    );
    // The same context builds where there is room.
    let out = root.archy(&["build-image"]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_release_that_would_not_fit_its_install_root_is_refused_before_unpacking() {
    let dir = tempfile::tempdir().unwrap();
    let root = Tmpfs::mount(dir.path().join("opt"), "2m");
    // 4 MiB of page (a few KiB compressed) for a 2 MiB file system.
    let tarball = common::install::web_ui_tarball(
        &dir.path().join("big.tar.gz"),
        0o755,
        &vec![b'x'; 4 * 1024 * 1024],
    );
    let check = |install_root: &std::path::Path, json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_archy"));
        cmd.args(["verify-update", "--tarball"])
            .arg(&tarball)
            .arg("--install-root")
            .arg(install_root);
        if json {
            cmd.args(["--output", "json"]);
        }
        Out::from(cmd.output().unwrap())
    };
    let out = check(&root.0, false);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "not enough disk space for unpacking this release into {}/releases: it needs 4 MiB",
            root.0.display()
        )),
        "{out:?}"
    );
    assert!(out.stdout.contains("which has 2 MiB"), "{out:?}");
    let doc = check(&root.0, true).json();
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(doc["space"].as_str().unwrap().contains("it needs"), "{doc}");
    // Far from any node (no install root) the release is only checked, not judged for space.
    let out = check(&dir.path().join("nowhere"), false);
    assert_eq!(out.code, 0, "{out:?}");
}

/// Build a distinct busybox image (a file with `tag` in it) as `reference`; returns its id.
fn build_distinct(root: &TestRoot, reference: &str, tag: &str) -> String {
    let ctx = root.test_context(&format!("ctx-{tag}"));
    std::fs::write(ctx.join("bin/tag"), tag).unwrap();
    root.podman_ok(&["build", "-q", "-t", reference, ctx.to_str().unwrap()]);
    root.image_id(reference).unwrap()
}

#[test]
fn gc_keeps_the_previous_image_and_every_used_one_and_removes_the_rest() {
    let root = TestRoot::new();
    let v1 = build_distinct(&root, "localhost/gc-web:1", "one");
    let v2 = build_distinct(&root, "localhost/gc-web:2", "two");
    let stale = build_distinct(&root, "localhost/gc-web:0", "zero");
    let foreign = build_distinct(&root, "localhost/someone-else:1", "theirs");
    let web = |tag: &str| {
        root.manifest(
            "web",
            &format!("app: web\nimage: localhost/gc-web:{tag}\npull: never\nstop_timeout: 1\ncommand: [\"/bin/sleep\", \"3600\"]\n"),
        );
    };
    web("1");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    web("2");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    // The next tick's listing records v2 as web's current image and v1 as its previous.
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    // Not archy's: a container someone else made keeps its image.
    root.podman_ok(&["create", "--name", "theirs", "localhost/someone-else:1"]);

    let dry = root.archy(&["gc", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    for (id, line) in [
        (&stale, "would remove "),
        (&root.image_id(TEST_IMAGE).unwrap(), "would remove "),
        (&v1, "kept "),
        (&v2, "kept "),
        (&foreign, "kept "),
    ] {
        let short = &id[..12];
        assert!(
            dry.stdout
                .lines()
                .any(|l| l.starts_with(line) && l.contains(short)),
            "{short} {line}: {dry:?}"
        );
    }
    assert!(
        dry.stdout
            .contains("(app web's previous image, for a rollback)"),
        "{dry:?}"
    );
    assert!(dry.stdout.contains("would free "), "{dry:?}");
    let doc = root.archy(&["gc", "--dry-run", "--output", "json"]).json();
    let entry = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == stale[..12])
        .unwrap()
        .clone();
    assert_eq!(entry["result"], "would-remove", "{doc}");
    assert!(entry["size_bytes"].as_u64().unwrap() > 500_000, "{doc}");
    assert!(
        root.image_id("localhost/gc-web:0").is_some(),
        "a dry run removes nothing"
    );

    let out = root.archy(&["gc"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(root.image_id("localhost/gc-web:0").is_none(), "{out:?}");
    assert!(root.image_id(TEST_IMAGE).is_none(), "{out:?}");
    for kept in [
        "localhost/gc-web:1",
        "localhost/gc-web:2",
        "localhost/someone-else:1",
    ] {
        assert!(root.image_id(kept).is_some(), "{kept} kept: {out:?}");
    }
    // Nothing left to collect.
    let again = root.archy(&["gc"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("freed 0 KiB"), "{again:?}");
}

#[test]
fn a_pull_is_refused_up_front_when_the_graph_root_lacks_the_registry_manifests_size() {
    let root = TestRoot::empty();
    // Debian's docker-registry on loopback, plain HTTP (as tests/lastgood.rs runs it).
    let reg = root.dir.join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    std::fs::write(
        reg.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            reg.join("data").display()
        ),
    )
    .unwrap();
    let registries = reg.join("registries.conf");
    std::fs::write(
        &registries,
        format!("[[registry]]\nlocation = \"{address}\"\ninsecure = true\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new("docker-registry")
        .args(["serve", reg.join("config.yml").to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Debian's docker-registry is installed (scripts/test installs it)");
    wait_for_port(port, "docker-registry", &mut child);
    let _registry = Running(child);

    // 16 MiB that does not compress (plus busybox: 17 MiB of layers), pushed; then only the
    // registry holds it.
    let ctx = root.test_context("fat-ctx");
    let mut noise = vec![0u8; 16 * 1024 * 1024];
    getrandom_fill(&mut noise);
    std::fs::write(ctx.join("bin/noise"), &noise).unwrap();
    let remote = format!("{address}/fat:1");
    root.podman_ok(&["build", "-q", "-t", &remote, ctx.to_str().unwrap()]);
    let push = Out::from(
        root.podman_cmd()
            .env("CONTAINERS_REGISTRIES_CONF", &registries)
            .args(["push", "--quiet", &remote])
            .output()
            .unwrap(),
    );
    assert_eq!(push.code, 0, "{push:?}");
    root.podman_ok(&["rmi", &remote]);

    // A 24 MiB graph root: the pull needs 2 × 17 MiB.
    let graph = Tmpfs::mount(root.dir.join("graphfs"), "24m");
    let storage = root.dir.join("storage-small.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}/run-small\"\n",
            graph.0.join("graph").display(),
            root.dir.display()
        ),
    )
    .unwrap();
    root.manifest(
        "fat",
        &format!("app: fat\nimage: {remote}\nstop_timeout: 1\n"),
    );
    let out = Out::from(
        root.archy_cmd()
            .env("CONTAINERS_STORAGE_CONF", &storage)
            .env("CONTAINERS_REGISTRIES_CONF", &registries)
            .args(["reconcile"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.all().contains(&format!("not enough disk space for pulling {remote} (its registry manifest lists 17 MiB of compressed layers"))
            && out.all().contains("it needs 34 MiB")
            && out.all().contains("which has 24 MiB"),
        "{out:?}"
    );
    let calls = root.take_podman_calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("pull")),
        "no pull started: {calls:?}"
    );
}

/// Random bytes (from the kernel), so the layer does not compress.
fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}
