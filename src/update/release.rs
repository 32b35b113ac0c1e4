//! The release layout under `--install-root` and the atomic symlink switch.
//!
//! ```text
//! <install-root>/releases/<version>/   one directory per installed release
//! <install-root>/current  -> releases/<version>
//! <install-root>/previous -> releases/<version>
//! ```
//!
//! A switch creates the new symlink under a temporary name in the same directory and renames
//! it over the old one (rename(2) is atomic), then fsyncs the directory: a crash or SIGKILL at
//! any point leaves `current` pointing at either the old or the new release, never neither.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Paths of one installation.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

/// A symlink's state: missing, or naming a release version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Missing,
    Release(String),
}

impl LinkState {
    pub fn version(&self) -> Option<&str> {
        match self {
            LinkState::Missing => None,
            LinkState::Release(v) => Some(v),
        }
    }
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.releases_dir().join(version)
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    pub fn previous_link(&self) -> PathBuf {
        self.root.join("previous")
    }

    pub fn current(&self) -> Result<LinkState> {
        read_release_link(&self.current_link())
    }

    pub fn previous(&self) -> Result<LinkState> {
        read_release_link(&self.previous_link())
    }

    /// Point `current` at `releases/<version>` atomically.
    pub fn set_current(&self, version: &str) -> Result<()> {
        check_version(version).map_err(anyhow::Error::msg)?;
        switch_symlink(&self.current_link(), &Path::new("releases").join(version))
    }
}

/// A version must be one plain path component (it names a directory under `releases/`).
pub fn check_version(version: &str) -> Result<(), String> {
    let mut components = Path::new(version).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(c)), None) if c == version => Ok(()),
        _ => Err(format!(
            "release version {version:?} must be a single path component like 1.7.40"
        )),
    }
}

/// The version a release symlink names: its target's last component, which must sit in
/// `releases/` (relative `releases/<v>` or an absolute path ending in `releases/<v>`).
pub fn version_from_target(target: &Path) -> Result<String, String> {
    let version = target
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .ok_or_else(|| format!("symlink target {} names no release", target.display()))?;
    let parent_ok = target
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|p| p == "releases");
    if !parent_ok {
        return Err(format!(
            "symlink target {} is not under releases/",
            target.display()
        ));
    }
    check_version(&version)?;
    Ok(version)
}

/// Read a release symlink (missing is fine; a regular file or a foreign target is an error).
pub fn read_release_link(link: &Path) -> Result<LinkState> {
    match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LinkState::Missing),
        Err(e) => return Err(e).with_context(|| format!("failed to inspect {}", link.display())),
        Ok(meta) if !meta.file_type().is_symlink() => {
            bail!("{} is not a symlink", link.display())
        }
        Ok(_) => {}
    }
    let target = std::fs::read_link(link)
        .with_context(|| format!("failed to read symlink {}", link.display()))?;
    let version =
        version_from_target(&target).map_err(|e| anyhow::anyhow!("{}: {e}", link.display()))?;
    Ok(LinkState::Release(version))
}

/// Replace (or create) the symlink `link` so it points at `target`, atomically.
pub fn switch_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .with_context(|| format!("{} has no parent directory", link.display()))?;
    let name = link
        .file_name()
        .with_context(|| format!("{} has no file name", link.display()))?
        .to_string_lossy();
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(random)));
    std::os::unix::fs::symlink(target, &tmp).with_context(|| {
        format!(
            "failed to create symlink {} -> {}",
            tmp.display(),
            target.display()
        )
    })?;
    if let Err(err) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err).with_context(|| {
            format!("failed to rename {} over {}", tmp.display(), link.display())
        });
    }
    crate::fsutil::sync_dir(dir)
}

/// Remove temporary symlinks a killed switch left behind (`.current.<hex>.tmp`). Harmless
/// when there are none; they never affect which release is current.
pub fn clean_stale_temps(layout: &Layout) {
    let Ok(entries) = std::fs::read_dir(&layout.root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // archy's own temporary names, always lower case.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        let ours = (name.starts_with(".current.") || name.starts_with(".previous."))
            && name.ends_with(".tmp");
        if ours && entry.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_single_components() {
        assert!(check_version("1.7.40").is_ok());
        for bad in ["", ".", "..", "a/b", "/abs", "1.7.40/"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_is_read_from_relative_or_absolute_targets() {
        assert_eq!(
            version_from_target(Path::new("releases/1.7.40")).unwrap(),
            "1.7.40"
        );
        assert_eq!(
            version_from_target(Path::new("/opt/archipelago/releases/1.7.39")).unwrap(),
            "1.7.39"
        );
        assert!(version_from_target(Path::new("/srv/other/1.7.39")).is_err());
        assert!(version_from_target(Path::new("releases/..")).is_err());
    }

    #[test]
    fn switch_replaces_link_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.release_dir("1")).unwrap();
        std::fs::create_dir_all(layout.release_dir("2")).unwrap();
        assert_eq!(layout.current().unwrap(), LinkState::Missing);
        layout.set_current("1").unwrap();
        assert_eq!(layout.current().unwrap(), LinkState::Release("1".into()));
        layout.set_current("2").unwrap();
        assert_eq!(layout.current().unwrap(), LinkState::Release("2".into()));
        assert_eq!(
            std::fs::read_link(layout.current_link()).unwrap(),
            Path::new("releases/2")
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_regular_file_named_current_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("current"), "x").unwrap();
        assert!(Layout::new(dir.path()).current().is_err());
    }
}
