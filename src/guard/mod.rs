//! The disk and memory guard (issue 25): OOM kills seen (`oom`), free space watched (`space`)
//! (images are collected by `images::gc`),
//! and what `archy status` shows of them. The `logging:` and `resources:` keys themselves are manifest values
//! (`manifest::resources`).

pub mod oom;
pub mod registry;
pub mod space;

use serde::Serialize;

/// The guard's part of `archy status` (flattened into its JSON document).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct View {
    /// Apps the kernel's OOM killer ended at least once (as recorded by reconcile ticks).
    pub oom_kills: Vec<OomView>,
    /// Free space of podman's graph root, its volume path and the state dir (statvfs).
    pub filesystems: Vec<space::FsView>,
}

/// One app's OOM kills.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OomView {
    pub app: String,
    /// OOM kills seen, across runs.
    pub kills: u64,
    /// When the last one exited (RFC 3339).
    pub last_at: Option<String>,
    pub container: Option<String>,
    pub evidence: Option<oom::Evidence>,
    /// The container's memory limit then, in bytes (None: unlimited).
    pub memory_limit: Option<u64>,
}

impl OomView {
    /// The status text line.
    pub fn describe(&self) -> String {
        let last = match (&self.last_at, self.evidence) {
            (Some(at), Some(evidence)) => format!(
                ", last at {at} ({}; evidence: {})",
                oom::limit_text(self.memory_limit),
                evidence.describe()
            ),
            _ => String::new(),
        };
        format!(
            "app {}: OOM-killed {} time{}{last}",
            self.app,
            self.kills,
            if self.kills == 1 { "" } else { "s" }
        )
    }
}

/// The view of the recorded OOM kills of `apps` (pure).
pub fn oom_views<'a>(record: &oom::Record, apps: impl Iterator<Item = &'a str>) -> Vec<OomView> {
    apps.filter_map(|app| {
        let entry = record.get(app).filter(|e| e.kills > 0)?;
        let last = entry.last.as_ref();
        Some(OomView {
            app: app.to_string(),
            kills: entry.kills,
            last_at: last.map(|k| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(k.exited_at.max(0) as u64),
                )
                .to_string()
            }),
            container: last.map(|k| k.container.clone()),
            evidence: last.map(|k| k.evidence),
            memory_limit: last.and_then(|k| k.memory_limit),
        })
    })
    .collect()
}
