//! `archy gc`: arguments, the call into `guard::gc`, printing.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::images::gc::{self, Options};
use crate::output::OutputFormat;

/// Remove images nothing needs, registry images included; keep each app's previous image.
///
/// An image stays when a container uses it (archy's or any other), a manifest names it (a
/// `build:` app's current context tag, an `image:` reference), or it is an app's current or
/// previous image as reconcile last recorded it (`<state-dir>/status/app-images.json`): the
/// previous one is kept so a rollback needs no registry. Everything else is removed with `podman
/// rmi` (never forced). Takes the reconcile lock, so it never runs between a tick's listing
/// and its recreates. Refuses to remove anything while a manifest is invalid (exit 2). Exit 1
/// when podman refused an image.
#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// List what would be removed, with sizes; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &GcArgs) -> Result<u8> {
    let report = gc::run(
        ctx,
        Options {
            dry_run: args.dry_run,
        },
    )?;
    match ctx.settings.output {
        OutputFormat::Json => crate::output::print_json(
            &serde_json::to_value(&report).expect("the gc report serialises"),
        ),
        OutputFormat::Text => print!("{}", gc::render_text(&report)),
    }
    Ok(report.exit_code)
}
