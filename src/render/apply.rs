//! Rendering onto disk: compare each desired file with the one there, rewrite only what
//! differs (atomically, never through a symlink), mark consumers for a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::ctx::Ctx;
use crate::lock::Mode;
use crate::manifest::{ConfigFile, Manifest, Renderer};
use crate::rpc_users::Consumer;
use crate::secret::Secret;

use super::renderers::render;
use super::salt::{secret_and_salt, Salts};
use super::{rpc_consumers, FileResult, FileStatus, RenderInput, RenderOutcome};

/// The container name of the first app that renders bitcoin.conf: the bitcoind host for configs
/// whose settings name no `rpchost` (`render_one` prefers that setting).
pub(super) fn bitcoin_host(all: &[Manifest]) -> Option<String> {
    all.iter()
        .find(|m| {
            m.configs
                .iter()
                .any(|c| c.renderer() == Renderer::BitcoinConf)
        })
        .map(|m| m.container_name())
}

/// Render every `configs:` entry of `apps`. `all` is every valid manifest (to find bitcoind).
/// `write` false (dry run, `--check`) changes nothing on disk and creates no secret.
pub fn render_apps(
    ctx: &Ctx,
    apps: &[&Manifest],
    all: &[Manifest],
    write: bool,
) -> Result<RenderOutcome> {
    let mut outcome = RenderOutcome::default();
    if apps.iter().all(|m| m.configs.is_empty()) {
        return Ok(outcome);
    }
    let _lock = if write {
        Some(ctx.lock("render-config", Mode::Exclusive)?)
    } else {
        None
    };
    let state_dir = &ctx.settings.state_dir;
    let consumers = rpc_consumers(all);
    let consumer_names: BTreeSet<String> = consumers.iter().map(|c| c.name.clone()).collect();
    let (secret, salts) = match secret_and_salt(state_dir, &consumer_names, write) {
        Ok(pair) => pair,
        Err(err) => {
            // A broken secret fails the apps that consume configs, not the others.
            let message = crate::output::redact(&format!("{err:#}"));
            tracing::error!("{message}");
            for m in apps.iter().filter(|m| !m.configs.is_empty()) {
                outcome
                    .app_errors
                    .insert(m.app.clone(), format!("canonical secret: {message}"));
                for config in &m.configs {
                    outcome.files.push(FileResult {
                        app: m.app.clone(),
                        path: config.path.display().to_string(),
                        render: config.renderer(),
                        status: FileStatus::Failed,
                        error: Some(message.clone()),
                    });
                }
            }
            return Ok(outcome);
        }
    };
    let gateway = ctx.gateway()?;
    let default_host = bitcoin_host(all);
    let pending = crate::state::pending_dir(state_dir);
    let mut done: BTreeMap<PathBuf, (String, FileStatus)> = BTreeMap::new();
    for m in apps {
        for config in &m.configs {
            let result = render_one(
                config,
                m,
                &secret,
                &salts,
                default_host.as_deref(),
                &consumers,
                &ctx.settings.subnet,
                &gateway,
                write,
                state_dir,
                &mut done,
            );
            match result {
                Ok((hash, status)) => {
                    if status != FileStatus::Unchanged {
                        outcome.changed_consumers.insert(m.app.clone());
                    }
                    outcome
                        .file_hashes
                        .insert(config.path.display().to_string(), hash);
                    outcome.files.push(FileResult {
                        app: m.app.clone(),
                        path: config.path.display().to_string(),
                        render: config.renderer(),
                        status,
                        error: None,
                    });
                }
                Err(err) => {
                    let message = crate::output::redact(&format!("{err:#}"));
                    tracing::error!("{}: config {}: {message}", m.app, config.path.display());
                    outcome.app_errors.insert(
                        m.app.clone(),
                        format!("config {}: {message}", config.path.display()),
                    );
                    outcome.files.push(FileResult {
                        app: m.app.clone(),
                        path: config.path.display().to_string(),
                        render: config.renderer(),
                        status: FileStatus::Failed,
                        error: Some(message),
                    });
                }
            }
        }
    }
    // Consumers of a file rewritten in an earlier, interrupted run still need their restart.
    if let Ok(entries) = fs::read_dir(&pending) {
        for entry in entries.flatten() {
            let app = entry.file_name().to_string_lossy().into_owned();
            if apps.iter().any(|m| m.app == app) {
                outcome.changed_consumers.insert(app);
            }
        }
    }
    Ok(outcome)
}

/// Clear an app's pending-restart mark after its container was (re)started.
pub fn clear_pending(state_dir: &Path, app: &str) {
    let path = crate::state::pending_dir(state_dir).join(app);
    if path.exists() {
        if let Err(err) = fs::remove_file(&path) {
            tracing::warn!("could not clear {}: {err}", path.display());
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn render_one(
    config: &ConfigFile,
    m: &Manifest,
    secret: &Secret,
    salts: &Salts,
    default_host: Option<&str>,
    consumers: &[Consumer],
    subnet: &str,
    gateway: &str,
    write: bool,
    state_dir: &Path,
    done: &mut BTreeMap<PathBuf, (String, FileStatus)>,
) -> Result<(String, FileStatus)> {
    let host = config
        .settings
        .get("rpchost")
        .map(|s| s.0.clone())
        .or_else(|| default_host.map(String::from));
    let renderer = config.renderer();
    let host = match host {
        Some(h) => h,
        None if renderer.rpc_consumer(&config.settings).is_some() => bail!("no app renders bitcoin.conf, so the bitcoin host is unknown; set `rpchost` in this config's settings"),
        None => String::new(),
    };
    let mut settings = config.settings.clone();
    settings.remove("rpchost");
    let input = RenderInput {
        secret,
        salt: &salts.canonical,
        user_salts: &salts.users,
        bitcoin_host: &host,
        subnet,
        gateway,
        app: &m.app,
        consumers,
    };
    let desired =
        render(renderer, &settings, &input).with_context(|| format!("renderer {renderer}"))?;
    let hash = crate::spec::sha256_hex(desired.as_bytes());
    if let Some((previous_hash, status)) = done.get(&config.path) {
        if previous_hash != &hash {
            bail!(
                "{} is also listed by another app with different content",
                config.path.display()
            );
        }
        return Ok((hash, *status));
    }
    let path = &config.path;
    // Never through a symlinked directory, and before creating any directory on the way.
    crate::fsutil::check_no_symlinked_parents(path)?;
    let owner_ids = config.owner_ids()?;
    // archy creates the directories it owns (under the state dir); a dry run reports "would
    // create" for a file whose directory it would make.
    let creatable = path
        .parent()
        .is_some_and(|p| !p.exists() && p.starts_with(state_dir));
    if write {
        create_owned_parent(path, state_dir, config.dir_mode_bits())?;
    }
    if write || !creatable {
        crate::fsutil::check_writable_target(path)?;
    }
    let mode = config.mode_bits();
    // The owner and group the manifest names, else archy's own user and group: never whoever
    // created the file before (a user who pre-created it would read every password written
    // into it).
    let owner = match owner_ids {
        Some((uid, gid)) => (
            uid.unwrap_or_else(crate::procinfo::euid),
            gid.unwrap_or_else(crate::procinfo::egid),
        ),
        None => (crate::procinfo::euid(), crate::procinfo::egid()),
    };
    let current = crate::fsutil::read_optional(path)?;
    let meta = fs::metadata(path).ok();
    let status = match (&current, &meta) {
        (None, _) if write => FileStatus::Created,
        (None, _) => FileStatus::WouldCreate,
        (Some(bytes), Some(meta))
            if bytes == desired.as_bytes()
                && meta.permissions().mode() & 0o7777 == mode
                && meta.uid() == owner.0
                && meta.gid() == owner.1 =>
        {
            FileStatus::Unchanged
        }
        _ if write => FileStatus::WrittenDrift,
        _ => FileStatus::WouldWriteDrift,
    };
    if write && status != FileStatus::Unchanged {
        let pending = &crate::state::pending_dir(state_dir);
        crate::fsutil::ensure_dir(pending, 0o755)?;
        crate::fsutil::write_atomic(&pending.join(&m.app), b"", 0o644)?;
        crate::fsutil::write_atomic_owned(path, desired.as_bytes(), mode, Some(owner))
            .with_context(|| format!("failed to write {}", path.display()))?;
        tracing::info!("{}: {} {}", m.app, status, path.display());
    }
    done.insert(path.clone(), (hash.clone(), status));
    Ok((hash, status))
}

/// Create the missing directories between the state dir and `path`'s parent (archy owns them),
/// each with `mode`. A missing parent outside the state dir stays an error (a wrong path, or a
/// directory the package should have made).
pub(super) fn create_owned_parent(path: &Path, state_dir: &Path, mode: u32) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.exists() || !parent.starts_with(state_dir) {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.exists() {
        missing.push(dir);
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        // The state dir itself holds the secrets: 0700 like the package makes it.
        let made = if dir == state_dir {
            0o700
        } else if dir.starts_with(state_dir) {
            mode
        } else {
            0o755
        };
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to create directory {}", dir.display()))
            }
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(made))
            .with_context(|| format!("failed to set mode {made:o} on {}", dir.display()))?;
        tracing::info!("created directory {}", dir.display());
    }
    Ok(())
}
