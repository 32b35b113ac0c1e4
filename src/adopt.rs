//! `reconcile --adopt`: replacing a container the old scripts left under a wanted name. The
//! replacement must find the old data where it mounts its volumes; when the old container keeps
//! it elsewhere (a named volume under another name, an anonymous volume, a host directory) the
//! adoption is refused with the exact command that moves the data, instead of starting the app
//! on an empty volume.

use crate::podman::Inspected;

/// Where a legacy container keeps the data at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    NamedVolume(String),
    AnonymousVolume(String),
    HostDir(String),
}

impl Holder {
    fn describe(&self) -> String {
        match self {
            Holder::NamedVolume(name) => format!("volume `{name}`"),
            Holder::AnonymousVolume(id) => format!("anonymous volume `{id}`"),
            Holder::HostDir(dir) => format!("host directory {dir} (a bind mount)"),
        }
    }

    /// A shell command streaming this data, as a tar archive, into `podman volume import`.
    fn export(&self) -> String {
        match self {
            Holder::NamedVolume(name) | Holder::AnonymousVolume(name) => {
                format!("podman volume export {name}")
            }
            Holder::HostDir(dir) => format!("tar -C {dir} -cf - ."),
        }
    }
}

/// podman names anonymous volumes with 64 hex digits.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Check that adopting `legacy` (named `container`) keeps its data: for every named volume
/// `name:/path` the manifest mounts, the legacy container has either nothing at `/path` or that
/// same volume. Otherwise an error message naming the container, path, both places and the
/// command that moves the data (stopping the legacy container with its own stop timeout first).
pub fn check_data(container: &str, volumes: &[String], legacy: &Inspected) -> Result<(), String> {
    let mut moves = Vec::new();
    let mut problems = Vec::new();
    for spec in volumes {
        let mut parts = spec.split(':');
        let (Some(source), Some(dest)) = (parts.next(), parts.next()) else {
            continue;
        };
        if source.starts_with('/') {
            continue; // a host file or directory: archy's own bind mounts, nothing to carry over
        }
        let Some(mount) = legacy.mounts.iter().find(|m| m.destination == dest) else {
            continue;
        };
        let holder = match mount.kind.as_str() {
            "volume" if mount.name == source => continue,
            "volume" if is_anonymous(&mount.name) => Holder::AnonymousVolume(mount.name.clone()),
            "volume" => Holder::NamedVolume(mount.name.clone()),
            "bind" => Holder::HostDir(mount.source.clone()),
            _ => continue, // tmpfs and the like hold nothing to keep
        };
        problems.push(format!(
            "its data at {dest} is in {}, but the manifest mounts volume `{source}` there",
            holder.describe()
        ));
        moves.push(format!(
            "{{ podman volume exists {source} || podman volume create {source}; }} && {} | podman volume import {source} -",
            holder.export()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to adopt container {container}: {} (adopting would start on an empty volume; {container} keeps running). Move the data into a new or empty volume and remove the old container (its volumes stay), then run `archy reconcile --adopt` again: podman stop --time {} {container} && {} && podman rm {container}",
        problems.join("; "),
        legacy.config.stop_timeout,
        moves.join(" && ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::{InspectedConfig, Mount};

    fn legacy(mounts: &[(&str, &str, &str, &str)]) -> Inspected {
        Inspected {
            id: "abc".into(),
            mounts: mounts
                .iter()
                .map(|(kind, name, source, destination)| Mount {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    source: source.to_string(),
                    destination: destination.to_string(),
                })
                .collect(),
            config: InspectedConfig { stop_timeout: 600 },
        }
    }

    const WANTED: &[&str] = &[
        "bitcoin-data:/home/bitcoin/.bitcoin",
        "/var/lib/archy/bitcoin/bitcoin.conf:/etc/bitcoin/bitcoin.conf:ro",
    ];

    fn wanted() -> Vec<String> {
        WANTED
            .iter()
            .map(std::string::ToString::to_string)
            .collect()
    }

    #[test]
    fn same_volume_or_nothing_at_the_path_is_adoptable() {
        let same = legacy(&[(
            "volume",
            "bitcoin-data",
            "/v/_data",
            "/home/bitcoin/.bitcoin",
        )]);
        assert_eq!(check_data("bitcoin-knots", &wanted(), &same), Ok(()));
        let elsewhere = legacy(&[("volume", "other", "/v/_data", "/srv/other")]);
        assert_eq!(check_data("bitcoin-knots", &wanted(), &elsewhere), Ok(()));
        let config = legacy(&[("bind", "", "/root/old.conf", "/etc/bitcoin/bitcoin.conf")]);
        assert_eq!(check_data("bitcoin-knots", &wanted(), &config), Ok(()));
    }

    #[test]
    fn data_in_another_volume_is_refused_with_the_move_command() {
        let renamed = legacy(&[("volume", "btc", "/v/_data", "/home/bitcoin/.bitcoin")]);
        assert_eq!(
            check_data("bitcoin-knots", &wanted(), &renamed).unwrap_err(),
            "refusing to adopt container bitcoin-knots: its data at /home/bitcoin/.bitcoin is in volume `btc`, but the manifest mounts volume `bitcoin-data` there (adopting would start on an empty volume; bitcoin-knots keeps running). Move the data into a new or empty volume and remove the old container (its volumes stay), then run `archy reconcile --adopt` again: podman stop --time 600 bitcoin-knots && { podman volume exists bitcoin-data || podman volume create bitcoin-data; } && podman volume export btc | podman volume import bitcoin-data - && podman rm bitcoin-knots"
        );
        let anon = "a".repeat(64);
        let anonymous = legacy(&[("volume", &anon, "/v/_data", "/home/bitcoin/.bitcoin")]);
        let err = check_data("bitcoin-knots", &wanted(), &anonymous).unwrap_err();
        assert!(err.contains(&format!("anonymous volume `{anon}`")), "{err}");
        assert!(
            err.contains(&format!(
                "podman volume export {anon} | podman volume import bitcoin-data -"
            )),
            "{err}"
        );
        let bind = legacy(&[("bind", "", "/srv/bitcoin", "/home/bitcoin/.bitcoin")]);
        let err = check_data("bitcoin-knots", &wanted(), &bind).unwrap_err();
        assert!(err.contains("host directory /srv/bitcoin"), "{err}");
        assert!(
            err.contains("tar -C /srv/bitcoin -cf - . | podman volume import bitcoin-data -"),
            "{err}"
        );
    }
}
