//! The per-run context every command and engine gets: the global options, the podman wrapper,
//! locks under the run directory, and loading the manifests.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::GlobalArgs;
use crate::lock::{self, LockGuard, Mode};
use crate::manifest::{self, Loaded, Policy};
use crate::podman::Podman;

/// What every subcommand gets: the global options and the podman wrapper.
pub struct Ctx<'a> {
    pub global: &'a GlobalArgs,
    pub podman: Podman,
}

impl<'a> Ctx<'a> {
    pub fn new(global: &'a GlobalArgs) -> Self {
        Ctx {
            global,
            podman: Podman::new(&global.podman),
        }
    }

    /// `<run-dir>/<name>.lock`, waiting up to `--lock-wait`.
    pub fn lock(&self, name: &str, mode: Mode) -> Result<LockGuard> {
        lock::acquire(&self.lock_path(name), mode, self.global.lock_wait)
    }

    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.global.run_dir.join(format!("{name}.lock"))
    }

    /// Load every manifest; a missing manifests directory is invalid input.
    pub fn load_manifests(&self) -> Result<Loaded> {
        let policy = Policy {
            allowed_volume_roots: volume_roots_from_env(),
        };
        manifest::load_dir(&self.global.manifests, &policy)
            .map_err(|e| crate::exit::invalid(format!("{e:#}")))
    }

    /// Load the manifests for a command that may name apps: an app no manifest defines (valid or
    /// not) is invalid input; invalid manifests are logged and returned in `Loaded::errors`.
    pub fn load_manifests_for(&self, apps: &[String]) -> Result<Loaded> {
        let loaded = self.load_manifests()?;
        let known = |app: &str| {
            loaded.get(app).is_some() || loaded.errors.iter().any(|e| e.app.as_deref() == Some(app))
        };
        if let Some(unknown) = apps.iter().find(|a| !known(a)) {
            return Err(crate::exit::invalid(format!(
                "no manifest in {} defines app `{unknown}`",
                self.global.manifests.display()
            )));
        }
        for error in &loaded.errors {
            tracing::error!("{error}");
        }
        Ok(loaded)
    }

    /// The gateway of archy's network subnet (validated: a bad `--subnet` is invalid input).
    pub fn gateway(&self) -> Result<String> {
        crate::spec::gateway_of(&self.global.subnet)
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
