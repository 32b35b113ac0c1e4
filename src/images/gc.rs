//! `archy gc`: remove the images nothing needs — no manifest names them, no container (archy's
//! or anyone's) uses them, and they are not an app's current or **previous** image — registry
//! images included, so a node no longer fills its disk with every release's images. The
//! previous image stays so a rollback needs no registry.
//!
//! Which image each app ran is recorded by every reconcile tick from its one listing
//! (`<state-dir>/status/app-images.json`: `current`, and `previous` when the current one
//! changed), so the record costs no podman call. gc takes the reconcile lock: it never runs
//! between a tick's listing and its recreates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::lock::Mode;
use crate::podman::{Container, SizedImage};

/// One app's images by id: the one its container runs, and the one it ran before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppImages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// `status/app-images.json`: per app.
pub type Record = BTreeMap<String, AppImages>;

pub fn record_path(state_dir: &Path) -> PathBuf {
    crate::state::status_dir(state_dir).join("app-images.json")
}

pub fn read(state_dir: &Path) -> Record {
    std::fs::read(record_path(state_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Fold a listing into the record: an app whose container runs another image than recorded
/// gets that as `current` and the old one as `previous`. Returns whether anything changed. Pure.
pub fn note(record: &mut Record, managed: &[Container]) -> bool {
    let mut changed = false;
    for c in managed {
        let (Some(app), false) = (c.app(), c.image_id.is_empty()) else {
            continue;
        };
        let entry = record.entry(app.to_string()).or_default();
        if entry.current.as_deref() != Some(c.image_id.as_str()) {
            entry.previous = entry.current.take().or(entry.previous.take());
            entry.current = Some(c.image_id.clone());
            changed = true;
        }
    }
    changed
}

/// [`note`] for a reconcile tick: read the record, write it only when it changed. A failure is
/// a warning (never a failed tick).
pub fn note_images(state_dir: &Path, managed: &[Container]) {
    let mut record = read(state_dir);
    if !note(&mut record, managed) {
        return;
    }
    let write = || -> Result<()> {
        let dir = crate::state::status_dir(state_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create directory {}", dir.display()))?;
        let text = serde_json::to_string_pretty(&record)?;
        crate::fsutil::replace_quick(&record_path(state_dir), text.as_bytes(), 0o644)
    };
    if let Err(err) = write() {
        tracing::warn!("could not record the apps' images: {err:#}");
    }
}

/// Why an image stays, or that it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision", content = "why")]
pub enum Decision {
    /// A container uses it (named).
    UsedBy(String),
    /// A manifest names it (the app).
    Desired(String),
    /// An app's current image as last recorded (the app).
    Current(String),
    /// An app's previous image, kept for a rollback (the app).
    Previous(String),
    /// An app's last-known-good image or the one before it (`images::lkg`), kept for its
    /// health-gated rollback.
    LastKnownGood,
    Remove,
}

/// Decide per image (pure): containers' images, manifests' references and the record's
/// current and previous images stay; the rest goes.
pub fn plan(
    images: &[SizedImage],
    containers: &[Container],
    desired: &BTreeMap<String, String>,
    record: &Record,
    last_known_good: &BTreeSet<String>,
) -> Vec<(SizedImage, Decision)> {
    let desired: BTreeMap<String, &str> = desired
        .iter()
        .map(|(app, reference)| (crate::guard::registry::normalise(reference), app.as_str()))
        .collect();
    images
        .iter()
        .map(|image| {
            let used = containers
                .iter()
                .find(|c| !c.image_id.is_empty() && image.id.starts_with(&c.image_id))
                .map(|c| Decision::UsedBy(c.name().to_string()));
            let named = || {
                image
                    .names
                    .iter()
                    .find_map(|n| desired.get(&crate::guard::registry::normalise(n)))
                    .map(|app| Decision::Desired((*app).to_string()))
            };
            let recorded = || {
                record.iter().find_map(|(app, r)| {
                    if r.current
                        .as_deref()
                        .is_some_and(|id| image.id.starts_with(id))
                    {
                        Some(Decision::Current(app.clone()))
                    } else if r
                        .previous
                        .as_deref()
                        .is_some_and(|id| image.id.starts_with(id))
                    {
                        Some(Decision::Previous(app.clone()))
                    } else {
                        None
                    }
                })
            };
            let good = || {
                super::lkg::is_kept(last_known_good, &image.id).then_some(Decision::LastKnownGood)
            };
            let decision = used
                .or_else(named)
                .or_else(recorded)
                .or_else(good)
                .unwrap_or(Decision::Remove);
            (image.clone(), decision)
        })
        .collect()
}

/// What gc did with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Kept,
    Removed,
    /// `--dry-run`: would be removed.
    WouldRemove,
    /// podman refused (an image another image builds on, one a container took meanwhile).
    Failed,
}

/// One image's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageResult {
    /// Short id (12 hex).
    pub id: String,
    pub names: Vec<String>,
    pub size_bytes: u64,
    pub result: Outcome,
    #[serde(flatten)]
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: u8,
    pub dry_run: bool,
    /// Bytes removed (or, in a dry run, that would be).
    pub freed_bytes: u64,
    pub images: Vec<ImageResult>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
}

/// Run gc: under the reconcile lock (exclusive) and heal-podman's (shared), list images and
/// containers, resolve every manifest's image, decide, remove (or list in a dry run).
pub fn run(ctx: &Ctx, opts: Options) -> Result<Report> {
    let _locks = (
        ctx.lock("reconcile", Mode::Exclusive)?,
        ctx.lock("heal-podman", Mode::Shared)?,
    );
    let loaded = ctx.load_manifests()?;
    if let Some(e) = loaded.errors.first() {
        // A manifest that cannot be read may name an image: removing it would be a guess.
        return Err(crate::exit::invalid(format!(
            "{e}; gc removes nothing while a manifest is invalid"
        )));
    }
    let mut desired = BTreeMap::new();
    for m in &loaded.apps {
        let resolved = super::resolve(m)
            .with_context(|| format!("failed to resolve the image of app {}", m.app))?;
        desired.insert(m.app.clone(), resolved.reference);
    }
    let containers = ctx.podman.list_all()?;
    let images = ctx.podman.images_sized()?;
    let record = read(&ctx.settings.state_dir);
    let last_known_good = super::lkg::kept_image_ids(&ctx.settings.state_dir);
    let mut results = Vec::new();
    let mut removed_ids = BTreeSet::new();
    for (image, decision) in plan(&images, &containers, &desired, &record, &last_known_good) {
        let short = crate::podman::short_id(&image.id).to_string();
        let mut result = ImageResult {
            id: short,
            names: image.names.clone(),
            size_bytes: image.size,
            result: Outcome::Kept,
            decision: decision.clone(),
            error: None,
        };
        if decision == Decision::Remove {
            if opts.dry_run {
                result.result = Outcome::WouldRemove;
            } else {
                match ctx.podman.remove_image(&image.id) {
                    Ok(()) => {
                        tracing::info!("removed image {} ({:?})", result.id, image.names);
                        removed_ids.insert(image.id.clone());
                        result.result = Outcome::Removed;
                    }
                    Err(err) => {
                        result.result = Outcome::Failed;
                        result.error = Some(
                            crate::exec::failed_stderr(&err)
                                .map_or_else(|| format!("{err:#}"), |s| crate::exec::tail(s, 2)),
                        );
                    }
                }
            }
        }
        results.push(result);
    }
    let freed_bytes = results
        .iter()
        .filter(|r| matches!(r.result, Outcome::Removed | Outcome::WouldRemove))
        .map(|r| r.size_bytes)
        .sum();
    let failed = results.iter().any(|r| r.result == Outcome::Failed);
    let exit_code = if failed {
        crate::exit::FAILURE
    } else {
        crate::exit::SUCCESS
    };
    Ok(Report {
        ok: !failed,
        exit_code,
        dry_run: opts.dry_run,
        freed_bytes,
        images: results,
    })
}

/// The text view (pure): one line per image removed or to remove, then the kept ones with why.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let size = |b: u64| crate::guard::space::human_bytes(b);
    let names = |r: &ImageResult| {
        if r.names.is_empty() {
            "<none>".to_string()
        } else {
            r.names.join(", ")
        }
    };
    for r in &report.images {
        let line = match (&r.result, &r.decision) {
            (Outcome::Removed, _) => format!(
                "removed      {} {} ({})",
                r.id,
                names(r),
                size(r.size_bytes)
            ),
            (Outcome::WouldRemove, _) => {
                format!(
                    "would remove {} {} ({})",
                    r.id,
                    names(r),
                    size(r.size_bytes)
                )
            }
            (Outcome::Failed, _) => format!(
                "FAILED       {} {}: {}",
                r.id,
                names(r),
                r.error.as_deref().unwrap_or("?")
            ),
            (Outcome::Kept, d) => format!(
                "kept         {} {} ({})",
                r.id,
                names(r),
                match d {
                    Decision::UsedBy(c) => format!("used by container {c}"),
                    Decision::Desired(app) => format!("named by app {app}"),
                    Decision::Current(app) => format!("app {app}'s current image"),
                    Decision::Previous(app) =>
                        format!("app {app}'s previous image, for a rollback"),
                    Decision::LastKnownGood => "an app's last-known-good image".into(),
                    Decision::Remove => "?".into(),
                }
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} {}\n",
        if report.dry_run {
            "would free"
        } else {
            "freed"
        },
        size(report.freed_bytes)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::LABEL_APP;

    fn image(id: &str, names: &[&str]) -> SizedImage {
        SizedImage {
            id: id.into(),
            names: names.iter().map(|s| (*s).to_string()).collect(),
            size: 1000,
        }
    }

    fn running(app: &str, image_id: &str) -> Container {
        Container {
            id: format!("c-{app}"),
            names: vec![format!("archy-{app}")],
            state: crate::podman::ContainerState::Running,
            labels: [(LABEL_APP.to_string(), app.to_string())].into(),
            image_id: image_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn references_are_normalised_as_podman_names_them() {
        assert_eq!(
            crate::guard::registry::normalise("nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            crate::guard::registry::normalise("lightninglabs/lnd:v0.18.4-beta"),
            "docker.io/lightninglabs/lnd:v0.18.4-beta"
        );
        assert_eq!(
            crate::guard::registry::normalise("localhost/x"),
            "localhost/x:latest"
        );
        assert_eq!(
            crate::guard::registry::normalise("reg:5000/a/b:1"),
            "reg:5000/a/b:1"
        );
        assert_eq!(
            crate::guard::registry::normalise("a@sha256:00"),
            "docker.io/library/a@sha256:00"
        );
    }

    #[test]
    fn the_record_keeps_the_image_an_app_ran_before() {
        let mut record = Record::new();
        assert!(note(&mut record, &[running("web", "aaa")]));
        assert!(!note(&mut record, &[running("web", "aaa")]), "unchanged");
        assert!(note(&mut record, &[running("web", "bbb")]));
        assert_eq!(
            record["web"],
            AppImages {
                current: Some("bbb".into()),
                previous: Some("aaa".into())
            }
        );
        note(&mut record, &[running("web", "ccc")]);
        assert_eq!(record["web"].previous.as_deref(), Some("bbb"));
    }

    #[test]
    fn only_what_nothing_needs_goes() {
        let images = [
            image("aaa111", &["localhost/web:1"]),
            image("bbb222", &["localhost/web:2"]),
            image("ccc333", &["docker.io/library/nginx:1.27"]),
            image("ddd444", &["localhost/old:9"]),
            image("eee555", &[]),
            image("fff666", &["localhost/other:1"]),
            image("ggg777", &["localhost/good:1"]),
        ];
        let mut other = running("x", "fff666");
        other.labels.clear();
        let containers = [running("web", "bbb222"), other];
        let desired = BTreeMap::from([("ui".to_string(), "nginx:1.27".to_string())]);
        let record = Record::from([(
            "web".to_string(),
            AppImages {
                current: Some("bbb222".into()),
                previous: Some("aaa111".into()),
            },
        )]);
        let good = BTreeSet::from(["ggg777".to_string()]);
        let decided: Vec<(String, Decision)> = plan(&images, &containers, &desired, &record, &good)
            .into_iter()
            .map(|(i, d)| (i.id, d))
            .collect();
        assert_eq!(
            decided,
            [
                ("aaa111".into(), Decision::Previous("web".into())),
                ("bbb222".into(), Decision::UsedBy("archy-web".into())),
                ("ccc333".into(), Decision::Desired("ui".into())),
                ("ddd444".into(), Decision::Remove),
                ("eee555".into(), Decision::Remove),
                ("fff666".into(), Decision::UsedBy("archy-x".into())),
                ("ggg777".into(), Decision::LastKnownGood),
            ]
        );
    }
}
