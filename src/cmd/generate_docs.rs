//! Hidden `archy generate-docs`: writes man pages (clap_mangen) and shell completions
//! (clap_complete) so the committed copies can be refreshed; a test fails when they are stale.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

#[derive(Debug, clap::Args)]
pub struct GenerateDocsArgs {
    /// Directory for man pages.
    #[arg(long, default_value = "man")]
    pub man_dir: PathBuf,
    /// Directory for shell completions.
    #[arg(long, default_value = "completions")]
    pub completions_dir: PathBuf,
}

pub fn run(args: &GenerateDocsArgs) -> Result<u8> {
    for (path, bytes) in render_all()? {
        let target = match (path.strip_prefix("man/"), path.strip_prefix("completions/")) {
            (Some(page), _) => args.man_dir.join(page),
            (None, Some(file)) => args.completions_dir.join(file),
            (None, None) => {
                anyhow::bail!("generated file {path} is neither a man page nor a completion")
            }
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        crate::fsutil::write_atomic(&target, &bytes, 0o644)?;
        println!("wrote {}", target.display());
    }
    Ok(0)
}

/// Every generated file as (repository-relative path, contents).
pub fn render_all() -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut page)
        .context("failed to render man page archy.8")?;
    files.push(("man/archy.8".to_string(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("archy-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).display_name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub)
            .section("8")
            .render(&mut page)
            .with_context(|| format!("failed to render man page {name}.8"))?;
        files.push((format!("man/{name}.8"), page));
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "archy.bash"),
        (clap_complete::Shell::Zsh, "_archy"),
        (clap_complete::Shell::Fish, "archy.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "archy", &mut out);
        files.push((format!("completions/{file}"), out));
    }
    Ok(files)
}

/// Files under `root` that differ from what the current CLI generates.
pub fn stale_files(root: &Path) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (path, bytes) in render_all()? {
        if std::fs::read(root.join(&path)).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(path);
        }
    }
    Ok(stale)
}
