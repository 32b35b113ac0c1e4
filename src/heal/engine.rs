//! `archy heal-podman`'s engine: probe, then repair in the least destructive order, re-probing
//! after every step and stopping once all probes pass (or, in a dry run, list the plan).
//! Decisions are the pure functions of [`crate::heal`]; effects are [`crate::heal::system`]'s. One
//! [`HealReport`] out; what happens meanwhile goes to an [`Observer`] (the command prints it).

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::heal::{self, system, PlanOptions, Probe, Status, Step, StepKind};
use crate::lock::Mode;

/// What to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// List the repairs that would run; change nothing.
    pub dry_run: bool,
    /// Also remove storage-only containers whose names archy does not manage.
    pub yes: bool,
}

/// Told what happens while the engine runs (the command prints it, a test may record it).
pub trait Observer {
    /// The first probes, and (dry run) a note on the network backend.
    fn probes(&self, probes: &[Probe]);
    fn note(&self, text: &str);
    /// A repair is about to run; then how it ended.
    fn step_started(&self, step: &Step);
    fn step_finished(&self, result: &StepResult);
    /// The probes after a step.
    fn reprobed(&self, probes: &[Probe]);
}

/// How one repair ended (the JSON `result` of a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    Done,
    Failed,
    Planned,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Planned => "planned",
        }
    }
}

/// One repair as performed (or planned, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: StepKind,
    pub describe: String,
    pub result: StepOutcome,
    pub touched: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub millis: u128,
}

impl StepResult {
    /// One line after the step: what it touched, or its error.
    pub fn summary(&self) -> String {
        match &self.error {
            None => format!(
                "  {} {} in {} ms: {}",
                self.step.as_str(),
                self.result.as_str(),
                self.millis,
                if self.touched.is_empty() {
                    "nothing touched".to_string()
                } else {
                    self.touched.join(", ")
                }
            ),
            Some(err) => format!("  {} failed: {err}", self.step.as_str()),
        }
    }
}

/// How the run ended (the JSON `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealResult {
    /// Nothing to do.
    Healthy,
    Healed,
    Broken,
    /// A dry run on a broken engine.
    Planned,
}

/// The whole run, as printed with `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct HealReport {
    pub ok: bool,
    pub exit_code: u8,
    pub dry_run: bool,
    pub result: HealResult,
    /// The probes before any repair.
    pub initial_probes: Vec<Probe>,
    /// The probes at the end (same as initial when nothing was done).
    pub probes: Vec<Probe>,
    pub steps: Vec<StepResult>,
    pub next: String,
    pub paths: heal::EnginePaths,
    /// The network backend podman uses (`netavark`, `cni`) and the firewall netavark programs
    /// (`iptables`, `nftables`); null while podman does not answer.
    pub network_backend: Option<&'static str>,
    pub firewall_driver: Option<heal::netavark::FirewallDriver>,
    pub millis: u128,
}

impl HealReport {
    /// The closing line of the text output.
    pub fn closing_line(&self) -> String {
        let done = self
            .steps
            .iter()
            .filter(|s| s.result == StepOutcome::Done)
            .count();
        match self.result {
            HealResult::Healthy => "podman healthy".into(),
            HealResult::Healed => format!(
                "podman healed ({done} step{}); next: {}",
                if done == 1 { "" } else { "s" },
                self.next
            ),
            HealResult::Planned => format!(
                "podman broken; dry run, nothing changed; {}",
                if self.next.is_empty() {
                    "no repair applies"
                } else {
                    &self.next
                }
            ),
            HealResult::Broken => format!("podman still broken; next: {}", self.next),
        }
    }

    /// What `archy status` reads from `<state-dir>/status/heal-podman.json`.
    pub fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "exit_code": self.exit_code,
            "result": self.result,
            "steps": self.steps.iter().map(|s| serde_json::json!({
                "step": s.step, "result": s.result, "touched": s.touched,
            })).collect::<Vec<_>>(),
            "broken_probes": self.probes.iter()
                .filter(|p| p.status != Status::Ok)
                .map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "millis": self.millis,
        })
    }
}

/// One probe as a text line (status padded, so the first probes line up).
pub fn probe_line(p: &Probe) -> String {
    format!(
        "{:<7} {}: {}",
        p.status.as_str(),
        p.name.as_str(),
        p.evidence.join("; ")
    )
}

pub fn run(ctx: &Ctx, opts: &Options, observer: &dyn Observer) -> Result<HealReport> {
    let started = Instant::now();
    // Exclusive for a repair (reconcile takes it shared and waits); a dry run only reads.
    let mode = if opts.dry_run {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let _lock = ctx.lock("heal-podman", mode)?;
    let names = managed_names(ctx);
    let networks = heal::netsys::NetScope {
        names: BTreeSet::from([ctx.settings.network.clone()]),
        subnet: ctx.settings.subnet.clone(),
    };
    let plan_opts = PlanOptions { yes: opts.yes };

    let mut facts = system::gather(&ctx.podman, &names, &networks)?;
    let initial = heal::probes(&facts);
    observer.probes(&initial);
    let mut probes = initial.clone();
    let mut steps: Vec<StepResult> = Vec::new();

    if opts.dry_run {
        if let Some(backend) = facts.network_backend {
            observer.note(&format!(
                "network backend: {backend}, firewall: {}",
                facts.firewall_driver.map_or("unknown", |f| f.as_str())
            ));
        }
        for step in heal::plan(&facts, plan_opts) {
            observer.note(&format!("would {}: {}", step.kind.as_str(), step.describe));
            steps.push(planned(step));
        }
    } else {
        let mut tried: Vec<StepKind> = Vec::new();
        while !heal::healthy(&probes) {
            let Some(step) = heal::next_step(heal::plan(&facts, plan_opts), &tried) else {
                break;
            };
            tried.push(step.kind);
            observer.step_started(&step);
            let result = perform(ctx, &facts, step);
            observer.step_finished(&result);
            steps.push(result);
            facts = system::gather(&ctx.podman, &names, &networks)?;
            probes = heal::probes(&facts);
            observer.reprobed(&probes);
        }
    }

    let (result, exit_code, next) =
        verdict(opts.dry_run, &initial, &probes, &steps, &facts, plan_opts);
    Ok(HealReport {
        ok: exit_code == 0,
        exit_code,
        dry_run: opts.dry_run,
        result,
        initial_probes: initial,
        probes,
        steps,
        next,
        paths: facts.paths.clone(),
        network_backend: facts.network_backend,
        firewall_driver: facts.firewall_driver,
        millis: started.elapsed().as_millis(),
    })
}

fn perform(ctx: &Ctx, facts: &heal::Facts, step: Step) -> StepResult {
    let started = Instant::now();
    let outcome = system::perform(&ctx.podman, facts, &step, &crate::state::now_rfc3339());
    let millis = started.elapsed().as_millis();
    let (result, touched, error) = match outcome {
        Ok(touched) => (StepOutcome::Done, touched, None),
        Err(err) => (
            StepOutcome::Failed,
            Vec::new(),
            Some(crate::output::redact(&format!("{err:#}"))),
        ),
    };
    StepResult {
        step: step.kind,
        describe: step.describe,
        result,
        touched,
        error,
        millis,
    }
}

/// The run's result, exit code and advice: a dry run says what it would do; a repair says
/// whether podman is healthy now and what to run next.
fn verdict(
    dry_run: bool,
    initial: &[Probe],
    probes: &[Probe],
    steps: &[StepResult],
    facts: &heal::Facts,
    opts: PlanOptions,
) -> (HealResult, u8, String) {
    let healthy = heal::healthy(probes);
    if dry_run {
        let result = if heal::healthy(initial) {
            HealResult::Healthy
        } else {
            HealResult::Planned
        };
        let next = if steps.is_empty() && !healthy {
            heal::next_advice(facts, opts)
        } else if steps.is_empty() {
            String::new()
        } else {
            "run `archy heal-podman` to perform these steps (each is followed by a re-probe; later steps depend on what podman then sees)".into()
        };
        (result, u8::from(!healthy), next)
    } else if healthy && steps.is_empty() {
        (HealResult::Healthy, crate::exit::SUCCESS, String::new())
    } else if healthy {
        (
            HealResult::Healed,
            crate::exit::SUCCESS,
            "run `archy reconcile` to recreate and start the apps".into(),
        )
    } else {
        (
            HealResult::Broken,
            crate::exit::FAILURE,
            heal::next_advice(facts, opts),
        )
    }
}

/// Container names archy manages: every manifest's container name (manifests that fail to
/// load are tolerated: a broken manifest must not stop a repair; `archy-` names count anyway).
fn managed_names(ctx: &Ctx) -> BTreeSet<String> {
    match ctx.load_manifests() {
        Ok(loaded) => loaded.apps.iter().map(|m| m.container_name()).collect(),
        Err(err) => {
            tracing::warn!(
                "manifests not loaded ({err:#}); only archy-* containers count as archy's"
            );
            BTreeSet::new()
        }
    }
}

fn planned(step: Step) -> StepResult {
    StepResult {
        step: step.kind,
        describe: step.describe,
        result: StepOutcome::Planned,
        touched: step.targets,
        error: None,
        millis: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_words_are_the_json_text() {
        for (r, word) in [
            (HealResult::Healthy, "healthy"),
            (HealResult::Healed, "healed"),
            (HealResult::Broken, "broken"),
            (HealResult::Planned, "planned"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), word);
        }
        for o in [StepOutcome::Done, StepOutcome::Failed, StepOutcome::Planned] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }
}
