//! Per-app health probes that every reconcile tick runs and acts on.
//!
//! A manifest's `health:` names one probe: `http:` (a GET from the host, 2xx/3xx unless
//! `expect:` says otherwise, redirects not followed), `tcp:` (a connect from the host) or `exec:`
//! (a command inside the container through `podman exec`: the costly kind, one podman call per
//! tick). Host-side probes run beside the tick's one `podman ps` ([`poller`]: `tcp:` and
//! `http://` on one thread and one poll loop; `https://` with the TLS client on threads), so a
//! no-op tick still makes exactly one podman call.
//!
//! Split like `heal/` and `update/`: [`decide`] is pure (probe result + persisted state + now →
//! new state and an action), [`probe`] runs probes, [`store`] keeps each app's state in
//! `<state-dir>/health/<app>.json` (atomic writes, so a crash leaves the old or the new record).
//!
//! Actions: after `failures` consecutive failures outside the `start_period` grace of a start,
//! restart; if the probe still fails after the next grace, recreate; after that back off
//! (1 min, doubling, capped at 10 min; reset once the probe passes).

pub mod chain;
pub mod decide;
pub mod poller;
pub mod probe;
pub mod result;
pub mod store;
pub mod tick;

pub use crate::clock::{now, rfc3339, NOW_ENV};

pub use crate::manifest::health::{HealthSpec, Probe, EXEC_TIMEOUT, PROBE_TIMEOUT};
pub use decide::{decide, Decision, HealthAction, HealthState, Observation, Policy, Status};
pub use result::ProbeResult;

/// The decision's view of a manifest's probe settings.
pub fn policy(spec: &HealthSpec) -> Policy {
    Policy {
        failures: spec.failures(),
        start_period: spec.start_period().as_secs() as i64,
    }
}
