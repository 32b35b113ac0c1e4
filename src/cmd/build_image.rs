//! `archy build-image`: build the local images of `build:` apps that are missing (content-derived
//! tags make "missing" the same as "changed"), and prune archy images nothing references.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::images::{self, EnsureOptions, Ensured};
use crate::lock::Mode;
use crate::output::OutputFormat;

/// Build missing images of apps with a `build:` context; a second run builds nothing.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildImageArgs {
    /// Only these apps (default: every app with `build:`).
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Rebuild even when the image for the current context exists.
    #[arg(long)]
    pub force: bool,
    /// Show what would be built or removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove `localhost/archy-<app>:*` images no manifest or container references.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    app: String,
    image: String,
    /// "up to date", "built", "would build", "failed".
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Pruned {
    image: String,
    /// "removed", "would remove", "failed".
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(ctx: &Ctx, args: &BuildImageArgs) -> Result<u8> {
    let loaded = ctx.load_manifests_for(&args.apps)?;
    // Shared with reconcile's builds, exclusive against heal-podman's repairs: heal-podman never
    // removes the working container of a build that runs.
    let _lock = if args.dry_run {
        None
    } else {
        let own = ctx.lock("build-image", Mode::Exclusive)?;
        Some((own, ctx.lock("heal-podman", Mode::Shared)?))
    };
    let progress = crate::logging::show_progress(ctx.settings.quiet)
        && ctx.settings.output == OutputFormat::Text;
    let mut entries = Vec::new();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for m in &loaded.apps {
        let wanted = m.build.is_some() && (args.apps.is_empty() || args.apps.contains(&m.app));
        let resolved = match images::resolve(m) {
            Ok(r) => r,
            Err(err) => {
                if wanted {
                    entries.push(Entry {
                        app: m.app.clone(),
                        image: String::new(),
                        result: "failed",
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
        let present = !args.force && ctx.podman.image_exists(&resolved.reference)?;
        let entry = if present {
            Entry {
                app: m.app.clone(),
                image: resolved.reference.clone(),
                result: "up to date",
                error: None,
            }
        } else if args.dry_run {
            Entry {
                app: m.app.clone(),
                image: resolved.reference.clone(),
                result: "would build",
                error: None,
            }
        } else {
            let options = EnsureOptions {
                force: true,
                mirrors: Vec::new(),
                progress,
            };
            match images::ensure(&ctx.podman, &m.app, &resolved, &options) {
                Ok(Ensured::Built) | Ok(_) => Entry {
                    app: m.app.clone(),
                    image: resolved.reference.clone(),
                    result: "built",
                    error: None,
                },
                Err(err) => Entry {
                    app: m.app.clone(),
                    image: resolved.reference.clone(),
                    result: "failed",
                    error: Some(crate::output::redact(&format!("{err:#}"))),
                },
            }
        };
        if let Some(error) = &entry.error {
            tracing::error!("{}: build failed: {error}", entry.app);
        }
        entries.push(entry);
    }
    let pruned = if args.prune {
        prune(ctx, &referenced, args.dry_run, !loaded.errors.is_empty())?
    } else {
        Vec::new()
    };
    let failed =
        entries.iter().any(|e| e.result == "failed") || pruned.iter().any(|p| p.result == "failed");
    let exit_code = if !loaded.errors.is_empty() {
        crate::exit::INVALID_INPUT
    } else if failed {
        crate::exit::FAILURE
    } else {
        crate::exit::SUCCESS
    };
    match ctx.settings.output {
        OutputFormat::Json => crate::output::print_json(
            &serde_json::json!({"ok": exit_code == 0, "exit_code": exit_code, "dry_run": args.dry_run, "images": entries, "pruned": pruned, "manifest_errors": loaded.errors}),
        ),
        OutputFormat::Text => print_text(&entries, &pruned),
    }
    Ok(exit_code)
}

/// One line per image and per pruned image, then the counts.
fn print_text(entries: &[Entry], pruned: &[Pruned]) {
    for e in entries {
        println!(
            "{:<20} {:<50} {}{}",
            e.app,
            e.image,
            e.result,
            e.error
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    for p in pruned {
        println!(
            "{:<20} {:<50} {}{}",
            "prune",
            p.image,
            p.result,
            p.error
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    let count = |r: &str| entries.iter().filter(|e| e.result == r).count();
    println!(
        "build-image: {} up to date, {} built, {} to build, {} failed, {} pruned",
        count("up to date"),
        count("built"),
        count("would build"),
        count("failed"),
        pruned.iter().filter(|p| p.result == "removed").count()
    );
}

/// Remove archy-built images that neither a manifest nor any container references.
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
    let mut out = Vec::new();
    for image in ctx.podman.images("localhost/archy-*")? {
        if in_use.contains(image.id.as_str()) {
            continue;
        }
        for name in &image.names {
            if !name.starts_with("localhost/archy-")
                || referenced.contains(name)
                || in_use.contains(name.as_str())
            {
                continue;
            }
            if dry_run {
                out.push(Pruned {
                    image: name.clone(),
                    result: "would remove",
                    error: None,
                });
                continue;
            }
            match ctx.podman.remove_image(name) {
                Ok(()) => {
                    tracing::info!("removed unreferenced image {name}");
                    out.push(Pruned {
                        image: name.clone(),
                        result: "removed",
                        error: None,
                    });
                }
                Err(err) => out.push(Pruned {
                    image: name.clone(),
                    result: "failed",
                    error: Some(format!("{err:#}")),
                }),
            }
        }
    }
    Ok(out)
}
