//! Per-app health probes that every reconcile tick runs and acts on.
//!
//! A manifest's `health:` names one probe: `http:` (a GET from the host, 2xx/3xx unless
//! `expect:` says otherwise, redirects not followed), `tcp:` (a connect from the host) or `exec:`
//! (a command inside the container through `podman exec`: the costly kind, one podman call per
//! tick). Host-side probes run in threads beside the tick's one `podman ps`, so a no-op tick
//! still makes exactly one podman call.
//!
//! Split like `heal/` and `update/`: [`decide`] is pure (probe result + persisted state + now →
//! new state and an action), [`probe`] runs probes, [`store`] keeps each app's state in
//! `<state-dir>/health/<app>.json` (atomic writes, so a crash leaves the old or the new record).
//!
//! Actions: after `failures` consecutive failures outside the `start_period` grace of a start,
//! restart; if the probe still fails after the next grace, recreate; after that back off
//! (1 min, doubling, capped at 10 min; reset once the probe passes).

pub mod decide;
pub mod probe;
pub mod store;
pub mod tick;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::manifest::health::{HealthSpec, Probe};
pub use decide::{decide, Decision, HealthAction, HealthState, Observation, Policy, Status};
pub use probe::ProbeResult;

/// One probe's deadline (connect + answer): a healthy local service answers in milliseconds,
/// and a tick must not stall behind a server that accepts and never answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// `exec:` probes get longer: `podman exec` alone takes ~100 ms to start.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// The hidden clock override: `ARCHY_NOW=<unix seconds | RFC 3339>` makes archy believe it is
/// that time (tests simulate ticks without sleeping).
pub const NOW_ENV: &str = "ARCHY_NOW";

/// The decision's view of a manifest's probe settings.
pub fn policy(spec: &HealthSpec) -> Policy {
    Policy {
        failures: spec.failures(),
        start_period: spec.start_period().as_secs() as i64,
    }
}

/// Now, in Unix seconds: [`NOW_ENV`] when set (tests), else the system clock.
pub fn now() -> anyhow::Result<i64> {
    if let Some(text) = std::env::var_os(NOW_ENV) {
        let text = text.to_string_lossy();
        return parse_now(&text)
            .map_err(|e| crate::exit::invalid(format!("{NOW_ENV}={text:?}: {e}")));
    }
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the system clock is before 1970"))?
        .as_secs() as i64)
}

fn parse_now(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map_err(|_| "expected Unix seconds or an RFC 3339 time".to_string())?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| "before 1970".to_string())
}

/// RFC 3339 text for a Unix time (records and status).
pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_override_takes_seconds_or_rfc3339() {
        assert_eq!(parse_now("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_now("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert!(parse_now("tomorrow").is_err());
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
