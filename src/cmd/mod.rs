//! One module per subcommand (clap args, the call into the engine, printing); `run` dispatches.

pub mod build_image;
pub mod gc;
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
    let settings = crate::ctx::Settings::from(&cli.global);
    let ctx = Ctx::new(&settings);
    match &cli.command {
        Command::Reconcile(args) => reconcile::run(&ctx, args),
        Command::BuildImage(args) => build_image::run(&ctx, args),
        Command::RenderConfig(args) => render_config::run(&ctx, args),
        Command::HealPodman(args) => heal_podman::run(&ctx, args),
        Command::VerifyUpdate(args) => verify_update::run(&ctx, args),
        Command::Rollback(args) => rollback::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Quadlet(args) => quadlet::run(&ctx, args),
        Command::Gc(args) => gc::run(&ctx, args),
        Command::GenerateDocs(args) => generate_docs::run(args),
    }
}

/// Where releases live and how the service restarts: shared by `verify-update` and `rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReleaseArgs {
    /// Installation holding `releases/<version>/`, `current` and `previous`.
    #[arg(
        long,
        env = "ARCHY_INSTALL_ROOT",
        default_value = "/opt/archipelago",
        value_name = "DIR"
    )]
    pub install_root: std::path::PathBuf,
    /// Command run once after switching to the previous release (split into words, never run by
    /// a shell).
    #[arg(
        long,
        env = "ARCHY_RESTART_CMD",
        default_value = "systemctl restart archipelago.service",
        value_name = "COMMAND"
    )]
    pub restart_cmd: String,
}

impl ReleaseArgs {
    pub fn layout(&self) -> crate::update::release::Layout {
        crate::update::release::Layout::new(&self.install_root)
    }

    /// The restart command as argv; a malformed one is invalid input (exit 2).
    pub fn restart_argv(&self) -> anyhow::Result<Vec<String>> {
        crate::update::split_words(&self.restart_cmd)
            .map_err(|e| crate::exit::invalid(format!("--restart-cmd: {e}")))
    }
}

/// Parse a duration (a clap value parser) such as `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("expected a duration like 10s or 500ms: {e}"))
}
