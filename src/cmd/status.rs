//! `archy status` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

pub fn run(_ctx: &Ctx, _args: &StatusArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
