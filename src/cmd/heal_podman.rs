//! `archy heal-podman` (not implemented yet).

use anyhow::Result;

use super::Ctx;

/// Not implemented yet.
#[derive(Debug, clap::Args)]
pub struct HealPodmanArgs {}

pub fn run(_ctx: &Ctx, _args: &HealPodmanArgs) -> Result<u8> {
    anyhow::bail!("not implemented yet")
}
