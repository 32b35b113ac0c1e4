//! A release layout for verify-update / rollback tests: releases 1 and 2 under a temp install
//! root, `current -> releases/2`, `previous -> releases/1`, and a restart command that logs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Out;

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A whole release `<root>/releases/<v>`: web-ui/index.html ("release <v>") and an executable
/// bin/archipelago, modes as a release tarball must have them.
pub fn write_release(root: &Path, v: &str) {
    let dir = root.join("releases").join(v);
    std::fs::create_dir_all(dir.join("web-ui")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("web-ui/index.html"), format!("release {v}")).unwrap();
    std::fs::write(dir.join("bin/archipelago"), "#!/bin/sh\n").unwrap();
    for d in ["", "web-ui", "bin"] {
        set_mode(&dir.join(d), 0o755);
    }
    set_mode(&dir.join("web-ui/index.html"), 0o644);
    set_mode(&dir.join("bin/archipelago"), 0o755);
}

/// A restart command for ARCHY_RESTART_CMD (`/bin/sh <script> now`) that appends a line to
/// `log`, then sleeps `delay` seconds (a window to be killed in).
pub fn write_restart_script(script: &Path, log: &Path, delay: Option<&str>) {
    let sleep = delay.map(|d| format!("sleep {d}\n")).unwrap_or_default();
    std::fs::write(
        script,
        format!(
            "#!/bin/sh\necho \"restart $*\" >> '{}'\n{sleep}",
            log.display()
        ),
    )
    .unwrap();
}

pub struct Install {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub run: PathBuf,
    pub restart_log: PathBuf,
    pub restart_script: PathBuf,
}

impl Install {
    /// Releases 1 and 2 installed, `current -> releases/2`, `previous -> releases/1`.
    pub fn new() -> Self {
        Self::with_restart_delay(None)
    }

    /// Like `new`, with a restart command that sleeps (a window for kill -9).
    pub fn with_restart_delay(delay: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("opt");
        for v in ["1", "2"] {
            write_release(&root, v);
        }
        std::os::unix::fs::symlink("releases/2", root.join("current")).unwrap();
        std::os::unix::fs::symlink("releases/1", root.join("previous")).unwrap();
        let restart_log = tmp.path().join("restarts.log");
        let restart_script = tmp.path().join("restart.sh");
        write_restart_script(&restart_script, &restart_log, delay);
        Install {
            state: tmp.path().join("state"),
            run: tmp.path().join("run"),
            root,
            restart_log,
            restart_script,
            _tmp: tmp,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_archy"));
        cmd.args(args)
            .env("ARCHY_STATE_DIR", &self.state)
            .env("ARCHY_RUN_DIR", &self.run)
            .env("ARCHY_INSTALL_ROOT", &self.root)
            .env(
                "ARCHY_RESTART_CMD",
                format!("/bin/sh '{}' now", self.restart_script.display()),
            )
            .env_remove("ARCHY_LOG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn archy(&self, args: &[&str]) -> Out {
        Out::from(self.command(args).output().unwrap())
    }

    pub fn current(&self) -> String {
        std::fs::read_link(self.root.join("current"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn restarts(&self) -> usize {
        std::fs::read_to_string(&self.restart_log).map_or(0, |t| t.lines().count())
    }

    pub fn update_file(&self, name: &str) -> PathBuf {
        self.state.join("update").join(name)
    }

    pub fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.update_file("history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn arm(&self) {
        let out = self.archy(&["verify-update", "--arm"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
}

/// A web-ui release tarball at `path`: `./` (mode `root_mode`), `web-ui/`, and
/// `web-ui/index.html` holding `page`.
pub fn web_ui_tarball(path: &Path, root_mode: u32, page: &[u8]) -> PathBuf {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        builder.append_data(&mut h, path, data).unwrap();
    };
    add("./", tar::EntryType::Directory, root_mode, b"");
    add("web-ui/", tar::EntryType::Directory, 0o755, b"");
    add("web-ui/index.html", tar::EntryType::Regular, 0o644, page);
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}
