//! `archy build-image` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct BuildImageArgs {}

pub fn run(_ctx: &Ctx, _args: &BuildImageArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
