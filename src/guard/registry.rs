//! An image's size from its registry manifest, before it is pulled: the sum of its layers'
//! (compressed) sizes, from `GET /v2/<name>/manifests/<reference>` (Docker Registry HTTP API
//! v2 / OCI distribution), following an index to the `linux/<arch>` manifest and an anonymous
//! bearer token challenge. A registry registries.conf marks `insecure` is asked over plain HTTP.
//! Anything that does not answer as expected is "unknown" (the pull then runs unchecked and
//! fails or succeeds on its own): the check only ever refuses on a number the registry gave.

use std::time::Duration;

use serde::Deserialize;

/// Time limit of one request to the registry.
const TIMEOUT: Duration = Duration::from_secs(15);

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

/// A reference as podman names it: `nginx` → `docker.io/library/nginx:latest`.
pub fn normalise(reference: &str) -> String {
    let (name, digest) = reference
        .split_once('@')
        .map_or((reference, None), |(n, d)| (n, Some(d)));
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

/// `(host, repository, tag-or-digest)` of a reference podman would pull (a short name is
/// docker.io's).
pub fn split(reference: &str) -> (String, String, String) {
    let full = normalise(reference);
    let (name, reference) = if let Some((n, d)) = full.split_once('@') {
        (n.to_string(), d.to_string())
    } else {
        match full.rfind(':').filter(|&i| !full[i..].contains('/')) {
            Some(i) => (full[..i].to_string(), full[i + 1..].to_string()),
            None => (full.clone(), "latest".into()),
        }
    };
    // A digest pin's name may still carry its tag (`name:tag@sha256:…`).
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => name[..i].to_string(),
        _ => name,
    };
    let (host, repo) = name.split_once('/').unwrap_or(("docker.io", &name));
    let host = if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    };
    (host.to_string(), repo.to_string(), reference)
}

/// Whether registries.conf (CONTAINERS_REGISTRIES_CONF, else /etc/containers/registries.conf)
/// marks `host` insecure (plain HTTP).
fn insecure(host: &str) -> bool {
    let path = std::env::var_os("CONTAINERS_REGISTRIES_CONF").map_or_else(
        || "/etc/containers/registries.conf".into(),
        std::path::PathBuf::from,
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    // `[[registry]]` tables: a `location` and an `insecure` in the same table.
    text.split("[[registry]]").skip(1).any(|table| {
        let value = |key: &str| {
            table.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        value("location").as_deref() == Some(host) && value("insecure").as_deref() == Some("true")
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

/// GET a manifest, answering one anonymous bearer challenge.
fn get(agent: &ureq::Agent, url: &str) -> Option<Manifest> {
    let mut response = agent.get(url).header("Accept", ACCEPT).call().ok()?;
    if response.status() == 401 {
        let challenge = response
            .headers()
            .get("www-authenticate")?
            .to_str()
            .ok()?
            .to_string();
        let token = token(agent, &challenge)?;
        response = agent
            .get(url)
            .header("Accept", ACCEPT)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()?;
    }
    if response.status() != 200 {
        return None;
    }
    let text = response.body_mut().read_to_string().ok()?;
    serde_json::from_str(&text).ok()
}

/// An anonymous token for a `Bearer realm="…",service="…",scope="…"` challenge.
fn token(agent: &ureq::Agent, challenge: &str) -> Option<String> {
    let params = challenge.strip_prefix("Bearer ")?;
    let param = |key: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k == key).then(|| v.trim_matches('"').to_string())
        })
    };
    let realm = param("realm")?;
    let mut request = agent.get(&realm);
    for key in ["service", "scope"] {
        if let Some(value) = param(key) {
            request = request.query(key, &value);
        }
    }
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let text = request.call().ok()?.body_mut().read_to_string().ok()?;
    let t: Token = serde_json::from_str(&text).ok()?;
    t.token.or(t.access_token)
}

/// The architecture word OCI uses for this host.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// The compressed size of `reference`'s layers as its registry tells, if it does.
pub fn image_size(reference: &str) -> Option<u64> {
    let (host, repo, tag) = split(reference);
    let scheme = if insecure(&host) { "http" } else { "https" };
    let agent = agent();
    let url = |r: &str| format!("{scheme}://{host}/v2/{repo}/manifests/{r}");
    let mut manifest = get(&agent, &url(&tag))?;
    if manifest.layers.is_empty() && !manifest.manifests.is_empty() {
        let entry = manifest.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch())
        })?;
        manifest = get(&agent, &url(&entry.digest))?;
    }
    (!manifest.layers.is_empty()).then(|| manifest.layers.iter().map(|l| l.size).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_repository_and_tag() {
        let s = |r: &str| split(r);
        assert_eq!(
            s("nginx:1.27"),
            (
                "registry-1.docker.io".into(),
                "library/nginx".into(),
                "1.27".into()
            )
        );
        assert_eq!(
            s("127.0.0.1:5000/t:1"),
            ("127.0.0.1:5000".into(), "t".into(), "1".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/a/t:1@sha256:ab"),
            ("127.0.0.1:5000".into(), "a/t".into(), "sha256:ab".into())
        );
        assert_eq!(
            s("quay.io/x/y"),
            ("quay.io".into(), "x/y".into(), "latest".into())
        );
    }
}
