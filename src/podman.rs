//! Typed wrapper around the podman CLI. Every podman invocation archy makes is built here;
//! JSON output is deserialised into structs holding only the fields archy reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::exec::{Cmd, Kind, Output};

pub const LABEL_MANAGED: &str = "io.archy.managed";
pub const LABEL_APP: &str = "io.archy.app";
pub const LABEL_SPEC_HASH: &str = "io.archy.spec-hash";
/// The subnet archy's network had (verified) when the container was created on it.
pub const LABEL_SUBNET: &str = "io.archy.subnet";
pub const LABEL_CONTEXT_HASH: &str = "io.archy.context-hash";

/// One container as `podman ps -a --format json` reports it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Container {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    #[serde(rename = "State", default)]
    pub state: ContainerState,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "ImageID", default)]
    pub image_id: String,
    /// Unix seconds; 0 or negative when never started.
    #[serde(rename = "StartedAt", default)]
    pub started_at: i64,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i32,
    /// Unix seconds of the last exit; 0 or negative when it never exited.
    #[serde(rename = "ExitedAt", default)]
    pub exited_at: i64,
    #[serde(rename = "Networks", default, deserialize_with = "null_as_default")]
    pub networks: Vec<String>,
    /// Container paths with a mount (volume or bind), as `ps` lists them.
    #[serde(rename = "Mounts", default, deserialize_with = "null_as_default")]
    pub mounts: Vec<String>,
    /// For storage-only containers (`ps --external`) podman says `["buildah"]` for a buildah
    /// working container (a build's) and `["storage"]` otherwise.
    #[serde(rename = "Command", default, deserialize_with = "null_as_default")]
    pub command: Vec<String>,
}

/// A container's state as podman names it (libpod `define/containerstate.go`), parsed once
/// where podman's JSON is read. A word this archy does not know (a later podman's) is kept in
/// [`ContainerState::Other`] for display, so it never fails a parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Configured,
    Initialized,
    Running,
    Paused,
    Stopping,
    Stopped,
    Exited,
    Removing,
    /// podman's zero state; also what a listing without a `State` is taken to be.
    #[default]
    Unknown,
    /// `ps --external`: a container only podman's storage knows (a build's working container,
    /// or one its database lost).
    Storage,
    /// Any other word, as podman printed it.
    Other(String),
}

impl ContainerState {
    /// The state a word names (podman prints them in lower case; compared ignoring case).
    pub fn parse(word: &str) -> ContainerState {
        const KNOWN: [ContainerState; 11] = [
            ContainerState::Created,
            ContainerState::Configured,
            ContainerState::Initialized,
            ContainerState::Running,
            ContainerState::Paused,
            ContainerState::Stopping,
            ContainerState::Stopped,
            ContainerState::Exited,
            ContainerState::Removing,
            ContainerState::Unknown,
            ContainerState::Storage,
        ];
        KNOWN
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(word))
            .unwrap_or_else(|| ContainerState::Other(word.to_string()))
    }

    /// The word podman uses (an unknown one as it was printed).
    pub fn as_str(&self) -> &str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Configured => "configured",
            ContainerState::Initialized => "initialized",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Stopping => "stopping",
            ContainerState::Stopped => "stopped",
            ContainerState::Exited => "exited",
            ContainerState::Removing => "removing",
            ContainerState::Unknown => "unknown",
            ContainerState::Storage => "storage",
            ContainerState::Other(word) => word,
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContainerState {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        Ok(ContainerState::parse(&String::deserialize(de)?))
    }
}

fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

impl Container {
    pub fn name(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }
    pub fn app(&self) -> Option<&str> {
        self.labels.get(LABEL_APP).map(String::as_str)
    }
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_SPEC_HASH).map(String::as_str)
    }
    pub fn is_managed(&self) -> bool {
        self.labels.get(LABEL_MANAGED).is_some_and(|v| v == "true")
    }
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// What archy reads from `podman container inspect` of a container it is about to adopt.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Inspected {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Mounts", default, deserialize_with = "null_as_default")]
    pub mounts: Vec<Mount>,
    #[serde(rename = "Config", default)]
    pub config: InspectedConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InspectedConfig {
    /// Seconds `podman stop` waits before SIGKILL, as the container was created with.
    #[serde(rename = "StopTimeout", default)]
    pub stop_timeout: u32,
}

/// What archy reads from `podman container inspect` of an exited container to tell an OOM kill
/// (crate::guard::oom): podman's own verdict and the memory limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InspectedExit {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "State", default)]
    pub state: InspectedState,
    #[serde(rename = "HostConfig", default)]
    pub host_config: InspectedHostConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InspectedState {
    /// podman's verdict; false on cgroup-v1 hosts with podman 4.3 even after an OOM kill
    /// (measured: exit 137 under `--memory 32m`, `OOMKilled=false`).
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InspectedHostConfig {
    /// `--memory` in bytes, 0 when unlimited.
    #[serde(rename = "Memory", default)]
    pub memory: u64,
}

/// One image as `podman images --format json` lists it, with its size (`archy gc`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SizedImage {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// Bytes.
    #[serde(rename = "Size", default)]
    pub size: u64,
}

/// One mount of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Mount {
    /// "volume", "bind", "tmpfs", ...
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The volume name (volumes only; a 64-hex id for an anonymous volume).
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Source", default)]
    pub source: String,
    #[serde(rename = "Destination", default)]
    pub destination: String,
}

/// A container id as podman prints it by default: its first 12 characters.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Parse `podman ps -a --format json` output (empty or `null` when there are none).
pub fn parse_ps(json: &str) -> Result<Vec<Container>> {
    crate::exec::parse_json(json).context("failed to parse `podman ps --format json` output")
}

/// One network as `podman network inspect` reports it (podman 4 netavark format).
#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub name: String,
    /// netavark's network id (its nftables chains are named by it); empty on CNI.
    #[serde(default)]
    pub id: String,
    /// The host bridge (`cni-podman1`, `podman1` on netavark).
    #[serde(default)]
    pub network_interface: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnets: Vec<Subnet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subnet {
    pub subnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// One image as `podman images --format json` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// The podman CLI.
#[derive(Debug, Clone)]
pub struct Podman {
    program: PathBuf,
}

/// A running `podman ps` of archy's containers ([`Podman::start_list_managed`]).
pub struct ManagedListing(crate::exec::Pending);

impl ManagedListing {
    /// Wait for the listing and parse it.
    pub fn finish(self) -> Result<Vec<Container>> {
        self.0.json().context("failed to list archy's containers")
    }
}

impl Podman {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Podman {
            program: program.into(),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// A podman command; a listing/query by default ([`Kind::Listing`]), callers that change
    /// state set their kind.
    fn cmd(&self) -> Cmd {
        Cmd::new(&self.program).kind(Kind::Listing)
    }

    fn lifecycle(&self, stop_timeout: u32) -> Cmd {
        self.cmd().kind(Kind::Lifecycle {
            stop_timeout_secs: stop_timeout,
        })
    }

    /// Every container archy manages, in one call.
    pub fn list_managed(&self) -> Result<Vec<Container>> {
        self.start_list_managed()?.finish()
    }

    /// [`Podman::list_managed`] started now, in this thread (podman's ~35 ms start-up begins at
    /// once), and collected later with [`ManagedListing::finish`] (from any thread).
    pub fn start_list_managed(&self) -> Result<ManagedListing> {
        self.cmd()
            .args(["ps", "-a", "--format", "json", "--filter"])
            .arg(format!("label={LABEL_MANAGED}=true"))
            .start()
            .map(ManagedListing)
            .context("failed to list archy's containers")
    }

    /// Every container podman knows, managed or not.
    pub fn list_all(&self) -> Result<Vec<Container>> {
        self.cmd()
            .args(["ps", "-a", "--format", "json"])
            .run_json()
            .context("failed to list containers")
    }

    /// `podman run -d …` with a prepared argv (after `run`); returns the new container id.
    /// Its time limit is the app's `stop_timeout` plus the margin, like every lifecycle command.
    pub fn run_detached(&self, run_args: &[String], stop_timeout: u32) -> Result<String> {
        let out = self
            .lifecycle(stop_timeout)
            .arg("run")
            .args(run_args)
            .run()
            .map_err(|err| {
                // Every container takes one of podman's locks; lost databases leak theirs.
                if lock_table_full(&err) {
                    err.context(
                        "podman's lock table is full (each lost state database leaks the locks of \
                         what it knew): `podman system renumber` reallocates it",
                    )
                } else {
                    err
                }
            })?;
        Ok(out.stdout.trim().to_string())
    }

    pub fn start(&self, container: &str, stop_timeout: u32) -> Result<()> {
        self.lifecycle(stop_timeout)
            .args(["start", container])
            .run()
            .with_context(|| format!("failed to start container {container}"))?;
        Ok(())
    }

    /// Stop a container (SIGKILL after `stop_timeout` seconds).
    pub fn stop(&self, container: &str, stop_timeout: u32) -> Result<()> {
        self.cmd()
            .args(["stop", "--time", &stop_timeout.to_string(), container])
            .run()
            .with_context(|| format!("failed to stop container {container}"))?;
        Ok(())
    }

    pub fn restart(&self, container: &str, stop_timeout: u32) -> Result<()> {
        self.lifecycle(stop_timeout)
            .args(["restart", "--time", &stop_timeout.to_string(), container])
            .run()
            .with_context(|| format!("failed to restart container {container}"))?;
        Ok(())
    }

    /// Run `argv` inside a running container (a health probe), killed after `timeout`;
    /// the output whatever the exit code.
    pub fn exec(
        &self,
        container: &str,
        argv: &[String],
        timeout: std::time::Duration,
    ) -> Result<Output> {
        self.cmd()
            .args(["exec", container])
            .args(argv)
            .kind(crate::exec::Kind::Probe)
            .with_limit(timeout)
            .run_unchecked()
    }

    pub fn unpause(&self, container: &str, stop_timeout: u32) -> Result<()> {
        self.lifecycle(stop_timeout)
            .args(["unpause", container])
            .run()
            .with_context(|| format!("failed to unpause container {container}"))?;
        Ok(())
    }

    /// Stop (waiting `stop_timeout` seconds before SIGKILL) and remove a container. Never
    /// passes `-v`: anonymous and named volumes are kept.
    pub fn remove(&self, container: &str, stop_timeout: u32) -> Result<()> {
        self.lifecycle(stop_timeout)
            .args(["rm", "-f", "--time", &stop_timeout.to_string(), container])
            .run()
            .with_context(|| format!("failed to remove container {container}"))?;
        Ok(())
    }

    /// Every network podman knows (`podman network ls`).
    /// `podman network reload --all`: netavark (or CNI) sets up every running container's
    /// port forwards and DNS entry again (after heal-podman replayed a forgotten container's
    /// teardown, which removes rules identical to a live container's along with its own).
    pub fn network_reload_all(&self) -> Result<()> {
        self.cmd()
            .args(["network", "reload", "--all"])
            .run()
            .context("failed to reload the containers' networks")?;
        Ok(())
    }

    pub fn list_networks(&self) -> Result<Vec<Network>> {
        self.cmd()
            .args(["network", "ls", "--format", "json"])
            .run_json()
            .context("failed to list networks")
    }

    pub fn inspect_network(&self, name: &str) -> Result<Option<Network>> {
        self.network_json(name)?
            .map(|json| {
                serde_json::from_value(json).with_context(|| {
                    format!("failed to parse `podman network inspect {name}` output")
                })
            })
            .transpose()
    }

    /// `podman network inspect NAME` as podman prints it (the network's whole JSON: what
    /// `netavark teardown` takes as `network_info`); `None` when there is no such network.
    pub fn network_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let cmd = self
            .cmd()
            .args(["network", "inspect", "--format", "json", name]);
        let out = cmd.run_unchecked()?;
        if !out.success() {
            if ErrorKind::of_stderr(&out.stderr) == Some(ErrorKind::NoSuchNetwork) {
                return Ok(None);
            }
            return Err(cmd.failure(&out))
                .with_context(|| format!("failed to inspect network {name}"));
        }
        let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout)
            .with_context(|| format!("failed to parse `podman network inspect {name}` output"))?;
        Ok(list.into_iter().next())
    }

    /// Create a network. When another run created it first ("already used"/"already exists"),
    /// it is inspected again and accepted if its subnet is `subnet`.
    pub fn create_network(&self, name: &str, subnet: &str, gateway: &str) -> Result<()> {
        let cmd = self.lifecycle(0).args([
            "network",
            "create",
            "--subnet",
            subnet,
            "--gateway",
            gateway,
            name,
        ]);
        let out = cmd.run_unchecked()?;
        if out.success() {
            return Ok(());
        }
        let kind = ErrorKind::of_stderr(&out.stderr);
        if kind == Some(ErrorKind::NetworkExists) {
            if let Some(network) = self.inspect_network(name)? {
                if network.subnets.iter().any(|s| s.subnet == subnet) {
                    tracing::info!(
                        "network {name} ({subnet}) was created by a concurrent run; using it"
                    );
                    return Ok(());
                }
            }
        }
        let hint = if kind == Some(ErrorKind::SubnetUsedOnHost) {
            "; an interface on this host holds that subnet: a bridge a deleted network left \
             behind is removed by `archy heal-podman`"
        } else {
            ""
        };
        Err(cmd.failure(&out))
            .with_context(|| format!("failed to create network {name} ({subnet}){hint}"))
    }

    /// Remove a network; podman refuses while containers use it (no `-f`).
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.lifecycle(0)
            .args(["network", "rm", name])
            .run()
            .with_context(|| format!("failed to remove network {name}"))?;
        Ok(())
    }

    pub fn image_exists(&self, reference: &str) -> Result<bool> {
        let cmd = self.cmd().args(["image", "exists", reference]);
        let out = cmd.run_unchecked()?;
        match out.code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(cmd.failure(&out))
                .with_context(|| format!("failed to check for image {reference}")),
        }
    }

    pub fn pull(&self, reference: &str) -> Result<()> {
        self.cmd()
            .kind(Kind::Build)
            .args(["pull", "--quiet", reference])
            .run()?;
        Ok(())
    }

    /// The registry digests (`RepoDigests`, `name@sha256:…`) of a local image.
    pub fn image_digests(&self, reference: &str) -> Result<Vec<String>> {
        #[derive(Deserialize, Default)]
        struct Inspected {
            #[serde(rename = "RepoDigests", default, deserialize_with = "null_as_default")]
            repo_digests: Vec<String>,
        }
        let inspected: Vec<Inspected> = self
            .cmd()
            .args(["image", "inspect", "--format", "json", reference])
            .run_json()
            .with_context(|| format!("failed to inspect image {reference}"))?;
        Ok(inspected.into_iter().flat_map(|i| i.repo_digests).collect())
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        self.cmd()
            .args(["tag", source, target])
            .run()
            .with_context(|| format!("failed to tag {source} as {target}"))?;
        Ok(())
    }

    /// Images whose reference matches `filter` (`podman images --filter reference=…`).
    pub fn images(&self, reference_filter: &str) -> Result<Vec<Image>> {
        self.cmd()
            .args(["images", "--format", "json", "--filter"])
            .arg(format!("reference={reference_filter}"))
            .run_json()
            .context("failed to list images")
    }

    /// The images in local storage with their sizes (`podman images --format json`: without
    /// a build's intermediate images, which `rmi` of the image on top removes with it).
    pub fn images_sized(&self) -> Result<Vec<SizedImage>> {
        self.cmd()
            .args(["images", "--format", "json"])
            .run_json()
            .context("failed to list images")
    }

    /// Remove one tag (`podman untag IMAGE NAME`); the image stays when it has other names.
    pub fn untag(&self, reference: &str) -> Result<()> {
        self.cmd()
            .args(["untag", reference, reference])
            .run()
            .with_context(|| format!("failed to untag {reference}"))?;
        Ok(())
    }

    /// Remove an image by reference; never forced, so podman refuses one a container uses.
    pub fn remove_image(&self, reference: &str) -> Result<()> {
        self.cmd()
            .args(["rmi", reference])
            .run()
            .with_context(|| format!("failed to remove image {reference}"))?;
        Ok(())
    }

    /// The build command for a context (the caller runs it, streaming or not).
    pub fn build_cmd(
        &self,
        context: &Path,
        containerfile: &Path,
        tag: &str,
        labels: &[(String, String)],
        build_args: &[(String, String)],
    ) -> Cmd {
        let mut cmd = self
            .cmd()
            .kind(Kind::Build)
            .args(["build", "--layers", "-f"])
            .arg(containerfile)
            .args(["-t", tag]);
        for (key, value) in labels {
            cmd = cmd.arg("--label").arg(format!("{key}={value}"));
        }
        for (key, value) in build_args {
            cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
        }
        cmd.arg(context)
    }

    /// `podman version --format {{.Client.Version}}` → the client version, like "4.3.1".
    pub fn version(&self) -> Result<String> {
        let out = self
            .cmd()
            .args(["version", "--format", "{{.Client.Version}}"])
            .run()
            .context("failed to query podman's version")?;
        Ok(out.stdout.trim().to_string())
    }

    /// `podman --log-level=debug info --format json`, whatever its exit code: heal-podman reads
    /// the JSON (stdout), the paths podman resolved (debug lines on stderr) and, when the engine
    /// is broken, the error.
    pub fn info_debug(&self) -> Result<Output> {
        self.cmd()
            .args(["--log-level=debug", "info", "--format", "json"])
            .run_unchecked()
    }

    /// Every container podman's database knows plus those only in storage (`State: storage`).
    pub fn list_external(&self) -> Result<Vec<Container>> {
        self.cmd()
            .args(["ps", "-a", "--external", "--format", "json"])
            .run_json()
            .context("failed to list containers including storage-only ones")
    }

    /// Remove a container that exists only in storage (not in podman's database).
    pub fn remove_storage(&self, id: &str) -> Result<()> {
        self.lifecycle(0)
            .args(["rm", "--force", "--storage", id])
            .run()
            .with_context(|| format!("failed to remove storage-only container {id}"))?;
        Ok(())
    }

    /// `podman system migrate`.
    pub fn system_migrate(&self) -> Result<()> {
        self.lifecycle(0)
            .args(["system", "migrate"])
            .run()
            .context("`podman system migrate` failed")?;
        Ok(())
    }

    /// `podman system renumber`.
    pub fn system_renumber(&self) -> Result<()> {
        self.lifecycle(0)
            .args(["system", "renumber"])
            .run()
            .context("`podman system renumber` failed")?;
        Ok(())
    }

    /// Names of the volumes podman's database knows.
    pub fn volume_names(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Volume {
            #[serde(rename = "Name")]
            name: String,
        }
        let list: Vec<Volume> = self
            .cmd()
            .args(["volume", "ls", "--format", "json"])
            .run_json()
            .context("failed to list volumes")?;
        Ok(list.into_iter().map(|v| v.name).collect())
    }

    /// Every volume's mount point on the host, by name (`podman volume ls`: one call for all).
    pub fn volume_mountpoints(&self) -> Result<BTreeMap<String, PathBuf>> {
        #[derive(Deserialize)]
        struct Volume {
            #[serde(rename = "Name")]
            name: String,
            #[serde(rename = "Mountpoint", default)]
            mountpoint: String,
        }
        let list: Vec<Volume> = self
            .cmd()
            .args(["volume", "ls", "--format", "json"])
            .run_json()
            .context("failed to list volumes")?;
        Ok(list
            .into_iter()
            .filter(|v| !v.mountpoint.is_empty())
            .map(|v| (v.name, PathBuf::from(v.mountpoint)))
            .collect())
    }

    /// `podman volume create <name>`: on an existing `<volume_path>/<name>/_data` podman
    /// registers the volume and keeps the data.
    pub fn volume_create(&self, name: &str) -> Result<()> {
        self.cmd()
            .args(["volume", "create", name])
            .run()
            .with_context(|| format!("failed to create volume {name}"))?;
        Ok(())
    }

    /// `podman container inspect` of one container (mounts and stop timeout).
    pub fn inspect_container(&self, container: &str) -> Result<Inspected> {
        let list: Vec<Inspected> = self
            .cmd()
            .args(["container", "inspect", "--format", "json", container])
            .run_json()
            .with_context(|| format!("failed to inspect container {container}"))?;
        list.into_iter()
            .next()
            .with_context(|| format!("podman container inspect {container} returned nothing"))
    }

    /// `podman container inspect` of an exited container: its OOM verdict and memory limit.
    pub fn inspect_exit(&self, container: &str) -> Result<InspectedExit> {
        let list: Vec<InspectedExit> = self
            .cmd()
            .args(["container", "inspect", "--format", "json", container])
            .run_json()
            .with_context(|| format!("failed to inspect container {container}"))?;
        list.into_iter()
            .next()
            .with_context(|| format!("podman container inspect {container} returned nothing"))
    }

    /// A raw podman command for callers with a one-off need (heal-podman probes).
    pub fn raw(&self) -> Cmd {
        self.cmd()
    }
}

/// What a podman failure's stderr says, where archy acts on it: the one place podman's error
/// texts (4.3 and later) are matched, for podman.rs, reconcile's executor and heal-podman.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The state database was created with other storage settings (`database configuration
    /// mismatch`): to be reported, never guessed at.
    DatabaseConfigMismatch,
    /// The state database exists but is not a usable database. BoltDB names it (`opening
    /// database /path/bolt_state.db: file size too small`); SQLite does not (`db` is `None`).
    DatabaseCorrupt { db: Option<PathBuf>, reason: String },
    /// The rootless pause process or user namespace state is stale (`podman system migrate`);
    /// `line` is the stderr line that says so.
    NeedsMigrate { line: String },
    /// The container is not (any more) in podman's database.
    NoSuchContainer,
    /// `network inspect` of a network that does not exist.
    NoSuchNetwork,
    /// The network name is taken (4.3: `network name X already used: network already exists`).
    NetworkExists,
    /// The subnet is held by an interface on the host (`… is already used on the host`).
    SubnetUsedOnHost,
    /// The lock table ran out: every container and volume takes one of its locks (podman 4
    /// `libpod/lock`: "allocation failed; exceeded num_locks").
    LockTableFull,
    /// Other lock trouble named by the error line (`allocating lock`, `shm lock`, `num_locks`):
    /// `podman system renumber` reallocates them.
    Locks,
}

/// Database open failures that mean "this file is not a usable database" (bbolt's wording).
/// Anything else (permission denied, timeout on a lock held by another podman) is not corruption
/// and must not make archy move the file.
const DB_CORRUPT_REASONS: &[&str] = &[
    "file size too small",
    "invalid database",
    "version mismatch",
    "checksum error",
    "meta",
    "unexpected EOF",
];

/// SQLite's words for a file that is not a usable database (podman 5's `db.sql`; its errors name
/// no path: `beginning transaction: file is not a database`).
const SQLITE_CORRUPT_REASONS: &[&str] =
    &["file is not a database", "database disk image is malformed"];

impl ErrorKind {
    /// Classify podman's stderr; None for anything archy does not act on. The engine-wide
    /// failures (database, pause process) come first: any command fails with them.
    pub fn of_stderr(stderr: &str) -> Option<ErrorKind> {
        let line = error_line(stderr);
        if let Some(kind) = ErrorKind::of_engine(stderr, &line) {
            return Some(kind);
        }
        let kind = if stderr.contains("no such container") {
            ErrorKind::NoSuchContainer
        } else if stderr.contains("network not found") || stderr.contains("no such network") {
            ErrorKind::NoSuchNetwork
        } else if stderr.contains("network already exists")
            || (stderr.contains("network name") && stderr.contains("already used"))
        {
            ErrorKind::NetworkExists
        } else if stderr.contains("already used on the host") {
            ErrorKind::SubnetUsedOnHost
        } else if stderr.contains("exceeded num_locks") {
            ErrorKind::LockTableFull
        } else if line.contains("num_locks")
            || line.contains("allocating lock")
            || line.contains("shm lock")
        {
            ErrorKind::Locks
        } else {
            return None;
        };
        Some(kind)
    }

    /// The failures of the engine itself (its database, its pause process), from the whole
    /// stderr and its error line ([`error_line`]).
    fn of_engine(stderr: &str, line: &str) -> Option<ErrorKind> {
        if line.contains("database configuration mismatch") {
            return Some(ErrorKind::DatabaseConfigMismatch);
        }
        if let Some(rest) = line
            .find("opening database ")
            .map(|i| &line[i + "opening database ".len()..])
        {
            // "opening database /path/bolt_state.db: file size too small"
            if let Some((path, reason)) = rest.split_once(": ") {
                if path.starts_with('/')
                    && DB_CORRUPT_REASONS.iter().any(|r| reason.contains(r))
                    && !reason.contains("timeout")
                {
                    return Some(ErrorKind::DatabaseCorrupt {
                        db: Some(PathBuf::from(path)),
                        reason: reason.trim().to_string(),
                    });
                }
            }
        }
        if let Some(reason) = SQLITE_CORRUPT_REASONS.iter().find(|r| line.contains(*r)) {
            return Some(ErrorKind::DatabaseCorrupt {
                db: None,
                reason: (*reason).to_string(),
            });
        }
        if stderr.contains("system migrate") || stderr.contains("invalid internal status") {
            let said = stderr
                .lines()
                .rev()
                .find(|l| l.contains("migrate"))
                .map_or_else(|| line.to_string(), |l| l.trim().to_string());
            return Some(ErrorKind::NeedsMigrate { line: said });
        }
        None
    }

    /// The kind of a failed podman command's error (its captured stderr), if any.
    pub fn of(err: &anyhow::Error) -> Option<ErrorKind> {
        crate::exec::failed_stderr(err).and_then(ErrorKind::of_stderr)
    }
}

/// The meaningful error line of podman's stderr: the last `Error: …` line, or the last line
/// (syslog noise and debug/info log lines skipped), without its `Error:`.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("failed to connect to syslog"))
        .filter(|l| !l.contains("level=debug") && !l.contains("level=info"))
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .or(lines.last())
        .map(|l| l.trim_start_matches("Error:").trim().to_string())
        .unwrap_or_default()
}

/// Whether a podman failure is its lock table running out ([`ErrorKind::LockTableFull`]).
pub fn lock_table_full(err: &anyhow::Error) -> bool {
    ErrorKind::of(err) == Some(ErrorKind::LockTableFull)
}

/// The value of `key = "value"` in section `[section]` of a TOML config file (containers.conf,
/// storage.conf), the last one wins; enough for the plain string keys heal-podman reads when
/// podman itself cannot answer, and the free-space guard reads without asking podman. Comments
/// and other sections are skipped; an empty value is none.
pub fn config_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if current != section {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.split(" #").next().unwrap_or(v).trim();
            let v = v.trim_matches('"').trim_matches('\'');
            found = (!v.is_empty()).then(|| v.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// podman 4.3.1's message when its lock table is full (`libpod/lock/shm`).
    #[test]
    fn a_run_refused_for_a_full_lock_table_names_renumber() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("podman");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Error: allocating lock for new container: allocation failed; exceeded num_locks (2048)' >&2\nexit 125\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Podman::new(&fake)
            .run_detached(&["--name".into(), "archy-x".into(), "img".into()], 0)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("lock table is full"), "{text}");
        assert!(text.contains("podman system renumber"), "{text}");
        assert!(text.contains("exceeded num_locks"), "{text}");
    }

    #[test]
    fn short_ids_are_podmans_twelve_characters() {
        assert_eq!(short_id("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    /// Captured from podman 4.3.1 on this machine kind.
    const PS_FIXTURE: &str = include_str!("../tests/fixtures/podman-ps.json");

    #[test]
    fn parses_real_ps_output() {
        let list = parse_ps(PS_FIXTURE).unwrap();
        assert_eq!(list.len(), 2);
        let a = &list[0];
        assert_eq!(a.name(), "archy-demo-web");
        assert_eq!(a.state, ContainerState::Running);
        assert_eq!(a.app(), Some("demo-web"));
        assert!(a.is_managed());
        assert_eq!(a.spec_hash().map(str::len), Some(64));
        assert_eq!(a.networks, vec!["podman".to_string()]);
        assert_eq!(
            list[1].state,
            ContainerState::Created,
            "a run whose command failed leaves a created container"
        );
    }

    #[test]
    fn podman_errors_are_classified_in_one_place() {
        for (stderr, kind) in [
            (
                "Error: network name archy already used: network already exists\n",
                Some(ErrorKind::NetworkExists),
            ),
            (
                "Error: subnet 10.89.0.0/24 is already used on the host or by another config\n",
                Some(ErrorKind::SubnetUsedOnHost),
            ),
            (
                "Error: no container with name or ID \"x\" found: no such container\n",
                Some(ErrorKind::NoSuchContainer),
            ),
            (
                "Error: unable to find network with name or ID x: network not found\n",
                Some(ErrorKind::NoSuchNetwork),
            ),
            (
                "Error: allocating lock for new container: allocation failed; exceeded num_locks (2048)\n",
                Some(ErrorKind::LockTableFull),
            ),
            (
                "Error: allocating lock for new container: shm lock 3 in use\n",
                Some(ErrorKind::Locks),
            ),
            (
                "Error: database storage graph driver \"overlay\" does not match our storage graph driver \"vfs\": database configuration mismatch\n",
                Some(ErrorKind::DatabaseConfigMismatch),
            ),
            (
                "Error: opening database /s/bolt_state.db: invalid database\n",
                Some(ErrorKind::DatabaseCorrupt {
                    db: Some("/s/bolt_state.db".into()),
                    reason: "invalid database".into(),
                }),
            ),
            // A lock held by another podman is not corruption.
            ("Error: opening database /s/bolt_state.db: timeout\n", None),
            (
                "Error: beginning transaction: file is not a database\n",
                Some(ErrorKind::DatabaseCorrupt {
                    db: None,
                    reason: "file is not a database".into(),
                }),
            ),
            // The engine's own failure wins over what the command was about.
            (
                "Error: no such container: opening database /s/bolt_state.db: file size too small\n",
                Some(ErrorKind::DatabaseCorrupt {
                    db: Some("/s/bolt_state.db".into()),
                    reason: "file size too small".into(),
                }),
            ),
            (
                "level=warning msg=\"invalid internal status, try resetting the pause process with \\\"podman system migrate\\\": x\"\nError: y\n",
                Some(ErrorKind::NeedsMigrate {
                    line: "level=warning msg=\"invalid internal status, try resetting the pause process with \\\"podman system migrate\\\": x\"".into(),
                }),
            ),
            ("Error: something else\n", None),
        ] {
            assert_eq!(ErrorKind::of_stderr(stderr), kind, "{stderr}");
        }
    }

    #[test]
    fn container_states_parse_once_and_a_new_word_is_kept() {
        for (word, state) in [
            ("created", ContainerState::Created),
            ("configured", ContainerState::Configured),
            ("initialized", ContainerState::Initialized),
            ("running", ContainerState::Running),
            ("paused", ContainerState::Paused),
            ("stopping", ContainerState::Stopping),
            ("stopped", ContainerState::Stopped),
            ("exited", ContainerState::Exited),
            ("removing", ContainerState::Removing),
            ("unknown", ContainerState::Unknown),
            ("storage", ContainerState::Storage),
            ("Running", ContainerState::Running),
        ] {
            assert_eq!(ContainerState::parse(word), state, "{word}");
            assert_eq!(state.to_string(), word.to_ascii_lowercase());
        }
        // A state a later podman may add: kept for display, never a parse error.
        let json = r#"[{"Id":"a","State":"hibernating"},{"Id":"b"},{"Id":"c","State":"exited"}]"#;
        let list = parse_ps(json).unwrap();
        assert_eq!(list[0].state, ContainerState::Other("hibernating".into()));
        assert_eq!(list[0].state.to_string(), "hibernating");
        assert_eq!(
            list[1].state,
            ContainerState::Unknown,
            "no State: podman's zero state"
        );
        assert_eq!(list[2].state, ContainerState::Exited);
    }

    /// Captured from podman 4.3.1 (`podman run` of a name in use), behind syslog noise.
    #[test]
    fn error_line_skips_syslog_noise_and_takes_the_error() {
        let text = "failed to connect to syslog: Initialization\n".to_string()
            + include_str!("../tests/fixtures/heal-run-name-in-use.stderr.txt");
        assert!(error_line(&text).starts_with(
            "creating container storage: the container name \"c1\" is already in use"
        ));
    }

    #[test]
    fn empty_and_null_listing_is_no_containers() {
        assert!(parse_ps("").unwrap().is_empty());
        assert!(parse_ps("[]").unwrap().is_empty());
        assert!(parse_ps("null").unwrap().is_empty());
    }
}
