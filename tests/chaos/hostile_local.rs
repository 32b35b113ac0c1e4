//! Issue 14, cases 5–10: what a local user who is not root (the real `nobody`, via `setpriv`)
//! or a manifest can steer: archy's locks, its paths, the processes heal-podman acts on, and
//! the smaller input cases.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const NOBODY: u32 = 65534;

/// `setpriv` argv prefix running the rest as `nobody` (no supplementary groups).
fn as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--reset-env",
    ]);
    cmd
}

/// Kills the child it wraps, and that child's own children (`flock` runs its command as one),
/// when dropped (also when the test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (bounded) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_local_user_cannot_hold_archys_locks_silently() {
    let mut case = Case::hostile(
        "#05",
        "locks: `nobody` holds `reconcile.lock` (`flock -x … sleep`); planted `reconcile.lock -> /elsewhere`; run dir world-writable or owned by `nobody`",
        "run dir 0700 and lock files 0600 (nobody cannot open them); a lock nobody opened earlier is reported with pid, user and command, exit 1 (not 75), and `status` exits 1 once no full reconcile completed within --max-reconcile-age (default 2m); symlink not followed; unsafe run dir refused naming mode and owner (exit 2)",
    );
    case.run();
    let root = TestRoot::empty();
    // A fresh run dir: 0700, lock files 0600, and `nobody` cannot take the lock.
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lock = root.run_dir.join("reconcile.lock");
    assert_eq!(mode(&root.run_dir), 0o700);
    assert_eq!(mode(&lock), 0o600);
    let attempt = as_nobody()
        .args(["flock", "-n", "-x"])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(!attempt.status.success(), "nobody took the lock");

    // An older archy's 0755 run dir and 0644 lock file, opened and locked by `nobody`.
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let holder = Reaped(
        as_nobody()
            .args(["flock", "-x"])
            .arg(&lock)
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let held = || {
        !Command::new("flock")
            .args(["-n", "-x"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    wait_for("nobody to hold the lock", held);
    let out = root.archy(&["reconcile", "--lock-wait", "200ms"]);
    assert_eq!(
        out.code, 1,
        "a foreign holder is a failure, not exit 75: {out:?}"
    );
    let pid = holder.0.id();
    for expected in [
        format!("held by pid {pid} (user nobody, uid {NOBODY}"),
        format!("command `flock -x {} sleep 1000`", lock.display()),
        "not an archy run".to_string(),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}: {out:?}");
    }
    // archy narrowed the old lock file on the way (nobody keeps only what it opened before).
    assert_eq!(mode(&lock), 0o600);
    // While ticks keep failing, `status` turns non-zero once the last full reconcile is older
    // than --max-reconcile-age (time passing is simulated by ageing the record).
    let completed = root.state_dir.join("status/reconcile-completed.json");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&completed).unwrap()).unwrap();
    assert!(record["at"].is_string(), "{record}");
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 0, "recent enough: {out:?}");
    std::fs::write(
        &completed,
        r#"{"exit_code": 0, "at": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let out = root.archy(&["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("reconcile: OVERDUE: a full reconcile last completed")
            && out
                .stdout
                .contains("(at 2026-01-01T00:00:00Z), more than the 2m allowed"),
        "{out:?}"
    );
    let out = root.archy(&["status", "--max-reconcile-age", "100000d"]);
    assert_eq!(out.code, 0, "the age is configurable: {out:?}");
    drop(holder);

    // A planted symlink: not followed, its target never created.
    std::fs::remove_file(&lock).unwrap();
    let elsewhere = root.dir.join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("is a symlink; refusing to follow it"),
        "{out:?}"
    );
    assert!(!elsewhere.exists());
    std::fs::remove_file(&lock).unwrap();

    // A run dir others can write, or owned by another user: refused, naming mode and owner.
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "lock directory {} is 0777 (drwxrwxrwx) owned by root (uid 0)",
            root.run_dir.display()
        )),
        "{out:?}"
    );
    std::fs::set_permissions(&root.run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&root.run_dir, Some(NOBODY), None).unwrap();
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("0700 (drwx------) owned by nobody (uid 65534)"),
        "{out:?}"
    );
    std::os::unix::fs::chown(&root.run_dir, Some(0), None).unwrap();
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    case.pass();
}

/// `archy reconcile` (with `env`) in `root`; the combined output.
fn reconcile(root: &TestRoot, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = root.archy_cmd();
    cmd.arg("reconcile").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Out::from(cmd.output().unwrap())
}

#[test]
fn configs_cannot_overwrite_archys_own_files_and_a_broken_secret_fails_only_consumers() {
    let mut case = Case::hostile(
        "#06",
        "paths: `configs: [{render: containers.conf, path: <state-dir>/secrets/bitcoin-rpc.json}]`; then a broken canonical secret",
        "refused at validation (exit 2) naming the key and archy's secrets directory, secret untouched; a broken secret fails only the apps with configs, the others converge",
    );
    case.run();
    let root = TestRoot::new();
    root.simple_manifest("plain", "");
    let secret = root.state_dir.join("secrets/bitcoin-rpc.json");
    root.simple_manifest(
        "grab",
        &format!(
            "configs: [{{render: containers.conf, path: {}}}]\n",
            secret.display()
        ),
    );
    let out = reconcile(&root, &[], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("key `configs[0].path`")
            && out.stderr.contains("lies under archy's secrets directory"),
        "{out:?}"
    );
    assert!(!secret.exists(), "nothing rendered over the secret path");
    assert_eq!(root.state("archy-plain"), "running");
    // The same through a symlink into the state dir, and into the run and manifests dirs.
    let sneaky = root.dir.join("sneaky");
    std::os::unix::fs::symlink(&root.state_dir, &sneaky).unwrap();
    for path in [
        sneaky.join("secrets/bitcoin-rpc.json"),
        root.run_dir.join("reconcile.lock"),
        root.manifests.join("plain.yaml"),
    ] {
        root.simple_manifest(
            "grab",
            &format!(
                "configs: [{{render: containers.conf, path: {}}}]\n",
                path.display()
            ),
        );
        let out = reconcile(&root, &[], &[]);
        assert_eq!(out.code, 2, "{}: {out:?}", path.display());
        assert!(
            out.stderr.contains("manifests may not point there"),
            "{out:?}"
        );
    }
    std::fs::remove_file(root.manifests.join("grab.yaml")).unwrap();

    // A broken secret: the app with a config fails naming it, the plain app is untouched.
    let conf_dir = root.dir.join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    root.simple_manifest(
        "consumer",
        &format!(
            "configs: [{{render: lnd.conf, path: {}/lnd.conf, settings: {{rpchost: btc}}}}]\n",
            conf_dir.display()
        ),
    );
    assert_eq!(reconcile(&root, &[], &[]).code, 0);
    std::fs::write(
        &secret,
        "{\"user\": \"archy\", \"password\": 12345678901234567890}",
    )
    .unwrap();
    root.podman_ok(&["stop", "-t", "0", "archy-plain"]);
    let out = reconcile(&root, &["--output", "json"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.all().contains("12345678901234567890"), "{out:?}");
    let doc = out.json();
    let apps = doc["apps"].as_array().unwrap();
    let result = |app: &str| {
        apps.iter()
            .find(|a| a["app"] == app)
            .unwrap_or_else(|| panic!("{app} in {doc}"))
            .clone()
    };
    assert_eq!(result("consumer")["result"], "failed", "{doc}");
    assert!(
        result("consumer")["error"]
            .as_str()
            .unwrap()
            .contains("canonical secret"),
        "{doc}"
    );
    assert_ne!(result("plain")["result"], "failed", "{doc}");
    assert_eq!(
        root.state("archy-plain"),
        "running",
        "the plain app was repaired"
    );
    case.pass();
}

#[test]
fn rendered_files_belong_to_archy_not_to_whoever_created_them() {
    let mut case = Case::hostile(
        "#07",
        "paths: `nobody` pre-creates a config file in a directory it can write; a config path through a symlinked parent",
        "file replaced, owned by root, 0600: `nobody` cannot read the password; symlinked parent refused naming it, nothing written through it",
    );
    case.run();
    let root = TestRoot::empty();
    let conf_dir = root.dir.join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    std::fs::set_permissions(&conf_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = conf_dir.join("lnd.conf");
    root.simple_manifest(
        "web",
        &format!(
            "configs: [{{render: lnd.conf, path: {}, settings: {{rpchost: btc}}}}]\n",
            target.display()
        ),
    );
    let made = as_nobody()
        .arg("sh")
        .arg("-c")
        .arg("umask 000; : > \"$0\"")
        .arg(&target)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), NOBODY);
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 0, "{out:?}");
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("bitcoind.rpcpass="));
    let read = as_nobody().arg("cat").arg(&target).output().unwrap();
    assert!(!read.status.success(), "nobody read the rendered file");
    assert!(read.stdout.is_empty());
    // A second run with nothing changed is a no-op.
    let out = root.archy(&["render-config", "--check"]);
    assert_eq!(out.code, 0, "{out:?}");

    // A symlinked parent directory (made by nobody in the directory it can write).
    let elsewhere = root.dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let linked = as_nobody()
        .arg("ln")
        .arg("-s")
        .arg(&elsewhere)
        .arg(conf_dir.join("sub"))
        .status()
        .unwrap();
    assert!(linked.success());
    root.simple_manifest(
        "web",
        &format!(
            "configs: [{{render: lnd.conf, path: {}/sub/lnd.conf, settings: {{rpchost: btc}}}}]\n",
            conf_dir.display()
        ),
    );
    let out = root.archy(&["render-config"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.all().contains(&format!(
            "{}/sub is a symlink on the way to",
            conf_dir.display()
        )),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    case.pass();
}

#[test]
fn manifests_from_other_users_and_paths_resolving_outside_the_allowed_roots() {
    let mut case = Case::hostile(
        "#08",
        "paths: world-writable manifests dir; manifest owned by `nobody` with `volumes: [\"/:/host\"]`; `/allowed/root -> /` with `/allowed/root/etc:/hostetc`; `env_files: [/etc/shadow]`, config path and build context outside the allowed roots",
        "dir refused naming mode and owner (exit 2); the foreign manifest refused naming its owner, never run; every path resolved and refused outside the roots; the other apps converge",
    );
    case.run();
    let root = TestRoot::new();
    root.simple_manifest("good", "");
    // A world-writable manifests directory: nothing is loaded.
    std::fs::set_permissions(&root.manifests, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = reconcile(&root, &[], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "manifests directory {} is 0777 (drwxrwxrwx) owned by root (uid 0)",
            root.manifests.display()
        )),
        "{out:?}"
    );
    assert_eq!(root.state("archy-good"), "missing");
    std::fs::set_permissions(&root.manifests, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A manifest owned by a real other user.
    let foreign = root.simple_manifest("host", "volumes: [\"/:/host\"]\n");
    std::os::unix::fs::chown(&foreign, Some(NOBODY), None).unwrap();
    // Paths resolving outside the allowed root.
    let allowed = root.dir.join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::os::unix::fs::symlink("/", allowed.join("root")).unwrap();
    let a = allowed.display();
    root.simple_manifest(
        "linkvol",
        &format!("volumes: [\"{a}/root/etc:/hostetc\"]\n"),
    );
    root.simple_manifest("envfile", "env_files: [/etc/shadow]\n");
    root.simple_manifest(
        "confpath",
        "configs: [{render: containers.conf, path: /etc/containers/evil.conf}]\n",
    );
    root.manifest(
        "ctx",
        &format!("app: ctx\nbuild: {{context: {a}/root/etc}}\n"),
    );
    let allowed_env = format!("{a}:{}", root.dir.join("image-ctx").display());
    let out = reconcile(&root, &[], &[("ARCHY_ALLOWED_VOLUME_ROOTS", &allowed_env)]);
    assert_eq!(out.code, 2, "{out:?}");
    for expected in [
        "host.yaml: file is 0644 (-rw-r--r--) owned by nobody (uid 65534)".to_string(),
        format!("linkvol.yaml: key `volumes`: `{a}/root/etc:/hostetc`: source {a}/root/etc (resolves to /etc) is outside the allowed roots"),
        "envfile.yaml: key `env_files`: /etc/shadow is outside the allowed roots".to_string(),
        "confpath.yaml: key `configs[0].path`: /etc/containers/evil.conf is outside the allowed roots".to_string(),
        format!("ctx.yaml: key `build.context`: {a}/root/etc (resolves to /etc) is outside the allowed roots"),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}: {out:?}");
    }
    assert_eq!(root.state("archy-host"), "missing");
    assert_eq!(root.state("archy-linkvol"), "missing");
    assert_eq!(root.state("archy-good"), "running");
    case.pass();
}

#[test]
fn smaller_input_cases() {
    let mut case = Case::hostile(
        "#10",
        "input: numeric password in the secret file; UTF-8 BOM before a manifest; NUL byte in `command`; `stop_timeout: 4294967295`; `archy reconcile v3` for an invalid v3.yaml",
        "password never printed (text or JSON); BOM ignored, app converges; NUL and huge timeout refused naming the key; `reconcile v3` says why v3.yaml is invalid (exit 2)",
    );
    case.run();
    let root = TestRoot::new();
    // BOM: the app converges.
    let bom = root.manifests.join("bom.yaml");
    let text = format!(
        "\u{feff}app: bom\nimage: {TEST_IMAGE}\npull: never\nstop_timeout: 1\ncommand: [\"/bin/sleep\", \"3600\"]\n"
    );
    std::fs::write(&bom, text).unwrap();
    let out = reconcile(&root, &[], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(root.state("archy-bom"), "running");
    // NUL in command, huge stop_timeout: refused naming the key, the BOM app still converged.
    root.manifest(
        "nul",
        &format!("app: nul\nimage: {TEST_IMAGE}\ncommand: [\"/bin/sleep\", \"1\\0 2\"]\n"),
    );
    root.manifest(
        "slow",
        &format!("app: slow\nimage: {TEST_IMAGE}\nstop_timeout: 4294967295\n"),
    );
    let out = reconcile(&root, &[], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("key `command[1]`: contains a NUL byte"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("key `stop_timeout`: 4294967295 seconds is more than 900"),
        "{out:?}"
    );
    // Naming an invalid app says why it is invalid.
    root.manifest("v3", "app: v3\nimage: i\nports: [\"eighty\"]\n");
    let out = reconcile(&root, &["v3"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(!out.stderr.contains("no manifest"), "{out:?}");
    assert!(
        out.stderr.contains("v3.yaml")
            && out
                .stderr
                .contains("ports[0]: `eighty` is not podman -p syntax"),
        "{out:?}"
    );
    // A numeric password in the secret file is never printed.
    let secrets = root.state_dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let password = "31415926535897932384";
    std::fs::write(
        secrets.join("bitcoin-rpc.json"),
        format!("{{\"user\": \"archy\", \"password\": {password}}}"),
    )
    .unwrap();
    for f in ["nul", "slow", "v3"] {
        std::fs::remove_file(root.manifests.join(format!("{f}.yaml"))).unwrap();
    }
    std::fs::remove_file(&bom).unwrap();
    root.simple_manifest(
        "bom",
        &format!(
            "configs: [{{render: lnd.conf, path: {}/lnd.conf, settings: {{rpchost: btc}}}}]\n",
            root.dir.display()
        ),
    );
    for args in [
        &["render-config"][..],
        &["render-config", "--output", "json"],
        &["reconcile", "-v", "--output", "json"],
    ] {
        let out = root.archy(args);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(!out.all().contains(password), "{args:?}: {out:?}");
        assert!(out.all().contains("non-string field"), "{args:?}: {out:?}");
    }
    case.pass();
}

/// A process whose argv is conmon's for container `id` with a bundle under `graph`, but whose
/// executable is `tail -f /dev/null` (it ignores the rest): run as `nobody` or as root.
fn fake_conmon(graph: &Path, id: &str, nobody: bool) -> Reaped {
    let bundle = graph.join(format!("overlay-containers/{id}/userdata"));
    let script = format!(
        "import os; os.execv('/usr/bin/tail', ['conmon', '-f', '/dev/null', '--', '-c', '{id}', '-b', '{}'])",
        bundle.display()
    );
    let mut cmd = if nobody {
        let mut c = as_nobody();
        c.arg("python3");
        c
    } else {
        Command::new("python3")
    };
    let child = cmd
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the fake conmon to exec", || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"conmon\0"))
    });
    Reaped(child)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn heal_podman_acts_only_on_processes_it_identified() {
    let mut case = Case::hostile(
        "#09",
        "engine: a process that looks like conmon (`conmon -c <id> -b <graphroot>/…`) run by `nobody`, and one run by root from another executable",
        "not identified (owner, executable): reported as left alone, never killed; podman not reported broken",
    );
    case.run();
    let root = TestRoot::new();
    root.simple_manifest("app", "");
    assert_eq!(root.archy(&["reconcile"]).code, 0);
    let graph = root.dir.join("graph");
    let by_nobody = fake_conmon(&graph, &"a".repeat(64), true);
    let by_root = fake_conmon(&graph, &"b".repeat(64), false);
    let out = root.archy(&["heal-podman", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.all();
    for (pid, why) in [
        (by_nobody.0.id(), "runs as nobody (uid 65534)"),
        (by_root.0.id(), "its executable is not the engine's conmon"),
    ] {
        assert!(alive(pid), "pid {pid} was killed: {out:?}");
        assert!(
            text.contains(&format!("pid {pid} looks like conmon for")) && text.contains(why),
            "{why}: {out:?}"
        );
    }
    assert!(!text.contains("\"broken\""), "{out:?}");
    assert_eq!(root.state("archy-app"), "running");
    case.pass();
}
