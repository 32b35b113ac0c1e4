//! The boot probe: ask the web UI for `--url` every `--interval` until it has answered
//! `--expect` `--successes` times in a row, or `--timeout` has passed.
//!
//! Every request gets its own deadline (at most [`REQUEST_TIMEOUT`], never past the overall
//! one), so a server that accepts and never answers cannot stall the check. Certificate
//! verification is skipped only for loopback hosts: the node's own certificate is
//! self-signed, and nothing else should be trusted blindly. Redirects are not followed (a 3xx is
//! an answer like any other) so a redirect cannot lead the unverified client elsewhere.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

/// Longest one request may take (seconds-scale: a healthy nginx answers in milliseconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe is asked to do.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub url: String,
    pub expect: u16,
    pub successes: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One answer (or non-answer) from the server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Answer {
    Status(u16),
    ConnectionRefused,
    Timeout,
    Tls(String),
    Error(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(code) => write!(f, "HTTP {code}"),
            Answer::ConnectionRefused => f.write_str("connection refused"),
            Answer::Timeout => f.write_str("no answer (timed out)"),
            Answer::Tls(e) => write!(f, "TLS error: {e}"),
            Answer::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// How the probe ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    pub verified: bool,
    pub attempts: u32,
    pub consecutive: u32,
    pub last: Option<Answer>,
    pub elapsed_ms: u128,
}

/// Counts consecutive expected answers (pure).
#[derive(Debug, Clone, Default)]
pub struct Streak {
    pub consecutive: u32,
}

impl Streak {
    /// Record an answer; true once `needed` expected answers came in a row.
    pub fn observe(&mut self, answer: &Answer, expect: u16, needed: u32) -> bool {
        if *answer == Answer::Status(expect) {
            self.consecutive += 1;
        } else {
            self.consecutive = 0;
        }
        self.consecutive >= needed
    }
}

/// Whether the URL's host is loopback (127.0.0.0/8, ::1, localhost); a bad URL is an error.
pub fn loopback_host(url: &str) -> Result<bool, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("invalid --url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("--url {url:?} must start with http:// or https://")),
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url {url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(true);
    }
    Ok(host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// The deadline for one request: at most [`REQUEST_TIMEOUT`], never past the overall one.
pub fn request_timeout(remaining: Duration) -> Duration {
    remaining.min(REQUEST_TIMEOUT)
}

pub(crate) fn agent(insecure_loopback: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(insecure_loopback)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .build()
        .into()
}

/// Classify a ureq error into what an operator needs to see.
pub(crate) fn classify(err: &ureq::Error) -> Answer {
    match err {
        ureq::Error::Timeout(_) => Answer::Timeout,
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Answer::ConnectionRefused
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Answer::Timeout,
        ureq::Error::Tls(e) => Answer::Tls(e.to_string()),
        ureq::Error::Rustls(e) => Answer::Tls(e.to_string()),
        ureq::Error::Io(e) => {
            // rustls failures surface as io errors wrapping a rustls::Error.
            let inner_tls = e
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if inner_tls {
                Answer::Tls(e.to_string())
            } else {
                Answer::Error(e.to_string())
            }
        }
        other => Answer::Error(other.to_string()),
    }
}

/// Send one GET with its own deadline.
fn ask(agent: &ureq::Agent, url: &str, timeout: Duration) -> Answer {
    let result = agent
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call();
    match result {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(err) => classify(&err),
    }
}

/// Probe until verified or timed out; `report(attempt, answer, consecutive, remaining)` is
/// called after every attempt (progress bar or log line).
pub fn run(
    cfg: &ProbeConfig,
    mut report: impl FnMut(u32, &Answer, u32, Duration),
) -> Result<ProbeResult> {
    let insecure = loopback_host(&cfg.url).map_err(crate::exit::invalid)?;
    let agent = agent(insecure);
    let started = Instant::now();
    let deadline = started + cfg.timeout;
    let mut streak = Streak::default();
    let mut attempts = 0;
    let mut last = None;
    loop {
        let attempt_start = Instant::now();
        let remaining = deadline.saturating_duration_since(attempt_start);
        if remaining.is_zero() {
            break;
        }
        attempts += 1;
        let answer = ask(&agent, &cfg.url, request_timeout(remaining));
        let done = streak.observe(&answer, cfg.expect, cfg.successes);
        report(
            attempts,
            &answer,
            streak.consecutive,
            deadline.saturating_duration_since(Instant::now()),
        );
        last = Some(answer);
        if done {
            return Ok(ProbeResult {
                verified: true,
                attempts,
                consecutive: streak.consecutive,
                last,
                elapsed_ms: started.elapsed().as_millis(),
            });
        }
        // Next attempt one interval after this one started, but never past the deadline.
        let next = attempt_start + cfg.interval;
        let now = Instant::now();
        if next >= deadline {
            break;
        }
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    Ok(ProbeResult {
        verified: false,
        attempts,
        consecutive: streak.consecutive,
        last,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for url in [
            "https://127.0.0.1/",
            "https://127.1.2.3:8443/x",
            "http://localhost/",
            "https://LOCALHOST/",
            "https://[::1]:443/",
        ] {
            assert_eq!(loopback_host(url), Ok(true), "{url}");
        }
        for url in [
            "https://192.168.1.10/",
            "https://example.com/",
            "https://localhost.example.com/",
            "https://[::2]/",
            "https://128.0.0.1/",
        ] {
            assert_eq!(loopback_host(url), Ok(false), "{url}");
        }
        assert!(loopback_host("ftp://127.0.0.1/").is_err());
        assert!(loopback_host("not a url").is_err());
    }

    #[test]
    fn streak_needs_consecutive_expected_answers() {
        let mut s = Streak::default();
        assert!(!s.observe(&Answer::Status(200), 200, 3));
        assert!(!s.observe(&Answer::Status(200), 200, 3));
        assert!(!s.observe(&Answer::Status(500), 200, 3));
        assert!(!s.observe(&Answer::ConnectionRefused, 200, 3));
        assert!(!s.observe(&Answer::Status(200), 200, 3));
        assert!(!s.observe(&Answer::Status(200), 200, 3));
        assert!(s.observe(&Answer::Status(200), 200, 3));
    }

    #[test]
    fn request_timeout_never_exceeds_what_is_left() {
        assert_eq!(request_timeout(Duration::from_secs(90)), REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn refused_connection_is_reported_as_such_and_the_probe_stops_at_the_timeout() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = ProbeConfig {
            url: format!("http://127.0.0.1:{port}/"),
            expect: 200,
            successes: 1,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
        };
        let started = Instant::now();
        let result = run(&cfg, |_, _, _, _| {}).unwrap();
        assert!(!result.verified);
        assert_eq!(result.last, Some(Answer::ConnectionRefused));
        assert!(result.attempts >= 2, "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
