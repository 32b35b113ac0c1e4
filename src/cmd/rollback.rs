//! `archy rollback` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {}

pub fn run(_ctx: &Ctx, _args: &RollbackArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
