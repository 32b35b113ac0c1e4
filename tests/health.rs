//! Health probes on real podman: an answering app is healthy; a server killed inside a running
//! container makes it unhealthy after `failures` ticks and it is restarted on that tick; a
//! never-passing app is restarted, recreated, then backed off; a `healthy` dependency that never
//! passes keeps its dependent from being created; status exits 1 while an app is unhealthy.
//! Ticks are simulated with `ARCHY_NOW` (30 s apart) instead of sleeping.

mod common;
use common::*;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Simulated tick length, seconds (the reconcile timer's interval).
const TICK: i64 = 30;

/// Wait (bounded) until something accepts connections on the port: the container's httpd
/// behind podman's port forwarding. Not a timing assertion: it only waits for readiness.
fn wait_for_port(port: u16, up: bool) {
    for _ in 0..100 {
        let connected =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
                .is_ok();
        if connected == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "port {port} never became {}",
        if up { "open" } else { "closed" }
    );
}

/// A busybox httpd serving /www on port 80 in the background, the container kept alive by sleep.
fn web_manifest(root: &TestRoot, app: &str, port: u16, extra: &str) {
    root.manifest(
        app,
        &format!(
            "app: {app}\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 0\n\
             command: [\"/bin/sh\", \"-c\", \"/bin/busybox mkdir -p /www && echo ok > /www/index.html && /bin/httpd -p 80 -h /www && exec /bin/sleep 3600\"]\n\
             ports: [\"127.0.0.1:{port}:80\"]\n\
             health:\n  http: http://127.0.0.1:{port}/\n  failures: 2\n  start_period: 30s\n{extra}"
        ),
    );
}

struct Clock {
    start: i64,
    tick: i64,
}

impl Clock {
    fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Clock { start, tick: 0 }
    }

    fn now(&self) -> String {
        (self.start + self.tick * TICK).to_string()
    }

    /// One `archy reconcile` at the current simulated time, then the clock moves on a tick.
    fn reconcile(&mut self, root: &TestRoot) -> Out {
        let out = Out::from(
            root.archy_cmd()
                .env("ARCHY_NOW", self.now())
                .args(["reconcile", "--output", "json"])
                .output()
                .unwrap(),
        );
        self.tick += 1;
        out
    }

    /// `archy status --output json` at the current simulated time.
    fn status(&self, root: &TestRoot) -> Out {
        Out::from(
            root.archy_cmd()
                .env("ARCHY_NOW", self.now())
                .args(["status", "--output", "json"])
                .output()
                .unwrap(),
        )
    }
}

fn started_at(root: &TestRoot, name: &str) -> String {
    root.podman_ok(&["inspect", "--format", "{{.State.StartedAt}}", name])
}

#[test]
fn answering_app_is_healthy_a_killed_server_is_restarted_after_failures_ticks() {
    let root = TestRoot::new();
    let port = free_port();
    web_manifest(&root, "web", port, "");
    let mut clock = Clock::new();

    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    wait_for_port(port, true);
    // Created this tick: starting until its first probe.
    let out = clock.status(&root);
    assert_eq!(
        app(&out.json(), "web")["health"]["status"],
        "starting",
        "{out:?}"
    );

    // The answering app is healthy, and a healthy no-op tick is still one podman call.
    root.take_podman_calls();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        root.take_podman_calls().len(),
        1,
        "host-side probes call no podman"
    );
    let out = clock.status(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let web = app(&out.json(), "web").clone();
    assert_eq!(web["health"]["status"], "healthy", "{web}");
    assert_eq!(
        web["health"]["probe"],
        format!("http http://127.0.0.1:{port}/")
    );
    let text = root
        .archy_cmd()
        .env("ARCHY_NOW", clock.now())
        .arg("status")
        .output()
        .unwrap();
    let text = Out::from(text);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" healthy")),
        "{text:?}"
    );

    // A healthy tick writes no health state (the record only changes with what it says).
    let record = root.state_dir.join("health/web.json");
    let written = std::fs::metadata(&record).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(
        std::fs::metadata(&record).unwrap().modified().unwrap(),
        written,
        "a healthy no-op tick rewrote {}",
        record.display()
    );

    // Kill the server; the container keeps running.
    root.podman_ok(&["exec", "archy-web", "/bin/busybox", "killall", "httpd"]);
    wait_for_port(port, false);
    assert_eq!(root.state("archy-web"), "running");
    let before = started_at(&root, "archy-web");

    // First failure: 1 of 2, still healthy, nothing done.
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        started_at(&root, "archy-web"),
        before,
        "no action below `failures`"
    );
    let out = clock.status(&root);
    assert_eq!(out.code, 0, "one failure below the threshold: {out:?}");
    assert_eq!(app(&out.json(), "web")["health"]["failures"], 1);

    // Second failure: unhealthy, restarted on that tick, with the evidence in the log.
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    let web = app(&doc, "web");
    assert_eq!(web["action"], "restart", "{doc}");
    assert!(
        web["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{doc}"
    );
    assert!(
        out.stderr
            .contains("web: health: restart after 2 consecutive failed probes"),
        "{out:?}"
    );
    assert_ne!(started_at(&root, "archy-web"), before, "restarted");
    let out = clock.status(&root);
    assert_eq!(
        out.code, 1,
        "status exits 1 while an app is unhealthy: {out:?}"
    );
    let health = app(&out.json(), "web")["health"].clone();
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(
        (health["failures"].as_u64(), health["threshold"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(
        health["last_error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{health}"
    );
    assert!(
        health["last_action"]
            .as_str()
            .unwrap()
            .starts_with("restart at "),
        "{health}"
    );
    let text = Out::from(
        root.archy_cmd()
            .env("ARCHY_NOW", clock.now())
            .arg("status")
            .output()
            .unwrap(),
    );
    assert!(text.stdout.contains("unhealthy 2/2"), "{text:?}");

    // The restart brought httpd back: healthy again on the next tick.
    wait_for_port(port, true);
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("web: health: healthy again"), "{out:?}");
    let out = clock.status(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(app(&out.json(), "web")["health"]["status"], "healthy");
}

#[test]
fn never_passing_app_is_restarted_then_recreated_then_backed_off() {
    let root = TestRoot::new();
    let port = free_port(); // nothing ever listens here
    root.simple_manifest(
        "dead",
        &format!("health:\n  tcp: 127.0.0.1:{port}\n  failures: 2\n  start_period: 30s\n"),
    );
    root.manifest(
        "dead",
        &std::fs::read_to_string(root.manifests.join("dead.yaml"))
            .unwrap()
            .replace("stop_timeout: 1", "stop_timeout: 0"),
    );
    let mut clock = Clock::new();
    let mut actions = Vec::new();
    for tick in 0..20 {
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "tick {tick}: {out:?}");
        let calls = root.take_podman_calls();
        let restarts = calls.iter().filter(|c| c.starts_with("restart ")).count();
        let runs = calls.iter().filter(|c| c.starts_with("run ")).count();
        let removes = calls.iter().filter(|c| c.starts_with("rm ")).count();
        match (tick, restarts, runs, removes) {
            (0, 0, 1, 0) => {} // the initial create
            (_, 0, 0, 0) => {}
            (_, 1, 0, 0) => actions.push((tick, "restart")),
            (_, 0, 1, 1) => actions.push((tick, "recreate")),
            other => panic!("tick {tick}: unexpected calls {other:?}: {calls:?}"),
        }
    }
    // Without back-off it would act every second tick (9 times); with it: 5, ever further apart.
    assert_eq!(
        actions,
        vec![
            (2, "restart"),
            (4, "recreate"),
            (6, "restart"),
            (10, "restart"),
            (18, "restart")
        ]
    );
    let out = clock.status(&root);
    assert_eq!(out.code, 1, "{out:?}");
    let health = app(&out.json(), "dead")["health"].clone();
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(
        health["next_action_at"].as_str().is_some(),
        "backing off: {health}"
    );
    // The state survives in the state dir (atomic JSON), naming the last evidence.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.state_dir.join("health/dead.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], 5, "{state}");
    assert!(
        state["last_error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{state}"
    );
}

#[test]
fn a_never_healthy_dependency_keeps_its_healthy_conditioned_dependent_from_starting() {
    let root = TestRoot::new();
    let port = free_port();
    let base = format!("health:\n  tcp: 127.0.0.1:{port}\n  failures: 1\n  start_period: 0\n");
    root.simple_manifest("base", &base);
    root.simple_manifest("child", "depends_on: {base: healthy}\n");
    root.simple_manifest("plain", "depends_on: [base]\n");
    let mut clock = Clock::new();
    for _ in 0..3 {
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "waiting is not a failure: {out:?}");
        let child = app(&out.json(), "child").clone();
        assert_eq!(child["result"], "waiting", "{child}");
        assert!(
            child["error"]
                .as_str()
                .unwrap()
                .starts_with("waiting for `base` to become healthy"),
            "{child}"
        );
    }
    assert_eq!(root.state("archy-child"), "missing", "never created");
    assert_eq!(
        root.state("archy-plain"),
        "running",
        "a plain dependency only orders"
    );
    let out = clock.status(&root);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let child = app(&doc, "child");
    assert_eq!(child["state"], "waiting", "{child}");
    assert!(
        child["detail"]
            .as_str()
            .unwrap()
            .contains("waiting for `base` to become healthy (it is unhealthy"),
        "{child}"
    );
    assert!(
        child["detail"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{child}"
    );
    let text = Out::from(
        root.archy_cmd()
            .env("ARCHY_NOW", clock.now())
            .arg("status")
            .output()
            .unwrap(),
    );
    assert!(
        text.stdout.contains("waiting for `base` to become healthy"),
        "{text:?}"
    );

    // Once the dependency answers, the dependent is created in the same tick.
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(app(&out.json(), "child")["result"], "changed", "{out:?}");
    assert_eq!(root.state("archy-child"), "running");
}

/// After the podman database is lost under a running UI, `heal-podman` then reconcile bring it
/// back, and its HTTP probe (through the published port) passes again.
/// Needs issue 15's network-debris repair: before it, the recreated container's published
/// port stayed closed.
#[test]
fn after_database_loss_heal_and_reconcile_the_ui_probe_passes() {
    let root = TestRoot::new();
    let port = free_port();
    web_manifest(&root, "ui", port, "");
    let mut clock = Clock::new();
    assert_eq!(clock.reconcile(&root).code, 0);
    wait_for_port(port, true);
    assert_eq!(clock.reconcile(&root).code, 0);
    assert_eq!(
        app(&clock.status(&root).json(), "ui")["health"]["status"],
        "healthy"
    );

    std::fs::remove_file(root.dir.join("static/bolt_state.db")).unwrap();
    let out = root.archy(&["heal-podman"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-ui"), "running", "{out:?}");
    // The recreated container opens a grace; once it answers, the next tick records it healthy.
    wait_for_port(port, true);
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let out = clock.status(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let health = app(&out.json(), "ui")["health"].clone();
    assert_eq!(health["status"], "healthy", "{health}");
}

/// An `exec` probe runs inside the container through podman: it passes on exit 0, and its cost
/// is exactly one `podman exec` per tick beside the listing.
#[test]
fn exec_probe_runs_through_podman_and_costs_one_exec_per_tick() {
    let root = TestRoot::new();
    root.simple_manifest(
        "job",
        "health:\n  exec: [\"/bin/sh\", \"-c\", \"test -e /ready || { echo not ready; exit 3; }\"]\n  failures: 1\n  start_period: 0\n",
    );
    let mut clock = Clock::new();
    assert_eq!(clock.reconcile(&root).code, 0);
    root.take_podman_calls();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    assert_eq!(
        calls.len(),
        2 + 1,
        "listing, exec, and the restart it asked for: {calls:?}"
    );
    assert!(calls.iter().any(|c| c.starts_with("exec ")), "{calls:?}");
    let doc = out.json();
    assert_eq!(app(&doc, "job")["action"], "restart", "{doc}");
    assert!(
        app(&doc, "job")["reason"]
            .as_str()
            .unwrap()
            .contains("exit 3: not ready"),
        "the exec output tail is the evidence: {doc}"
    );

    root.podman_ok(&["exec", "archy-job", "/bin/sh", "-c", "echo > /ready"]);
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    root.take_podman_calls();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = root.take_podman_calls();
    assert_eq!(
        calls.len(),
        2,
        "a healthy exec-probed no-op: listing + exec: {calls:?}"
    );
    assert_eq!(
        app(&clock.status(&root).json(), "job")["health"]["status"],
        "healthy"
    );
}

/// Health state that cannot be written (its directory is a file) is logged; the tick still
/// converges and exits 0. A torn state file is read as no state, not as an error.
#[test]
fn unwritable_or_torn_health_state_never_fails_a_tick() {
    let root = TestRoot::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    root.simple_manifest("svc", &format!("health:\n  tcp: 127.0.0.1:{port}\n"));
    std::fs::create_dir_all(&root.state_dir).unwrap();
    std::fs::write(root.state_dir.join("health"), "not a directory").unwrap();
    let mut clock = Clock::new();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-svc"), "running");
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("failed to record the health of app svc"),
        "{out:?}"
    );

    std::fs::remove_file(root.state_dir.join("health")).unwrap();
    std::fs::create_dir(root.state_dir.join("health")).unwrap();
    std::fs::write(
        root.state_dir.join("health/svc.json"),
        "{\"status\": \"unheal",
    )
    .unwrap();
    let out = clock.reconcile(&root);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("ignoring unreadable health state"),
        "{out:?}"
    );
    let out = clock.status(&root);
    assert_eq!(
        app(&out.json(), "svc")["health"]["status"],
        "healthy",
        "{out:?}"
    );
    drop(listener);
}

/// A directory where an app's health state goes (or a state file system that refuses writes):
/// its failure count cannot survive a tick, so with `failures: 2` it would never be acted on.
/// The app's health is `unknown` instead, and `archy status` fails naming the file; the tick
/// still converges.
#[test]
fn unwritable_health_state_makes_the_health_unknown_and_status_fail() {
    let root = TestRoot::new();
    let port = free_port();
    root.simple_manifest(
        "svc",
        &format!("health:\n  tcp: 127.0.0.1:{port}\n  failures: 2\n  start_period: 0\n"),
    );
    let file = root.state_dir.join("health/svc.json");
    std::fs::create_dir_all(&file).unwrap();
    let mut clock = Clock::new();
    for _ in 0..3 {
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains(file.to_str().unwrap()), "{out:?}");
    }
    assert_eq!(root.state("archy-svc"), "running");
    let out = clock.status(&root);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let health = &app(&doc, "svc")["health"];
    assert_eq!(health["status"], "unknown", "{doc}");
    assert_eq!(doc["healthy"], false, "{doc}");
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains(file.to_str().unwrap())),
        "{doc}"
    );
    let text = root.archy(&["status"]);
    assert!(text.stdout.contains("unknown"), "{text:?}");

    // Writable again: the next tick records it, and the health is known again.
    std::fs::remove_dir(&file).unwrap();
    assert_eq!(clock.reconcile(&root).code, 0);
    let doc = clock.status(&root).json();
    assert_ne!(app(&doc, "svc")["health"]["status"], "unknown", "{doc}");
}

/// A dependent's health restarts and recreates wait, like its start, while a `healthy`
/// dependency is not healthy: with both failing, the base climbs its ladder, the dependent is
/// left running and nothing is recorded as done for it; once the base passes, the dependent's
/// restart runs (and is recorded as step 1).
#[test]
fn health_actions_of_a_dependent_wait_for_its_healthy_dependency() {
    let root = TestRoot::new();
    let (base_port, child_port) = (free_port(), free_port());
    root.simple_manifest(
        "base",
        &format!("health:\n  tcp: 127.0.0.1:{base_port}\n  failures: 1\n  start_period: 0\n"),
    );
    root.simple_manifest(
        "child",
        &format!("depends_on:\n  base: healthy\nhealth:\n  tcp: 127.0.0.1:{child_port}\n  failures: 1\n  start_period: 0\n"),
    );
    let base_listener = TcpListener::bind(("127.0.0.1", base_port)).unwrap();
    let child_listener = TcpListener::bind(("127.0.0.1", child_port)).unwrap();
    let mut clock = Clock::new();
    for _ in 0..3 {
        assert_eq!(clock.reconcile(&root).code, 0);
    }
    assert_eq!(root.state("archy-child"), "running");
    let child_started = started_at(&root, "archy-child");
    drop((base_listener, child_listener));
    for tick in 0..4 {
        let out = clock.reconcile(&root);
        let doc = out.json();
        assert_eq!(app(&doc, "child")["action"], "ok", "tick {tick}: {out:?}");
        assert!(
            out.stderr.contains("child: health: restart held back")
                || out.stderr.contains("child: health: recreate held back"),
            "tick {tick}: {out:?}"
        );
    }
    assert_eq!(
        started_at(&root, "archy-child"),
        child_started,
        "never restarted"
    );
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.state_dir.join("health/child.json")).unwrap())
            .unwrap();
    assert_eq!(
        (&recorded["step"], &recorded["last_action"]),
        (&serde_json::json!(0), &serde_json::Value::Null),
        "nothing recorded as done: {recorded}"
    );
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.state_dir.join("health/base.json")).unwrap())
            .unwrap();
    assert!(
        base["step"].as_u64().unwrap() >= 2,
        "the base was acted on: {base}"
    );

    // The base answers again: the dependent's restart runs in the same tick.
    let _base_listener = TcpListener::bind(("127.0.0.1", base_port)).unwrap();
    clock.tick += 20; // past the base's back-off
    let out = clock.reconcile(&root);
    assert_eq!(app(&out.json(), "child")["action"], "restart", "{out:?}");
    assert_ne!(started_at(&root, "archy-child"), child_started);
}

/// `depends_on: {x: healthy}` on an `enabled: false` app is refused: its probe never runs, the
/// dependent would wait forever.
#[test]
fn a_healthy_dependency_on_a_disabled_app_is_refused() {
    let root = TestRoot::new();
    root.simple_manifest("base", "enabled: false\nhealth:\n  tcp: 127.0.0.1:9\n");
    root.simple_manifest("child", "depends_on:\n  base: healthy\n");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.all()
            .contains("`base` is required healthy but is `enabled: false`"),
        "{out:?}"
    );
}

/// The `sleep 1000` processes `podman top` shows in a container.
fn sleepers(root: &TestRoot, container: &str) -> usize {
    root.podman_ok(&["top", container, "args"])
        .lines()
        .filter(|l| l.contains("sleep 1000"))
        .count()
}

/// An `exec:` probe that never ends: at its deadline the exec session itself is killed (not
/// just the `podman exec` client), so after three ticks `podman top` shows no probe left
/// behind, and no exec-session conmon stays on the host; one left by an earlier run (here
/// started by hand) is ended before the next probe starts. The evidence names the probe's own
/// time limit.
#[test]
fn an_exec_probe_past_its_limit_leaves_no_process_behind() {
    let root = TestRoot::new();
    root.simple_manifest(
        "slow",
        "health:\n  exec: [\"/bin/sleep\", \"1000\"]\n  failures: 10\n  start_period: 0\n",
    );
    let mut clock = Clock::new();
    assert_eq!(clock.reconcile(&root).code, 0);
    let conmons_before = conmons_under(&root.dir).len();
    for tick in 0..3 {
        let started = std::time::Instant::now();
        let out = clock.reconcile(&root);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "one probe deadline per tick: {:?}",
            started.elapsed()
        );
        assert_eq!(sleepers(&root, "archy-slow"), 0, "tick {tick}: {out:?}");
    }
    assert_eq!(
        conmons_under(&root.dir).len(),
        conmons_before,
        "no exec-session conmon left"
    );
    let doc = clock.status(&root).json();
    let error = app(&doc, "slow")["health"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("health probe time limit of 10s")
            && error.contains("killed its exec session in the container"),
        "{error}"
    );
    assert!(!error.contains("listing"), "{error}");

    // A probe an earlier run left behind (that run was SIGKILLed, say) is ended first.
    root.podman_ok(&["exec", "-d", "archy-slow", "/bin/sleep", "1000"]);
    assert_eq!(sleepers(&root, "archy-slow"), 1);
    let out = clock.reconcile(&root);
    assert!(
        out.stderr.contains("killing a health probe still running"),
        "{out:?}"
    );
    assert_eq!(sleepers(&root, "archy-slow"), 0, "{out:?}");
}

/// An RTC-less board: the first ticks run on the old clock, then NTP steps it an hour
/// forward. The boot clock (`ARCHY_BOOTTIME`, simulated beside `ARCHY_NOW`) says only a minute
/// passed, so `start_period: 10m` still holds: the app is not restarted at the step, and is
/// once ten real minutes have passed.
#[test]
fn a_forward_clock_step_does_not_cut_the_start_period() {
    let root = TestRoot::new();
    let port = free_port();
    root.simple_manifest(
        "svc",
        &format!("health:\n  tcp: 127.0.0.1:{port}\n  failures: 1\n  start_period: 10m\n"),
    );
    let old_clock = 1_700_000_000u64;
    let tick = |wall: u64, boot: u64| {
        let out = Out::from(
            root.archy_cmd()
                .env("ARCHY_NOW", wall.to_string())
                .env("ARCHY_BOOTTIME", boot.to_string())
                .args(["reconcile", "--output", "json"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{out:?}");
        app(&out.json(), "svc")["action"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tick(old_clock, 100), "create");
    assert_eq!(tick(old_clock + 30, 130), "ok");
    // NTP steps the wall clock an hour forward; 30 more seconds really passed.
    let step = 3_600;
    assert_eq!(
        tick(old_clock + step + 60, 160),
        "ok",
        "still in its start period"
    );
    assert_eq!(tick(old_clock + step + 90, 190), "ok");
    // Ten real minutes after the start: the failing probe counts, and health acts.
    assert_eq!(tick(old_clock + step + 620, 720), "restart");
}
