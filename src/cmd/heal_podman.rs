//! `archy heal-podman`: arguments, the call into the heal engine, printing as it goes, the
//! status record.

use std::cell::RefCell;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::heal::engine::{self as engine, probe_line, HealReport, Observer, Options, StepResult};
use crate::heal::{Probe, Status, Step};
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

pub fn run(ctx: &Ctx, args: &HealPodmanArgs) -> Result<u8> {
    let opts = Options {
        dry_run: args.dry_run,
        yes: args.yes,
    };
    let ui = Ui {
        format: ctx.settings.output,
        progress: crate::logging::show_progress(ctx.settings.quiet),
        spinner: RefCell::new(None),
    };
    let report = engine::run(ctx, &opts, &ui)?;
    ui.finish(&report);
    if !args.dry_run {
        crate::state::record(&ctx.settings.state_dir, "heal-podman", report.record());
    }
    Ok(report.exit_code)
}

/// Text lines (or an indicatif spinner per step on a terminal) or nothing until the JSON.
struct Ui {
    format: OutputFormat,
    progress: bool,
    spinner: RefCell<Option<indicatif::ProgressBar>>,
}

impl Ui {
    fn line(&self, text: &str) {
        if self.format == OutputFormat::Text {
            println!("{}", crate::output::redact(text));
        }
    }

    fn finish(&self, report: &HealReport) {
        match self.format {
            OutputFormat::Json => match serde_json::to_value(report) {
                Ok(value) => crate::output::print_json(&value),
                Err(err) => tracing::error!("could not serialise the report: {err}"),
            },
            OutputFormat::Text => self.line(&report.closing_line()),
        }
    }
}

impl Observer for Ui {
    fn probes(&self, probes: &[Probe]) {
        for p in probes {
            self.line(&probe_line(p));
        }
    }

    fn note(&self, text: &str) {
        self.line(text);
    }

    fn step_started(&self, step: &Step) {
        if self.progress && self.format == OutputFormat::Text {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar.set_message(format!("{}: {}", step.kind.as_str(), step.describe));
            *self.spinner.borrow_mut() = Some(bar);
        } else {
            self.line(&format!("step {}: {}", step.kind.as_str(), step.describe));
        }
    }

    fn step_finished(&self, result: &StepResult) {
        match self.spinner.borrow_mut().take() {
            Some(bar) => bar.finish_with_message(result.summary()),
            None => self.line(&result.summary()),
        }
    }

    /// The probes still not ok, or that all pass.
    fn reprobed(&self, probes: &[Probe]) {
        let broken: Vec<&Probe> = probes.iter().filter(|p| p.status != Status::Ok).collect();
        if broken.is_empty() {
            self.line("  re-probe: all probes ok");
        }
        for p in broken {
            let (status, name) = (p.status.as_str(), p.name.as_str());
            let evidence = p.evidence.join("; ");
            self.line(&format!("  re-probe: {status} {name}: {evidence}"));
        }
    }
}
