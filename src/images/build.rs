//! `archy build-image`'s engine: build the local images of `build:` apps that are missing
//! (content-derived tags make "missing" the same as "changed"), and prune archy images nothing
//! references. One [`BuildReport`] out; the command prints it.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{EnsureOptions, Ensured};
use crate::ctx::Ctx;
use crate::lock::Mode;
use crate::manifest::ManifestError;

/// What to build and how.
#[derive(Debug, Clone, Default)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches, not a state
pub struct Options {
    /// Only these apps (empty: every app with `build:`).
    pub apps: Vec<String>,
    /// Rebuild even when the image for the current context exists.
    pub force: bool,
    /// Say what would be built or removed; change nothing.
    pub dry_run: bool,
    /// Remove `localhost/archy-<app>:*` images no manifest or container references.
    pub prune: bool,
    /// A spinner with the current build step.
    pub progress: bool,
}

/// What happened to one app's image (printed as these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BuildResult {
    #[serde(rename = "up to date")]
    UpToDate,
    #[serde(rename = "built")]
    Built,
    #[serde(rename = "would build")]
    WouldBuild,
    #[serde(rename = "failed")]
    Failed,
}

/// What happened to one unreferenced image (printed as these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PruneResult {
    #[serde(rename = "removed")]
    Removed,
    #[serde(rename = "would remove")]
    WouldRemove,
    #[serde(rename = "failed")]
    Failed,
}

impl BuildResult {
    /// The word printed (the same as its JSON).
    pub fn word(self) -> &'static str {
        match self {
            Self::UpToDate => "up to date",
            Self::Built => "built",
            Self::WouldBuild => "would build",
            Self::Failed => "failed",
        }
    }
}

impl PruneResult {
    /// The word printed (the same as its JSON).
    pub fn word(self) -> &'static str {
        match self {
            Self::Removed => "removed",
            Self::WouldRemove => "would remove",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub app: String,
    pub image: String,
    pub result: BuildResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Pruned {
    pub image: String,
    pub result: PruneResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run: per-app images, pruned images, and the manifests that could not be loaded.
#[derive(Debug)]
pub struct BuildReport {
    pub images: Vec<Entry>,
    pub pruned: Vec<Pruned>,
    pub manifest_errors: Vec<ManifestError>,
}

impl BuildReport {
    /// 2 when a manifest is invalid, 1 when a build or removal failed, else 0.
    pub fn exit_code(&self) -> u8 {
        let failed = self.images.iter().any(|e| e.result == BuildResult::Failed)
            || self.pruned.iter().any(|p| p.result == PruneResult::Failed);
        if !self.manifest_errors.is_empty() {
            crate::exit::INVALID_INPUT
        } else if failed {
            crate::exit::FAILURE
        } else {
            crate::exit::SUCCESS
        }
    }

    /// How many images ended with `result`.
    pub fn count(&self, result: BuildResult) -> usize {
        self.images.iter().filter(|e| e.result == result).count()
    }
}

pub fn run(ctx: &Ctx, opts: &Options) -> Result<BuildReport> {
    let loaded = ctx.load_manifests_for(&opts.apps)?;
    // Shared with reconcile's builds, exclusive against heal-podman's repairs: heal-podman never
    // removes the working container of a build that runs.
    let _lock = if opts.dry_run {
        None
    } else {
        let own = ctx.lock("build-image", Mode::Exclusive)?;
        Some((own, ctx.lock("heal-podman", Mode::Shared)?))
    };
    let mut images = Vec::new();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for m in &loaded.apps {
        let wanted = m.build.is_some() && (opts.apps.is_empty() || opts.apps.contains(&m.app));
        let resolved = match super::resolve(m) {
            Ok(r) => r,
            Err(err) => {
                if wanted {
                    images.push(Entry {
                        app: m.app.clone(),
                        image: String::new(),
                        result: BuildResult::Failed,
                        error: Some(format!("{err:#}")),
                    });
                }
                continue;
            }
        };
        referenced.insert(resolved.reference.clone());
        if !wanted {
            continue;
        }
        let present = !opts.force && ctx.podman.image_exists(&resolved.reference)?;
        let (result, error) = if present {
            (BuildResult::UpToDate, None)
        } else if opts.dry_run {
            (BuildResult::WouldBuild, None)
        } else {
            let options = EnsureOptions {
                force: true,
                mirrors: Vec::new(),
                progress: opts.progress,
            };
            match super::ensure(&ctx.podman, &m.app, &resolved, &options) {
                Ok(Ensured::Built | _) => (BuildResult::Built, None),
                Err(err) => (
                    BuildResult::Failed,
                    Some(crate::output::redact(&format!("{err:#}"))),
                ),
            }
        };
        if let Some(error) = &error {
            tracing::error!("{}: build failed: {error}", m.app);
        }
        images.push(Entry {
            app: m.app.clone(),
            image: resolved.reference.clone(),
            result,
            error,
        });
    }
    let pruned = if opts.prune {
        prune(ctx, &referenced, opts.dry_run, !loaded.errors.is_empty())?
    } else {
        Vec::new()
    };
    Ok(BuildReport {
        images,
        pruned,
        manifest_errors: loaded.errors,
    })
}

/// Remove archy-built images that neither a manifest nor any container references, nor an
/// app's image record keeps as its way back ([`super::lkg::kept_image_ids`]).
fn prune(
    ctx: &Ctx,
    referenced: &BTreeSet<String>,
    dry_run: bool,
    manifests_invalid: bool,
) -> Result<Vec<Pruned>> {
    if manifests_invalid {
        tracing::warn!("not pruning images: some manifests are invalid and may reference them");
        return Ok(Vec::new());
    }
    let containers = ctx.podman.list_all()?;
    let in_use: BTreeSet<&str> = containers
        .iter()
        .flat_map(|c| [c.image.as_str(), c.image_id.as_str()])
        .collect();
    // Each app's way back (its last-known-good image and the one before) stays, as in gc.
    let kept = super::lkg::kept_image_ids(&ctx.settings.state_dir);
    let mut out = Vec::new();
    for image in ctx.podman.images("localhost/archy-*")? {
        if in_use.contains(image.id.as_str()) {
            continue;
        }
        if super::lkg::is_kept(&kept, &image.id) {
            tracing::info!(
                "keeping image {} ({:?}): an app's last-known-good image",
                crate::podman::short_id(&image.id),
                image.names
            );
            continue;
        }
        for name in &image.names {
            if !name.starts_with("localhost/archy-")
                || referenced.contains(name)
                || in_use.contains(name.as_str())
            {
                continue;
            }
            let pruned = |result, error| Pruned {
                image: name.clone(),
                result,
                error,
            };
            if dry_run {
                out.push(pruned(PruneResult::WouldRemove, None));
                continue;
            }
            match ctx.podman.remove_image(name) {
                Ok(()) => {
                    tracing::info!("removed unreferenced image {name}");
                    out.push(pruned(PruneResult::Removed, None));
                }
                Err(err) => out.push(pruned(PruneResult::Failed, Some(format!("{err:#}")))),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialise_to_the_words_build_image_printed() {
        let all = [
            BuildResult::UpToDate,
            BuildResult::Built,
            BuildResult::WouldBuild,
            BuildResult::Failed,
        ];
        for r in all {
            assert_eq!(serde_json::to_value(r).unwrap(), r.word());
        }
        let words: Vec<String> = all
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(
            words,
            [
                r#""up to date""#,
                r#""built""#,
                r#""would build""#,
                r#""failed""#
            ]
        );
        let all = [
            PruneResult::Removed,
            PruneResult::WouldRemove,
            PruneResult::Failed,
        ];
        for r in all {
            assert_eq!(serde_json::to_value(r).unwrap(), r.word());
        }
        let words: Vec<String> = all
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(words, [r#""removed""#, r#""would remove""#, r#""failed""#]);
    }

    #[test]
    fn exit_code_invalid_manifests_first_then_failures() {
        let entry = |result| Entry {
            app: "a".into(),
            image: "i".into(),
            result,
            error: None,
        };
        let mut report = BuildReport {
            images: vec![entry(BuildResult::Built), entry(BuildResult::UpToDate)],
            pruned: Vec::new(),
            manifest_errors: Vec::new(),
        };
        assert_eq!(report.exit_code(), 0);
        report.pruned.push(Pruned {
            image: "x".into(),
            result: PruneResult::Failed,
            error: None,
        });
        assert_eq!(report.exit_code(), 1);
        report.manifest_errors.push(ManifestError {
            file: "x.yaml".into(),
            app: None,
            message: "m".into(),
        });
        assert_eq!(report.exit_code(), 2);
        assert_eq!(report.count(BuildResult::Built), 1);
    }
}
