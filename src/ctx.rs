//! The per-run context every command and engine gets: the settings, the podman wrapper,
//! locks under the run directory, and loading the manifests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::lock::{self, LockGuard, Mode};
use crate::manifest::{self, Loaded, Policy};
use crate::output::OutputFormat;
use crate::podman::Podman;

/// The global options as plain data: built from the command line in `cli.rs` (engines never
/// see clap), or by hand in a test.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory holding one YAML manifest per app.
    pub manifests: PathBuf,
    /// archy's persistent state (secrets, status, update history).
    pub state_dir: PathBuf,
    /// Lock files.
    pub run_dir: PathBuf,
    /// The podman executable.
    pub podman: PathBuf,
    /// Text or JSON on stdout (errors print as text).
    pub output: OutputFormat,
    /// `--output prometheus`: `archy status` prints the metrics exposition instead.
    pub prometheus: bool,
    /// How long to wait for a lock another archy run holds.
    pub lock_wait: Duration,
    /// archy's podman network and its subnet (CIDR, not yet validated: see [`Ctx::gateway`]).
    pub network: String,
    pub subnet: String,
    /// Quadlet units of `owner: systemd` apps.
    pub quadlet_dir: PathBuf,
    /// Time limit of one listing or query command (`podman ps`, `inspect`, `info` …).
    pub timeout_listing: Duration,
    /// Only warnings and errors; no progress display.
    pub quiet: bool,
}

/// What every subcommand gets: the settings and the podman wrapper.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub podman: Podman,
}

impl<'a> Ctx<'a> {
    pub fn new(settings: &'a Settings) -> Self {
        Ctx {
            settings,
            podman: Podman::new(&settings.podman),
        }
    }

    /// `<run-dir>/<name>.lock`, waiting up to `--lock-wait`.
    pub fn lock(&self, name: &str, mode: Mode) -> Result<LockGuard> {
        lock::acquire(&self.lock_path(name), mode, self.settings.lock_wait)
    }

    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.settings.run_dir.join(format!("{name}.lock"))
    }

    /// Load every manifest; a missing manifests directory is invalid input.
    pub fn load_manifests(&self) -> Result<Loaded> {
        let policy = Policy {
            allowed_volume_roots: volume_roots_from_env(),
            ..Policy::default()
        }
        .protecting(
            &self.settings.state_dir,
            &self.settings.run_dir,
            &self.settings.manifests,
        );
        manifest::load_dir(&self.settings.manifests, &policy)
            .map_err(|e| crate::exit::invalid(format!("{e:#}")))
    }

    /// Load the manifests for a command that may name apps: an app no manifest defines (valid or
    /// not) is invalid input; invalid manifests are logged and returned in `Loaded::errors`.
    pub fn load_manifests_for(&self, apps: &[String]) -> Result<Loaded> {
        let loaded = self.load_manifests()?;
        self.check_defined(&loaded, apps, "")?;
        for error in &loaded.errors {
            tracing::error!("{error}");
        }
        Ok(loaded)
    }

    /// Every app of `apps` (named by `flag`, e.g. `--retry `, or "") is defined by a manifest,
    /// valid or not; else invalid input (exit 2) naming it.
    pub fn check_defined(&self, loaded: &Loaded, apps: &[String], flag: &str) -> Result<()> {
        let known = |app: &str| {
            loaded.get(app).is_some() || loaded.errors.iter().any(|e| e.app.as_deref() == Some(app))
        };
        match apps.iter().find(|a| !known(a)) {
            Some(unknown) => Err(crate::exit::invalid(format!(
                "{flag}no manifest in {} defines app `{unknown}`",
                self.settings.manifests.display()
            ))),
            None => Ok(()),
        }
    }

    /// The gateway of archy's network subnet (validated: a bad `--subnet` is invalid input).
    pub fn gateway(&self) -> Result<String> {
        crate::spec::gateway_of(&self.settings.subnet)
            .map_err(|e| crate::exit::invalid(format!("--subnet: {e}")))
    }
}

/// `ARCHY_ALLOWED_VOLUME_ROOTS=/var/lib/archy:/srv` limits bind-mount sources (unset: no limit).
fn volume_roots_from_env() -> Vec<PathBuf> {
    std::env::var_os("ARCHY_ALLOWED_VOLUME_ROOTS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| p.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}
