//! A node's state as Prometheus metrics, in the text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): `archy status --output
//! prometheus` prints it, and `archy reconcile --metrics-file PATH` writes it after every tick
//! for node_exporter's textfile collector.
//!
//! Pure: [`render`] turns a [`Snapshot`] into text; [`write_file`] replaces the file atomically
//! (temporary file in the same directory, then rename), so the collector never reads half a
//! file. No sample carries a timestamp (the textfile collector refuses them); times are
//! `*_timestamp_seconds` gauges instead.
//!
//! Names follow Prometheus' conventions (<https://prometheus.io/docs/practices/naming/>):
//! `archy_` prefix, base units in the name (`_seconds`), `_total` only on counters, closed sets
//! of outcomes as one series per outcome with the current one at 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One app's line.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSample {
    pub app: String,
    /// The container is running.
    pub up: bool,
    /// The app is healthy: its health probe passes; for an app without a probe, it is as
    /// desired (running, matching its manifest, configs current; or disabled and gone: its
    /// `converged`).
    pub healthy: bool,
    /// Times archy started, restarted, unpaused or recreated the container (a counter kept
    /// across runs).
    pub restarts: u64,
    /// The container differs from what its manifest asks for (spec-hash mismatch).
    pub spec_drift: bool,
    /// Config files of this app that differ from what would be rendered.
    pub config_drift_files: usize,
    /// Its last-known-good rollback and bad images.
    pub images: ImageSample,
    /// `bitcoin_rpc:`-probed apps: where the chain was at the last probe.
    pub chain: Option<ChainSample>,
}

/// An app's image rollback state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageSample {
    /// Rolled back to its last-known-good image, and nobody acknowledged it yet.
    pub rolled_back: bool,
    /// Images the app is kept from (they did not become healthy in their window).
    pub bad_images: usize,
}

/// A chain node's sync state (from its `bitcoin_rpc:` probe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainSample {
    pub blocks: u64,
    pub headers: u64,
    /// bitcoind's `verificationprogress`, 0–1.
    pub verification_progress: f64,
    pub initial_block_download: bool,
}

/// How a command's last run ended (closed set, one series each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    Failed,
    /// Its lock stayed held by another archy run (exit 75).
    Busy,
    Unknown,
}

impl RunResult {
    pub const ALL: [RunResult; 4] = [
        RunResult::Ok,
        RunResult::Failed,
        RunResult::Busy,
        RunResult::Unknown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Busy => "busy",
            RunResult::Unknown => "unknown",
        }
    }

    /// From the `result` text `archy status` summarises records into.
    pub fn from_label(label: &str) -> Self {
        match label {
            "ok" => RunResult::Ok,
            "failed" => RunResult::Failed,
            "busy" => RunResult::Busy,
            _ => RunResult::Unknown,
        }
    }
}

/// A command's last run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSample {
    pub result: RunResult,
    /// When it finished, Unix seconds.
    pub timestamp_seconds: Option<i64>,
    pub duration_seconds: Option<f64>,
}

/// Everything the metrics describe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub apps: Vec<AppSample>,
    pub manifests_invalid: usize,
    pub converged: bool,
    pub reconcile: Option<RunSample>,
    pub podman_heal: Option<RunSample>,
    /// The version an armed update waits to verify.
    pub update_pending: Option<String>,
    /// Versions that failed their boot check (the updater refuses them).
    pub bad_versions: Vec<String>,
    /// One per backed-up file and target.
    pub backups: Vec<BackupSample>,
    /// The disk and memory guard's series (crate::guard).
    pub guard: GuardSample,
}

/// The disk and memory guard's part of the metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardSample {
    /// Per app: OOM kills seen (`archy_app_oom_kills_total`).
    pub oom_kills: BTreeMap<String, u64>,
    /// Free space of podman's graph root, its volume path and the state dir.
    pub filesystems: Vec<FsSample>,
}

/// One file system's free space.
#[derive(Debug, Clone, PartialEq)]
pub struct FsSample {
    /// `graphroot`, `volumes` or `state-dir`.
    pub fs: &'static str,
    pub path: String,
    pub free_bytes: u64,
    pub size_bytes: u64,
    /// Below the threshold (`archy status --min-free`; the default after a tick).
    pub low: bool,
}

/// One backed-up file on one target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupSample {
    pub app: String,
    pub file: String,
    pub target: String,
    /// When archy last copied it there, Unix seconds.
    pub last_success_timestamp: Option<i64>,
    /// Seconds since then.
    pub age_seconds: Option<i64>,
    /// The target holds the file's current content.
    pub current: bool,
    /// The target's last check or copy failed.
    pub failing: bool,
    /// SHA-256 of the newest version the target holds.
    pub sha256: Option<String>,
}

/// Escape a label value: backslash, double quote and line feed (exposition format).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A metric family being written: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

fn bit(b: bool) -> u8 {
    u8::from(b)
}

/// The exposition text. Families without samples (no apps, no record yet) are left out.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(1024 + s.apps.len() * 400);
    render_node(&mut out, s);
    render_apps(&mut out, s);
    render_guard(&mut out, &s.guard);
    render_chains(&mut out, s);
    render_runs(&mut out, s);
    render_updates(&mut out, s);
    render_backups(&mut out, &s.backups);
    out
}

/// The guard's series: OOM kills per app.
fn render_guard(out: &mut String, g: &GuardSample) {
    if !g.oom_kills.is_empty() {
        let name = "archy_app_oom_kills_total";
        let mut f = family(
            out,
            name,
            "counter",
            "Times the kernel's OOM killer ended the app's container (seen by reconcile: podman's OOMKilled or the kernel log).",
        );
        for (app, kills) in &g.oom_kills {
            f.sample(name, &[("app", app)], *kills);
        }
    }
    if g.filesystems.is_empty() {
        return;
    }
    type FsValue = fn(&FsSample) -> f64;
    let per_fs: [(&str, &str, FsValue); 4] = [
        (
            "archy_filesystem_free_bytes",
            "Bytes free (for unprivileged writers) on the file system of podman's graph root, its volume path or archy's state dir.",
            |f| f.free_bytes as f64,
        ),
        (
            "archy_filesystem_size_bytes",
            "Size of that file system in bytes.",
            |f| f.size_bytes as f64,
        ),
        (
            "archy_filesystem_free_ratio",
            "Free bytes over size, 0 to 1.",
            |f| {
                if f.size_bytes == 0 {
                    0.0
                } else {
                    f.free_bytes as f64 / f.size_bytes as f64
                }
            },
        ),
        (
            "archy_filesystem_low",
            "1 when the file system's free space is below the threshold (archy status --min-free).",
            |f| f64::from(u8::from(f.low)),
        ),
    ];
    for (name, help, value) in per_fs {
        let mut fam = family(out, name, "gauge", help);
        for f in &g.filesystems {
            fam.sample(name, &[("fs", f.fs), ("path", &f.path)], value(f));
        }
    }
}

/// Whether the node is converged, and how many manifests are invalid.
fn render_node(out: &mut String, s: &Snapshot) {
    family(
        out,
        "archy_converged",
        "gauge",
        "1 when every app is converged, no manifest is invalid and the last podman heal did not fail.",
    )
    .sample("archy_converged", &[], bit(s.converged));
    family(
        out,
        "archy_manifests_invalid",
        "gauge",
        "Manifests that failed validation (their apps are skipped).",
    )
    .sample("archy_manifests_invalid", &[], s.manifests_invalid);
}

/// One series per app of each per-app family, then the drift total.
fn render_apps(out: &mut String, s: &Snapshot) {
    type AppValue = fn(&AppSample) -> u64;
    let per_app: [(&str, &str, &str, AppValue); 7] = [
        (
            "archy_app_up",
            "gauge",
            "1 when the app's container is running.",
            |a| u64::from(a.up),
        ),
        (
            "archy_app_healthy",
            "gauge",
            "1 when the app's health probe passes; for an app without a probe, 1 when it is as desired (running, matching its manifest, configs current).",
            |a| u64::from(a.healthy),
        ),
        (
            "archy_app_restarts_total",
            "counter",
            "Times archy started, restarted, unpaused or recreated the app's container.",
            |a| a.restarts,
        ),
        (
            "archy_app_spec_drift",
            "gauge",
            "1 when the app's container differs from its manifest (spec hash).",
            |a| u64::from(a.spec_drift),
        ),
        (
            "archy_app_config_drift_files",
            "gauge",
            "Config files of the app that differ from what would be rendered.",
            |a| a.config_drift_files as u64,
        ),
        (
            "archy_app_rolled_back",
            "gauge",
            "1 when the app was rolled back to its last-known-good image and that is not acknowledged.",
            |a| u64::from(a.images.rolled_back),
        ),
        (
            "archy_app_bad_images",
            "gauge",
            "Images the app is kept from: they did not become healthy within its rollback window.",
            |a| a.images.bad_images as u64,
        ),
    ];
    if !s.apps.is_empty() {
        for (name, kind, help, value) in per_app {
            let mut f = family(out, name, kind, help);
            for a in &s.apps {
                f.sample(name, &[("app", &a.app)], value(a));
            }
        }
    }
    family(
        out,
        "archy_config_drift_files",
        "gauge",
        "Config files that differ from what would be rendered, all apps.",
    )
    .sample(
        "archy_config_drift_files",
        &[],
        s.apps.iter().map(|a| a.config_drift_files).sum::<usize>(),
    );
}

/// The chain gauges of `bitcoin_rpc:`-probed apps (where their chain was at the last probe).
fn render_chains(out: &mut String, s: &Snapshot) {
    type ChainValue = fn(&ChainSample) -> f64;
    let per_chain: [(&str, &str, ChainValue); 4] = [
        (
            "archy_chain_blocks",
            "Blocks of the app's chain (bitcoind's `blocks`, from its bitcoin_rpc probe).",
            |c| c.blocks as f64,
        ),
        (
            "archy_chain_headers",
            "Headers the app's node knows (bitcoind's `headers`).",
            |c| c.headers as f64,
        ),
        (
            "archy_chain_verification_progress",
            "bitcoind's `verificationprogress` estimate, 0 to 1.",
            |c| c.verification_progress,
        ),
        (
            "archy_chain_initial_block_download",
            "1 while the app's node is in initial block download.",
            |c| f64::from(u8::from(c.initial_block_download)),
        ),
    ];
    if s.apps.iter().any(|a| a.chain.is_some()) {
        for (name, help, value) in per_chain {
            let mut f = family(out, name, "gauge", help);
            for a in &s.apps {
                if let Some(c) = &a.chain {
                    f.sample(name, &[("app", &a.app)], value(c));
                }
            }
        }
    }
}

/// How the last reconcile and heal-podman runs ended, when, and how long they took.
fn render_runs(out: &mut String, s: &Snapshot) {
    for (prefix, what, run) in [
        ("archy_reconcile_last", "reconcile", &s.reconcile),
        ("archy_podman_heal_last", "heal-podman", &s.podman_heal),
    ] {
        let Some(run) = run else { continue };
        let name = format!("{prefix}_result");
        let mut f = family(
            out,
            &name,
            "gauge",
            &format!("How the last {what} run ended: 1 on the series of its result."),
        );
        for r in RunResult::ALL {
            f.sample(&name, &[("result", r.label())], bit(run.result == r));
        }
        if let Some(at) = run.timestamp_seconds {
            let name = format!("{prefix}_timestamp_seconds");
            family(
                out,
                &name,
                "gauge",
                &format!("When the last {what} run finished, Unix time."),
            )
            .sample(&name, &[], at);
        }
        if let Some(secs) = run.duration_seconds {
            let name = format!("{prefix}_duration_seconds");
            family(
                out,
                &name,
                "gauge",
                &format!("How long the last {what} run took."),
            )
            .sample(&name, &[], secs);
        }
    }
}

/// The armed update, and the release versions refused after a failed boot check.
fn render_updates(out: &mut String, s: &Snapshot) {
    family(
        out,
        "archy_update_pending",
        "gauge",
        "1 while an armed update waits for its post-update check.",
    )
    .sample("archy_update_pending", &[], bit(s.update_pending.is_some()));
    if let Some(version) = &s.update_pending {
        family(
            out,
            "archy_update_pending_info",
            "gauge",
            "The version an armed update waits to verify.",
        )
        .sample("archy_update_pending_info", &[("version", version)], 1);
    }
    family(
        out,
        "archy_update_bad_versions",
        "gauge",
        "Release versions that failed their boot check and are refused.",
    )
    .sample("archy_update_bad_versions", &[], s.bad_versions.len());
    if !s.bad_versions.is_empty() {
        let mut f = family(
            out,
            "archy_update_bad_version_info",
            "gauge",
            "One series per release version that failed its boot check.",
        );
        for v in &s.bad_versions {
            f.sample("archy_update_bad_version_info", &[("version", v)], 1);
        }
    }
}

/// The backup families, per file and target (left out when no manifest backs anything up).
fn render_backups(out: &mut String, backups: &[BackupSample]) {
    if backups.is_empty() {
        return;
    }
    type Value = fn(&BackupSample) -> Option<i64>;
    let families: [(&str, &str, Value); 4] = [
        (
            "archy_backup_age_seconds",
            "Seconds since archy last copied the file to the target (no sample before the first copy).",
            |b| b.age_seconds,
        ),
        (
            "archy_backup_last_success_timestamp",
            "When archy last copied the file to the target, Unix time.",
            |b| b.last_success_timestamp,
        ),
        (
            "archy_backup_current",
            "1 when the target holds the file's current content.",
            |b| Some(i64::from(b.current)),
        ),
        (
            "archy_backup_target_failing",
            "1 when the target's last check or copy failed (missing, unmounted, read-only, full, command failed).",
            |b| Some(i64::from(b.failing)),
        ),
    ];
    for (name, help, value) in families {
        if backups.iter().all(|b| value(b).is_none()) {
            continue;
        }
        let mut f = family(out, name, "gauge", help);
        for b in backups {
            if let Some(v) = value(b) {
                f.sample(
                    name,
                    &[("app", &b.app), ("file", &b.file), ("target", &b.target)],
                    v,
                );
            }
        }
    }
    if backups.iter().all(|b| b.sha256.is_none()) {
        return;
    }
    let mut f = family(
        out,
        "archy_backup_info",
        "gauge",
        "The SHA-256 of the newest version a target holds.",
    );
    for b in backups {
        if let Some(sha) = &b.sha256 {
            f.sample(
                "archy_backup_info",
                &[
                    ("app", &b.app),
                    ("file", &b.file),
                    ("target", &b.target),
                    ("sha256", sha),
                ],
                1,
            );
        }
    }
}

/// Check a `--metrics-file` path before a run: it must name a file in a directory (a typo
/// like `--metrics-file /` is a usage error). Whether that directory exists, or a directory
/// stands where the file goes, is found when the file is written, after the tick converged:
/// metrics are a view, never a reason to leave an app stopped.
pub fn check_target(path: &Path) -> Result<(), String> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| format!("--metrics-file {} has no directory", path.display()))?;
    if path.file_name().is_none() {
        return Err(format!(
            "--metrics-file {} names no file, expected a file path like archy.prom",
            path.display()
        ));
    }
    Ok(())
}

/// Replace the metrics file atomically (mode 0644: node_exporter runs as its own user),
/// through a handle on its directory reached without following symlinks
/// ([`crate::fsutil::replace_under_dir`]): below a directory another user controls, a
/// directory that is not root's is refused. A symlink at the path is replaced, never written
/// through.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "failed to write metrics file {}: it is a directory, expected a file path like archy.prom",
            path.display()
        );
    }
    crate::fsutil::replace_under_dir(path, text.as_bytes(), 0o644)
        .with_context(|| format!("failed to write metrics file {}", path.display()))
}

/// `<state-dir>/status/restarts.json`: per app, how often archy started, restarted, unpaused
/// or recreated its container, across runs (the `archy_app_restarts_total` counter).
pub fn restarts_path(state_dir: &Path) -> PathBuf {
    crate::state::status_dir(state_dir).join("restarts.json")
}

/// The restart counters (none yet, or an unreadable file: all zero, with a warning).
pub fn read_restarts(state_dir: &Path) -> BTreeMap<String, u64> {
    let path = restarts_path(state_dir);
    match std::fs::read(&path) {
        Err(_) => BTreeMap::new(),
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring unreadable restart counters {}: {e}",
                path.display()
            );
            BTreeMap::new()
        }),
    }
}

/// Add one restart to each of `apps` (read, add, replace atomically, under a lock file so
/// parallel targeted reconciles never lose a count). Nothing to add: nothing is touched.
pub fn add_restarts(state_dir: &Path, apps: &[&str]) -> Result<()> {
    if apps.is_empty() {
        return Ok(());
    }
    let dir = crate::state::status_dir(state_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;
    let lock_path = dir.join("restarts.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("failed to open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;
    let mut counts = read_restarts(state_dir);
    for app in apps {
        *counts.entry((*app).to_string()).or_default() += 1;
    }
    let text = serde_json::to_string_pretty(&counts)?;
    crate::fsutil::replace_quick(&restarts_path(state_dir), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_counters_add_up_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_restarts(dir.path()).is_empty());
        add_restarts(dir.path(), &[]).unwrap();
        assert!(
            !restarts_path(dir.path()).exists(),
            "nothing to add writes nothing"
        );
        add_restarts(dir.path(), &["lnd", "web"]).unwrap();
        add_restarts(dir.path(), &["lnd"]).unwrap();
        let counts = read_restarts(dir.path());
        assert_eq!(counts.get("lnd"), Some(&2));
        assert_eq!(counts.get("web"), Some(&1));
        std::fs::write(restarts_path(dir.path()), "not json").unwrap();
        assert!(read_restarts(dir.path()).is_empty());
    }

    fn app(name: &str, up: bool) -> AppSample {
        AppSample {
            app: name.into(),
            up,
            healthy: up,
            restarts: 2,
            spec_drift: !up,
            config_drift_files: usize::from(!up),
            images: ImageSample::default(),
            chain: None,
        }
    }

    #[test]
    fn chain_gauges_for_nodes_probed_by_bitcoin_rpc_only() {
        let mut node = app("bitcoin-knots", true);
        node.chain = Some(ChainSample {
            blocks: 512_000,
            headers: 870_000,
            verification_progress: 0.412,
            initial_block_download: true,
        });
        let s = Snapshot {
            apps: vec![node, app("lnd", true)],
            manifests_invalid: 0,
            converged: true,
            reconcile: None,
            podman_heal: None,
            update_pending: None,
            bad_versions: vec![],
            backups: vec![],
            guard: GuardSample::default(),
        };
        let text = render(&s);
        let chain: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("archy_chain_"))
            .collect();
        assert_eq!(
            chain,
            [
                "archy_chain_blocks{app=\"bitcoin-knots\"} 512000",
                "archy_chain_headers{app=\"bitcoin-knots\"} 870000",
                "archy_chain_verification_progress{app=\"bitcoin-knots\"} 0.412",
                "archy_chain_initial_block_download{app=\"bitcoin-knots\"} 1",
            ]
        );
        assert!(text.contains("# TYPE archy_chain_blocks gauge\n"));
        let none = Snapshot {
            apps: vec![app("lnd", true)],
            ..s
        };
        assert!(!render(&none).contains("archy_chain"));
    }

    #[test]
    fn exposition_is_exact() {
        let s = Snapshot {
            apps: vec![app("lnd", true), app("bitcoin-ui", false)],
            manifests_invalid: 1,
            converged: false,
            reconcile: Some(RunSample {
                result: RunResult::Failed,
                timestamp_seconds: Some(1_800_000_000),
                duration_seconds: Some(0.0125),
            }),
            podman_heal: Some(RunSample {
                result: RunResult::Ok,
                timestamp_seconds: Some(1_799_999_000),
                duration_seconds: None,
            }),
            update_pending: Some("1.7.41".into()),
            bad_versions: vec!["1.7.40".into()],
            backups: vec![],
            guard: GuardSample::default(),
        };
        let expected = r#"# HELP archy_converged 1 when every app is converged, no manifest is invalid and the last podman heal did not fail.
# TYPE archy_converged gauge
archy_converged 0
# HELP archy_manifests_invalid Manifests that failed validation (their apps are skipped).
# TYPE archy_manifests_invalid gauge
archy_manifests_invalid 1
# HELP archy_app_up 1 when the app's container is running.
# TYPE archy_app_up gauge
archy_app_up{app="lnd"} 1
archy_app_up{app="bitcoin-ui"} 0
# HELP archy_app_healthy 1 when the app's health probe passes; for an app without a probe, 1 when it is as desired (running, matching its manifest, configs current).
# TYPE archy_app_healthy gauge
archy_app_healthy{app="lnd"} 1
archy_app_healthy{app="bitcoin-ui"} 0
# HELP archy_app_restarts_total Times archy started, restarted, unpaused or recreated the app's container.
# TYPE archy_app_restarts_total counter
archy_app_restarts_total{app="lnd"} 2
archy_app_restarts_total{app="bitcoin-ui"} 2
# HELP archy_app_spec_drift 1 when the app's container differs from its manifest (spec hash).
# TYPE archy_app_spec_drift gauge
archy_app_spec_drift{app="lnd"} 0
archy_app_spec_drift{app="bitcoin-ui"} 1
# HELP archy_app_config_drift_files Config files of the app that differ from what would be rendered.
# TYPE archy_app_config_drift_files gauge
archy_app_config_drift_files{app="lnd"} 0
archy_app_config_drift_files{app="bitcoin-ui"} 1
# HELP archy_app_rolled_back 1 when the app was rolled back to its last-known-good image and that is not acknowledged.
# TYPE archy_app_rolled_back gauge
archy_app_rolled_back{app="lnd"} 0
archy_app_rolled_back{app="bitcoin-ui"} 0
# HELP archy_app_bad_images Images the app is kept from: they did not become healthy within its rollback window.
# TYPE archy_app_bad_images gauge
archy_app_bad_images{app="lnd"} 0
archy_app_bad_images{app="bitcoin-ui"} 0
# HELP archy_config_drift_files Config files that differ from what would be rendered, all apps.
# TYPE archy_config_drift_files gauge
archy_config_drift_files 1
# HELP archy_reconcile_last_result How the last reconcile run ended: 1 on the series of its result.
# TYPE archy_reconcile_last_result gauge
archy_reconcile_last_result{result="ok"} 0
archy_reconcile_last_result{result="failed"} 1
archy_reconcile_last_result{result="busy"} 0
archy_reconcile_last_result{result="unknown"} 0
# HELP archy_reconcile_last_timestamp_seconds When the last reconcile run finished, Unix time.
# TYPE archy_reconcile_last_timestamp_seconds gauge
archy_reconcile_last_timestamp_seconds 1800000000
# HELP archy_reconcile_last_duration_seconds How long the last reconcile run took.
# TYPE archy_reconcile_last_duration_seconds gauge
archy_reconcile_last_duration_seconds 0.0125
# HELP archy_podman_heal_last_result How the last heal-podman run ended: 1 on the series of its result.
# TYPE archy_podman_heal_last_result gauge
archy_podman_heal_last_result{result="ok"} 1
archy_podman_heal_last_result{result="failed"} 0
archy_podman_heal_last_result{result="busy"} 0
archy_podman_heal_last_result{result="unknown"} 0
# HELP archy_podman_heal_last_timestamp_seconds When the last heal-podman run finished, Unix time.
# TYPE archy_podman_heal_last_timestamp_seconds gauge
archy_podman_heal_last_timestamp_seconds 1799999000
# HELP archy_update_pending 1 while an armed update waits for its post-update check.
# TYPE archy_update_pending gauge
archy_update_pending 1
# HELP archy_update_pending_info The version an armed update waits to verify.
# TYPE archy_update_pending_info gauge
archy_update_pending_info{version="1.7.41"} 1
# HELP archy_update_bad_versions Release versions that failed their boot check and are refused.
# TYPE archy_update_bad_versions gauge
archy_update_bad_versions 1
# HELP archy_update_bad_version_info One series per release version that failed its boot check.
# TYPE archy_update_bad_version_info gauge
archy_update_bad_version_info{version="1.7.40"} 1
"#;
        assert_eq!(render(&s), expected);
    }

    #[test]
    fn an_empty_node_leaves_out_families_without_samples() {
        let text = render(&Snapshot {
            converged: true,
            ..Default::default()
        });
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                "archy_converged 1",
                "archy_manifests_invalid 0",
                "archy_config_drift_files 0",
                "archy_update_pending 0",
                "archy_update_bad_versions 0",
            ]
        );
        assert!(!text.contains("archy_app_up"), "{text}");
        assert!(!text.contains("archy_backup"), "{text}");
    }

    #[test]
    fn backups_are_per_file_and_target() {
        let copied = BackupSample {
            app: "lnd".into(),
            file: "lnd-data:/data/channel.backup".into(),
            target: "/mnt/usb".into(),
            last_success_timestamp: Some(1_800_000_000),
            age_seconds: Some(30),
            current: true,
            failing: false,
            sha256: Some("ab12".into()),
        };
        let never = BackupSample {
            target: "command rclone rcat r:x".into(),
            failing: true,
            last_success_timestamp: None,
            age_seconds: None,
            current: false,
            sha256: None,
            ..copied.clone()
        };
        let text = render(&Snapshot {
            backups: vec![copied, never],
            ..Default::default()
        });
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("archy_backup"))
            .collect();
        let l = r#"{app="lnd",file="lnd-data:/data/channel.backup",target="/mnt/usb"}"#;
        let c =
            r#"{app="lnd",file="lnd-data:/data/channel.backup",target="command rclone rcat r:x"}"#;
        assert_eq!(
            samples,
            [
                format!("archy_backup_age_seconds{l} 30"),
                format!("archy_backup_last_success_timestamp{l} 1800000000"),
                format!("archy_backup_current{l} 1"),
                format!("archy_backup_current{c} 0"),
                format!("archy_backup_target_failing{l} 0"),
                format!("archy_backup_target_failing{c} 1"),
                r#"archy_backup_info{app="lnd",file="lnd-data:/data/channel.backup",target="/mnt/usb",sha256="ab12"} 1"#.to_string(),
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        let text = render(&Snapshot {
            bad_versions: vec!["1\"2".into()],
            ..Default::default()
        });
        assert!(
            text.contains("archy_update_bad_version_info{version=\"1\\\"2\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_metrics_file_needs_a_directory_and_a_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_target(&dir.path().join("archy.prom")).is_ok());
        // Found when writing, after the tick: not a reason to skip it.
        assert!(check_target(&dir.path().join("missing/archy.prom")).is_ok());
        assert!(check_target(Path::new("archy.prom"))
            .unwrap_err()
            .contains("has no directory"));
        assert!(check_target(Path::new("/")).is_err());
        let err = write_file(dir.path(), "x\n").unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
        let err = write_file(&dir.path().join("missing/archy.prom"), "x\n").unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("textfile")).unwrap();
        let err = write_file(&dir.path().join("textfile/archy.prom"), "x\n").unwrap_err();
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn the_file_is_replaced_not_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("archy.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_file(&path, "archy_converged 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "archy_converged 1\n"
        );
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
