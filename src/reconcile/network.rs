//! archy's podman network: create it when missing, move it to a changed `--subnet`.

use anyhow::{Context, Result};

use crate::ctx::Ctx;
use crate::manifest::Loaded;
use crate::podman::{Container, LABEL_SUBNET};

/// Whether some managed container on archy's network was created for another subnet: the
/// `--subnet` setting changed. Containers from before the subnet label say nothing. Pure.
pub fn subnet_changed(managed: &[Container], network: &str, subnet: &str) -> bool {
    managed.iter().any(|c| {
        c.networks.iter().any(|n| n == network)
            && c.labels
                .get(LABEL_SUBNET)
                .is_some_and(|recorded| recorded != subnet)
    })
}

/// Move archy's network to the configured subnet: podman only removes a network nothing uses,
/// and every container on it is recreated in this run anyway (its host alias changed), so
/// archy's containers on it are removed first (volumes kept, each with its stop timeout).
/// Unmanaged containers on the network make the network removal fail with podman's error.
pub fn migrate_network(ctx: &Ctx, managed: &[Container], loaded: &Loaded) -> Result<()> {
    let name = &ctx.settings.network;
    if let Some(network) = ctx.podman.inspect_network(name)? {
        if network
            .subnets
            .iter()
            .any(|s| s.subnet == ctx.settings.subnet)
        {
            return Ok(());
        }
    }
    tracing::warn!(
        "the subnet of network {name} changes to {}: recreating it and the containers on it",
        ctx.settings.subnet
    );
    for c in managed
        .iter()
        .filter(|c| c.networks.iter().any(|n| n == name))
    {
        let stop_timeout = c
            .app()
            .and_then(|app| loaded.get(app))
            .and_then(|m| m.stop_timeout)
            .unwrap_or(10);
        ctx.podman.remove(&c.id, stop_timeout).with_context(|| {
            format!(
                "failed to remove container {} to move network {name}",
                c.name()
            )
        })?;
    }
    ensure_network(ctx)
}

/// Create archy's network if missing; recreate it when its subnet is wrong and nothing uses it.
pub fn ensure_network(ctx: &Ctx) -> Result<()> {
    let name = &ctx.settings.network;
    let subnet = &ctx.settings.subnet;
    let gateway = ctx.gateway()?;
    match ctx.podman.inspect_network(name)? {
        Some(network) if network.subnets.iter().any(|s| &s.subnet == subnet) => Ok(()),
        Some(network) => {
            let found: Vec<&str> = network.subnets.iter().map(|s| s.subnet.as_str()).collect();
            tracing::warn!(
                "network {name} has subnet {} instead of {subnet}; recreating it",
                found.join(",")
            );
            ctx.podman.remove_network(name).with_context(|| {
                format!(
                    "network {name} has the wrong subnet ({}) and could not be removed",
                    found.join(",")
                )
            })?;
            ctx.podman.create_network(name, subnet, &gateway)
        }
        None => {
            tracing::info!("creating network {name} ({subnet}, gateway {gateway})");
            ctx.podman.create_network(name, subnet, &gateway)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(network: &str, subnet: Option<&str>) -> Container {
        let mut c = Container {
            id: "x".into(),
            networks: vec![network.into()],
            ..Default::default()
        };
        if let Some(subnet) = subnet {
            c.labels.insert(LABEL_SUBNET.into(), subnet.into());
        }
        c
    }

    #[test]
    fn subnet_change_is_seen_only_on_archys_network_with_a_recorded_subnet() {
        assert!(subnet_changed(
            &[on("archy", Some("10.89.0.0/24"))],
            "archy",
            "10.90.0.0/24"
        ));
        assert!(!subnet_changed(
            &[on("archy", Some("10.89.0.0/24"))],
            "archy",
            "10.89.0.0/24"
        ));
        assert!(
            !subnet_changed(&[on("archy", None)], "archy", "10.90.0.0/24"),
            "no label: unknown, not changed"
        );
        assert!(!subnet_changed(
            &[on("other", Some("10.89.0.0/24"))],
            "archy",
            "10.90.0.0/24"
        ));
    }
}
