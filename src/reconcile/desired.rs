//! The desire stage: what container each app should have. Pure apart from reading the build
//! context and env files to hash them; podman is not asked.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::ctx::Ctx;
use crate::images::{self, HashCache};
use crate::manifest::Manifest;
use crate::spec::{ContainerSpec, Resolved};

/// The container an app should have, its spec hash (the label that detects drift), and the
/// image it runs (how to make that image present).
#[derive(Debug, Clone)]
pub struct DesiredApp {
    pub spec: ContainerSpec,
    pub hash: String,
    pub image: images::Resolved,
}

/// The container an app should have: image resolved, consumed files hashed. `rendered` holds the
/// desired content hash of each rendered config file by path. Also used by `archy quadlet`, so
/// a unit carries the same spec hash reconcile computes.
pub fn desired_app(
    ctx: &Ctx,
    m: &Manifest,
    gateway: &str,
    rendered: &BTreeMap<String, String>,
    cache: Option<&Mutex<HashCache>>,
) -> Result<DesiredApp> {
    let image = images::resolve_with(m, cache)?;
    let mut file_hashes = BTreeMap::new();
    for config in &m.configs {
        let key = config.path.display().to_string();
        if let Some(hash) = rendered.get(&key) {
            file_hashes.insert(key, hash.clone());
        }
    }
    for file in &m.env_files {
        let key = file.display().to_string();
        let hash = match rendered.get(&key) {
            Some(hash) => hash.clone(),
            None => crate::spec::sha256_hex(
                &std::fs::read(file)
                    .with_context(|| format!("failed to read env file {key} of app {}", m.app))?,
            ),
        };
        file_hashes.insert(key, hash);
    }
    let spec = ContainerSpec::from_manifest(
        m,
        Resolved {
            image: image.reference.clone(),
            default_network: &ctx.settings.network,
            subnet: &ctx.settings.subnet,
            gateway,
            file_hashes,
        },
    );
    let hash = spec.hash();
    Ok(DesiredApp { spec, hash, image })
}
