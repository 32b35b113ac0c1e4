//! `archy quadlet`: arguments, the call into `reconcile::units`, printing.

use std::path::PathBuf;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::output::OutputFormat;
use crate::quadlet::PodmanVersion;
use crate::reconcile::units::{self, Options, UnitStatus, UnitsReport};

/// Write Quadlet `.container` units (`<app>.container`) so systemd runs these apps' containers.
///
/// Keys are chosen for the target podman version: Quadlet needs podman 4.4 or newer; before 5.3
/// host entries go through `PodmanArgs=--add-host`. A unit whose content is current is left
/// alone. After writing, run `systemctl daemon-reload` so systemd regenerates the services.
#[derive(Debug, Clone, clap::Args)]
pub struct QuadletArgs {
    /// Only these apps (default: every app whose manifest says `owner: systemd`).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Podman version the units are for, X.Y (default: the local `podman version`).
    #[arg(long, env = "ARCHY_PODMAN_VERSION", value_name = "X.Y")]
    pub podman_version: Option<PodmanVersion>,
    /// Directory to write the units to (default: --quadlet-dir, /etc/containers/systemd).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Say which units would be written and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &QuadletArgs) -> Result<u8> {
    let opts = Options {
        apps: args.apps.clone(),
        podman_version: args.podman_version,
        out: args.out.clone(),
        dry_run: args.dry_run,
    };
    let report = units::run(ctx, &opts)?;
    print(&report, args.dry_run, ctx.settings.output);
    Ok(crate::exit::SUCCESS)
}

fn print(report: &UnitsReport, dry_run: bool, format: OutputFormat) {
    let version = report.version;
    match format {
        OutputFormat::Json => crate::output::print_json(&serde_json::json!({
            "ok": true,
            "exit_code": 0,
            "dry_run": dry_run,
            "podman_version": version.to_string(),
            "dir": report.dir.display().to_string(),
            "units": report.units,
        })),
        OutputFormat::Text => {
            for u in &report.units {
                println!("{:<20} {:<12} {}", u.app, u.status.as_str(), u.path);
            }
            let written = report.count(UnitStatus::Written);
            println!(
                "quadlet: {} units for podman {version}, {written} written, {} unchanged{}",
                report.units.len(),
                report.count(UnitStatus::Unchanged),
                if dry_run { " (dry run)" } else { "" }
            );
            if written > 0 {
                println!("run `systemctl daemon-reload` to regenerate the services");
            }
        }
    }
}
