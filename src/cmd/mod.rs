//! One module per subcommand (clap args, the call into the engine, printing); `run` dispatches.

pub mod build_image;
pub mod generate_docs;
pub mod heal_podman;
pub mod quadlet;
pub mod reconcile;
pub mod render_config;
pub mod rollback;
pub mod status;
pub mod verify_update;

use anyhow::Result;

use crate::cli::{Cli, Command};
pub use crate::ctx::Ctx;

/// Run the chosen subcommand; Ok carries the exit code.
pub fn run(cli: &Cli) -> Result<u8> {
    let ctx = Ctx::new(&cli.global);
    match &cli.command {
        Command::Reconcile(args) => reconcile::run(&ctx, args),
        Command::BuildImage(args) => build_image::run(&ctx, args),
        Command::RenderConfig(args) => render_config::run(&ctx, args),
        Command::HealPodman(args) => heal_podman::run(&ctx, args),
        Command::VerifyUpdate(args) => verify_update::run(&ctx, args),
        Command::Rollback(args) => rollback::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Quadlet(args) => quadlet::run(&ctx, args),
        Command::GenerateDocs(args) => generate_docs::run(args),
    }
}
