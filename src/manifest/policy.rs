//! Where a manifest may point the host paths it names (bind mounts, env files, config paths,
//! build contexts): allowed roots, and never into archy's own state, run or manifests dirs.

use std::path::{Path, PathBuf};

/// Where manifests may point the host paths they name.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// When non-empty, every host path a manifest names (bind-mount sources, `env_files`,
    /// config paths, build contexts) must resolve (symlinks followed) under one of these roots.
    pub allowed_volume_roots: Vec<PathBuf>,
    /// archy's own directories, with a label: no host path a manifest names may resolve under
    /// them (a config rendered over the canonical secret, a bind mount exposing it).
    pub protected_dirs: Vec<(String, PathBuf)>,
}

impl Policy {
    /// The protected directories of a run: the run and manifests directories, and the state
    /// directory's own entries (secrets, status, update journal, caches; app data directories
    /// under the state directory stay usable).
    pub fn protecting(mut self, state_dir: &Path, run_dir: &Path, manifests_dir: &Path) -> Self {
        for (label, dir) in crate::state::reserved_dirs(state_dir) {
            self.protected_dirs.push((label, dir));
        }
        self.protected_dirs
            .push(("archy's run directory".into(), run_dir.to_path_buf()));
        self.protected_dirs.push((
            "the manifests directory".into(),
            manifests_dir.to_path_buf(),
        ));
        self
    }

    /// Check one host path (absolute, without `..`) a manifest names, resolved through symlinks.
    pub(super) fn check_host_path(&self, path: &Path) -> Result<(), String> {
        let resolved = crate::fsutil::resolve_existing(path);
        let shown = if resolved == path {
            String::new()
        } else {
            format!(" (resolves to {})", resolved.display())
        };
        for (label, dir) in &self.protected_dirs {
            let dir_resolved = crate::fsutil::resolve_existing(dir);
            if resolved.starts_with(&dir_resolved) {
                return Err(format!(
                    "{}{shown} lies under {label} {}; manifests may not point there",
                    path.display(),
                    dir.display()
                ));
            }
        }
        if !self.allowed_volume_roots.is_empty()
            && !self
                .allowed_volume_roots
                .iter()
                .any(|root| resolved.starts_with(crate::fsutil::resolve_existing(root)))
        {
            let roots: Vec<String> = self
                .allowed_volume_roots
                .iter()
                .map(|r| r.display().to_string())
                .collect();
            return Err(format!(
                "{}{shown} is outside the allowed roots ({})",
                path.display(),
                roots.join(", ")
            ));
        }
        Ok(())
    }
}
