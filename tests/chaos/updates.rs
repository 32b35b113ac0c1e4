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
        assert!(out.all().contains("damaged"), "the damage is named: {out:?}");
        assert!(server.hits.load(Ordering::SeqCst) > 0, "probed");
        assert!(!marker.exists());
        assert_eq!(install.current(), current);
        case.pass();
    }
}
