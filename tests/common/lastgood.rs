//! Last-known-good image helpers shared by tests/lastgood.rs and tests/hostile_lkg.rs: images
//! built from busybox contexts, a simulated clock (`ARCHY_NOW`, one tick every 30 s) and the
//! record archy keeps per app.

use std::path::Path;

use super::*;

pub const TICK: i64 = 30;

/// A server answering on port 80 (`v<n>` as its page), the container kept alive by sleep.
pub fn serving(n: u32) -> String {
    format!("CMD [\"/bin/sh\", \"-c\", \"/bin/busybox mkdir -p /www && echo v{n} > /www/index.html && /bin/httpd -p 80 -h /www && exec /bin/sleep 3600\"]\n")
}

/// A container that runs but whose server never answers.
pub const SILENT: &str = "CMD [\"/bin/sleep\", \"3600\"]\n";

pub fn write_containerfile(ctx: &Path, cmd: &str) {
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM scratch\nCOPY bin /bin\n{cmd}"),
    )
    .unwrap();
}

/// `localhost/t:<tag>` built from a busybox context whose CMD is `cmd`; its image id.
pub fn build_tag(root: &TestRoot, tag: &str, cmd: &str) -> String {
    let ctx = root.test_context(&format!("ctx-{tag}"));
    write_containerfile(&ctx, cmd);
    let reference = format!("localhost/t:{tag}");
    root.podman_ok(&["build", "-q", "-t", &reference, ctx.to_str().unwrap()]);
    root.image_id(&reference).unwrap()
}

pub struct Clock {
    pub start: i64,
    pub tick: i64,
    /// Extra environment for archy (a registries.conf).
    pub env: Vec<(String, String)>,
}

impl Clock {
    pub fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Clock {
            start,
            tick: 0,
            env: Vec::new(),
        }
    }

    pub fn now(&self) -> String {
        (self.start + self.tick * TICK).to_string()
    }

    /// `archy <args> --output json` at the current simulated time.
    pub fn archy(&self, root: &TestRoot, args: &[&str]) -> Out {
        Out::from(
            root.archy_cmd()
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("ARCHY_NOW", self.now())
                .args(args)
                .args(["--output", "json"])
                .output()
                .unwrap(),
        )
    }

    /// One `archy reconcile` at the current simulated time, then the clock moves on a tick.
    pub fn reconcile(&mut self, root: &TestRoot) -> Out {
        let out = self.archy(root, &["reconcile"]);
        self.tick += 1;
        out
    }
}

/// Wait (bounded, 10 s) until the app's server accepts connections on its published port: a
/// container just (re)created may take a moment, and a tick probing before that would count a
/// failure the test did not mean. Only waits for readiness; asserts nothing about timing.
pub fn wait_open(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing listens on port {port}");
}

/// Tick once (a create or recreate), wait for the server, then `more` ticks.
pub fn start_then_tick(root: &TestRoot, clock: &mut Clock, port: u16, more: usize) {
    let out = clock.reconcile(root);
    assert_eq!(out.code, 0, "{out:?}");
    wait_open(port);
    for _ in 0..more {
        let out = clock.reconcile(root);
        assert_eq!(out.code, 0, "{out:?}");
    }
}

pub fn manifest_yaml(app: &str, source: &str, port: u16, data: &Path) -> String {
    format!(
        "app: {app}\n{source}\npull: never\nstop_timeout: 0\n\
         ports: [\"127.0.0.1:{port}:80\"]\nvolumes: [\"{}:/data\"]\n\
         health:\n  http: http://127.0.0.1:{port}/\n  failures: 2\n  start_period: 30s\n",
        data.display()
    )
}

/// The image id the app's container runs (podman's view).
pub fn running_image(root: &TestRoot, container: &str) -> String {
    root.podman_ok(&["inspect", "--format", "{{.Image}}", container])
}

pub fn record(root: &TestRoot, app: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(root.state_dir.join(format!("images/{app}.json"))).unwrap(),
    )
    .unwrap()
}

/// Tick until the container runs `image` again (at most `ticks`); the reconcile output of the
/// tick that put it back.
pub fn tick_until_back_on(
    root: &TestRoot,
    clock: &mut Clock,
    container: &str,
    image: &str,
    ticks: usize,
) -> Out {
    for _ in 0..ticks {
        let out = clock.reconcile(root);
        assert_eq!(out.code, 0, "{out:?}");
        if running_image(root, container) == image {
            return out;
        }
    }
    panic!("{container} was not rolled back to {image} within {ticks} ticks");
}

/// App `site` built from a context serving `v1`, ticked until its image is the app's
/// last-known-good: (the context, the clock, that image id).
pub fn build_app_with_a_good_image(root: &TestRoot) -> (std::path::PathBuf, Clock, String) {
    let ctx = root.test_context("web-ctx");
    write_containerfile(&ctx, &serving(1));
    let port = free_port();
    let data = root.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    root.manifest(
        "site",
        &manifest_yaml(
            "site",
            &format!("build:\n  context: {}", ctx.display()),
            port,
            &data,
        ),
    );
    let mut clock = Clock::new();
    start_then_tick(root, &mut clock, port, 3);
    let good = running_image(root, "archy-site");
    assert_eq!(record(root, "site")["last_known_good"]["id"], good);
    (ctx, clock, good)
}
