//! `archy render-config` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct RenderConfigArgs {}

pub fn run(_ctx: &Ctx, _args: &RenderConfigArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
