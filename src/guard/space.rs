//! Free space: the file systems of podman's graph root, its volume path and archy's state dir
//! (statvfs, no podman call), shown by `archy status` and the metrics; below `--min-free` status
//! fails naming the file system. [`require`] refuses a step (a build, unpacking a release) when
//! the file system it writes to lacks the space the step needs, instead of failing half-way.
//!
//! podman's paths come from its own configuration files, read as podman reads them (no podman
//! call): `storage.conf` `[storage] graphroot` (CONTAINERS_STORAGE_CONF, else
//! /etc/containers/storage.conf, else /usr/share/containers/storage.conf; default
//! /var/lib/containers/storage) and `containers.conf` `[engine] volume_path` (CONTAINERS_CONF,
//! else /usr/share/containers/containers.conf, /etc/containers/containers.conf and its
//! containers.conf.d drop-ins, later wins; default `<graphroot>/volumes`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

/// podman's graph root when no storage.conf names one (root).
const DEFAULT_GRAPHROOT: &str = "/var/lib/containers/storage";

const MIB: u64 = 1024 * 1024;

/// Which file system a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// podman's image and container storage.
    Graphroot,
    /// podman's named volumes (the chain, lnd's data).
    Volumes,
    /// archy's state dir (secrets, status, backups).
    StateDir,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Graphroot, Role::Volumes, Role::StateDir];

    pub fn label(self) -> &'static str {
        match self {
            Role::Graphroot => "graphroot",
            Role::Volumes => "volumes",
            Role::StateDir => "state-dir",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Role::Graphroot => "podman's graph root",
            Role::Volumes => "podman's volume path",
            Role::StateDir => "archy's state dir",
        }
    }
}

/// One file system's free space, as `archy status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsView {
    pub role: Role,
    /// The path asked about.
    pub path: PathBuf,
    /// Bytes an unprivileged writer may still use (statvfs `f_bavail`).
    pub free_bytes: u64,
    pub size_bytes: u64,
    /// `free_bytes` of `size_bytes`, in percent (one decimal).
    pub free_percent: f64,
    /// Below `--min-free`.
    pub low: bool,
}

impl FsView {
    /// "podman's graph root /var/lib/containers/storage: 1.5 GiB free of 30 GiB (5.0 %)".
    pub fn describe(&self) -> String {
        format!(
            "{} {}: {} free of {} ({:.1} %)",
            self.role.describe(),
            self.path.display(),
            human_bytes(self.free_bytes),
            human_bytes(self.size_bytes),
            self.free_percent
        )
    }
}

/// `--min-free`: a percent of a file system's size (`5%`) and/or a size (`2g`), comma-separated.
/// With both, the smaller is the bound: the percent on a small file system (a state dir on a
/// 1 GiB partition is not low at 98 % free), the size on a large one (a 4 TB disk is not low
/// at 200 GB free).
#[derive(Debug, Clone, PartialEq)]
pub struct MinFree {
    text: String,
    percent: Option<f64>,
    bytes: Option<u64>,
}

/// `--min-free`'s default: below 5 % of the size, at most 2 GiB (5 % of a small disk is a warning
/// with room to act; 2 GiB is what a pull or bitcoind's next flush may need on a large one).
pub const DEFAULT_MIN_FREE: &str = "5%,2g";

impl MinFree {
    pub fn is_low(&self, free_bytes: u64, size_bytes: u64) -> bool {
        let of_size = self.percent.map(|p| (size_bytes as f64 * p / 100.0) as u64);
        let bound = match (of_size, self.bytes) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return false,
        };
        free_bytes < bound
    }
}

impl Default for MinFree {
    fn default() -> Self {
        DEFAULT_MIN_FREE.parse().expect("the default parses")
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for MinFree {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut min = MinFree {
            text: text.to_string(),
            percent: None,
            bytes: None,
        };
        for part in text.split(',').map(str::trim) {
            if let Some(p) = part.strip_suffix('%') {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("`{part}` must be a percent from 0% to 100%"))?;
                min.percent = Some(p);
            } else {
                let size: crate::manifest::resources::ByteSize = part.parse().map_err(|e| {
                    format!("{e} (or a percent like `5%`; both comma-separated: `5%,2g`)")
                })?;
                min.bytes = Some(size.bytes());
            }
        }
        Ok(min)
    }
}

fn percent(free: u64, size: u64) -> f64 {
    if size == 0 {
        return 0.0;
    }
    (free as f64 * 1000.0 / size as f64).round() / 10.0
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    let gib = 1024.0 * 1024.0 * 1024.0;
    if bytes as f64 >= gib {
        format!("{:.1} GiB", bytes as f64 / gib)
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// podman's graph root as its storage.conf says (no podman call).
pub fn graphroot() -> PathBuf {
    let files: Vec<PathBuf> = match std::env::var_os("CONTAINERS_STORAGE_CONF") {
        Some(path) => vec![path.into()],
        None => vec![
            "/etc/containers/storage.conf".into(),
            "/usr/share/containers/storage.conf".into(),
        ],
    };
    files
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| crate::podman::config_value(&text, "storage", "graphroot"))
        .map_or_else(|| PathBuf::from(DEFAULT_GRAPHROOT), PathBuf::from)
}

/// podman's volume path as its containers.conf files say, else `<graphroot>/volumes`.
pub fn volume_path(graphroot: &Path) -> PathBuf {
    let files: Vec<PathBuf> = if let Some(path) = std::env::var_os("CONTAINERS_CONF") {
        vec![path.into()]
    } else {
        let mut files: Vec<PathBuf> = vec![
            "/usr/share/containers/containers.conf".into(),
            "/etc/containers/containers.conf".into(),
        ];
        if let Ok(dir) = std::fs::read_dir("/etc/containers/containers.conf.d") {
            let mut drop_ins: Vec<PathBuf> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            drop_ins.sort();
            files.extend(drop_ins);
        }
        files
    };
    // Later files win: the last that sets it.
    files
        .iter()
        .rev()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| crate::podman::config_value(&text, "engine", "volume_path"))
        .map_or_else(|| graphroot.join("volumes"), PathBuf::from)
}

/// statvfs of `path`, or of its nearest existing ancestor (a graph root podman has not made
/// yet is on the file system of its parent): (free bytes, size bytes).
pub fn statvfs(path: &Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let vfs = rustix::fs::statvfs(existing).ok()?;
    Some((
        vfs.f_bavail.saturating_mul(vfs.f_frsize),
        vfs.f_blocks.saturating_mul(vfs.f_frsize),
    ))
}

/// Measure the three file systems (statvfs only) and judge them against `min_free`.
pub fn measure(state_dir: &Path, min_free: &MinFree) -> Vec<FsView> {
    let graph = graphroot();
    let volumes = volume_path(&graph);
    [
        (Role::Graphroot, graph),
        (Role::Volumes, volumes),
        (Role::StateDir, state_dir.to_path_buf()),
    ]
    .into_iter()
    .filter_map(|(role, path)| {
        let (free_bytes, size_bytes) = statvfs(&path)?;
        Some(FsView {
            role,
            free_bytes,
            size_bytes,
            free_percent: percent(free_bytes, size_bytes),
            low: min_free.is_low(free_bytes, size_bytes),
            path,
        })
    })
    .collect()
}

/// The problems of low file systems, for `archy status`. Pure.
pub fn problems(views: &[FsView], min_free: &MinFree) -> Vec<String> {
    views
        .iter()
        .filter(|v| v.low)
        .map(|v| {
            format!(
                "low disk space: {}, below --min-free {min_free}",
                v.describe()
            )
        })
        .collect()
}

/// Refuse `what` (a build, a pull, unpacking a release) when the file system of `path` has
/// less than `needed` bytes free. Unknown (statvfs failed): allowed.
pub fn require(path: &Path, needed: u64, what: &str) -> anyhow::Result<()> {
    let Some((free, _)) = statvfs(path) else {
        return Ok(());
    };
    check_room(path, free, needed, what)
}

/// [`require`]'s decision. Pure.
pub fn check_room(path: &Path, free: u64, needed: u64, what: &str) -> anyhow::Result<()> {
    if needed > free {
        anyhow::bail!(
            "not enough disk space for {what}: it needs {} ({needed} bytes) on the file system of {}, which has {} ({free} bytes) free",
            human_bytes(needed),
            path.display(),
            human_bytes(free)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_takes_a_percent_a_size_or_both() {
        let both: MinFree = "5%,2g".parse().unwrap();
        let gib = 1024 * MIB;
        // A large disk: the size is the bound (5 % would be 25 GiB).
        assert!(
            !both.is_low(20 * gib, 500 * gib),
            "20 GiB free of 500 is room enough"
        );
        assert!(both.is_low(gib, 500 * gib), "1 GiB is below 2 GiB");
        // A small file system: the percent is (2 GiB would be a fifth of it, or all of it).
        assert!(!both.is_low(gib, 10 * gib), "10 % free of 10 GiB");
        assert!(both.is_low(400 * MIB, 10 * gib), "4 % is below 5 %");
        assert!(
            !both.is_low(2 * MIB - 32 * 1024, 2 * MIB),
            "a nearly empty 2 MiB tmpfs"
        );
        let pct: MinFree = "10%".parse().unwrap();
        assert!(!pct.is_low(MIB, 5 * MIB));
        assert!(pct.is_low(MIB, 20 * MIB));
        assert!("150%".parse::<MinFree>().is_err());
        let err = "lots".parse::<MinFree>().unwrap_err();
        assert!(err.contains("or a percent like `5%`"), "{err}");
        assert_eq!(MinFree::default().to_string(), "5%,2g");
    }

    #[test]
    fn podman_config_values_are_read_by_section() {
        let text = "[storage]\ndriver = \"overlay\"\ngraphroot = \"/srv/graph\" # here\nrunroot = \"/run/x\"\n[engine]\nvolume_path = '/srv/vol'\n";
        assert_eq!(
            crate::podman::config_value(text, "storage", "graphroot").as_deref(),
            Some("/srv/graph")
        );
        assert_eq!(
            crate::podman::config_value(text, "engine", "volume_path").as_deref(),
            Some("/srv/vol")
        );
        assert_eq!(
            crate::podman::config_value(text, "engine", "graphroot"),
            None
        );
    }

    #[test]
    fn low_file_systems_are_named_with_their_numbers() {
        let view = FsView {
            role: Role::StateDir,
            path: "/var/lib/archy".into(),
            free_bytes: 3 * MIB,
            size_bytes: 64 * MIB,
            free_percent: percent(3 * MIB, 64 * MIB),
            low: true,
        };
        assert_eq!(
            problems(&[view], &"10%".parse().unwrap()),
            ["low disk space: archy's state dir /var/lib/archy: 3 MiB free of 64 MiB (4.7 %), below --min-free 10%"]
        );
        let err = check_room(Path::new("/g"), 10 * MIB, 64 * MIB, "building localhost/x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "not enough disk space for building localhost/x: it needs 64 MiB (67108864 bytes) on the file system of /g, which has 10 MiB (10485760 bytes) free");
        assert!(check_room(Path::new("/g"), 64 * MIB, 64 * MIB, "x").is_ok());
    }
}
