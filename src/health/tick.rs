//! Health in a reconcile tick: which probes to run ([`host_jobs`] beside the listing,
//! [`exec_jobs`] after it), what the results mean for each app ([`assess`], pure), which plan
//! entries they change ([`Assessment::actions`]), whether a `healthy`-conditioned dependent may
//! be created or started ([`waiting_for`], pure), and what status shows ([`view`], pure).

use std::collections::BTreeMap;

use serde::Serialize;

use super::probe::Job;
use super::{decide, Decision, HealthAction, HealthState, Observation, ProbeResult, Status};
use crate::manifest::{Condition, Manifest, Owner};
use crate::podman::{Container, ContainerState};

/// The app's container in the listing (its name first, then any of the app's).
pub fn container_of<'a>(m: &Manifest, managed: &'a [Container]) -> Option<&'a Container> {
    let name = m.container_name();
    managed
        .iter()
        .find(|c| c.app() == Some(m.app.as_str()) && c.name() == name)
        .or_else(|| managed.iter().find(|c| c.app() == Some(m.app.as_str())))
}

fn probed(m: &Manifest) -> bool {
    m.enabled && m.health.is_some()
}

/// Host-side probes of these apps: started before the listing is known (a probe of an app
/// whose container turns out not to run is discarded).
pub fn host_jobs(apps: &[&Manifest]) -> Vec<Job> {
    apps.iter()
        .filter(|m| probed(m))
        .filter_map(|m| {
            let probe = m.health.as_ref()?.probe();
            probe.host_side().then(|| Job {
                app: m.app.clone(),
                container: m.container_name(),
                probe,
                token: None,
            })
        })
        .collect()
}

/// Give `bitcoin_rpc:` jobs archy's probe user's token, derived from the canonical secret (read,
/// never created here: before the first render there is none, and the probe says so).
pub fn add_probe_tokens(jobs: &mut [Job], state_dir: &std::path::Path) {
    use crate::manifest::Probe;
    if !jobs
        .iter()
        .any(|j| matches!(j.probe, Probe::BitcoinRpc { .. }))
    {
        return;
    }
    let token = match crate::secret::load(state_dir) {
        Ok(secret) => secret.map(|s| crate::rpc_users::probe_token(&s)),
        Err(e) => {
            tracing::warn!("bitcoin_rpc probe: {e:#}");
            None
        }
    };
    for job in jobs
        .iter_mut()
        .filter(|j| matches!(j.probe, Probe::BitcoinRpc { .. }))
    {
        job.token.clone_from(&token);
    }
}

/// `exec` probes of these apps whose container runs (each one podman call).
pub fn exec_jobs(apps: &[&Manifest], managed: &[Container]) -> Vec<Job> {
    apps.iter()
        .filter(|m| probed(m))
        .filter_map(|m| {
            let probe = m.health.as_ref()?.probe();
            let c = container_of(m, managed).filter(|c| c.state == ContainerState::Running)?;
            (!probe.host_side()).then(|| Job {
                app: m.app.clone(),
                container: c.id.clone(),
                probe,
                token: None,
            })
        })
        .collect()
}

/// One app's health this tick.
#[derive(Debug, Clone)]
pub struct AppHealth {
    pub app: String,
    pub before: HealthState,
    pub decision: Decision,
    /// systemd owns the container: health is reported, never acted on.
    pub delegated: bool,
}

impl AppHealth {
    /// The action reconcile should take (none for systemd-owned apps).
    pub fn action(&self) -> HealthAction {
        if self.delegated {
            HealthAction::None
        } else {
            self.decision.action
        }
    }

    /// Whether the state must be written.
    pub fn changed(&self) -> bool {
        self.decision.state != self.before
    }
}

/// Every probed app's health this tick.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    pub apps: BTreeMap<String, AppHealth>,
}

impl Assessment {
    /// Apps health wants restarted or recreated, with the reason for the plan.
    pub fn actions(&self) -> Vec<(&str, HealthAction, String)> {
        self.apps
            .values()
            .filter(|a| a.action() != HealthAction::None)
            .map(|a| {
                let evidence = a.decision.state.last_error.clone().unwrap_or_default();
                (
                    a.app.as_str(),
                    a.action(),
                    format!(
                        "health: {} consecutive failed probes ({evidence})",
                        a.decision.state.consecutive_failures
                    ),
                )
            })
            .collect()
    }

    /// The states after this tick, for apps it assessed.
    pub fn states(&self) -> BTreeMap<String, HealthState> {
        self.apps
            .iter()
            .map(|(app, a)| (app.clone(), a.decision.state.clone()))
            .collect()
    }
}

/// Why an app's dependencies hold back its health action, given every app's health state.
pub type Gate<'a> = dyn Fn(&str, &BTreeMap<String, HealthState>) -> Option<String> + 'a;

/// Decide every probed app of `apps`. `previous` holds the persisted states, `converging` the
/// apps whose container reconcile's plan changes this tick, `results` this tick's probes, and
/// `gate` (given the states after this tick's probes) why an app's dependencies hold back a
/// restart or recreate health would take: such an app is decided again held, so only actions
/// that will run are recorded. Pure.
pub fn assess(
    apps: &[&Manifest],
    managed: &[Container],
    previous: &BTreeMap<String, HealthState>,
    converging: &dyn Fn(&str) -> bool,
    results: &BTreeMap<String, ProbeResult>,
    gate: &Gate,
    time: &crate::clock::Now,
) -> Assessment {
    let now = time.wall;
    let mut out = Assessment::default();
    let mut observed = Vec::new();
    for m in apps.iter().filter(|m| probed(m)) {
        let health = m.health.as_ref().expect("probed apps have a probe");
        let c = container_of(m, managed);
        let running = c.is_some_and(|c| c.state == ContainerState::Running);
        // While a `synced` dependency is not, the dependent's own probe does not count (it
        // cannot be ready before its chain is).
        let obs = Observation {
            running,
            start_key: c.map(|c| format!("{}@{}", c.id, c.started_at)),
            converging: converging(&m.app),
            result: if running && !unsynced(m, previous) {
                results.get(&m.app).cloned()
            } else {
                None
            },
            held: None,
            anchor: time.anchor.clone(),
        };
        let before = previous.get(&m.app).cloned().unwrap_or_default();
        let policy = super::policy(health);
        let decision = decide(&before, &obs, policy, now);
        observed.push((obs, policy));
        out.apps.insert(
            m.app.clone(),
            AppHealth {
                app: m.app.clone(),
                before,
                decision,
                delegated: m.owner == Owner::Systemd,
            },
        );
    }
    let mut after = previous.clone();
    after.extend(out.states());
    for (m, (mut obs, policy)) in apps.iter().filter(|m| probed(m)).zip(observed) {
        let Some(a) = out.apps.get_mut(&m.app) else {
            continue;
        };
        if a.action() == HealthAction::None {
            continue;
        }
        if let Some(why) = gate(&m.app, &after) {
            obs.held = Some(why);
            a.decision = decide(&a.before, &obs, policy, now);
        }
    }
    out
}

/// Whether a `synced` dependency of `m` is not synced (by its recorded health). Pure.
pub fn unsynced(m: &Manifest, health: &BTreeMap<String, HealthState>) -> bool {
    m.depends_on
        .iter()
        .filter(|d| d.condition == Condition::Synced)
        .any(|d| unsynced_one(health.get(&d.app)))
}

fn unsynced_one(state: Option<&HealthState>) -> bool {
    !state.is_some_and(|s| s.status == Status::Healthy && s.chain.is_some_and(|c| !c.ibd))
}

/// Why `m` may not be created or started yet: a `healthy`-conditioned dependency whose last
/// known health does not answer (healthy, or syncing), or a `synced` one still starting or in
/// initial block download (with its progress). None: go ahead. Pure.
pub fn waiting_for(
    m: &Manifest,
    apps: &[Manifest],
    health: &BTreeMap<String, HealthState>,
) -> Option<String> {
    m.depends_on
        .iter()
        .filter(|d| d.condition != Condition::Started)
        .find_map(|d| {
            let state = health.get(&d.app);
            let ready = match d.condition {
                Condition::Started => true,
                Condition::Healthy => state.is_some_and(|s| s.status.answers()),
                Condition::Synced => !unsynced_one(state),
            };
            if ready {
                return None;
            }
            let dep = apps.iter().find(|a| a.app == d.app);
            let seen = view(dep, state);
            Some(format!(
                "waiting for `{}` to become {} (it is {})",
                d.app,
                d.condition.as_str(),
                seen.describe()
            ))
        })
}

/// An app's health as `archy status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthView {
    /// The probe's [`Status`], "unknown" (its state file cannot be read or written;
    /// `last_error` says why) or "no probe".
    pub status: ViewStatus,
    /// The probe, e.g. `http http://127.0.0.1:8081/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Consecutive failed probes, and how many make it act.
    pub failures: u32,
    pub threshold: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The last restart or recreate health did: `restart at <time>: <evidence>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
    /// Back-off: no further action before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action_at: Option<String>,
    /// `bitcoin_rpc:`: where the chain was at the last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainView>,
    /// `waiting-for-operator`: what the operator must do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// What the last probe saw, while the app is not healthy and that is no failure
    /// (`starting`, `syncing`): e.g. bitcoind's "Loading block index…".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// An app's health as status shows it: what its probe says, or why nothing does. Serialised
/// as the word (`healthy`, …, `unknown`, `no probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewStatus {
    /// The health persisted by the last tick.
    Probed(Status),
    /// Its state file cannot be read or written.
    Unknown,
    /// No health probe, or not archy's to probe.
    NoProbe,
}

impl ViewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewStatus::Probed(status) => status.as_str(),
            ViewStatus::Unknown => "unknown",
            ViewStatus::NoProbe => "no probe",
        }
    }
}

impl std::fmt::Display for ViewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for ViewStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Sync state and progress of a `bitcoin_rpc:`-probed app, as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChainView {
    pub blocks: u64,
    pub headers: u64,
    /// bitcoind's `verificationprogress` (0–1).
    pub verification_progress: f64,
    pub initial_block_download: bool,
}

// `verification_progress` comes from whole millionths (`ChainProgress::progress_ppm`): never NaN.
impl Eq for ChainView {}

impl HealthView {
    /// The column text: `healthy`, `unhealthy 3/3`, `starting`, `no probe`.
    pub fn label(&self) -> String {
        match (self.status, &self.chain) {
            (ViewStatus::Probed(Status::Unhealthy), _) => {
                format!("unhealthy {}/{}", self.failures, self.threshold)
            }
            (ViewStatus::Probed(Status::Syncing), Some(c)) => format!(
                "syncing {:.1} %, {}/{} blocks",
                c.verification_progress * 100.0,
                c.blocks,
                c.headers
            ),
            (other, _) => other.to_string(),
        }
    }

    /// The label with the last error, for reasons and detail lines.
    pub fn describe(&self) -> String {
        if let Some(what) = &self.operator {
            return format!("{}: {what}", self.label());
        }
        match (&self.last_error, self.status) {
            (
                Some(error),
                ViewStatus::Probed(Status::Unhealthy | Status::Starting) | ViewStatus::Unknown,
            ) => {
                format!("{}: {error}", self.label())
            }
            _ => self.label(),
        }
    }

    pub fn unhealthy(&self) -> bool {
        self.status == ViewStatus::Probed(Status::Unhealthy)
    }

    /// Unhealthy, or unknown because its state file cannot be read or written: either makes
    /// `archy status` fail.
    pub fn failing(&self) -> bool {
        matches!(
            self.status,
            ViewStatus::Probed(Status::Unhealthy) | ViewStatus::Unknown
        )
    }
}

/// Status's view of one app's health. Pure.
pub fn view(m: Option<&Manifest>, state: Option<&HealthState>) -> HealthView {
    let Some(health) = m.filter(|m| probed(m)).and_then(|m| m.health.as_ref()) else {
        return HealthView {
            status: ViewStatus::NoProbe,
            probe: None,
            failures: 0,
            threshold: 0,
            last_error: None,
            since: None,
            last_action: None,
            next_action_at: None,
            chain: None,
            operator: None,
            evidence: None,
        };
    };
    let state = state.cloned().unwrap_or_default();
    if let Some(error) = state.store_error {
        return HealthView {
            status: ViewStatus::Unknown,
            probe: Some(health.probe().to_string()),
            failures: state.consecutive_failures,
            threshold: health.failures(),
            last_error: Some(error),
            since: None,
            last_action: None,
            next_action_at: None,
            chain: None,
            operator: None,
            evidence: None,
        };
    }
    let status = ViewStatus::Probed(state.status);
    let chain = state.chain.map(|c| ChainView {
        blocks: c.blocks,
        headers: c.headers,
        verification_progress: f64::from(c.progress_ppm) / 1_000_000.0,
        initial_block_download: c.ibd,
    });
    let operator = (state.status == Status::WaitingForOperator)
        .then(|| state.last_evidence.clone())
        .flatten();
    let evidence = matches!(state.status, Status::Starting | Status::Syncing)
        .then(|| state.last_evidence.clone())
        .flatten();
    HealthView {
        status,
        probe: Some(health.probe().to_string()),
        failures: state.consecutive_failures,
        threshold: health.failures(),
        last_error: (state.status != Status::Healthy || state.consecutive_failures > 0)
            .then_some(state.last_error)
            .flatten(),
        since: state.since.map(super::rfc3339),
        last_action: state.last_action.map(|a| {
            format!(
                "{} at {}: {}",
                a.action.as_str(),
                super::rfc3339(a.at),
                a.evidence
            )
        }),
        next_action_at: state.next_action_at.map(super::rfc3339),
        chain,
        operator,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;

    fn app(yaml: &str) -> Manifest {
        parse(yaml).unwrap()
    }

    fn running(app: &str, id: &str) -> Container {
        Container {
            id: id.into(),
            names: vec![format!("archy-{app}")],
            state: ContainerState::Running,
            started_at: 100,
            labels: [
                (crate::podman::LABEL_APP.to_string(), app.to_string()),
                (crate::podman::LABEL_MANAGED.to_string(), "true".to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn jobs_split_host_side_from_exec_and_skip_unprobed_and_disabled_apps() {
        let web = app("app: web\nimage: i\nhealth: {http: \"http://127.0.0.1:1/\"}\n");
        let db = app("app: db\nimage: i\nhealth: {exec: [pg_isready]}\n");
        let off = app("app: off\nimage: i\nenabled: false\nhealth: {tcp: \"127.0.0.1:2\"}\n");
        let plain = app("app: plain\nimage: i\n");
        let apps = [&web, &db, &off, &plain];
        let host: Vec<String> = host_jobs(&apps).iter().map(|j| j.app.clone()).collect();
        assert_eq!(host, vec!["web"]);
        assert!(exec_jobs(&apps, &[]).is_empty(), "db is not running");
        let jobs = exec_jobs(&apps, &[running("db", "c0ffee")]);
        assert_eq!(
            (jobs[0].app.as_str(), jobs[0].container.as_str()),
            ("db", "c0ffee")
        );
    }

    #[test]
    fn assess_acts_only_on_archys_apps_and_ignores_probes_of_stopped_containers() {
        let web = app("app: web\nimage: i\nhealth: {http: \"http://127.0.0.1:1/\", failures: 1, start_period: 0}\n");
        let sys = app("app: sys\nimage: i\nowner: systemd\nhealth: {tcp: \"127.0.0.1:2\", failures: 1, start_period: 0}\n");
        let fail = ProbeResult {
            ok: false,
            evidence: "HTTP 500 (expected 2xx or 3xx)".into(),
            ..Default::default()
        };
        let results =
            BTreeMap::from([("web".to_string(), fail.clone()), ("sys".to_string(), fail)]);
        let managed = [running("web", "a"), running("sys", "b")];
        // Both are past their grace (start_period 0) and known from an earlier tick.
        let previous: BTreeMap<String, HealthState> = [("web", "a@100"), ("sys", "b@100")]
            .into_iter()
            .map(|(app, key)| {
                (
                    app.to_string(),
                    HealthState {
                        status: Status::Healthy,
                        start_key: Some(key.into()),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let a = assess(
            &[&web, &sys],
            &managed,
            &previous,
            &|_| false,
            &results,
            &|_, _| None,
            &crate::clock::Now::at(1_000),
        );
        assert_eq!(a.apps["web"].action(), HealthAction::Restart);
        assert_eq!(a.apps["sys"].decision.action, HealthAction::Restart);
        assert_eq!(
            a.apps["sys"].action(),
            HealthAction::None,
            "systemd owns it"
        );
        assert_eq!(
            a.actions(),
            vec![(
                "web",
                HealthAction::Restart,
                "health: 1 consecutive failed probes (HTTP 500 (expected 2xx or 3xx))".to_string()
            )]
        );
        // Reconcile is starting web anyway: no health action, a new grace.
        let a = assess(
            &[&web],
            &managed,
            &previous,
            &|app| app == "web",
            &results,
            &|_, _| None,
            &crate::clock::Now::at(1_000),
        );
        assert_eq!(a.apps["web"].action(), HealthAction::None);
        // Not running: the probe result is ignored.
        let mut stopped = running("web", "a");
        stopped.state = ContainerState::Exited;
        let a = assess(
            &[&web],
            &[stopped],
            &previous,
            &|_| false,
            &results,
            &|_, _| None,
            &crate::clock::Now::at(1_000),
        );
        assert_eq!(a.apps["web"].decision.state.status, Status::Starting);
        assert!(a.apps["web"].decision.state.last_error.is_none());
    }

    #[test]
    fn healthy_condition_waits_with_the_reason() {
        let base = app("app: base\nimage: i\nhealth: {tcp: \"127.0.0.1:2\", failures: 3}\n");
        let child = app("app: child\nimage: i\ndepends_on: {base: healthy}\n");
        let plain = app("app: plain\nimage: i\ndepends_on: [base]\n");
        let apps = vec![base.clone(), child.clone(), plain.clone()];
        let mut health = BTreeMap::new();
        assert_eq!(
            waiting_for(&child, &apps, &health).as_deref(),
            Some("waiting for `base` to become healthy (it is starting)")
        );
        health.insert(
            "base".to_string(),
            HealthState {
                status: Status::Unhealthy,
                consecutive_failures: 4,
                last_error: Some("connect 127.0.0.1:2: connection refused".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            waiting_for(&child, &apps, &health).as_deref(),
            Some("waiting for `base` to become healthy (it is unhealthy 4/3: connect 127.0.0.1:2: connection refused)")
        );
        assert_eq!(
            waiting_for(&plain, &apps, &health),
            None,
            "plain list: order only"
        );
        health.get_mut("base").unwrap().status = Status::Healthy;
        assert_eq!(waiting_for(&child, &apps, &health), None);
    }

    #[test]
    fn synced_condition_waits_through_ibd_with_progress_and_mutes_the_dependents_probe() {
        use crate::health::chain::ChainProgress;
        let node = app("app: node\nimage: i\nhealth: {bitcoin_rpc: \"127.0.0.1:8332\"}\n");
        let dep = app("app: dep\nimage: i\nhealth: {tcp: \"127.0.0.1:50001\", failures: 1, start_period: 0}\ndepends_on: {node: synced}\n");
        let ui = app("app: ui\nimage: i\ndepends_on: {node: healthy}\n");
        let apps = vec![node.clone(), dep.clone(), ui.clone()];
        let syncing = HealthState {
            status: Status::Syncing,
            chain: Some(ChainProgress {
                blocks: 512_000,
                headers: 870_000,
                progress_ppm: 412_345,
                ibd: true,
            }),
            ..Default::default()
        };
        let mut health = BTreeMap::from([("node".to_string(), syncing.clone())]);
        assert_eq!(
            waiting_for(&dep, &apps, &health).as_deref(),
            Some(
                "waiting for `node` to become synced (it is syncing 41.2 %, 512000/870000 blocks)"
            )
        );
        assert_eq!(waiting_for(&ui, &apps, &health), None, "syncing answers");
        assert!(unsynced(&dep, &health));
        // The running dependent's failing probe does not count while its chain is not synced.
        let fail = ProbeResult {
            ok: false,
            evidence: "connect 127.0.0.1:50001: connection refused".into(),
            ..Default::default()
        };
        let results = BTreeMap::from([("dep".to_string(), fail)]);
        let previous = BTreeMap::from([
            ("node".to_string(), syncing),
            (
                "dep".to_string(),
                HealthState {
                    status: Status::Healthy,
                    start_key: Some("d@100".into()),
                    ..Default::default()
                },
            ),
        ]);
        let judge = |previous: &BTreeMap<String, HealthState>| {
            assess(
                &[&dep],
                &[running("dep", "d")],
                previous,
                &|_| false,
                &results,
                &|_, _| None,
                &crate::clock::Now::at(1_000),
            )
        };
        let a = judge(&previous);
        assert_eq!(
            (
                a.apps["dep"].action(),
                a.apps["dep"].decision.state.consecutive_failures
            ),
            (HealthAction::None, 0)
        );
        // Synced: it counts (and acts) again.
        let synced = HealthState {
            status: Status::Healthy,
            chain: Some(ChainProgress {
                blocks: 870_000,
                headers: 870_000,
                progress_ppm: 1_000_000,
                ibd: false,
            }),
            ..Default::default()
        };
        let mut previous = previous;
        previous.insert("node".to_string(), synced.clone());
        assert_eq!(judge(&previous).apps["dep"].action(), HealthAction::Restart);
        health.insert("node".to_string(), synced);
        assert_eq!(waiting_for(&dep, &apps, &health), None);
        assert!(!unsynced(&dep, &health));
        // A healthy state without chain facts (an older record) is not synced.
        health.insert(
            "node".to_string(),
            HealthState {
                status: Status::Healthy,
                ..Default::default()
            },
        );
        assert!(waiting_for(&dep, &apps, &health).is_some());
    }

    #[test]
    fn views_label_each_status() {
        let base = app("app: base\nimage: i\nhealth: {http: \"http://127.0.0.1:2/\"}\n");
        assert_eq!(
            view(Some(&app("app: x\nimage: i\n")), None).label(),
            "no probe"
        );
        assert_eq!(view(Some(&base), None).label(), "starting");
        let unhealthy = HealthState {
            status: Status::Unhealthy,
            consecutive_failures: 3,
            last_error: Some("HTTP 502 (expected 2xx or 3xx)".into()),
            since: Some(1_700_000_000),
            ..Default::default()
        };
        let v = view(Some(&base), Some(&unhealthy));
        assert_eq!(v.label(), "unhealthy 3/3");
        assert_eq!(
            v.describe(),
            "unhealthy 3/3: HTTP 502 (expected 2xx or 3xx)"
        );
        assert_eq!(v.since.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert!(v.unhealthy());
        let unknown = HealthState {
            store_error: Some(
                "failed to record the health of app base in /s/health/base.json: Is a directory"
                    .into(),
            ),
            ..Default::default()
        };
        let v = view(Some(&base), Some(&unknown));
        assert_eq!(
            (v.label(), v.failing(), v.unhealthy()),
            ("unknown".to_string(), true, false)
        );
        assert!(v.describe().contains("/s/health/base.json"), "{v:?}");
        let healthy = HealthState {
            status: Status::Healthy,
            last_error: Some("old".into()),
            ..Default::default()
        };
        let v = view(Some(&base), Some(&healthy));
        assert_eq!((v.label(), v.last_error), ("healthy".to_string(), None));
    }
}
