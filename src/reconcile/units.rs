//! `archy quadlet`'s engine: a Quadlet `.container` unit per app so systemd runs its container
//! (`owner: systemd`). Units are rendered by [`crate::quadlet`] from the same spec reconcile
//! computes ([`super::desired`]), rewritten only when their content changes, atomically.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::desired::desired_app;
use crate::ctx::Ctx;
use crate::manifest::{Manifest, Owner};
use crate::quadlet::{self, PodmanVersion};

/// Which units, for which podman, where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these apps (empty: every app whose manifest says `owner: systemd`).
    pub apps: Vec<String>,
    /// The podman version the units are for (None: the local `podman version`).
    pub podman_version: Option<PodmanVersion>,
    /// Directory to write the units to (None: the settings' quadlet directory).
    pub out: Option<PathBuf>,
    /// Say which units would be written and write nothing.
    pub dry_run: bool,
}

/// What happened to one unit file (printed as these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitStatus {
    Unchanged,
    Written,
    /// A dry run would write it.
    WouldWrite,
}

impl UnitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Written => "written",
            Self::WouldWrite => "would-write",
        }
    }
}

/// What happened to one unit file.
#[derive(Debug, Clone, Serialize)]
pub struct UnitResult {
    pub app: String,
    pub path: String,
    pub status: UnitStatus,
}

/// Every unit, the podman version they were rendered for, and their directory.
#[derive(Debug, Clone)]
pub struct UnitsReport {
    pub units: Vec<UnitResult>,
    pub version: PodmanVersion,
    pub dir: PathBuf,
}

impl UnitsReport {
    pub fn count(&self, status: UnitStatus) -> usize {
        self.units.iter().filter(|u| u.status == status).count()
    }
}

pub fn run(ctx: &Ctx, opts: &Options) -> Result<UnitsReport> {
    let loaded = ctx.load_manifests()?;
    if let Some(error) = loaded.errors.first() {
        return Err(crate::exit::invalid(error.to_string()));
    }
    let selected: Vec<&Manifest> = if opts.apps.is_empty() {
        loaded
            .apps
            .iter()
            .filter(|m| m.owner == Owner::Systemd)
            .collect()
    } else {
        let mut chosen = Vec::new();
        for app in &opts.apps {
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
    let version = match opts.podman_version {
        Some(v) => v,
        None => {
            let text = ctx.podman.version()?;
            text.parse::<PodmanVersion>()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("failed to read podman's version from `{text}`"))?
        }
    };
    quadlet::check_supported(version).map_err(crate::exit::invalid)?;
    let out_dir = opts.out.as_deref().unwrap_or(&ctx.settings.quadlet_dir);
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
            UnitStatus::Unchanged
        } else if opts.dry_run {
            UnitStatus::WouldWrite
        } else {
            std::fs::create_dir_all(out_dir)
                .with_context(|| format!("failed to create directory {}", out_dir.display()))?;
            crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
                .with_context(|| format!("failed to write Quadlet unit {}", path.display()))?;
            UnitStatus::Written
        };
        units.push(UnitResult {
            app: m.app.clone(),
            path: path.display().to_string(),
            status,
        });
    }
    Ok(UnitsReport {
        units,
        version,
        dir: out_dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialise_to_their_words() {
        for s in [
            UnitStatus::Unchanged,
            UnitStatus::Written,
            UnitStatus::WouldWrite,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
