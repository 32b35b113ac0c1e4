//! Config rendering (filled in by the render-config work).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Ctx;
use crate::manifest::Manifest;

/// What happened to one config file.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub app: String,
    pub path: String,
    pub render: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct RenderOutcome {
    pub files: Vec<FileResult>,
    /// sha256 of each rendered file's desired content, by path.
    pub file_hashes: BTreeMap<String, String>,
    /// Apps with a config that failed to render, with the error.
    pub app_errors: BTreeMap<String, String>,
}

pub fn render_apps(
    _ctx: &Ctx,
    _apps: &[&Manifest],
    _dry_run: bool,
    _check: bool,
) -> Result<RenderOutcome> {
    Ok(RenderOutcome::default())
}
