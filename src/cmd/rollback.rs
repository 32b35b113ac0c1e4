//! `archy rollback`: make the previous release current again, atomically, and restart.

use anyhow::Result;
use serde_json::json;

use super::ReleaseArgs;
use crate::ctx::Ctx;
use crate::exit;
use crate::lock::Mode;
use crate::output::{print_json, OutputFormat};
use crate::update::journal::Journal;
use crate::update::release;
use crate::update::rollback::{self, RollbackAction};

/// Make `previous` the current release again and restart the service.
///
/// `current` is switched by renaming a new symlink over it, so a crash leaves either release
/// current, never neither. Afterwards `current` and `previous` name the same release, so a
/// second rollback has nothing to do (exit 0). With no previous release, or one whose directory
/// is missing or fails the static checks (root 0755, o+rx directories, o+r files, no escaping
/// links, ...), nothing changes and the exit code is 1.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Why, recorded in `<state-dir>/update/history.jsonl`.
    #[arg(long, value_name = "TEXT", default_value = "operator request")]
    pub reason: String,
    /// Say what would happen; change nothing and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &RollbackArgs) -> Result<u8> {
    let restart = args.release.restart_argv()?;
    let _lock = ctx.lock("update", Mode::Exclusive)?;
    let layout = args.release.layout();
    let journal = Journal::new(&ctx.settings.state_dir);
    if !args.dry_run {
        release::clean_stale_temps(&layout);
    }
    let outcome = rollback::execute(
        &layout,
        &journal,
        &restart,
        &args.reason,
        args.dry_run,
        "rollback",
    )?;
    let ok = outcome.action != RollbackAction::Refused;
    if !args.dry_run {
        crate::state::record(
            &ctx.settings.state_dir,
            "rollback",
            json!({"ok": ok, "result": outcome.action, "from": outcome.from, "to": outcome.to, "message": outcome.message}),
        );
    }
    match ctx.settings.output {
        OutputFormat::Json => print_json(&json!({
            "ok": ok,
            "dry_run": args.dry_run,
            "action": outcome.action,
            "from": outcome.from,
            "to": outcome.to,
            "message": outcome.message,
            "restarted": outcome.restarted,
        })),
        OutputFormat::Text if ok => println!("{}", outcome.message),
        OutputFormat::Text => eprintln!("error: cannot roll back: {}", outcome.message),
    }
    Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
}
