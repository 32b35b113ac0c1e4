//! The `backup:` manifest key: files inside an app's volumes that archy copies off the box
//! whenever they change (lnd's static channel backup first), and where to. Each value is a type
//! whose `Deserialize` checks it, so a manifest that parses names no live database, no glob and
//! no relative target. What archy does with it lives in `crate::backup`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{from_yaml_str, parse_duration};

/// Versions kept per file and directory target, unless `keep:` says otherwise.
pub const DEFAULT_KEEP: u32 = 10;
/// Most `keep:` accepted.
pub const MAX_KEEP: u32 = 1000;
/// How long a changed file may wait for a target to hold it before `archy status` fails,
/// unless `alert_after:` says otherwise: ten 30-second ticks.
pub const DEFAULT_ALERT_AFTER: Duration = Duration::from_secs(300);

/// File names that are live databases: copying one while its program runs gives a torn copy
/// that restores into lost funds (lnd's `channel.db` above all). Refused whatever the manifest
/// says; `live_databases:` adds more.
pub const LIVE_DATABASE_SUFFIXES: [&str; 3] = ["channel.db", ".ldb", "bolt_state.db"];

/// Where a backed-up file lives: a named volume, or the host directory of a bind mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Volume(String),
    HostDir(PathBuf),
}

/// One `backup.files` entry: `VOLUME:/path/inside/the/volume` (or `/host/dir:/path` for a
/// bind mount's source), kept as written for the state file and status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupFile {
    pub source: Source,
    /// The file's path inside the volume, relative (no `..`, no glob).
    pub path: PathBuf,
    written: String,
}

impl BackupFile {
    /// The entry as written (the key of its state and status).
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The file's name (the name of its copies on a target).
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a validated path ends in a UTF-8 file name")
    }

    /// The volume or host directory as written before the `:`.
    pub fn source_str(&self) -> &str {
        self.written
            .split_once(':')
            .map(|(s, _)| s)
            .unwrap_or_default()
    }

    /// Whether the file's name is a live database (built-in suffixes or `extra`).
    pub fn is_live_database(&self, extra: &[String]) -> Option<String> {
        let name = self.name();
        LIVE_DATABASE_SUFFIXES
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .find(|suffix| name.ends_with(suffix.as_str()))
    }
}

impl fmt::Display for BackupFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.written)
    }
}

impl FromStr for BackupFile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expect = "must be VOLUME:/path/to/file inside that volume (or /host/dir:/path for a bind mount's directory)";
        let (source, path) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` {expect}"))?;
        let source = if source.starts_with('/') {
            Source::HostDir(PathBuf::from(source))
        } else if is_volume_name(source) {
            Source::Volume(source.to_string())
        } else {
            return Err(format!("`{text}` {expect}"));
        };
        if !path.starts_with('/') || path.ends_with('/') {
            return Err(format!(
                "`{text}`: the path after `:` must be an absolute path to a file"
            ));
        }
        if path
            .chars()
            .any(|c| matches!(c, '*' | '?' | '[' | ']' | '\0'))
        {
            return Err(format!(
                "`{text}`: name one file, no glob (a glob into a database directory copies live databases)"
            ));
        }
        let mut relative = PathBuf::new();
        for component in Path::new(path).components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => relative.push(part),
                Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                    return Err(format!("`{text}`: the path may not contain `.` or `..`"))
                }
            }
        }
        if relative.as_os_str().is_empty()
            || relative.file_name().and_then(|n| n.to_str()).is_none()
        {
            return Err(format!("`{text}`: the path after `:` must name a file"));
        }
        let file = BackupFile {
            source,
            path: relative,
            written: text.to_string(),
        };
        if let Some(suffix) = file.is_live_database(&[]) {
            return Err(format!(
                "`{text}` is a live database (its name ends in `{suffix}`): copying it while it is written gives a torn copy that can lose funds; back up lnd's channel.backup instead"
            ));
        }
        Ok(file)
    }
}

impl<'de> Deserialize<'de> for BackupFile {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_yaml_str(de)
    }
}

impl Serialize for BackupFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

/// A podman volume name.
fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// One place a backed-up file is copied to. A closed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A directory (a mounted USB disk, an NFS/SSHFS mount): versions under `<dir>/<app>/`.
    /// archy never creates `dir` itself (a missing one is an unmounted disk, not a directory
    /// to invent on the root file system).
    Dir {
        dir: PathBuf,
        /// `dir` must be a mount point (else the copy would land on the root file system).
        require_mount: bool,
    },
    /// A program (argv, no shell) that gets the file's bytes on stdin.
    Command { argv: Vec<String> },
}

impl Target {
    /// How status, metrics and errors name it: the directory, or the program and its arguments.
    pub fn label(&self) -> String {
        match self {
            Target::Dir { dir, .. } => dir.display().to_string(),
            Target::Command { argv } => format!("command {}", argv.join(" ")),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            dir: Option<PathBuf>,
            #[serde(default)]
            require_mount: bool,
            #[serde(default)]
            command: Option<Vec<String>>,
        }
        let raw = Raw::deserialize(de)?;
        let err = |m: &str| <D::Error as serde::de::Error>::custom(m);
        match (raw.dir, raw.command) {
            (Some(dir), None) => {
                if !dir.is_absolute() {
                    return Err(err(&format!(
                        "`dir: {}` must be an absolute path",
                        dir.display()
                    )));
                }
                Ok(Target::Dir {
                    dir,
                    require_mount: raw.require_mount,
                })
            }
            (None, Some(argv)) => {
                if raw.require_mount {
                    return Err(err("`require_mount` is for `dir:` targets"));
                }
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(err(
                        "`command:` must be an argv list naming a program (no shell); it gets the file on stdin",
                    ));
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(err("`command:` may not contain NUL"));
                }
                Ok(Target::Command { argv })
            }
            _ => Err(err(
                "a target is `dir: /absolute/path` or `command: [program, args…]`, exactly one",
            )),
        }
    }
}

/// `keep:`: versions kept per file on each directory target (1 to [`MAX_KEEP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Keep(pub u32);

impl Default for Keep {
    fn default() -> Self {
        Keep(DEFAULT_KEEP)
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(de)?;
        if !(1..=MAX_KEEP).contains(&n) {
            return Err(serde::de::Error::custom(format!(
                "`keep: {n}` must be 1 to {MAX_KEEP} versions"
            )));
        }
        Ok(Keep(n))
    }
}

/// `alert_after:`: `10m`, `1h` (1 minute to 7 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertAfter(#[serde(with = "secs")] pub Duration);

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl Default for AlertAfter {
    fn default() -> Self {
        AlertAfter(DEFAULT_ALERT_AFTER)
    }
}

impl FromStr for AlertAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let d = parse_duration(text).map_err(|e| format!("`{text}` {e}"))?;
        if d < Duration::from_secs(60) || d > Duration::from_secs(7 * 86_400) {
            return Err(format!("`{text}` must be 1 minute to 7 days"));
        }
        Ok(AlertAfter(d))
    }
}

impl<'de> Deserialize<'de> for AlertAfter {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_yaml_str(de)
    }
}

/// `backup:` as written in a manifest, validated as a whole (no live database, unique names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupSpec {
    pub files: Vec<BackupFile>,
    pub targets: Vec<Target>,
    pub keep: Keep,
    pub alert_after: AlertAfter,
    /// More file-name suffixes this app's live databases end in (refused like `channel.db`).
    pub live_databases: Vec<String>,
}

impl<'de> Deserialize<'de> for BackupSpec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            files: Vec<BackupFile>,
            targets: Vec<Target>,
            #[serde(default)]
            keep: Keep,
            #[serde(default)]
            alert_after: AlertAfter,
            #[serde(default)]
            live_databases: Vec<String>,
        }
        let raw = Raw::deserialize(de)?;
        let spec = BackupSpec {
            files: raw.files,
            targets: raw.targets,
            keep: raw.keep,
            alert_after: raw.alert_after,
            live_databases: raw.live_databases,
        };
        spec.check().map_err(serde::de::Error::custom)?;
        Ok(spec)
    }
}

impl BackupSpec {
    /// The rules across entries.
    fn check(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("`files:` must name at least one file".into());
        }
        if self.targets.is_empty() {
            return Err("`targets:` must name at least one `dir:` or `command:`".into());
        }
        if let Some(empty) = self.live_databases.iter().find(|s| s.is_empty()) {
            return Err(format!(
                "`live_databases:` entry `{empty}` may not be empty"
            ));
        }
        for file in &self.files {
            if let Some(suffix) = file.is_live_database(&self.live_databases) {
                return Err(format!(
                    "`{file}` is a live database (its name ends in `{suffix}`): it is never copied while it is written"
                ));
            }
        }
        let mut names: Vec<&str> = self.files.iter().map(BackupFile::name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "two files are named `{}`: their copies on a target would collide",
                pair[0]
            ));
        }
        Ok(())
    }

    /// Every file's volume (or host directory) must be one the app mounts (`volumes` as written:
    /// `SOURCE:DEST[:OPTIONS]`).
    pub fn check_sources<'a>(
        &self,
        volumes: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<(), String> {
        for file in &self.files {
            let mounted = volumes
                .clone()
                .any(|v| v.split(':').next() == Some(file.source_str()));
            if !mounted {
                return Err(format!(
                    "`{file}`: `{}` is not one of the app's `volumes`",
                    file.source_str()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<BackupSpec, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_channel_backup_in_a_volume_parses() {
        let s = spec(
            "files: [\"lnd-data:/data/chain/bitcoin/mainnet/channel.backup\"]\ntargets:\n  - dir: /mnt/usb\n    require_mount: true\n  - command: [rclone, rcat, \"r:x\"]\nkeep: 3\nalert_after: 10m\n",
        )
        .unwrap();
        let f = &s.files[0];
        assert_eq!(f.source, Source::Volume("lnd-data".into()));
        assert_eq!(
            f.path,
            Path::new("data/chain/bitcoin/mainnet/channel.backup")
        );
        assert_eq!(f.name(), "channel.backup");
        assert_eq!(
            f.as_str(),
            "lnd-data:/data/chain/bitcoin/mainnet/channel.backup"
        );
        assert_eq!(s.keep, Keep(3));
        assert_eq!(s.alert_after, AlertAfter(Duration::from_secs(600)));
        assert_eq!(
            s.targets,
            vec![
                Target::Dir {
                    dir: "/mnt/usb".into(),
                    require_mount: true
                },
                Target::Command {
                    argv: vec!["rclone".into(), "rcat".into(), "r:x".into()]
                }
            ]
        );
        assert!(s.check_sources(["lnd-data:/root/.lnd"].into_iter()).is_ok());
        assert!(s
            .check_sources(["other:/root/.lnd"].into_iter())
            .unwrap_err()
            .contains("not one of the app's `volumes`"));
    }

    #[test]
    fn live_databases_globs_and_bad_targets_are_refused() {
        let t = "targets: [{dir: /b}]\n";
        for (files, expect) in [
            (
                "[\"d:/data/graph/mainnet/channel.db\"]",
                "live database (its name ends in `channel.db`)",
            ),
            ("[\"d:/x/000123.ldb\"]", "`.ldb`"),
            ("[\"d:/tor/bolt_state.db\"]", "`bolt_state.db`"),
            ("[\"d:/data/*.backup\"]", "no glob"),
            ("[\"d:/data/../etc/shadow\"]", "`..`"),
            ("[\"d:data/x\"]", "absolute path to a file"),
            ("[\"channel.backup\"]", "VOLUME:/path"),
            ("[]", "at least one file"),
            ("[\"a:/x/f\", \"b:/y/f\"]", "two files are named `f`"),
        ] {
            let err = spec(&format!("files: {files}\n{t}")).unwrap_err();
            assert!(err.contains(expect), "{files}: {err}");
        }
        let err = spec(
            "files: [\"d:/x/wallet.sqlite\"]\ntargets: [{dir: /b}]\nlive_databases: [.sqlite]\n",
        )
        .unwrap_err();
        assert!(err.contains("ends in `.sqlite`"), "{err}");
        for (targets, expect) in [
            ("[{dir: rel}]", "absolute path"),
            ("[{command: []}]", "argv list"),
            ("[{dir: /a, command: [x]}]", "exactly one"),
            (
                "[{command: [x], require_mount: true}]",
                "for `dir:` targets",
            ),
            ("[]", "at least one"),
        ] {
            let err = spec(&format!("files: [\"d:/f\"]\ntargets: {targets}\n")).unwrap_err();
            assert!(err.contains(expect), "{targets}: {err}");
        }
        let err = spec("files: [\"d:/f\"]\ntargets: [{dir: /b}]\nkeep: 0\n").unwrap_err();
        assert!(err.contains("1 to 1000"), "{err}");
        let err = spec("files: [\"d:/f\"]\ntargets: [{dir: /b}]\nalert_after: 5s\n").unwrap_err();
        assert!(err.contains("1 minute to 7 days"), "{err}");
    }
}
