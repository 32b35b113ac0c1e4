//! `archy quadlet`: write a Quadlet `.container` unit per app so systemd runs its container
//! (`owner: systemd`). Units are rendered by [`crate::quadlet`] from the same spec reconcile
//! computes, rewritten only when their content changes, atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ctx::Ctx;
use crate::manifest::{Manifest, Owner};
use crate::output::OutputFormat;
use crate::quadlet::{self, PodmanVersion};
use crate::reconcile::desired::desired_app;

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

/// What happened to one unit file.
#[derive(Debug, Clone, Serialize)]
pub struct UnitResult {
    pub app: String,
    pub path: String,
    /// "unchanged", "written" or "would-write" (dry run).
    pub status: &'static str,
}

pub fn run(ctx: &Ctx, args: &QuadletArgs) -> Result<u8> {
    let loaded = ctx.load_manifests()?;
    if let Some(error) = loaded.errors.first() {
        return Err(crate::exit::invalid(error.to_string()));
    }
    let selected: Vec<&Manifest> = if args.apps.is_empty() {
        loaded
            .apps
            .iter()
            .filter(|m| m.owner == Owner::Systemd)
            .collect()
    } else {
        let mut chosen = Vec::new();
        for app in &args.apps {
            let m = loaded.get(app).ok_or_else(|| {
                crate::exit::invalid(format!(
                    "no manifest in {} defines app `{app}`",
                    ctx.settings.manifests.display()
                ))
            })?;
            if m.owner != Owner::Systemd {
                tracing::warn!(
                    "app {app} is owned by archy, not systemd: reconcile also runs its container \
                     (set `owner: systemd` in its manifest)"
                );
            }
            chosen.push(m);
        }
        chosen
    };
    let version = match args.podman_version {
        Some(v) => v,
        None => {
            let text = ctx.podman.version()?;
            text.parse::<PodmanVersion>()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("failed to read podman's version from `{text}`"))?
        }
    };
    quadlet::check_supported(version).map_err(crate::exit::invalid)?;
    let out_dir = args.out.as_deref().unwrap_or(&ctx.settings.quadlet_dir);
    let gateway = ctx.gateway()?;
    let render = crate::render::render_apps(ctx, &selected, &loaded.apps, false)?;
    if let Some((app, error)) = render.app_errors.iter().next() {
        anyhow::bail!("a config file of app {app} could not be rendered: {error}");
    }

    let mut units = Vec::new();
    for m in &selected {
        let desired = desired_app(ctx, m, &gateway, &render.file_hashes, None)
            .with_context(|| format!("failed to resolve the container of app {}", m.app))?;
        let text = quadlet::render_container(&desired.spec, &desired.hash, m.enabled, version);
        let path = out_dir.join(quadlet::unit_file_name(&m.app));
        let current = crate::fsutil::read_optional(&path)?;
        let status = if current.as_deref() == Some(text.as_bytes()) {
            "unchanged"
        } else if args.dry_run {
            "would-write"
        } else {
            std::fs::create_dir_all(out_dir)
                .with_context(|| format!("failed to create directory {}", out_dir.display()))?;
            crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
                .with_context(|| format!("failed to write Quadlet unit {}", path.display()))?;
            "written"
        };
        units.push(UnitResult {
            app: m.app.clone(),
            path: path.display().to_string(),
            status,
        });
    }
    print(&units, version, out_dir, args.dry_run, ctx.settings.output);
    Ok(crate::exit::SUCCESS)
}

fn print(
    units: &[UnitResult],
    version: PodmanVersion,
    dir: &Path,
    dry_run: bool,
    format: OutputFormat,
) {
    match format {
        OutputFormat::Json => crate::output::print_json(&serde_json::json!({
            "ok": true,
            "exit_code": 0,
            "dry_run": dry_run,
            "podman_version": version.to_string(),
            "dir": dir.display().to_string(),
            "units": units,
        })),
        OutputFormat::Text => {
            for u in units {
                println!("{:<20} {:<12} {}", u.app, u.status, u.path);
            }
            let written = units.iter().filter(|u| u.status == "written").count();
            println!(
                "quadlet: {} units for podman {version}, {written} written, {} unchanged{}",
                units.len(),
                units.iter().filter(|u| u.status == "unchanged").count(),
                if dry_run { " (dry run)" } else { "" }
            );
            if written > 0 {
                println!("run `systemctl daemon-reload` to regenerate the services");
            }
        }
    }
}
