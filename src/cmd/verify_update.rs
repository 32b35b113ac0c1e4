//! `archy verify-update` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct VerifyUpdateArgs {}

pub fn run(_ctx: &Ctx, _args: &VerifyUpdateArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
