//! `archy verify-update` and `archy rollback` end to end: the real binary, a release layout in a
//! temp dir, and real HTTP/HTTPS servers on 127.0.0.1 started by each test (no podman needed).
//! Every server binds 127.0.0.1 only, stops when its handle drops, and lives at most
//! `SERVER_MAX_LIFE`; every loop is bounded.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Upper bound on any test server's life, whatever the test does.
mod common;
use common::install::{set_mode, Install};
use common::Out;

const SERVER_MAX_LIFE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A release layout and the archy binary

// ---------------------------------------------------------------------------------------------
// Test servers

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every request with this status.
    Status(u16),
    /// Accept and never answer.
    Hang,
    /// Answer plain HTTP at once, without reading (what a TLS client gets from a plain server).
    PlainAtOnce,
    /// Refuse connections (not listening) for this long, then answer 200.
    Late(Duration),
}

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    fn start(behaviour: Behaviour, tls: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = match behaviour {
            Behaviour::Late(_) => {
                drop(listener);
                None
            }
            _ => Some(listener),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let tls_config = tls.then(tls_config);
        let (stop2, hits2) = (stop.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            serve(listener, port, behaviour, tls_config, stop2, hits2);
        });
        Server {
            port,
            stop,
            hits,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    Arc::new(config)
}

fn serve(
    mut listener: Option<TcpListener>,
    port: u16,
    behaviour: Behaviour,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
) {
    let born = Instant::now();
    let mut held = Vec::new();
    while !stop.load(Ordering::SeqCst) && born.elapsed() < SERVER_MAX_LIFE {
        if listener.is_none() {
            if let Behaviour::Late(delay) = behaviour {
                if born.elapsed() >= delay {
                    listener = TcpListener::bind(("127.0.0.1", port)).ok();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = &listener else { continue };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, _)) => {
                hits.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false).unwrap();
                match behaviour {
                    Behaviour::Hang => held.push(stream),
                    Behaviour::PlainAtOnce => {
                        let mut stream = stream;
                        let _ = stream
                            .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                        held.push(stream);
                    }
                    Behaviour::Status(code) => answer(stream, code, tls.clone()),
                    Behaviour::Late(_) => answer(stream, 200, tls.clone()),
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Read the request head and write one response; errors (a client giving up) are ignored.
fn answer(stream: TcpStream, code: u16, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let response =
        format!("HTTP/1.1 {code} Test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n");
    match tls {
        None => exchange(stream, &response),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            exchange(rustls::StreamOwned::new(conn, stream), &response);
        }
    }
}

fn exchange(mut stream: impl Read + Write, response: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

fn verify(install: &Install, server: &Server, tls: bool, timeout: &str) -> Out {
    install.archy(&[
        "verify-update",
        "--url",
        &server.url(tls),
        "--interval",
        "100ms",
        "--timeout",
        timeout,
    ])
}

// ---------------------------------------------------------------------------------------------
// verify-update: probe

fn healthy_release_is_verified(tls: bool) {
    let install = Install::new();
    install.arm();
    let server = Server::start(Behaviour::Status(200), tls);
    let out = verify(&install, &server, tls, "10s");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("release 2 verified"), "{out:?}");
    assert!(
        !install.update_file("pending.json").exists(),
        "marker removed"
    );
    assert_eq!(install.current(), "releases/2");
    assert_eq!(install.restarts(), 0);
    let history = install.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["event"], "verified");
    assert_eq!(history[0]["version"], "2");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        3,
        "3 successes in a row"
    );
    // Second run: nothing pending, nothing probed.
    let again = verify(&install, &server, tls, "10s");
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing pending"), "{again:?}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    assert_eq!(install.history().len(), 1);
}

#[test]
fn http_200_verifies_and_removes_the_marker() {
    healthy_release_is_verified(false);
}

#[test]
fn https_200_with_self_signed_certificate_verifies() {
    healthy_release_is_verified(true);
}

fn failing_release_is_rolled_back(tls: bool) {
    let install = Install::new();
    install.arm();
    let server = Server::start(Behaviour::Status(500), tls);
    let started = Instant::now();
    let out = verify(&install, &server, tls, "1500ms");
    let took = started.elapsed();
    eprintln!(
        "500 ({}) -> rolled back in {took:?}",
        if tls { "https" } else { "http" }
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("rolled back from 2 to 1"), "{out:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(install.current(), "releases/1");
    assert_eq!(install.restarts(), 1, "restart command ran exactly once");
    assert_eq!(
        std::fs::read_to_string(&install.restart_log).unwrap(),
        "restart now\n"
    );
    assert_eq!(
        std::fs::read_to_string(install.update_file("bad-versions")).unwrap(),
        "2\n"
    );
    assert!(!install.update_file("pending.json").exists());
    assert!(!install.update_file("rollback.json").exists());
    let history = install.history();
    assert_eq!(history.last().unwrap()["event"], "rolled_back");
    assert_eq!(history.last().unwrap()["source"], "verify-update");
    // The boot check again: nothing pending; an operator rollback: nothing to do.
    let again = verify(&install, &server, tls, "1500ms");
    assert_eq!(again.code, 0, "{again:?}");
    let rb = install.archy(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert!(rb.stdout.contains("already rolled back"), "{rb:?}");
    assert_eq!(install.restarts(), 1);
}

#[test]
fn http_500_rolls_back_within_the_timeout() {
    failing_release_is_rolled_back(false);
}

#[test]
fn https_500_rolls_back_within_the_timeout() {
    failing_release_is_rolled_back(true);
}

#[test]
fn server_answering_late_but_within_the_timeout_is_verified() {
    let install = Install::new();
    install.arm();
    let server = Server::start(Behaviour::Late(Duration::from_millis(800)), false);
    let out = install.archy(&[
        "verify-update",
        "--output",
        "json",
        "--url",
        &server.url(false),
        "--interval",
        "100ms",
        "--timeout",
        "8s",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["result"], "verified");
    assert!(doc["probe"]["attempts"].as_u64().unwrap() > 3, "{doc}");
    assert!(
        out.stderr.contains("connection refused"),
        "early attempts were refused: {out:?}"
    );
    assert_eq!(install.current(), "releases/2");
}

#[test]
fn hanging_connection_does_not_stall_past_the_timeout() {
    let install = Install::new();
    install.arm();
    let server = Server::start(Behaviour::Hang, false);
    let started = Instant::now();
    let out = install.archy(&[
        "verify-update",
        "--no-rollback",
        "--output",
        "json",
        "--url",
        &server.url(false),
        "--interval",
        "100ms",
        "--timeout",
        "1500ms",
    ]);
    let took = started.elapsed();
    eprintln!("hanging server: gave up after {took:?}");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(took < Duration::from_millis(1500 + 1000), "took {took:?}");
    let doc = out.json();
    assert_eq!(doc["result"], "verify_failed");
    assert_eq!(doc["probe"]["last"]["kind"], "timeout", "{doc}");
    // --no-rollback: recorded as bad, nothing switched, marker kept for the next look.
    assert_eq!(install.current(), "releases/2");
    assert_eq!(install.restarts(), 0);
    assert!(install.update_file("pending.json").exists());
    assert_eq!(
        std::fs::read_to_string(install.update_file("bad-versions")).unwrap(),
        "2\n"
    );
}

#[test]
fn no_marker_means_nothing_pending() {
    let install = Install::new();
    let out = install.archy(&["verify-update", "--url", "http://127.0.0.1:9/"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("nothing pending"), "{out:?}");
}

#[test]
fn arm_writes_the_marker_from_the_symlinks_or_flags() {
    let install = Install::new();
    install.arm();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(install.update_file("pending.json")).unwrap())
            .unwrap();
    assert_eq!(marker["version"], "2");
    assert_eq!(marker["previous"], "1");
    assert!(marker["armed_at"].as_str().unwrap().ends_with('Z'));
    let out = install.archy(&["verify-update", "--arm", "--version", "../x"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn verify_and_rollback_share_the_update_lock() {
    let install = Install::new();
    install.arm();
    let server = Server::start(Behaviour::Hang, false);
    let mut probe = install
        .command(&[
            "verify-update",
            "--no-rollback",
            "--url",
            &server.url(false),
            "--timeout",
            "3s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the probe is connected, i.e. holds the lock.
    let until = Instant::now() + Duration::from_secs(5);
    while server.hits.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = install.archy(&["rollback", "--lock-wait", "0"]);
    assert_eq!(out.code, 75, "{out:?}");
    assert_eq!(install.current(), "releases/2");
    probe.kill().unwrap();
    probe.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// rollback

#[test]
fn rollback_twice_second_is_a_no_op() {
    let install = Install::new();
    let first = install.archy(&["rollback", "--reason", "operator test", "--output", "json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let doc = first.json();
    assert_eq!(doc["action"], "rolled_back");
    assert_eq!(doc["from"], "2");
    assert_eq!(doc["to"], "1");
    assert_eq!(install.current(), "releases/1");
    assert_eq!(install.restarts(), 1);
    let second = install.archy(&["rollback"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stdout.contains("already rolled back"), "{second:?}");
    assert_eq!(install.current(), "releases/1");
    assert_eq!(install.restarts(), 1, "no second restart");
    let history = install.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["reason"], "operator test");
}

#[test]
fn dry_run_changes_nothing() {
    let install = Install::new();
    let out = install.archy(&["rollback", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("would switch current from 2 to 1"),
        "{out:?}"
    );
    assert_eq!(install.current(), "releases/2");
    assert_eq!(install.restarts(), 0);
    assert!(!install.state.join("update").exists());
}

#[test]
fn rollback_refuses_without_a_usable_previous_release() {
    // No previous symlink.
    let install = Install::new();
    std::fs::remove_file(install.root.join("previous")).unwrap();
    let out = install.archy(&["rollback"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no previous release"), "{out:?}");
    assert_eq!(install.current(), "releases/2");

    // Previous directory missing.
    let install = Install::new();
    std::fs::remove_dir_all(install.root.join("releases/1")).unwrap();
    let out = install.archy(&["rollback"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("previous release 1 is missing"),
        "{out:?}"
    );
    assert_eq!(install.current(), "releases/2");

    // Previous release has the incident's drwx------ root.
    let install = Install::new();
    set_mode(&install.root.join("releases/1"), 0o700);
    let out = install.archy(&["rollback", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["action"], "refused");
    let message = doc["message"].as_str().unwrap();
    assert!(message.contains("0700 (drwx------)"), "{message}");
    assert_eq!(install.current(), "releases/2");
    assert_eq!(install.restarts(), 0);
}

#[test]
fn kill_9_during_rollback_leaves_a_valid_current() {
    let mut rng_state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut actions = Vec::new();
    for round in 0..8 {
        let install = Install::with_restart_delay(Some("0.3"));
        let mut child = install
            .command(&["rollback"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let when = if round % 2 == 0 {
            // xorshift: a different small delay each round, 0..=15 ms (archy reaches the switch in
            // a few ms, so these land before, at or just after it).
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            let delay = Duration::from_micros(rng_state % 15_001);
            std::thread::sleep(delay);
            format!("after {delay:?}")
        } else {
            // Once the restart command has started (bounded wait): current has switched.
            let until = Instant::now() + Duration::from_secs(10);
            while install.restarts() == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            "during the restart".to_string()
        };
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let current = install.current();
        assert!(
            current == "releases/1" || current == "releases/2",
            "round {round} (killed {when}): current -> {current}"
        );
        assert!(install.root.join("current/web-ui/index.html").exists());
        if round % 2 == 1 {
            assert_eq!(current, "releases/1", "switched before the restart began");
        }
        // Running it again finishes the job, whatever point the kill hit.
        let out = install.archy(&["rollback", "--output", "json"]);
        assert_eq!(out.code, 0, "round {round} (killed {when}): {out:?}");
        let action = out.json()["action"].as_str().unwrap().to_string();
        assert_eq!(install.current(), "releases/1");
        assert!(!install.update_file("rollback.json").exists());
        assert!(install.restarts() >= 1, "the restart ran at least once");
        if round % 2 == 1 {
            assert_eq!(action, "resumed", "an interrupted restart is run again");
        }
        eprintln!("round {round}: killed {when}; current was {current}; second run: {action}");
        actions.push(action);
    }
    assert!(actions.iter().any(|a| a == "resumed"));
}

// ---------------------------------------------------------------------------------------------
// verify-update --tarball

fn write_tarball(dir: &Path, root_mode: u32) -> PathBuf {
    common::install::web_ui_tarball(
        &dir.join(format!("web-ui-{root_mode:o}.tar.gz")),
        root_mode,
        b"<html>",
    )
}

#[test]
fn tarball_check_exit_codes_and_output() {
    let install = Install::new();
    let dir = tempfile::tempdir().unwrap();
    let good = write_tarball(dir.path(), 0o755);
    let bad = write_tarball(dir.path(), 0o700);
    let good_s = good.to_str().unwrap();

    let out = install.archy(&[
        "verify-update",
        "--tarball",
        good_s,
        "--require",
        "web-ui/index.html",
    ]);
    assert_eq!(out.code, 0, "{out:?}");

    let out = install.archy(&["verify-update", "--tarball", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("./  0700 (drwx------)  root directory must be 0755"),
        "{out:?}"
    );

    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&good).unwrap()))
    };
    let out = install.archy(&["verify-update", "--tarball", good_s, "--sha256", &sha]);
    assert_eq!(out.code, 0, "{out:?}");
    let wrong = "0".repeat(64);
    let out = install.archy(&[
        "verify-update",
        "--output",
        "json",
        "--tarball",
        good_s,
        "--sha256",
        &wrong,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["violations"][0]["rule"], "digest-mismatch");

    let out = install.archy(&[
        "verify-update",
        "--tarball",
        good_s,
        "--require",
        "web-ui/app.js",
    ]);
    assert_eq!(out.code, 1, "{out:?}");

    let not_gzip = dir.path().join("notes.txt");
    std::fs::write(&not_gzip, "hello").unwrap();
    let out = install.archy(&["verify-update", "--tarball", not_gzip.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not a gzip file"), "{out:?}");
    let out = install.archy(&["verify-update", "--tarball", "/nonexistent/x.tar.gz"]);
    assert_eq!(out.code, 2, "{out:?}");
    // The tarball check takes no lock and needs no install root or state.
    assert!(!install.run.exists());
}

#[test]
fn failed_restart_keeps_the_switch_and_the_next_rollback_retries_it() {
    let install = Install::new();
    let out = install.archy(&["rollback", "--restart-cmd", "/bin/false"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("restart command `/bin/false` failed"),
        "{out:?}"
    );
    assert_eq!(install.current(), "releases/1");
    assert!(install.update_file("rollback.json").exists());
    let out = install.archy(&["rollback", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["action"], "resumed");
    assert_eq!(install.restarts(), 1);
    assert!(!install.update_file("rollback.json").exists());
}

#[test]
fn tls_failure_is_reported_as_a_tls_error() {
    let install = Install::new();
    install.arm();
    // A plain-HTTP server probed over https: the handshake fails.
    let server = Server::start(Behaviour::PlainAtOnce, false);
    let url = format!("https://127.0.0.1:{}/", server.port);
    let out = install.archy(&[
        "verify-update",
        "--no-rollback",
        "--output",
        "json",
        "--url",
        &url,
        "--interval",
        "100ms",
        "--timeout",
        "600ms",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["probe"]["last"]["kind"], "tls", "{out:?}");
}
