//! The host-side probes of one tick (`tcp:` and plain `http:`) on one thread: every probe's
//! non-blocking connect starts at once and a single poll(2) loop drives them to their answers
//! under one deadline.
//!
//! Why not a thread and an HTTP client per probe: on the 2-core appliance, 20 probes that way
//! cost ~8 ms of CPU per tick (thread stacks and malloc arenas, the client's 128 KiB buffers,
//! its agent), more than the rest of a no-op tick together, and the probes run beside podman's
//! listing, which needs the same CPUs (BENCHMARKS.md (f)). Here a probe costs its socket, its
//! connect and, for `http:`, one small request and the answer's head. `https:` probes keep
//! the TLS client (ureq, each on its own thread: [`super::probe::run_host`]).
//!
//! What a probe checks is unchanged: `tcp:` passes when the connect succeeds; `http:` sends
//! `GET` with `Connection: close` and reads the status line and headers (redirects are
//! answers, never followed; the body is not read).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::ProbeResult;
use crate::update::probe::Answer;

/// Longest answer head (status line and headers) read before giving up on a server.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How often the loop looks for finished name lookups while some are pending.
const RESOLVE_TICK: Duration = Duration::from_millis(5);

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Connect to `address` (HOST:PORT).
    Tcp { address: String },
    /// GET `url` (`http://` only; the caller keeps `https://` for the TLS client).
    Http { url: String, expect: Option<u16> },
}

/// One probe: where it connects and what it sends.
struct Plan {
    host: String,
    port: u16,
    /// The request (`http:`), or None (`tcp:`).
    request: Option<Vec<u8>>,
}

/// Where one probe is.
enum Step {
    /// Waiting for its name lookup.
    Resolving,
    /// Connecting to `addrs[next - 1]`.
    Connecting {
        socket: TcpStream,
        addrs: Vec<SocketAddr>,
        next: usize,
    },
    /// Writing the request.
    Sending {
        socket: TcpStream,
        addr: SocketAddr,
        written: usize,
    },
    /// Reading the answer's head.
    Reading {
        socket: TcpStream,
        addr: SocketAddr,
        head: Vec<u8>,
    },
    Done(ProbeResult),
}

/// Run every target at once; each result in the order of `targets`. Each probe ends within
/// `timeout` of the call (connect, request and answer together).
pub fn run(targets: &[Target], timeout: Duration) -> Vec<ProbeResult> {
    let deadline = Instant::now() + timeout;
    let plans: Vec<Result<Plan, String>> = targets.iter().map(plan).collect();
    let (resolved_tx, resolved) = mpsc::channel::<(usize, std::io::Result<Vec<SocketAddr>>)>();
    let mut pending_lookups = 0;
    let mut steps: Vec<Step> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Err(message) => Step::Done(ProbeResult::new(false, message.clone())),
            #[allow(clippy::single_match_else)] // each arm says why it goes its way
            Ok(p) => match p.host.parse::<IpAddr>() {
                // An address needs no lookup: connect right away.
                Ok(ip) => start(targets, i, vec![SocketAddr::new(ip, p.port)], None),
                Err(_) => {
                    // A name: look it up on a thread of its own so a slow resolver holds up
                    // only this probe (a lookup still running at the deadline is abandoned).
                    let tx = resolved_tx.clone();
                    let (host, port) = (p.host.clone(), p.port);
                    pending_lookups += 1;
                    std::thread::spawn(move || {
                        let addrs = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(std::iter::Iterator::collect::<Vec<_>>);
                        let _ = tx.send((i, addrs));
                    });
                    Step::Resolving
                }
            },
        })
        .collect();
    drop(resolved_tx);

    loop {
        while pending_lookups > 0 {
            let Ok((i, addrs)) = resolved.try_recv() else {
                break;
            };
            pending_lookups -= 1;
            steps[i] = match addrs {
                Ok(addrs) if !addrs.is_empty() => start(targets, i, addrs, None),
                Ok(_) => Step::Done(failure(
                    &targets[i],
                    format!("resolve {}: no address", host_port(&plans[i])),
                )),
                Err(e) => Step::Done(failure(
                    &targets[i],
                    format!("resolve {}: {e}", host_port(&plans[i])),
                )),
            };
        }
        let now = Instant::now();
        let waiting: Vec<usize> = (0..steps.len())
            .filter(|&i| !matches!(steps[i], Step::Done(_) | Step::Resolving))
            .collect();
        let resolving = steps.iter().any(|s| matches!(s, Step::Resolving));
        if waiting.is_empty() && !resolving {
            break;
        }
        if now >= deadline {
            for (i, step) in steps.iter_mut().enumerate() {
                if !matches!(step, Step::Done(_)) {
                    *step = Step::Done(timed_out(&targets[i], step, timeout));
                }
            }
            break;
        }
        let mut wait = deadline - now;
        if resolving {
            wait = wait.min(RESOLVE_TICK);
        }
        let ready = poll_steps(&steps, &waiting, wait);
        for (i, revents) in waiting.into_iter().zip(ready) {
            if !revents.is_empty() {
                let step = std::mem::replace(&mut steps[i], Step::Resolving);
                steps[i] = advance(targets, &plans, i, step);
            }
        }
    }
    steps
        .into_iter()
        .map(|s| match s {
            Step::Done(result) => result,
            _ => unreachable!("the loop ends when every probe is done"),
        })
        .collect()
}

/// Poll the sockets of `waiting` once; each one's returned events (empty on timeout).
fn poll_steps(steps: &[Step], waiting: &[usize], wait: Duration) -> Vec<PollFlags> {
    let mut fds: Vec<PollFd<'_>> = waiting
        .iter()
        .map(|&i| {
            let (socket, events) = match &steps[i] {
                Step::Connecting { socket, .. } | Step::Sending { socket, .. } => {
                    (socket, PollFlags::OUT)
                }
                Step::Reading { socket, .. } => (socket, PollFlags::IN),
                Step::Resolving | Step::Done(_) => unreachable!("only sockets are polled"),
            };
            PollFd::from_borrowed_fd(socket.as_fd(), events)
        })
        .collect();
    // Rounded up to whole milliseconds' worth so the loop never spins just before the deadline.
    let timeout = rustix::event::Timespec::try_from(wait.max(Duration::from_millis(1))).unwrap_or(
        rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
    );
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(_) => fds.iter().map(rustix::event::PollFd::revents).collect(),
        // EINTR (a signal): nothing is ready, go round again.
        Err(_) => vec![PollFlags::empty(); fds.len()],
    }
}

/// Where `target` connects and what it sends, or why it cannot be probed.
fn plan(target: &Target) -> Result<Plan, String> {
    match target {
        Target::Tcp { address } => {
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .ok_or_else(|| format!("resolve {address}: expected HOST:PORT"))?;
            Ok(Plan {
                host: bare_host(host),
                port,
                request: None,
            })
        }
        Target::Http { url, .. } => {
            let uri: ureq::http::Uri = url
                .parse()
                .map_err(|e| format!("GET {url}: error: invalid URL: {e}"))?;
            if uri.scheme_str() != Some("http") {
                return Err(format!("GET {url}: error: only http:// is probed here"));
            }
            let host = uri
                .host()
                .ok_or_else(|| format!("GET {url}: error: the URL has no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let authority = uri.authority().map_or(host, |a| a.as_str());
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: archy/{}\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            );
            Ok(Plan {
                host: bare_host(host),
                port,
                request: Some(request.into_bytes()),
            })
        }
    }
}

/// Start connecting to the first address that takes a socket.
/// `last`: the failure of an earlier address of the same probe (reported if no address is left).
fn start(targets: &[Target], i: usize, addrs: Vec<SocketAddr>, last: Option<String>) -> Step {
    let mut last = last;
    for next in 0..addrs.len() {
        let addr = addrs[next];
        match connect(addr) {
            Ok(socket) => {
                return Step::Connecting {
                    socket,
                    addrs,
                    next: next + 1,
                }
            }
            Err(e) => last = Some(connect_error(addr, e)),
        }
    }
    Step::Done(failure(
        &targets[i],
        last.unwrap_or_else(|| "resolve: no address".to_string()),
    ))
}

/// A non-blocking socket with its connect to `addr` under way.
fn connect(addr: SocketAddr) -> Result<TcpStream, Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd: OwnedFd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e),
    }
}

/// Move one probe on after poll said its socket is ready.
fn advance(targets: &[Target], plans: &[Result<Plan, String>], i: usize, step: Step) -> Step {
    let target = &targets[i];
    match step {
        Step::Connecting {
            socket,
            addrs,
            next,
        } => {
            let addr = addrs[next - 1];
            let outcome = rustix::net::sockopt::socket_error(&socket)
                .map_err(|e| connect_error(addr, e))
                .and_then(|r| r.map_err(|e| connect_error(addr, e)));
            match outcome {
                Err(message) => {
                    drop(socket);
                    if next < addrs.len() {
                        let rest = addrs[next..].to_vec();
                        return start(targets, i, rest, Some(message));
                    }
                    Step::Done(failure(target, message))
                }
                Ok(()) => match plans[i].as_ref().ok().and_then(|p| p.request.as_ref()) {
                    None => Step::Done(ProbeResult::new(true, format!("connected to {addr}"))),
                    Some(_) => Step::Sending {
                        socket,
                        addr,
                        written: 0,
                    },
                },
            }
        }
        Step::Sending {
            mut socket,
            addr,
            written,
        } => {
            let request = plans[i]
                .as_ref()
                .ok()
                .and_then(|p| p.request.as_ref())
                .expect("only http probes send");
            match socket.write(&request[written..]) {
                Ok(n) if written + n == request.len() => Step::Reading {
                    socket,
                    addr,
                    head: Vec::with_capacity(512),
                },
                Ok(n) => Step::Sending {
                    socket,
                    addr,
                    written: written + n,
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Step::Sending {
                    socket,
                    addr,
                    written,
                },
                Err(e) => Step::Done(failure(target, format!("error: sending the request: {e}"))),
            }
        }
        Step::Reading {
            mut socket,
            addr,
            mut head,
        } => {
            let mut buf = [0u8; 2048];
            match socket.read(&mut buf) {
                Ok(0) => Step::Done(failure(
                    target,
                    if head.is_empty() {
                        "error: the server closed the connection without an answer".into()
                    } else {
                        "error: the server closed the connection in the middle of the answer's head"
                            .into()
                    },
                )),
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    match answer_head(&head) {
                        Head::Complete(code) => Step::Done(http_result(target, code)),
                        Head::Bad(why) => Step::Done(failure(target, format!("error: {why}"))),
                        Head::Partial if head.len() > MAX_HEAD_BYTES => Step::Done(failure(
                            target,
                            format!("error: the answer's head exceeds {MAX_HEAD_BYTES} bytes"),
                        )),
                        Head::Partial => Step::Reading { socket, addr, head },
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    Step::Reading { socket, addr, head }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Step::Done(failure(target, "connection refused".into()))
                }
                Err(e) => Step::Done(failure(target, format!("error: reading the answer: {e}"))),
            }
        }
        other => other,
    }
}

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The status code of a complete head (status line and headers).
    Complete(u16),
    Partial,
    Bad(String),
}

/// Parse an HTTP/1.x answer's head; informational (1xx) heads before the final one are
/// skipped.
fn answer_head(bytes: &[u8]) -> Head {
    let mut rest = bytes;
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            // Say early when what came is not HTTP at all.
            if rest.len() >= 5 && !rest.starts_with(b"HTTP/") {
                return Head::Bad("the answer is not HTTP".into());
            }
            return Head::Partial;
        };
        let line_end = rest.iter().position(|&b| b == b'\r').unwrap_or(end);
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts
            .next()
            .and_then(|c| (c.len() == 3).then(|| c.parse::<u16>().ok()).flatten());
        let Some(code) = code.filter(|_| version.starts_with("HTTP/1.")) else {
            return Head::Bad(format!(
                "the answer's status line is not HTTP/1.x: {:?}",
                crate::output::redact(&line.chars().take(80).collect::<String>())
            ));
        };
        if (100..200).contains(&code) && code != 101 {
            rest = &rest[end + 4..];
            continue;
        }
        return Head::Complete(code);
    }
}

fn http_result(target: &Target, code: u16) -> ProbeResult {
    let Target::Http { expect, .. } = target else {
        unreachable!("only http probes read an answer")
    };
    status_result(code, *expect)
}

/// Whether an HTTP status passes: `expect` exactly, else any 2xx or 3xx.
pub fn status_passes(code: u16, expect: Option<u16>) -> bool {
    match expect {
        Some(expected) => code == expected,
        None => (200..400).contains(&code),
    }
}

/// The result of an HTTP answer with status `code`.
pub(crate) fn status_result(code: u16, expect: Option<u16>) -> ProbeResult {
    let ok = status_passes(code, expect);
    let wanted = match expect {
        Some(e) => format!("expected {e}"),
        None => "expected 2xx or 3xx".into(),
    };
    ProbeResult::new(
        ok,
        if ok {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code} ({wanted})")
        },
    )
}

/// A failed probe: `tcp:` evidence as is, `http:` evidence as `GET <url>: <what>`.
fn failure(target: &Target, message: String) -> ProbeResult {
    match target {
        Target::Tcp { .. } => ProbeResult::new(false, message),
        Target::Http { url, .. } => {
            // Connect failures name the address for tcp; an http probe names the URL instead.
            let what =
                if message.ends_with(": connection refused") || message == "connection refused" {
                    Answer::ConnectionRefused.to_string()
                } else if let Some((_, rest)) = message
                    .strip_prefix("connect ")
                    .and_then(|m| m.split_once(": "))
                {
                    format!("error: {rest}")
                } else if message.starts_with("error: ") {
                    message
                } else {
                    format!("error: {message}")
                };
            ProbeResult::new(false, format!("GET {url}: {what}"))
        }
    }
}

/// The evidence of a probe still unfinished at the deadline.
fn timed_out(target: &Target, step: &Step, timeout: Duration) -> ProbeResult {
    match (target, step) {
        (Target::Tcp { .. }, Step::Connecting { addrs, next, .. }) => ProbeResult::new(
            false,
            format!(
                "connect {}: timed out after {}",
                addrs[next - 1],
                humantime::format_duration(timeout)
            ),
        ),
        (Target::Tcp { address }, _) => ProbeResult::new(
            false,
            format!(
                "resolve {address}: timed out after {}",
                humantime::format_duration(timeout)
            ),
        ),
        (Target::Http { url, .. }, _) => {
            ProbeResult::new(false, format!("GET {url}: {}", Answer::Timeout))
        }
    }
}

fn connect_error(addr: SocketAddr, e: Errno) -> String {
    if e == Errno::CONNREFUSED {
        format!("connect {addr}: connection refused")
    } else {
        format!("connect {addr}: {}", std::io::Error::from(e))
    }
}

/// `HOST:PORT` of a probe that could be planned (as `tcp:` gives it, brackets and all).
fn host_port(plan: &Result<Plan, String>) -> String {
    match plan {
        Ok(p) if p.host.contains(':') => format!("[{}]:{}", p.host, p.port),
        Ok(p) => format!("{}:{}", p.host, p.port),
        Err(_) => "?".into(),
    }
}

/// A host without the brackets of an IPv6 literal (`[::1]` → `::1`).
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_heads_parse_and_skip_informational_ones() {
        assert_eq!(answer_head(b"HTTP/1.1 200 OK\r\n"), Head::Partial);
        assert_eq!(
            answer_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Head::Complete(200)
        );
        assert_eq!(
            answer_head(b"HTTP/1.0 302 Found\r\n\r\nbody"),
            Head::Complete(302)
        );
        assert_eq!(
            answer_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n"),
            Head::Complete(503)
        );
        assert_eq!(
            answer_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 5"),
            Head::Partial
        );
        assert!(matches!(answer_head(b"SSH-2.0-OpenSSH\r\n"), Head::Bad(_)));
        assert!(matches!(
            answer_head(b"HTTP/2 200\r\n\r\n"),
            Head::Bad(m) if m.contains("not HTTP/1.x")
        ));
    }

    /// A server answering `answer` (raw bytes) to each of `n` connections after reading the
    /// request head; returns its port.
    fn server(answer: &'static [u8], n: usize) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(n) {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                assert!(text.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{text}");
                assert!(
                    text.contains(&format!(":{port}\r\n")),
                    "Host names the port: {text}"
                );
                let _ = stream.write_all(answer);
            }
        });
        port
    }

    #[test]
    fn many_probes_run_together_each_with_its_own_evidence() {
        let ok = server(b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n", 2);
        let bad = server(b"HTTP/1.0 503 Service Unavailable\r\n\r\n", 1);
        let garbage = server(b"SSH-2.0-OpenSSH_9.2\r\n", 1);
        let closed = server(b"", 1);
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let http = |port: u16, host: &str| Target::Http {
            url: format!("http://{host}:{port}/health?x=1"),
            expect: None,
        };
        let targets = [
            http(ok, "127.0.0.1"),
            http(ok, "localhost"),
            http(bad, "127.0.0.1"),
            http(garbage, "127.0.0.1"),
            http(closed, "127.0.0.1"),
            http(silent_port, "127.0.0.1"),
            http(refused, "127.0.0.1"),
            Target::Tcp {
                address: format!("127.0.0.1:{silent_port}"),
            },
            Target::Tcp {
                address: format!("127.0.0.1:{refused}"),
            },
        ];
        let r = run(&targets, Duration::from_millis(500));
        let evidence: Vec<(bool, &str)> = r.iter().map(|r| (r.ok, r.evidence.as_str())).collect();
        assert_eq!(evidence[0], (true, "HTTP 204"));
        assert_eq!(evidence[1], (true, "HTTP 204"), "a name is looked up");
        assert_eq!(evidence[2], (false, "HTTP 503 (expected 2xx or 3xx)"));
        assert!(!r[3].ok && r[3].evidence.contains("not HTTP"), "{:?}", r[3]);
        assert!(
            !r[4].ok && r[4].evidence.contains("closed the connection"),
            "{:?}",
            r[4]
        );
        assert_eq!(
            evidence[5],
            (
                false,
                format!("GET http://127.0.0.1:{silent_port}/health?x=1: no answer (timed out)")
                    .as_str()
            )
        );
        assert_eq!(
            evidence[6],
            (
                false,
                format!("GET http://127.0.0.1:{refused}/health?x=1: connection refused").as_str()
            )
        );
        assert_eq!(
            evidence[7],
            (
                true,
                format!("connected to 127.0.0.1:{silent_port}").as_str()
            ),
            "tcp passes on the connect alone"
        );
        assert_eq!(
            evidence[8],
            (
                false,
                format!("connect 127.0.0.1:{refused}: connection refused").as_str()
            )
        );
        drop(silent);
    }

    #[test]
    fn targets_that_cannot_be_probed_say_why() {
        let r = run(
            &[
                Target::Tcp {
                    address: "no-port".into(),
                },
                Target::Http {
                    url: "ftp://127.0.0.1/".into(),
                    expect: None,
                },
            ],
            Duration::from_millis(200),
        );
        assert_eq!(r[0].evidence, "resolve no-port: expected HOST:PORT");
        assert!(!r[1].ok && r[1].evidence.starts_with("GET ftp://127.0.0.1/: error:"));
    }
}
