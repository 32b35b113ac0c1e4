//! OOM kills seen: an app whose container exited by the kernel's OOM killer is counted in
//! `<state-dir>/status/oom.json`, logged by reconcile and shown by `archy status` and the
//! `archy_app_oom_kills_total` counter.
//!
//! Only exited containers whose exit code is 137 (SIGKILL, what the OOM killer sends) and whose
//! exit was not looked at before are inspected, so a no-op tick stays one podman call. Evidence,
//! in order: podman's `State.OOMKilled`; then the kernel log (`/dev/kmsg`), whose
//! `oom-kill:… oom_memcg=…/libpod-<id>` line names the container's memory cgroup. Measured on
//! this project's cgroup-v1 (hybrid) host with podman 4.3.1 and runc: a hog under `--memory
//! 32m` exits 137 with `OOMKilled=false`, its cgroup (`memory/libpod_parent/libpod-<id>`, where
//! `memory.oom_control` counts `oom_kill`) is removed when the container exits, and the kernel
//! log line stays. A SIGKILL from elsewhere (a stop timeout, `kill -9`) leaves no such line and
//! is not counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::podman::{Container, InspectedExit};

/// The exit code of a process killed by SIGKILL (128 + 9), as the OOM killer kills.
pub const SIGKILL_EXIT: i32 = 137;

/// What showed that the kernel's OOM killer ended the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Evidence {
    /// podman's `State.OOMKilled` (conmon saw the cgroup's OOM event).
    PodmanOomKilled,
    /// The kernel log's `oom-kill:` line naming the container's memory cgroup.
    KernelLog,
}

impl Evidence {
    pub fn describe(self) -> &'static str {
        match self {
            Evidence::PodmanOomKilled => "podman's OOMKilled",
            Evidence::KernelLog => "the kernel log's oom-kill line for its memory cgroup",
        }
    }
}

/// One OOM kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    /// When the container exited, Unix seconds (podman's `ExitedAt`).
    pub exited_at: i64,
    /// The container's short id.
    pub container: String,
    pub evidence: Evidence,
    /// Its `--memory` limit in bytes (None: unlimited, the host ran out).
    pub memory_limit: Option<u64>,
}

/// One app's OOM history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOom {
    /// OOM kills seen, across runs (the `archy_app_oom_kills_total` counter).
    pub kills: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<OomKill>,
    /// The last exit looked at (`<id>@<exited_at>`), so each exit is inspected once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
}

/// `status/oom.json`: per app.
pub type Record = BTreeMap<String, AppOom>;

/// An OOM kill this tick found, for the reconcile log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub app: String,
    pub kill: OomKill,
    pub kills: u64,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "app {}: container {} was OOM-killed ({}; evidence: {}); {} OOM kill{} so far",
            self.app,
            self.kill.container,
            limit_text(self.kill.memory_limit),
            self.kill.evidence.describe(),
            self.kills,
            if self.kills == 1 { "" } else { "s" }
        )
    }
}

/// "memory limit 32 MiB" or "no memory limit: the host ran out".
pub fn limit_text(limit: Option<u64>) -> String {
    match limit {
        Some(bytes) => format!("memory limit {} MiB", bytes / (1024 * 1024)),
        None => "no memory limit: the host ran out".into(),
    }
}

/// `<state-dir>/status/oom.json`.
pub fn record_path(state_dir: &Path) -> PathBuf {
    crate::state::status_dir(state_dir).join("oom.json")
}

/// The record (none yet, or unreadable: empty, with a warning).
pub fn read(state_dir: &Path) -> Record {
    let path = record_path(state_dir);
    match std::fs::read(&path) {
        Err(_) => Record::new(),
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring unreadable OOM record {}: {e}", path.display());
            Record::new()
        }),
    }
}

/// The key of one exit.
fn exit_key(c: &Container) -> String {
    format!("{}@{}", c.short_id(), c.exited_at)
}

/// Whether podman lists the container as exited (not running, paused or never started).
fn has_exited(c: &Container) -> bool {
    use crate::podman::ContainerState;
    matches!(c.state, ContainerState::Exited | ContainerState::Stopped) && c.exited_at > 0
}

/// Managed containers that exited by SIGKILL. Pure.
pub fn killed_exits(managed: &[Container]) -> Vec<&Container> {
    managed
        .iter()
        .filter(|c| c.app().is_some() && has_exited(c) && c.exit_code == SIGKILL_EXIT)
        .collect()
}

/// The verdict on one SIGKILLed exit: podman's word, else a kernel `oom-kill:` line naming the
/// container's id in its memory cgroup (`oom_memcg=` or `task_memcg=`). Pure.
pub fn verdict(inspected: &InspectedExit, kernel_lines: &[String]) -> Option<Evidence> {
    if inspected.state.oom_killed {
        return Some(Evidence::PodmanOomKilled);
    }
    let id = inspected.id.as_str();
    let names_it = |line: &str| {
        line.contains("oom-kill:")
            && !id.is_empty()
            && ["oom_memcg=", "task_memcg="].iter().any(|key| {
                line.split(',')
                    .filter_map(|field| field.strip_prefix(key))
                    .any(|cgroup| cgroup.contains(id))
            })
    };
    kernel_lines
        .iter()
        .any(|l| names_it(l))
        .then_some(Evidence::KernelLog)
}

/// Fold one looked-at exit into the record; returns the kill when it was one. Pure.
pub fn fold(record: &mut Record, app: &str, key: String, kill: Option<OomKill>) -> Option<Found> {
    let entry = record.entry(app.to_string()).or_default();
    entry.checked = Some(key);
    let kill = kill?;
    entry.kills += 1;
    entry.last = Some(kill.clone());
    Some(Found {
        app: app.to_string(),
        kill,
        kills: entry.kills,
    })
}

/// The kernel log's `oom-kill:` lines (`/dev/kmsg`, read without blocking to its end). An
/// unreadable log (no permission, no such device) is no evidence.
pub fn kernel_oom_lines() -> Vec<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    // One record per read; at most 8 KiB each (kernel's CONSOLE_EXT_LOG_MAX).
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                // `prio,seq,usec,flags;message\n`
                let message = text.split_once(';').map_or(&*text, |(_, m)| m);
                if message.contains("oom-kill:") {
                    lines.push(message.lines().next().unwrap_or("").to_string());
                }
            }
            // A record overwritten while reading: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(_) => break,
        }
    }
    lines
}

/// Look at this tick's SIGKILLed exits not looked at before: inspect each (one podman call
/// each), read the kernel log once if podman does not say, and record what was found. Nothing
/// to look at: no file read, no podman call.
pub fn observe(ctx: &crate::ctx::Ctx, managed: &[Container]) -> Result<Vec<Found>> {
    let killed = killed_exits(managed);
    if killed.is_empty() {
        return Ok(Vec::new());
    }
    let state_dir = &ctx.settings.state_dir;
    let mut record = read(state_dir);
    let fresh: Vec<&Container> = killed
        .into_iter()
        .filter(|c| {
            let app = c.app().unwrap_or_default();
            record.get(app).and_then(|a| a.checked.as_deref()) != Some(exit_key(c).as_str())
        })
        .collect();
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let mut kernel: Option<Vec<String>> = None;
    let mut found = Vec::new();
    for c in fresh {
        let app = c.app().unwrap_or_default();
        let inspected = match ctx.podman.inspect_exit(&c.id) {
            Ok(i) => i,
            Err(err) => {
                tracing::warn!(
                    "could not tell whether {} was OOM-killed: {err:#}",
                    c.name()
                );
                continue;
            }
        };
        let evidence = if inspected.state.oom_killed {
            verdict(&inspected, &[])
        } else {
            verdict(&inspected, kernel.get_or_insert_with(kernel_oom_lines))
        };
        let kill = evidence.map(|evidence| OomKill {
            exited_at: c.exited_at,
            container: c.short_id().to_string(),
            evidence,
            memory_limit: Some(inspected.host_config.memory).filter(|&m| m > 0),
        });
        found.extend(fold(&mut record, app, exit_key(c), kill));
    }
    write(state_dir, &record)?;
    Ok(found)
}

/// [`observe`] for a reconcile tick: each OOM kill found is a warning in its log; failing to
/// look is one too (never a failed tick).
pub fn tick(ctx: &crate::ctx::Ctx, managed: &[Container]) {
    match observe(ctx, managed) {
        Ok(found) => {
            for kill in found {
                tracing::warn!("{kill}");
            }
        }
        Err(err) => tracing::warn!("could not record OOM kills: {err:#}"),
    }
}

/// Replace the record atomically.
fn write(state_dir: &Path, record: &Record) -> Result<()> {
    let dir = crate::state::status_dir(state_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;
    let text = serde_json::to_string_pretty(record)?;
    crate::fsutil::replace_quick(&record_path(state_dir), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::{InspectedHostConfig, InspectedState, LABEL_APP};

    const ID: &str = "676db1e130dc87b41bd59c0621f13a9ab51a90a1ef5d777435eac676c22f7b11";

    /// The kernel's line for the measured hog (cgroup v1, runc, podman 4.3.1).
    const KERNEL_LINE: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=libpod-676db1e130dc87b41bd59c0621f13a9ab51a90a1ef5d777435eac676c22f7b11,mems_allowed=0,oom_memcg=/libpod_parent/libpod-676db1e130dc87b41bd59c0621f13a9ab51a90a1ef5d777435eac676c22f7b11,task_memcg=/libpod_parent/libpod-676db1e130dc87b41bd59c0621f13a9ab51a90a1ef5d777435eac676c22f7b11,task=sh,pid=6485,uid=0";

    fn exit(oom_killed: bool) -> InspectedExit {
        InspectedExit {
            id: ID.into(),
            state: InspectedState {
                oom_killed,
                exit_code: 137,
            },
            host_config: InspectedHostConfig { memory: 32 << 20 },
        }
    }

    fn container(state: &str, exit_code: i32) -> Container {
        Container {
            id: ID.into(),
            names: vec!["archy-hog".into()],
            state: crate::podman::ContainerState::parse(state),
            labels: [(LABEL_APP.to_string(), "hog".to_string())].into(),
            exit_code,
            exited_at: 1_796_531_460,
            ..Default::default()
        }
    }

    #[test]
    fn podman_or_the_kernel_log_tells_an_oom_kill() {
        assert_eq!(verdict(&exit(true), &[]), Some(Evidence::PodmanOomKilled));
        assert_eq!(
            verdict(&exit(false), &[KERNEL_LINE.to_string()]),
            Some(Evidence::KernelLog)
        );
        // Another container's OOM kill, or a SIGKILL with no kernel line, is not this one's.
        let other = KERNEL_LINE.replace("676db1e1", "99999999");
        assert_eq!(verdict(&exit(false), &[other]), None);
        assert_eq!(verdict(&exit(false), &[]), None);
    }

    #[test]
    fn only_sigkilled_exits_are_looked_at() {
        let managed = [
            container("exited", 137),
            Container {
                id: "b".into(),
                ..container("running", 137)
            },
            Container {
                id: "c".into(),
                ..container("exited", 1)
            },
            Container {
                id: "d".into(),
                labels: BTreeMap::new(),
                ..container("stopped", 137)
            },
        ];
        let ids: Vec<&str> = killed_exits(&managed)
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, [ID]);
    }

    #[test]
    fn each_exit_counts_once_and_the_counter_adds_up() {
        let mut record = Record::new();
        let kill = OomKill {
            exited_at: 1,
            container: "676db1e130dc".into(),
            evidence: Evidence::KernelLog,
            memory_limit: Some(32 << 20),
        };
        let found = fold(&mut record, "hog", "a@1".into(), Some(kill.clone())).unwrap();
        assert_eq!(
            found.to_string(),
            "app hog: container 676db1e130dc was OOM-killed (memory limit 32 MiB; evidence: the kernel log's oom-kill line for its memory cgroup); 1 OOM kill so far"
        );
        assert_eq!(fold(&mut record, "hog", "a@2".into(), None), None);
        assert_eq!(record["hog"].checked.as_deref(), Some("a@2"));
        let again = fold(&mut record, "hog", "a@3".into(), Some(kill)).unwrap();
        assert_eq!(again.kills, 2);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""evidence":"kernel-log""#), "{json}");
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }
}
