//! Anchor containers: how a VM joins networks of a Docker engine it cannot plug into by
//! itself (an overlay that spans hosts, or a bridge inside another engine's namespace).
//!
//! Docker's overlay forwards only to the MACs and addresses its own gossip announced, so a
//! VM with an identity of its own would be reachable from its host only. Instead, a small
//! container (the anchor) is created on each of the VM's networks with the VM's name and
//! address, and gives its identity up to the VM: in the anchor's network namespace each
//! of its interfaces becomes a port of a bridge (its address flushed, its MAC changed),
//! and the VM's NIC, a tap with the anchor's old MAC, joins that bridge. Other hosts then
//! reach the VM by name exactly as they would reach the container (the bridge binding
//! KubeVirt uses).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::create::{endpoint, env_labels};
use super::{container_name, map_err, network_name, DockerBackend};
use crate::backend::{BackendError, EnvCtx, MachineSpec, LABEL_ENV};

/// Label an anchor carries: the VM it stands for. It has no `hdev.machine` label, so it is
/// never taken for a machine; `destroy` and `gc` find it by `hdev.env` like the rest.
pub const LABEL_ANCHOR: &str = "hdev.anchor";

/// The static busybox the anchor image is made of (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// What the VM takes over from its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The anchor's main process, whose network namespace the VM's taps join.
    pub pid: u32,
    /// Envfile network -> the MAC the anchor had there (the VM's NIC takes it).
    pub macs: BTreeMap<String, String>,
}

impl DockerBackend {
    /// The anchor image in this engine, imported from this machine's static busybox once
    /// (tagged by its digest, so a changed busybox is a new image).
    async fn anchor_image(&self) -> Result<String, BackendError> {
        let bin = std::fs::read(BUSYBOX).map_err(|e| BackendError::Engine {
            action: "make the anchor image".into(),
            message: format!("cannot read {BUSYBOX} ({e}); install Debian's busybox-static"),
        })?;
        let digest = hex::encode(Sha256::digest(&bin));
        let reference = format!("hdev-anchor:{}", &digest[..12]);
        if self.image_exists(&reference).await? {
            return Ok(reference);
        }
        let tar = anchor_tar(&bin).map_err(|e| BackendError::Engine {
            action: "make the anchor image".into(),
            message: e.to_string(),
        })?;
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo("hdev-anchor")
            .tag(&digest[..12])
            .changes(vec![
                "CMD [\"/bin/busybox\", \"sleep\", \"2147483647\"]".to_string()
            ])
            .build();
        let body =
            futures_util::stream::once(
                async move { Ok::<_, std::io::Error>(bytes::Bytes::from(tar)) },
            );
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        while let Some(item) = progress.next().await {
            item.map_err(map_err("import the anchor image", "image", &reference))?;
        }
        Ok(reference)
    }

    /// The anchor of VM `spec` on this engine, created and started if it is not there (or
    /// recreated when its addresses are no longer the VM's).
    pub async fn ensure_anchor(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
    ) -> Result<Anchor, BackendError> {
        let name = container_name(&ctx.instance, &spec.name);
        if let Some(a) = self.anchor_as_wanted(ctx, spec, &name).await? {
            return Ok(a);
        }
        self.remove(&name).await?;
        let endpoints = spec
            .networks
            .iter()
            .map(|n| {
                (
                    network_name(&ctx.instance, &n.name),
                    endpoint(&spec.name, n.address.map(|a| a.to_string())),
                )
            })
            .collect();
        let mut labels = env_labels(ctx);
        labels.insert(LABEL_ANCHOR.to_string(), spec.name.clone());
        let what = format!("the anchor of VM `{}`", spec.name);
        self.start_pause(&name, &what, Some(&spec.name), labels, endpoints)
            .await?;
        self.anchor_as_wanted(ctx, spec, &name)
            .await?
            .ok_or_else(|| BackendError::Engine {
                action: format!("start the anchor of VM `{}`", spec.name),
                message: "it is not running with the VM's addresses".into(),
            })
    }

    /// The anchor `name` when it runs with the VM's networks and fixed addresses.
    async fn anchor_as_wanted(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        name: &str,
    ) -> Result<Option<Anchor>, BackendError> {
        let c = match self.docker.inspect_container(name, None).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => {
                return Err(map_err(
                    format!("inspect anchor `{name}`"),
                    "container",
                    name,
                )(e))
            }
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if labels.get(LABEL_ENV) != Some(&ctx.instance) || !labels.contains_key(LABEL_ANCHOR) {
            return Ok(None);
        }
        let pid = c.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running || pid <= 0 {
            return Ok(None);
        }
        let nets = c
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default();
        let mut macs = BTreeMap::new();
        for n in &spec.networks {
            let Some(ep) = nets.get(&network_name(&ctx.instance, &n.name)) else {
                return Ok(None);
            };
            let ip = ep.ip_address.clone().unwrap_or_default();
            if n.address.is_some_and(|a| a.to_string() != ip) {
                return Ok(None);
            }
            let Some(mac) = ep.mac_address.clone().filter(|m| !m.is_empty()) else {
                return Ok(None);
            };
            macs.insert(n.name.clone(), mac);
        }
        Ok(Some(Anchor {
            pid: pid as u32,
            macs,
        }))
    }

    /// Keeps overlay network `network` on this engine (a swarm worker) for as long as the
    /// environment lives: a tiny container on it, so that the network never leaves the
    /// engine between removing a container and creating its successor (a baseline or a
    /// reset recreates containers). Docker 20.10 takes an overlay off a worker with its
    /// last container, asynchronously, and a container started meanwhile fails to attach
    /// ("network … not found"), which can leave the swarm holding a stale attachment.
    pub async fn keep_network(&self, ctx: &EnvCtx, network: &str) -> Result<(), BackendError> {
        let name = format!("{}--keep-{network}", ctx.instance);
        if let Ok(c) = self.docker.inspect_container(&name, None).await {
            if c.state.and_then(|s| s.running).unwrap_or(false) {
                return Ok(());
            }
            self.remove(&name).await?;
        }
        let mut labels = env_labels(ctx);
        labels.insert(LABEL_KEEPER.to_string(), network.to_string());
        let net = network_name(&ctx.instance, network);
        let what = format!("the keeper of network `{network}`");
        self.start_pause(&name, &what, None, labels, vec![(net, Default::default())])
            .await
    }

    /// Creates and starts `name`, a container of the anchor image that only sleeps, with
    /// `labels` (the environment's and what it is for), on each network of `endpoints`:
    /// the first at creation, the others joined before the start.
    async fn start_pause(
        &self,
        name: &str,
        what: &str,
        hostname: Option<&str>,
        labels: HashMap<String, String>,
        endpoints: Vec<(String, EndpointSettings)>,
    ) -> Result<(), BackendError> {
        let image = self.anchor_image().await?;
        let mut endpoints = endpoints.into_iter();
        let first = endpoints.next();
        let body = ContainerCreateBody {
            hostname: hostname.map(str::to_string),
            image: Some(image),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: first.as_ref().map(|(n, _)| n.clone()),
                ..Default::default()
            }),
            networking_config: first.map(|(n, ep)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(n, ep)])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(map_err(format!("create {what}"), "container", name))?;
        self.attach_further(name, &created.id, endpoints.collect())
            .await?;
        self.start(&created.id).await
    }
}

/// Label of a container that keeps an overlay network on its engine (see
/// [`DockerBackend::keep_network`]).
pub const LABEL_KEEPER: &str = "hdev.keeper";

/// A root file system of one file: the static busybox as `/bin/busybox`.
fn anchor_tar(bin: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(bin.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, Path::new("bin/busybox"), bin)?;
    b.into_inner()
}
