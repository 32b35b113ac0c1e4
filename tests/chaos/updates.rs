//! Update state faults (issue 15): a damaged pending marker at boot.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::install::Install;
use crate::support::*;

/// An HTTP server on 127.0.0.1 answering every request with `code` until dropped.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(code: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !s.load(Ordering::SeqCst) && started.elapsed().as_secs() < 60 {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 1024];
                        let _ = stream.read(&mut buf);
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Server { port, hits, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn damaged_pending_marker_at_boot() {
    let mut case = Case::new(
        "update: `update/pending.json` damaged (truncated JSON) when the boot check runs",
        "treated as an update of the current release pending: probed; rolled back when the probe fails, verified when it passes; the damage is named; status still shows everything else",
    );
    for (code, exit, result, current) in [
        (500, 1, "rolled back from 2 to 1", "releases/1"),
        (200, 0, "release 2 verified", "releases/2"),
    ] {
        case.run();
        let install = Install::new();
        install.arm();
        let marker = install.update_file("pending.json");
        std::fs::write(&marker, "{\"version\": \"2\", \"prev").unwrap();
        let server = Server::start(code);
        let out = install.archy(&[
            "verify-update",
            "--url",
            &format!("http://127.0.0.1:{}/", server.port),
            "--interval",
            "100ms",
            "--timeout",
            "1500ms",
        ]);
        assert_eq!(out.code, exit, "{out:?}");
        assert!(out.stdout.contains(result), "{out:?}");
        assert!(
            out.all().contains("damaged"),
            "the damage is named: {out:?}"
        );
        assert!(server.hits.load(Ordering::SeqCst) > 0, "probed");
        assert!(!marker.exists());
        assert_eq!(install.current(), current);
        case.pass();
    }
}

#[test]
fn status_with_a_damaged_pending_marker() {
    let mut case = Case::new(
        "update: `update/pending.json` damaged when `archy status` runs",
        "status still shows every app and record, names the damage, and reports ok: false (exit 1)",
    );
    case.run();
    let root = crate::common::TestRoot::new();
    root.simple_manifest("app", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let update = root.state_dir.join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(update.join("pending.json"), "{\"version\": \"2\", \"prev").unwrap();
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["converged"], true, "the apps are fine: {doc}");
    assert_eq!(doc["apps"][0]["app"], "app");
    assert_eq!(doc["apps"][0]["state"], "running");
    assert!(doc["last_reconcile"]["result"] == "ok", "{doc}");
    let damage = doc["pending_update"]["damaged"].as_str().unwrap();
    assert!(damage.contains("pending.json"), "{damage}");
    assert!(
        doc["problems"][0]
            .as_str()
            .unwrap()
            .contains("pending update marker is damaged"),
        "{doc}"
    );
    let text = root.archy(&["status"]);
    assert_eq!(text.code, 1, "{text:?}");
    assert!(
        text.stdout.contains("APP ") && text.stdout.contains("DAMAGED"),
        "{text:?}"
    );
    case.pass();
}

#[test]
fn status_ok_is_false_when_the_last_reconcile_failed() {
    let mut case = Case::new(
        "status: every app runs, but the last reconcile failed (an app since removed)",
        "`ok: false` (exit 1) next to `last_reconcile.result: failed`, with the reason in `problems`; the JSON carries `schema`",
    );
    case.run();
    let root = crate::common::TestRoot::new();
    root.simple_manifest("good", "");
    root.simple_manifest("bad", "env_files: [/nonexistent/bad.env]\n");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 1, "{out:?}");
    std::fs::remove_file(root.manifests.join("bad.yaml")).unwrap();
    let out = root.archy(&["status", "--output", "json"]);
    let doc = out.json();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["converged"], true, "{doc}");
    assert_eq!(doc["last_reconcile"]["result"], "failed", "{doc}");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        doc["problems"][0]
            .as_str()
            .unwrap()
            .contains("the last reconcile failed"),
        "{doc}"
    );
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = root.archy(&["status", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["ok"], true);
    assert_eq!(out.json()["problems"], serde_json::json!([]));
    case.pass();
}
