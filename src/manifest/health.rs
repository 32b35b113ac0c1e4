//! The `health:` manifest key: one probe (`http:`, `tcp:`, `exec:`, or the chain-aware
//! `bitcoin_rpc:` and `lnd_state:`) with `expect:`,
//! `failures:` and `start_period:`, validated with errors naming the key. What archy does with
//! it lives in `crate::health`.

use std::time::Duration;

/// One probe's deadline (connect + answer): a healthy local service answers in milliseconds,
/// and a tick must not stall behind a server that accepts and never answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// `exec:` probes get longer: `podman exec` alone takes ~100 ms to start (the Quadlet unit's
/// health command gets the same limit).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

use serde::{Deserialize, Serialize};

pub use super::types::parse_duration;

/// Consecutive failures before archy acts, unless `failures:` says otherwise.
pub const DEFAULT_FAILURES: u32 = 3;
/// Grace after a start, restart or recreate: three 30-second ticks.
pub const DEFAULT_START_PERIOD: Duration = Duration::from_secs(90);
/// Longest `start_period:` accepted (30 days: anything longer is a typo). Long graces are for
/// services that open their port only after an initial sync; the first pass ends a grace.
pub const MAX_START_PERIOD: Duration = Duration::from_secs(30 * 86_400);
/// Most `failures:` accepted.
pub const MAX_FAILURES: u32 = 100;

/// `health:` as written in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `http://HOST:PORT/PATH` (or https), asked from the host.
    #[serde(default)]
    pub http: Option<String>,
    /// `HOST:PORT` connected to from the host.
    #[serde(default)]
    pub tcp: Option<String>,
    /// argv run inside the container with `podman exec`.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// bitcoind's RPC `HOST:PORT`, asked `getblockchaininfo` from the host as archy's own probe
    /// user: starting (refused, `-28`), syncing (initial block download) or healthy.
    #[serde(default)]
    pub bitcoin_rpc: Option<String>,
    /// lnd's REST base URL (`https://127.0.0.1:8080`): `GET /v1/state`, no macaroon. A wallet
    /// to create or unlock is waiting for the operator, never a failure.
    #[serde(default)]
    pub lnd_state: Option<String>,
    /// `http:` only: the one status code that passes (default: any 2xx or 3xx).
    #[serde(default)]
    pub expect: Option<u16>,
    /// Consecutive failures before acting (default 3).
    #[serde(default)]
    pub failures: Option<u32>,
    /// Grace after a start: `90s`, `2m` or seconds (default 90s).
    #[serde(default)]
    pub start_period: Option<super::types::HumanDuration>,
}

/// One probe, validated: a closed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Http { url: String, expect: Option<u16> },
    Tcp { address: String },
    Exec { argv: Vec<String> },
    BitcoinRpc { address: String },
    LndState { url: String },
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http { .. } => "http",
            Probe::Tcp { .. } => "tcp",
            Probe::Exec { .. } => "exec",
            Probe::BitcoinRpc { .. } => "bitcoin_rpc",
            Probe::LndState { .. } => "lnd_state",
        }
    }

    /// Whether the probe runs on the host (no podman call).
    pub fn host_side(&self) -> bool {
        !matches!(self, Probe::Exec { .. })
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Http { url, .. } => write!(f, "http {url}"),
            Probe::Tcp { address } => write!(f, "tcp {address}"),
            Probe::Exec { argv } => write!(f, "exec {}", argv.join(" ")),
            Probe::BitcoinRpc { address } => write!(f, "bitcoin_rpc {address}"),
            Probe::LndState { url } => write!(f, "lnd_state {url}"),
        }
    }
}

impl HealthSpec {
    /// The probe (call after [`HealthSpec::validate`]; an invalid spec gives its first key).
    pub fn probe(&self) -> Probe {
        if let Some(address) = &self.bitcoin_rpc {
            return Probe::BitcoinRpc {
                address: address.clone(),
            };
        }
        if let Some(url) = &self.lnd_state {
            return Probe::LndState { url: url.clone() };
        }
        match (&self.http, &self.tcp, &self.exec) {
            (Some(url), _, _) => Probe::Http {
                url: url.clone(),
                expect: self.expect,
            },
            (None, Some(address), _) => Probe::Tcp {
                address: address.clone(),
            },
            (None, None, argv) => Probe::Exec {
                argv: argv.clone().unwrap_or_default(),
            },
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures.unwrap_or(DEFAULT_FAILURES)
    }

    pub fn start_period(&self) -> Duration {
        self.start_period
            .as_ref()
            .map_or(DEFAULT_START_PERIOD, super::types::HumanDuration::get)
    }

    /// Check the keys; the error names the key (`key \`health.tcp\`: …`).
    pub fn validate(&self) -> Result<(), String> {
        let given: Vec<&str> = [
            ("http", self.http.is_some()),
            ("tcp", self.tcp.is_some()),
            ("exec", self.exec.is_some()),
            ("bitcoin_rpc", self.bitcoin_rpc.is_some()),
            ("lnd_state", self.lnd_state.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| key)
        .collect();
        if given.len() != 1 {
            return Err(format!(
                "key `health`: give exactly one probe of `http`, `tcp`, `exec`, `bitcoin_rpc` or `lnd_state` (found {})",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ));
        }
        if let Some(url) = &self.http {
            validate_url(url).map_err(|e| format!("key `health.http`: `{url}` {e}"))?;
        }
        if let Some(code) = self.expect {
            if self.http.is_none() {
                return Err("key `health.expect`: only an `http` probe has a status code".into());
            }
            if !(100..=599).contains(&code) {
                return Err(format!(
                    "key `health.expect`: `{code}` is not an HTTP status code (100-599)"
                ));
            }
        }
        if let Some(address) = &self.tcp {
            validate_address(address).map_err(|e| format!("key `health.tcp`: `{address}` {e}"))?;
        }
        if let Some(address) = &self.bitcoin_rpc {
            validate_address(address)
                .map_err(|e| format!("key `health.bitcoin_rpc`: `{address}` {e}"))?;
        }
        if let Some(url) = &self.lnd_state {
            validate_url(url).map_err(|e| format!("key `health.lnd_state`: `{url}` {e}"))?;
            if url.contains('?') || url.trim_end_matches('/').matches('/').count() > 2 {
                return Err(format!(
                    "key `health.lnd_state`: `{url}` must be lnd's REST base URL like `https://127.0.0.1:8080` (archy asks /v1/state)"
                ));
            }
        }
        if let Some(argv) = &self.exec {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(
                    "key `health.exec`: must be a non-empty argv list like [\"pgrep\", \"nginx\"]"
                        .into(),
                );
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err("key `health.exec`: an argument contains a NUL byte".into());
            }
        }
        if let Some(n) = self.failures {
            if !(1..=MAX_FAILURES).contains(&n) {
                return Err(format!(
                    "key `health.failures`: `{n}` must be between 1 and {MAX_FAILURES}"
                ));
            }
        }
        if let Some(period) = &self.start_period {
            if period.get() > MAX_START_PERIOD {
                return Err(format!(
                    "key `health.start_period`: `{period}` is longer than 30 days"
                ));
            }
        }
        Ok(())
    }
}

fn validate_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://".into());
    }
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        // Evidence and logs carry the URL: credentials do not belong in it.
        return Err("must not carry credentials (user:password@)".into());
    }
    if authority.host().is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

fn validate_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("is not HOST:PORT".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err("is not HOST:PORT (bad host)".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("is not HOST:PORT (port 1-65535)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<HealthSpec, String> {
        let spec: HealthSpec = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        spec.validate().map(|()| spec)
    }

    #[test]
    fn probes_parse_with_defaults() {
        let s = spec("http: http://127.0.0.1:8081/\n").unwrap();
        assert_eq!(
            s.probe(),
            Probe::Http {
                url: "http://127.0.0.1:8081/".into(),
                expect: None
            }
        );
        assert_eq!((s.failures(), s.start_period().as_secs()), (3, 90));
        let s = spec("tcp: 127.0.0.1:8332\nfailures: 5\nstart_period: 2m\n").unwrap();
        assert_eq!(s.probe().kind(), "tcp");
        assert_eq!((s.failures(), s.start_period().as_secs()), (5, 120));
        let s = spec("exec: [pgrep, nginx]\nstart_period: 45\n").unwrap();
        assert!(!s.probe().host_side());
        assert_eq!(s.start_period().as_secs(), 45);
        let s = spec("http: https://[::1]:8443/x\nexpect: 401\n").unwrap();
        assert_eq!(s.probe().to_string(), "http https://[::1]:8443/x");
        let s = spec("bitcoin_rpc: 127.0.0.1:8332\n").unwrap();
        assert_eq!(
            (s.probe().to_string(), s.probe().host_side()),
            ("bitcoin_rpc 127.0.0.1:8332".to_string(), true)
        );
        let s = spec("lnd_state: https://127.0.0.1:8080\n").unwrap();
        assert_eq!(
            s.probe(),
            Probe::LndState {
                url: "https://127.0.0.1:8080".into()
            }
        );
    }

    #[test]
    fn bad_probes_name_the_key() {
        let cases = [
            ("{}", "key `health`: give exactly one probe"),
            ("http: http://a/\ntcp: a:1\n", "found http, tcp"),
            ("http: ftp://a/\n", "key `health.http`"),
            ("http: http://user:pw@127.0.0.1/\n", "credentials"),
            ("http: not a url\n", "key `health.http`"),
            ("tcp: a:1\nexpect: 200\n", "key `health.expect`"),
            ("http: http://a/\nexpect: 99\n", "key `health.expect`"),
            ("tcp: 127.0.0.1\n", "key `health.tcp`"),
            ("tcp: 127.0.0.1:0\n", "key `health.tcp`"),
            ("tcp: \":80\"\n", "key `health.tcp`"),
            ("exec: []\n", "key `health.exec`"),
            ("tcp: a:1\nfailures: 0\n", "key `health.failures`"),
            (
                "tcp: a:1\nstart_period: soon\n",
                "start_period: `soon` must be a duration like `90s`, `2m` or a number of seconds at line 2",
            ),
            ("tcp: a:1\nstart_period: 400d\n", "longer than 30 days"),
            ("tcp: a:1\ninterval: 5s\n", "unknown field `interval`"),
            ("bitcoin_rpc: 127.0.0.1\n", "key `health.bitcoin_rpc`"),
            ("bitcoin_rpc: a:1\ntcp: a:1\n", "found tcp, bitcoin_rpc"),
            ("lnd_state: 127.0.0.1:8080\n", "key `health.lnd_state`"),
            (
                "lnd_state: https://127.0.0.1:8080/v1/state\n",
                "REST base URL",
            ),
        ];
        for (yaml, expected) in cases {
            let err = spec(yaml).unwrap_err();
            assert!(err.contains(expected), "{yaml:?}: {err}");
        }
    }
}
