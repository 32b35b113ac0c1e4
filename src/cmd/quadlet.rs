//! `archy quadlet` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct QuadletArgs {}

pub fn run(_ctx: &Ctx, _args: &QuadletArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
