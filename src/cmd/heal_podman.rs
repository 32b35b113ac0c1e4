//! `archy heal-podman`: diagnose the podman engine with named probes and repair it in the
//! least destructive order, re-probing after every step and stopping once all probes pass.
//! Decisions are in [`crate::heal`]; this file holds the loop, the lock and the output.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::heal::{self, system, PlanOptions, Probe, Status, Step, StepKind};
use crate::lock::Mode;
use crate::output::OutputFormat;

/// Diagnose podman (engine answers, database opens, no storage-only containers, no ghost OCI
/// containers, no network debris of forgotten containers on archy's network, no orphaned volume
/// dirs, runtime dirs of this boot) and repair it.
///
/// Repairs, in escalating order, re-probing after each and stopping once healthy:
/// `podman system migrate`; clear stale runtime dirs; move an unreadable bolt_state.db aside
/// (kept as bolt_state.db.broken-<UTC time>); remove storage-only containers archy manages (all
/// with --yes); kill and delete ghost OCI containers and their conmon, releasing their network
/// (CNI DEL replayed from libcni's cache: veth, port forwards, IP; then the network namespace);
/// release the network debris of containers podman no longer knows; re-register orphaned
/// volumes (data kept); `podman system renumber` (only with no container running and no other
/// podman process; otherwise the manual procedure is printed). Never deletes an image, a volume or volume
/// data. Exit 0 healthy or healed (then run `archy reconcile`), 1 still broken.
#[derive(Debug, clap::Args)]
pub struct HealPodmanArgs {
    /// Print the probes and the repairs that would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove storage-only containers whose names archy does not manage.
    #[arg(long)]
    pub yes: bool,
}

/// One repair as performed (or planned, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: StepKind,
    pub describe: String,
    /// "done", "failed" or "planned".
    pub result: &'static str,
    pub touched: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub millis: u128,
}

/// The whole run, as printed with `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: u8,
    pub dry_run: bool,
    /// "healthy" (nothing done), "healed", "broken" or "planned".
    pub result: &'static str,
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

pub fn run(ctx: &Ctx, args: &HealPodmanArgs) -> Result<u8> {
    let started = Instant::now();
    // Exclusive for a repair (reconcile takes it shared and waits); a dry run only reads.
    let mode = if args.dry_run {
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
    let opts = PlanOptions { yes: args.yes };
    let ui = Ui::new(ctx);

    let mut facts = system::gather(&ctx.podman, &names, &networks)?;
    let initial = heal::probes(&facts);
    ui.probes(&initial, "");
    let mut probes = initial.clone();
    let mut steps: Vec<StepResult> = Vec::new();

    if args.dry_run {
        if let Some(backend) = facts.network_backend {
            ui.line(&format!(
                "network backend: {backend}, firewall: {}",
                facts.firewall_driver.map_or("unknown", |f| f.as_str())
            ));
        }
        for step in heal::plan(&facts, opts) {
            ui.line(&format!("would {}: {}", step.kind.as_str(), step.describe));
            steps.push(planned(step));
        }
    } else {
        let mut tried: Vec<StepKind> = Vec::new();
        while !heal::healthy(&probes) {
            let Some(step) = heal::next_step(heal::plan(&facts, opts), &tried) else {
                break;
            };
            tried.push(step.kind);
            let result = ui.perform(ctx, &facts, step);
            steps.push(result);
            facts = system::gather(&ctx.podman, &names, &networks)?;
            probes = heal::probes(&facts);
            ui.reprobe(&probes);
        }
    }

    let (result, exit_code, next) = verdict(args.dry_run, &initial, &probes, &steps, &facts, opts);
    let report = Report {
        ok: exit_code == 0,
        exit_code,
        dry_run: args.dry_run,
        result,
        initial_probes: initial,
        probes,
        steps,
        next,
        paths: facts.paths.clone(),
        network_backend: facts.network_backend,
        firewall_driver: facts.firewall_driver,
        millis: started.elapsed().as_millis(),
    };
    ui.finish(&report);
    if !args.dry_run {
        crate::state::record(
            &ctx.settings.state_dir,
            "heal-podman",
            serde_json::json!({
                "exit_code": report.exit_code,
                "result": report.result,
                "steps": report.steps.iter().map(|s| serde_json::json!({
                    "step": s.step, "result": s.result, "touched": s.touched,
                })).collect::<Vec<_>>(),
                "broken_probes": report.probes.iter()
                    .filter(|p| p.status != Status::Ok)
                    .map(|p| p.name.as_str()).collect::<Vec<_>>(),
                "millis": report.millis,
            }),
        );
    }
    Ok(exit_code)
}

/// The run's result word, exit code and advice: a dry run says what it would do; a repair
/// says whether podman is healthy now and what to run next.
fn verdict(
    dry_run: bool,
    initial: &[Probe],
    probes: &[Probe],
    steps: &[StepResult],
    facts: &heal::Facts,
    opts: PlanOptions,
) -> (&'static str, u8, String) {
    let healthy = heal::healthy(probes);
    if dry_run {
        let result = if heal::healthy(initial) {
            "healthy"
        } else {
            "planned"
        };
        let next = if steps.is_empty() && !healthy {
            heal::next_advice(facts, opts)
        } else if steps.is_empty() {
            String::new()
        } else {
            "run `archy heal-podman` to perform these steps (each is followed by a re-probe; later steps depend on what podman then sees)".into()
        };
        (result, if healthy { 0 } else { 1 }, next)
    } else if healthy && steps.is_empty() {
        ("healthy", crate::exit::SUCCESS, String::new())
    } else if healthy {
        (
            "healed",
            crate::exit::SUCCESS,
            "run `archy reconcile` to recreate and start the apps".into(),
        )
    } else {
        (
            "broken",
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
        result: "planned",
        touched: step.targets,
        error: None,
        millis: 0,
    }
}

/// Text lines (or an indicatif spinner per step on a terminal) or nothing until the JSON.
struct Ui {
    format: OutputFormat,
    progress: bool,
}

impl Ui {
    fn new(ctx: &Ctx) -> Self {
        Ui {
            format: ctx.settings.output,
            progress: crate::logging::show_progress(ctx.settings.quiet),
        }
    }

    fn line(&self, text: &str) {
        if self.format == OutputFormat::Text {
            println!("{}", crate::output::redact(text));
        }
    }

    fn probes(&self, probes: &[Probe], prefix: &str) {
        for p in probes {
            self.line(&format!(
                "{prefix}{:<7} {}: {}",
                p.status.as_str(),
                p.name.as_str(),
                p.evidence.join("; ")
            ));
        }
    }

    /// After a step: the probes still not ok, or that all pass.
    fn reprobe(&self, probes: &[Probe]) {
        let broken: Vec<&Probe> = probes.iter().filter(|p| p.status != Status::Ok).collect();
        if broken.is_empty() {
            self.line("  re-probe: all probes ok");
        }
        for p in broken {
            self.line(&format!(
                "  re-probe: {} {}: {}",
                p.status.as_str(),
                p.name.as_str(),
                p.evidence.join("; ")
            ));
        }
    }

    fn perform(&self, ctx: &Ctx, facts: &heal::Facts, step: Step) -> StepResult {
        let spinner = (self.progress && self.format == OutputFormat::Text).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar.set_message(format!("{}: {}", step.kind.as_str(), step.describe));
            bar
        });
        if spinner.is_none() {
            self.line(&format!("step {}: {}", step.kind.as_str(), step.describe));
        }
        let started = Instant::now();
        let outcome = system::perform(&ctx.podman, facts, &step, &crate::state::now_rfc3339());
        let millis = started.elapsed().as_millis();
        let result = match outcome {
            Ok(touched) => StepResult {
                step: step.kind,
                describe: step.describe,
                result: "done",
                touched,
                error: None,
                millis,
            },
            Err(err) => StepResult {
                step: step.kind,
                describe: step.describe,
                result: "failed",
                touched: Vec::new(),
                error: Some(crate::output::redact(&format!("{err:#}"))),
                millis,
            },
        };
        let summary = match &result.error {
            None => format!(
                "  {} {} in {} ms: {}",
                result.step.as_str(),
                result.result,
                millis,
                if result.touched.is_empty() {
                    "nothing touched".to_string()
                } else {
                    result.touched.join(", ")
                }
            ),
            Some(err) => format!("  {} failed: {err}", result.step.as_str()),
        };
        match spinner {
            Some(bar) => bar.finish_with_message(summary),
            None => self.line(&summary),
        }
        result
    }

    fn finish(&self, report: &Report) {
        match self.format {
            OutputFormat::Json => match serde_json::to_value(report) {
                Ok(value) => crate::output::print_json(&value),
                Err(err) => tracing::error!("could not serialise the report: {err}"),
            },
            OutputFormat::Text => {
                let done = report.steps.iter().filter(|s| s.result == "done").count();
                match report.result {
                    "healthy" => self.line("podman healthy"),
                    "healed" => self.line(&format!(
                        "podman healed ({done} step{}); next: {}",
                        if done == 1 { "" } else { "s" },
                        report.next
                    )),
                    "planned" => self.line(&format!(
                        "podman broken; dry run, nothing changed; {}",
                        if report.next.is_empty() {
                            "no repair applies"
                        } else {
                            &report.next
                        }
                    )),
                    _ => self.line(&format!("podman still broken; next: {}", report.next)),
                }
            }
        }
    }
}
