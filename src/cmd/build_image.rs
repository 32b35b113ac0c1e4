//! `archy build-image`: arguments, the call into `images::build`, printing.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::images::build::{self, BuildReport, BuildResult, Options, PruneResult};
use crate::output::OutputFormat;

/// Build missing images of apps with a `build:` context; a second run builds nothing.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildImageArgs {
    /// Only these apps (default: every app with `build:`).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Rebuild even when the image for the current context exists.
    #[arg(long)]
    pub force: bool,
    /// Show what would be built or removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove `localhost/archy-<app>:*` images no manifest or container references.
    #[arg(long)]
    pub prune: bool,
}

pub fn run(ctx: &Ctx, args: &BuildImageArgs) -> Result<u8> {
    let opts = Options {
        apps: args.apps.clone(),
        force: args.force,
        dry_run: args.dry_run,
        prune: args.prune,
        progress: crate::logging::show_progress(ctx.settings.quiet)
            && ctx.settings.output == OutputFormat::Text,
    };
    let report = build::run(ctx, &opts)?;
    let exit_code = report.exit_code();
    match ctx.settings.output {
        OutputFormat::Json => crate::output::print_json(&serde_json::json!({
            "ok": exit_code == 0,
            "exit_code": exit_code,
            "dry_run": args.dry_run,
            "images": report.images,
            "pruned": report.pruned,
            "manifest_errors": report.manifest_errors,
        })),
        OutputFormat::Text => print_text(&report),
    }
    Ok(exit_code)
}

/// One line per image and per pruned image, then the counts.
fn print_text(report: &BuildReport) {
    let line = |name: &str, image: &str, result: &str, error: Option<&str>| {
        let error = error.map(|x| format!(": {x}")).unwrap_or_default();
        println!("{name:<20} {image:<50} {result}{error}");
    };
    for e in &report.images {
        line(&e.app, &e.image, e.result.word(), e.error.as_deref());
    }
    for p in &report.pruned {
        line("prune", &p.image, p.result.word(), p.error.as_deref());
    }
    println!(
        "build-image: {} up to date, {} built, {} to build, {} failed, {} pruned",
        report.count(BuildResult::UpToDate),
        report.count(BuildResult::Built),
        report.count(BuildResult::WouldBuild),
        report.count(BuildResult::Failed),
        report
            .pruned
            .iter()
            .filter(|p| p.result == PruneResult::Removed)
            .count()
    );
}
