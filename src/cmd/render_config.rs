//! `archy render-config`: render every credential-bearing config from the canonical secret and
//! rewrite the files that differ (atomically). `--check` only reports, for monitoring.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::manifest::Manifest;
use crate::output::OutputFormat;
use crate::render::FileStatus;

/// Render every `configs:` entry from the canonical secret; rewrite only files that differ.
///
/// Prints per file: unchanged, created or written (drift). The consuming containers pick the
/// new files up on the next `archy reconcile` (their spec hash includes the file contents).
#[derive(Debug, Clone, clap::Args)]
pub struct RenderConfigArgs {
    /// Only the configs of these apps (default: every app).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Write nothing; exit 1 when any file differs from what would be rendered.
    #[arg(long, conflicts_with_all = ["dry_run", "rotate_secret"])]
    pub check: bool,
    /// Show what would be written; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace the canonical secret with a new random one and re-render every dependent file.
    /// Takes no APP filter: every consumer shares the one secret, so all of their files are
    /// rewritten (and `archy reconcile` then restarts every consumer).
    #[arg(long)]
    pub rotate_secret: bool,
}

pub fn run(ctx: &Ctx, args: &RenderConfigArgs) -> Result<u8> {
    if args.rotate_secret && !args.apps.is_empty() {
        return Err(crate::exit::invalid(format!(
            "--rotate-secret does not take apps ({}): every app's config files hold the one canonical secret, so rotating it must re-render all of them, or the other consumers would keep the old credentials; run `archy render-config --rotate-secret` without apps",
            args.apps.join(", ")
        )));
    }
    let loaded = ctx.load_manifests_for(&args.apps)?;
    let selected: Vec<&Manifest> = loaded
        .apps
        .iter()
        .filter(|m| args.apps.is_empty() || args.apps.contains(&m.app))
        .collect();
    let write = !args.check && !args.dry_run;
    if args.rotate_secret {
        if args.dry_run {
            println!(
                "would replace the canonical secret {}",
                crate::secret::secret_path(&ctx.settings.state_dir).display()
            );
        } else {
            let _lock = ctx.lock("render-config", crate::lock::Mode::Exclusive)?;
            crate::secret::rotate(&ctx.settings.state_dir)?;
        }
    }
    let outcome = crate::render::render_apps(ctx, &selected, &loaded.apps, write)?;
    let failed = outcome.files.iter().any(|f| f.status == FileStatus::Failed);
    let exit_code = if !loaded.errors.is_empty() {
        crate::exit::INVALID_INPUT
    } else if failed || (args.check && outcome.differs()) {
        crate::exit::FAILURE
    } else {
        crate::exit::SUCCESS
    };
    match ctx.settings.output {
        OutputFormat::Json => crate::output::print_json(&serde_json::json!({
            "ok": exit_code == 0,
            "exit_code": exit_code,
            "check": args.check,
            "dry_run": args.dry_run,
            "files": outcome.files,
            "manifest_errors": loaded.errors,
        })),
        OutputFormat::Text => print_text(&outcome, &loaded.errors, args.check, write),
    }
    if write {
        crate::state::record(
            &ctx.settings.state_dir,
            "render-config",
            serde_json::json!({"exit_code": exit_code, "files": outcome.files.len(), "written": outcome.files.iter().filter(|f| f.status.written()).count()}),
        );
    }
    Ok(exit_code)
}

/// One line per file (redacted), the manifest errors, and a summary line.
fn print_text(
    outcome: &crate::render::RenderOutcome,
    errors: &[crate::manifest::ManifestError],
    check: bool,
    write: bool,
) {
    for file in &outcome.files {
        let status = if check {
            file.status.check_label()
        } else {
            file.status.as_str()
        };
        let line = format!(
            "{:<20} {:<40} {}{}",
            file.app,
            file.path,
            status,
            file.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        println!("{}", crate::output::redact(&line));
    }
    for e in errors {
        println!("{}", crate::output::redact(&e.to_string()));
    }
    let count = |wanted: fn(&FileStatus) -> bool| {
        outcome.files.iter().filter(|f| wanted(&f.status)).count()
    };
    println!(
        "render-config: {} files, {} unchanged, {} {}, {} failed",
        outcome.files.len(),
        count(|s| *s == FileStatus::Unchanged),
        count(|s| !matches!(s, FileStatus::Unchanged | FileStatus::Failed)),
        if write { "written" } else { "differ" },
        count(|s| *s == FileStatus::Failed)
    );
}
