//! The pure half of health checking: what one tick's probe result means, given what was
//! persisted before and the time. No I/O: every rule is a row of the unit-tested table below.
//!
//! Rules, per app with a probe:
//! - A start archy did not cause (a new container id or start time), and the first sight of a
//!   container, opens a grace period of `start_period`; so does every action archy takes.
//!   Failed probes inside the grace do not count (the app is `starting`), unless it was already
//!   unhealthy (then it stays so until a probe passes). A passing probe ends the grace.
//! - Outside the grace every failed probe counts. At `failures` consecutive failures the app is
//!   `unhealthy`, and archy acts: first a restart, then (still failing `failures` times after
//!   the restart's grace) a recreate, then restarts with a back-off between actions of
//!   [`BACKOFF_BASE_SECS`] doubling up to [`BACKOFF_CAP_SECS`].
//! - A passing probe makes the app `healthy` and resets the count, the ladder and the back-off.
//! - A container that is not running, or that reconcile itself (re)creates or starts this tick,
//!   is `starting`: reconcile's own plan handles it; health waits for it to run.

use serde::{Deserialize, Serialize};

use super::ProbeResult;

/// First back-off between health actions after the recreate (seconds): two 30-second ticks.
pub const BACKOFF_BASE_SECS: i64 = 60;
/// Longest back-off (seconds): a broken app is still retried every 10 minutes.
pub const BACKOFF_CAP_SECS: i64 = 600;

/// An app's probe settings as the decision needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub failures: u32,
    /// Seconds.
    pub start_period: i64,
}

/// The health an app is reported with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not running yet, or within its start period without a passing probe.
    #[default]
    Starting,
    /// The last probe passed, or fewer than `failures` probes failed since.
    Healthy,
    /// `failures` or more consecutive failed probes, and none passed since.
    Unhealthy,
    /// `bitcoin_rpc:`: bitcoind answers and is in initial block download.
    Syncing,
    /// `lnd_state:`: lnd waits for its operator to create or unlock the wallet; never acted on.
    #[serde(rename = "waiting-for-operator")]
    WaitingForOperator,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
            Status::Syncing => "syncing",
            Status::WaitingForOperator => "waiting-for-operator",
        }
    }

    /// The app answers (a `healthy` dependency's condition): healthy, or syncing.
    pub fn answers(self) -> bool {
        matches!(self, Status::Healthy | Status::Syncing)
    }
}

/// What health asks reconcile to do with a running container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthAction {
    #[default]
    None,
    Restart,
    Recreate,
}

impl HealthAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthAction::None => "none",
            HealthAction::Restart => "restart",
            HealthAction::Recreate => "recreate",
        }
    }
}

/// The last action health took, with the evidence that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Unix seconds.
    pub at: i64,
    pub action: HealthAction,
    pub evidence: String,
}

/// What is persisted per app between ticks (`<state-dir>/health/<app>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthState {
    pub status: Status,
    /// Unix seconds of the last status change.
    pub since: Option<i64>,
    /// Failed probes in a row (outside a start grace) since the last pass.
    pub consecutive_failures: u32,
    /// Failed probes counted toward the next action (reset by every action).
    pub strikes: u32,
    /// What the last probe saw (status code, connect error, exec output tail).
    pub last_evidence: Option<String>,
    /// What the last failed probe saw.
    pub last_error: Option<String>,
    /// The container start this state has seen: `<id>@<started-at>`.
    pub start_key: Option<String>,
    /// Start of the current grace period (Unix seconds); None once a probe passed.
    pub grace_from: Option<i64>,
    /// archy acted (or reconcile started the container): the next start seen is that one.
    pub expect_start: bool,
    /// Actions taken since the app was last healthy (0: none; 1 restarted; 2 recreated; …).
    pub step: u32,
    /// Back-off: no action before this time (Unix seconds).
    pub next_action_at: Option<i64>,
    pub last_action: Option<ActionRecord>,
    /// The wall and monotonic clocks when `grace_from` or `next_action_at` were last set: a
    /// later tick re-bases them by a forward clock step (see [`CLOCK_STEP_SECS`]).
    pub anchor: Option<crate::clock::Anchor>,
    /// `bitcoin_rpc:`: where the chain was at the last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<super::chain::ChainProgress>,
    /// Not persisted: this state could not be read from or written to its file (the error,
    /// naming it). Across ticks its count is then lost, so the app's health is `unknown`
    /// (`archy status` exits 1) rather than quietly never acted on.
    #[serde(skip)]
    pub store_error: Option<String>,
}

/// What one tick knows about an app.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// podman lists its container as running.
    pub running: bool,
    /// `<id>@<started-at>` of that container.
    pub start_key: Option<String>,
    /// Reconcile's plan creates, recreates, starts or restarts it this tick anyway.
    pub converging: bool,
    /// This tick's probe; None when it was not probed.
    pub result: Option<ProbeResult>,
    /// This tick's wall and monotonic clocks (None: unknown, no re-basing).
    pub anchor: Option<crate::clock::Anchor>,
    /// A `healthy` dependency that has not passed holds back any action (why): the failures
    /// keep counting, but no step of the ladder is taken or recorded until it passes.
    pub held: Option<String>,
}

/// The new state, the action to take, and a line to log (None: nothing worth saying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: HealthState,
    pub action: HealthAction,
    pub message: Option<String>,
}

/// Seconds to wait before the action after step `step` (1 = after the restart, 2 = after the
/// recreate, …): none until the recreate, then 60, 120, 240, 480, 600, 600 …
pub fn backoff_after(step: u32) -> Option<i64> {
    if step < 2 {
        return None;
    }
    let doublings = (step - 2).min(16);
    Some((BACKOFF_BASE_SECS << doublings).min(BACKOFF_CAP_SECS))
}

fn set_status(state: &mut HealthState, status: Status, now: i64) {
    if state.status != status || state.since.is_none() {
        state.status = status;
        state.since = Some(now);
    }
}

/// A wall-clock jump forward this far (seconds) beyond the time that really passed (by the
/// monotonic clock) is a clock step, not time: the grace and the back-off are moved by it. An
/// RTC-less board's first ticks run before NTP sets the clock, often hours forward; without
/// this a `start_period: 10m` would end at the step.
pub const CLOCK_STEP_SECS: i64 = 120;

/// A chain-aware probe found the app alive but not ready: starting, syncing or waiting for its
/// operator. Not a failure: the count, the ladder and the back-off reset as on a pass, and no
/// action is taken (a locked lnd is never restarted under the person unlocking it).
fn alive(
    prev: &HealthState,
    mut s: HealthState,
    phase: super::chain::Phase,
    evidence: &str,
    now: i64,
) -> Decision {
    use super::chain::Phase;
    s.consecutive_failures = 0;
    s.strikes = 0;
    s.step = 0;
    s.next_action_at = None;
    s.grace_from = None;
    let status = match phase {
        Phase::Starting => Status::Starting,
        Phase::Syncing(_) => Status::Syncing,
        Phase::WaitingForOperator => Status::WaitingForOperator,
    };
    set_status(&mut s, status, now);
    let message = (prev.status != status && status != Status::Starting)
        .then(|| format!("{}: {evidence}", status.as_str()));
    Decision {
        state: s,
        action: HealthAction::None,
        message,
    }
}

/// Decide one tick for one app. Pure.
pub fn decide(prev: &HealthState, obs: &Observation, policy: Policy, now: i64) -> Decision {
    let mut prev = prev.clone();
    let mut note = None;
    if let (Some(then), Some(here)) = (&prev.anchor, &obs.anchor) {
        let step = crate::clock::forward_step(then, here);
        if step > CLOCK_STEP_SECS {
            prev.grace_from = prev.grace_from.map(|g| g.saturating_add(step).min(now));
            prev.next_action_at = prev.next_action_at.map(|t| t.saturating_add(step));
            prev.anchor = Some(here.clone());
            note = Some(format!(
                "the clock stepped forward by {step}s since this app's start period or back-off                  began; both moved with it"
            ));
        }
    }
    let mut d = decide_on(&prev, obs, policy, now);
    if d.state.grace_from != prev.grace_from || d.state.next_action_at != prev.next_action_at {
        d.state.anchor.clone_from(&obs.anchor);
    }
    if d.message.is_none() {
        d.message = note;
    }
    d
}

/// [`decide`] once the anchor is reconciled.
///
/// Long, and kept whole on purpose: one match over the observation, each arm a row of the state
/// table in the module header (pass, fail in grace, fail past `failures`, after an action);
/// split, the table's rows would no longer be seen side by side.
#[allow(clippy::too_many_lines)]
fn decide_on(prev: &HealthState, obs: &Observation, policy: Policy, now: i64) -> Decision {
    let mut s = prev.clone();
    let quiet = |state: HealthState| Decision {
        state,
        action: HealthAction::None,
        message: None,
    };
    if obs.converging || !obs.running {
        // Reconcile's plan owns this tick; a start it causes opens a new grace.
        s.strikes = 0;
        if obs.converging {
            s.grace_from = Some(now);
            s.expect_start = true;
        } else {
            s.start_key = None;
        }
        if s.status != Status::Unhealthy {
            set_status(&mut s, Status::Starting, now);
        }
        return quiet(s);
    }
    if s.expect_start {
        s.expect_start = false;
        s.start_key.clone_from(&obs.start_key);
        s.grace_from = s.grace_from.or(Some(now));
    } else if s.start_key != obs.start_key {
        // A start archy did not cause (or the first sight of this container).
        s.start_key.clone_from(&obs.start_key);
        s.grace_from = Some(now);
        s.strikes = 0;
    }
    // A clock set back (NTP, RTC) must not stretch a grace or a back-off by the jump.
    if s.grace_from.is_some_and(|from| from > now) {
        s.grace_from = Some(now);
    }
    if s.next_action_at
        .is_some_and(|at| at > now + BACKOFF_CAP_SECS)
    {
        s.next_action_at = Some(now);
    }
    let Some(result) = &obs.result else {
        return quiet(s);
    };
    s.last_evidence = Some(result.evidence.clone());
    if result.chain.is_some() {
        s.chain = result.chain;
    }
    if let Some(phase) = result.phase {
        return alive(prev, s, phase, &result.evidence, now);
    }
    if result.ok {
        let message = (prev.status == Status::Unhealthy)
            .then(|| format!("healthy again: {}", result.evidence));
        s.consecutive_failures = 0;
        s.strikes = 0;
        s.step = 0;
        s.next_action_at = None;
        s.grace_from = None;
        set_status(&mut s, Status::Healthy, now);
        return Decision {
            state: s,
            action: HealthAction::None,
            message,
        };
    }
    s.last_error = Some(result.evidence.clone());
    let in_grace = s
        .grace_from
        .is_some_and(|from| now < from.saturating_add(policy.start_period));
    if in_grace {
        if s.status != Status::Unhealthy {
            set_status(&mut s, Status::Starting, now);
        }
        return quiet(s);
    }
    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
    s.strikes = s.strikes.saturating_add(1);
    let mut message = None;
    if s.consecutive_failures >= policy.failures {
        if s.status != Status::Unhealthy {
            message = Some(format!(
                "unhealthy: {} consecutive failed probes, last: {}",
                s.consecutive_failures, result.evidence
            ));
        }
        set_status(&mut s, Status::Unhealthy, now);
    }
    let due = s.next_action_at.is_none_or(|at| now >= at);
    if s.strikes < policy.failures || !due {
        return Decision {
            state: s,
            action: HealthAction::None,
            message,
        };
    }
    let action = if s.step == 1 {
        HealthAction::Recreate
    } else {
        HealthAction::Restart
    };
    if let Some(why) = &obs.held {
        let message = format!(
            "{} held back after {} consecutive failed probes ({}): {why}",
            action.as_str(),
            s.consecutive_failures,
            result.evidence
        );
        return Decision {
            state: s,
            action: HealthAction::None,
            message: Some(message),
        };
    }
    s.step = s.step.saturating_add(1);
    s.strikes = 0;
    s.grace_from = Some(now);
    s.expect_start = true;
    s.next_action_at = backoff_after(s.step).map(|secs| now + secs);
    s.last_action = Some(ActionRecord {
        at: now,
        action,
        evidence: result.evidence.clone(),
    });
    let mut line = format!(
        "{} after {} consecutive failed probes ({})",
        action.as_str(),
        s.consecutive_failures,
        result.evidence
    );
    if let Some(at) = s.next_action_at {
        line.push_str(&format!(
            "; backing off: no further action before {}",
            super::rfc3339(at)
        ));
    }
    Decision {
        state: s,
        action,
        message: Some(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 2,
        start_period: 30,
    };

    #[allow(clippy::unnecessary_wraps)] // what `decide` takes: a probe that ran
    fn pass() -> Option<ProbeResult> {
        Some(ProbeResult {
            ok: true,
            evidence: "HTTP 200".into(),
            ..Default::default()
        })
    }

    #[allow(clippy::unnecessary_wraps)] // what `decide` takes: a probe that ran
    fn fail() -> Option<ProbeResult> {
        Some(ProbeResult {
            ok: false,
            evidence: "connection refused".into(),
            ..Default::default()
        })
    }

    fn running(key: &str, result: Option<ProbeResult>) -> Observation {
        Observation {
            running: true,
            start_key: Some(key.into()),
            converging: false,
            result,
            held: None,
            anchor: None,
        }
    }

    /// One row: state before, observation, now → (status, consecutive, action).
    fn row(
        prev: &HealthState,
        obs: Observation,
        now: i64,
    ) -> (Status, u32, HealthAction, HealthState) {
        let d = decide(prev, &obs, POLICY, now);
        (
            d.state.status,
            d.state.consecutive_failures,
            d.action,
            d.state,
        )
    }

    #[allow(clippy::unnecessary_wraps)] // what `decide` takes: a probe that ran
    fn phase(p: super::super::chain::Phase, evidence: &str) -> Option<ProbeResult> {
        Some(ProbeResult {
            ok: matches!(p, super::super::chain::Phase::Syncing(_)),
            evidence: evidence.into(),
            phase: Some(p),
            ..Default::default()
        })
    }

    #[test]
    fn alive_but_not_ready_is_never_a_failure_nor_acted_on() {
        use super::super::chain::{ChainProgress, Phase};
        // Unhealthy after failures, then lnd answers LOCKED for hours: waiting, never acted on.
        let mut s = HealthState::default();
        for now in [1000, 1100, 1130, 1160] {
            s = row(&s, running("a@1", fail()), now).3;
        }
        assert_eq!(s.status, Status::Unhealthy);
        let locked = phase(Phase::WaitingForOperator, "lnd state LOCKED: unlock it");
        for (i, now) in (2000..2000 + 200 * 30).step_by(30).enumerate() {
            let d = decide(&s, &running("a@1", locked.clone()), POLICY, now);
            assert_eq!(d.action, HealthAction::None);
            assert_eq!(
                (d.state.status, d.state.consecutive_failures, d.state.step),
                (Status::WaitingForOperator, 0, 0)
            );
            assert_eq!(d.message.is_some(), i == 0, "said once");
            s = d.state;
        }
        // Starting (lnd unlocked, bitcoind loading): not counted either.
        let d = decide(
            &s,
            &running("a@1", phase(Phase::Starting, "-28")),
            POLICY,
            9000,
        );
        assert_eq!(
            (d.state.status, d.action),
            (Status::Starting, HealthAction::None)
        );
        // Syncing is a pass with progress; the chain is kept for status and `synced`.
        let p = ChainProgress {
            blocks: 10,
            headers: 20,
            progress_ppm: 500_000,
            ibd: true,
        };
        let mut syncing = phase(Phase::Syncing(p), "syncing").unwrap();
        syncing.chain = Some(p);
        let d = decide(&d.state, &running("a@1", Some(syncing)), POLICY, 9030);
        assert_eq!((d.state.status, d.state.chain), (Status::Syncing, Some(p)));
        assert!(d.state.status.answers());
        // A refusal after that counts as before.
        let d = decide(&d.state, &running("a@1", fail()), POLICY, 9060);
        assert_eq!(
            (d.state.status, d.state.consecutive_failures),
            (Status::Syncing, 1)
        );
    }

    #[test]
    fn decision_table() {
        let fresh = HealthState::default();
        // First sight of a running container: grace opens; a failure inside it does not count.
        let (status, n, action, s1) = row(&fresh, running("a@100", fail()), 1000);
        assert_eq!(
            (status, n, action),
            (Status::Starting, 0, HealthAction::None)
        );
        assert_eq!(
            (s1.grace_from, s1.start_key.as_deref()),
            (Some(1000), Some("a@100"))
        );
        // A pass ends the grace.
        let (status, n, action, healthy) = row(&s1, running("a@100", pass()), 1010);
        assert_eq!(
            (status, n, action),
            (Status::Healthy, 0, HealthAction::None)
        );
        assert_eq!((healthy.grace_from, healthy.since), (None, Some(1010)));
        // After a pass, failures count at once; below `failures` it stays healthy.
        let (status, n, action, f1) = row(&healthy, running("a@100", fail()), 1020);
        assert_eq!(
            (status, n, action),
            (Status::Healthy, 1, HealthAction::None)
        );
        assert_eq!(f1.last_error.as_deref(), Some("connection refused"));
        // The `failures`-th failure: unhealthy and restart, on that tick.
        let d = decide(&f1, &running("a@100", fail()), POLICY, 1050);
        assert_eq!(
            (d.state.status, d.state.consecutive_failures, d.action),
            (Status::Unhealthy, 2, HealthAction::Restart)
        );
        assert_eq!(
            d.message.as_deref(),
            Some("restart after 2 consecutive failed probes (connection refused)")
        );
        assert_eq!(
            d.state.last_action,
            Some(ActionRecord {
                at: 1050,
                action: HealthAction::Restart,
                evidence: "connection refused".into()
            })
        );
        let restarted = d.state;
        assert_eq!(
            (restarted.step, restarted.strikes, restarted.expect_start),
            (1, 0, true)
        );
        // Next tick sees the restarted container (new start time): its grace runs from the
        // action, and it stays unhealthy (sticky) while failing inside the grace.
        let (status, n, action, g) = row(&restarted, running("a@1051", fail()), 1070);
        assert_eq!(
            (status, n, action),
            (Status::Unhealthy, 2, HealthAction::None)
        );
        assert_eq!(
            (g.grace_from, g.expect_start, g.start_key.as_deref()),
            (Some(1050), false, Some("a@1051"))
        );
        // It answers again: healthy, ladder and counts reset.
        let (status, n, action, again) = row(&g, running("a@1051", pass()), 1080);
        assert_eq!(
            (status, n, action),
            (Status::Healthy, 0, HealthAction::None)
        );
        assert_eq!((again.step, again.next_action_at), (0, None));
        let d = decide(&g, &running("a@1051", pass()), POLICY, 1080);
        assert_eq!(d.message.as_deref(), Some("healthy again: HTTP 200"));
    }

    #[test]
    fn a_start_archy_did_not_cause_opens_a_grace_and_resets_strikes() {
        let f1 = HealthState {
            status: Status::Healthy,
            consecutive_failures: 1,
            strikes: 1,
            start_key: Some("a@100".into()),
            since: Some(1),
            ..Default::default()
        };
        let (status, n, action, s) = row(&f1, running("b@200", fail()), 2000);
        assert_eq!(
            (status, n, action),
            (Status::Starting, 1, HealthAction::None)
        );
        assert_eq!((s.strikes, s.grace_from), (0, Some(2000)));
    }

    #[test]
    fn not_running_or_converging_is_starting_and_never_acted_on() {
        let unhealthy_ready = HealthState {
            status: Status::Healthy,
            consecutive_failures: 5,
            strikes: 5,
            start_key: Some("a@1".into()),
            ..Default::default()
        };
        let d = decide(
            &unhealthy_ready,
            &Observation {
                running: false,
                ..Default::default()
            },
            POLICY,
            10,
        );
        assert_eq!(
            (d.state.status, d.action, d.state.start_key),
            (Status::Starting, HealthAction::None, None)
        );
        let d = decide(
            &unhealthy_ready,
            &Observation {
                running: true,
                start_key: Some("a@1".into()),
                converging: true,
                result: fail(),
                held: None,
                anchor: None,
            },
            POLICY,
            10,
        );
        assert_eq!(
            (d.action, d.state.grace_from, d.state.expect_start),
            (HealthAction::None, Some(10), true)
        );
    }

    #[test]
    fn a_held_action_is_neither_taken_nor_recorded_and_runs_once_released() {
        let due = HealthState {
            status: Status::Unhealthy,
            consecutive_failures: 2,
            strikes: 1,
            start_key: Some("a@1".into()),
            ..Default::default()
        };
        let mut obs = running("a@1", fail());
        obs.held = Some("waiting for `base` to become healthy".into());
        let d = decide(&due, &obs, POLICY, 100);
        assert_eq!(
            (
                d.action,
                d.state.step,
                d.state.strikes,
                &d.state.last_action
            ),
            (HealthAction::None, 0, 2, &None)
        );
        assert_eq!(
            d.message.as_deref(),
            Some("restart held back after 3 consecutive failed probes (connection refused): waiting for `base` to become healthy")
        );
        let d = decide(&d.state, &running("a@1", fail()), POLICY, 130);
        assert_eq!((d.action, d.state.step), (HealthAction::Restart, 1));
    }

    #[test]
    fn a_forward_clock_step_moves_the_grace_and_the_backoff_with_it() {
        let at = |boottime, wall| crate::clock::Anchor {
            boot_id: "b".into(),
            boottime,
            wall,
        };
        let started = HealthState {
            start_key: Some("a@1".into()),
            grace_from: Some(1_000),
            next_action_at: Some(1_100),
            anchor: Some(at(50, 1_000)),
            ..Default::default()
        };
        // 60 s really passed (boot clock), the wall clock says 3660: a step of 3600.
        let mut obs = running("a@1", fail());
        obs.anchor = Some(at(110, 4_660));
        let ten_minutes = Policy {
            failures: 1,
            start_period: 600,
        };
        let d = decide(&started, &obs, ten_minutes, 4_660);
        assert_eq!(
            (
                d.state.status,
                d.state.consecutive_failures,
                d.state.grace_from,
                d.state.next_action_at,
                d.action
            ),
            (
                Status::Starting,
                0,
                Some(4_600),
                Some(4_700),
                HealthAction::None
            ),
            "60 s into a 10-minute start period: {d:?}"
        );
        assert!(d.message.unwrap().contains("stepped forward by 3600s"));
        assert_eq!(d.state.anchor, Some(at(110, 4_660)));
        // Time that really passed is not a step.
        obs.anchor = Some(at(3_710, 4_660));
        let d = decide(&started, &obs, ten_minutes, 4_660);
        assert_eq!(d.action, HealthAction::Restart, "the grace really ended");
    }

    #[test]
    fn unprobed_running_app_keeps_its_state() {
        let s = HealthState {
            status: Status::Healthy,
            start_key: Some("a@1".into()),
            since: Some(5),
            ..Default::default()
        };
        let d = decide(&s, &running("a@1", None), POLICY, 10);
        assert_eq!(d.state, s);
        assert_eq!(d.action, HealthAction::None);
    }

    #[test]
    fn a_clock_set_back_neither_stretches_the_grace_nor_the_backoff() {
        let s = HealthState {
            status: Status::Unhealthy,
            consecutive_failures: 9,
            strikes: 1,
            step: 4,
            start_key: Some("a@1".into()),
            grace_from: Some(1_000_000),
            next_action_at: Some(1_000_500),
            ..Default::default()
        };
        // The clock went back a day: the grace restarts now (and ends 30 s later), and the
        // back-off, further away than its cap, is due.
        let d = decide(&s, &running("a@1", fail()), POLICY, 913_600);
        assert_eq!(
            (d.state.grace_from, d.action),
            (Some(913_600), HealthAction::None)
        );
        let d = decide(&d.state, &running("a@1", fail()), POLICY, 913_630);
        assert_eq!(d.action, HealthAction::Restart);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let steps: Vec<Option<i64>> = (0..9).map(backoff_after).collect();
        assert_eq!(
            steps,
            vec![
                None,
                None,
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(600),
                Some(600),
                Some(600)
            ]
        );
        assert_eq!(backoff_after(u32::MAX), Some(600));
    }

    /// A never-passing app over 20 ticks 30 s apart (failures 2, start_period 30 s): restart,
    /// recreate, then restarts ever further apart. Without back-off it would act every 2 ticks.
    #[test]
    fn never_passing_app_is_restarted_then_recreated_then_backed_off() {
        let mut state = HealthState::default();
        let mut actions = Vec::new();
        let mut key = "c1@0".to_string();
        for tick in 0..20i64 {
            let now = 1_000 + tick * 30;
            let d = decide(&state, &running(&key, fail()), POLICY, now);
            if d.action != HealthAction::None {
                actions.push((tick, d.action));
                key = format!("c{tick}@{now}");
            }
            state = d.state;
        }
        assert_eq!(
            actions,
            vec![
                (2, HealthAction::Restart),
                (4, HealthAction::Recreate),
                (6, HealthAction::Restart),
                (10, HealthAction::Restart),
                (18, HealthAction::Restart),
            ]
        );
        assert_eq!(state.status, Status::Unhealthy);
        // Every tick but the first: a 30 s grace from an action has ended by the next tick.
        assert_eq!(state.consecutive_failures, 19);
        // A pass resets everything; the ladder starts over with a restart.
        let d = decide(&state, &running(&key, pass()), POLICY, 2_000);
        assert_eq!(
            (d.state.step, d.state.next_action_at, d.state.status),
            (0, None, Status::Healthy)
        );
    }

    #[test]
    fn state_round_trips_and_tolerates_missing_fields() {
        let s = HealthState {
            status: Status::Unhealthy,
            since: Some(7),
            consecutive_failures: 3,
            last_action: Some(ActionRecord {
                at: 7,
                action: HealthAction::Recreate,
                evidence: "HTTP 500".into(),
            }),
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<HealthState>(&text).unwrap(), s);
        let old: HealthState = serde_json::from_str(r#"{"status":"healthy"}"#).unwrap();
        assert_eq!(old.status, Status::Healthy);
    }
}
