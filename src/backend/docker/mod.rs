//! The Docker backend, through bollard only: containers for machines, bridge networks for
//! the environment's networks, images for baselines.
//!
//! Every engine error is mapped here, at the edge: a 404 becomes
//! [`BackendError::NotFound`], anything else an [`BackendError::Engine`] naming the action.
//! Everything created carries the `hdev.*` labels, and everything read back is found by
//! them, so status is read from the engine and `destroy` removes exactly what the
//! environment created.

pub mod anchor;
pub mod cache;
mod create;
mod engine;
mod exec;
pub mod image;
pub mod snapshot;
pub mod swarm;
pub mod tunnel;

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use sha2::{Digest, Sha256};

use super::{
    BackendError, Counts, Found, ObjectKind, Observation, ObservedMachine, ObservedNetwork,
    RunState, LABEL_ENV, LABEL_MACHINE, LABEL_NETWORK, LABEL_SNAPSHOT,
};
use crate::envfile::Backend;

pub use engine::probe;
pub use exec::ExecOptions;

/// Docker network option that names the Linux bridge, so a VM backend can attach to it.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
pub use crate::envfile::topology::DEFAULT_NETWORK;

/// A connection to one Docker engine.
#[derive(Clone)]
pub struct DockerBackend {
    docker: Docker,
    /// Where it is (`None`: this machine's engine, as `DOCKER_HOST` or the default
    /// socket says).
    endpoint: Option<String>,
    /// The SSH forward to an engine inside a VM, held as long as the connection.
    tunnel: Option<std::sync::Arc<tunnel::Tunnel>>,
}

/// Maps a bollard error at the edge: 404 is `NotFound`, the rest names the action.
pub(crate) fn map_err(
    action: impl Into<String>,
    what: &'static str,
    name: &str,
) -> impl FnOnce(bollard::errors::Error) -> BackendError {
    let action = action.into();
    let name = name.to_string();
    move |e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => BackendError::NotFound { what, name },
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            BackendError::Engine { action, message }
        }
        other => BackendError::Engine {
            action,
            message: other.to_string(),
        },
    }
}

/// Whether a bollard error is a 409 conflict (already exists, already in that state).
pub(crate) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 409,
            ..
        }
    )
}

/// Engine name of a machine's container.
pub fn container_name(instance: &str, machine: &str) -> String {
    format!("{instance}-{machine}")
}

/// Engine name of an environment network.
pub fn network_name(instance: &str, network: &str) -> String {
    if network == DEFAULT_NETWORK {
        instance.to_string()
    } else {
        format!("{instance}-{network}")
    }
}

/// The address range Docker's IPAM may hand out on an environment network: the third
/// quarter of the subnet. Fixed addresses live in the lower half and VMs without one take
/// the last quarter, so the three never clash (see `Ipv4Net::auto_start`).
pub fn container_range(net: &crate::envfile::Ipv4Net) -> crate::envfile::Ipv4Net {
    crate::envfile::Ipv4Net {
        addr: net.auto_start(),
        prefix: net.prefix + 2,
    }
}

/// Linux bridge name of an environment network: `hd` and 12 hex digits (Linux allows 15).
pub fn bridge_name(instance: &str, network: &str) -> String {
    let d = Sha256::digest(format!("{instance}/{network}").as_bytes());
    format!("hd{}", &hex::encode(d)[..12])
}

/// Tag of a machine's baseline image.
pub fn baseline_image(instance: &str, machine: &str) -> String {
    format!("hdev-baseline/{instance}-{machine}:latest")
}

fn label_filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::new();
    f.insert(
        "label".to_string(),
        pairs
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.to_string()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect(),
    );
    f
}

fn run_state(s: Option<bollard::models::ContainerSummaryStateEnum>) -> RunState {
    use bollard::models::ContainerSummaryStateEnum as S;
    match s {
        Some(S::RUNNING) => RunState::Running,
        Some(S::CREATED | S::EXITED) => RunState::Stopped,
        Some(S::PAUSED) => RunState::Paused,
        _ => RunState::Other,
    }
}

impl DockerBackend {
    /// Connects with the local defaults and negotiates the API version.
    pub async fn connect() -> Result<DockerBackend, BackendError> {
        Self::connect_to(None).await
    }

    /// Connects to the engine at `endpoint` (`unix://`, `tcp://` or `ssh://`; `None`:
    /// this machine's) and negotiates the API version.
    pub async fn connect_to(endpoint: Option<&str>) -> Result<DockerBackend, BackendError> {
        let unreachable = |e: bollard::errors::Error| BackendError::Unreachable {
            backend: Backend::Docker,
            message: match endpoint {
                Some(at) => format!("{at}: {}", super::error_chain(&e)),
                None => super::error_chain(&e),
            },
        };
        let timeout = 600;
        let v = bollard::API_DEFAULT_VERSION;
        let docker = match endpoint {
            None => Docker::connect_with_local_defaults(),
            Some(e) if e.starts_with("unix://") => Docker::connect_with_unix(e, timeout, v),
            Some(e) if e.starts_with("ssh://") => Docker::connect_with_ssh(e, timeout, v, None),
            Some(e) => Docker::connect_with_http(e, timeout, v),
        }
        .map_err(unreachable)?
        .with_timeout(std::time::Duration::from_secs(timeout))
        .negotiate_version();
        // An engine that does not answer (a host that is down) must not hold a command.
        let docker = tokio::time::timeout(std::time::Duration::from_secs(20), docker)
            .await
            .map_err(|_| BackendError::Unreachable {
                backend: Backend::Docker,
                message: format!(
                    "{}: no answer in 20 s",
                    endpoint.unwrap_or("the local engine")
                ),
            })?
            .map_err(unreachable)?;
        Ok(DockerBackend {
            docker,
            endpoint: endpoint.map(str::to_string),
            tunnel: None,
        })
    }

    /// Where the engine is (`None`: this machine's).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The bollard client, for box import.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Containers, networks and baseline images of one instance, found by label. Sizes
    /// are never asked for, so this does not scale with what the containers hold.
    pub async fn observe(&self, instance: &str) -> Result<Observation, BackendError> {
        let (containers, networks, images) = tokio::join!(
            self.list_containers(instance),
            self.list_networks(instance),
            self.list_baselines(instance)
        );
        let (containers, networks, images) = (containers?, networks?, images?);

        let mut out = Observation {
            networks: observed_networks(networks),
            ..Observation::default()
        };
        let engine_to_env: BTreeMap<String, String> = out
            .networks
            .values()
            .map(|n| (n.engine_name.clone(), n.name.clone()))
            .collect();
        let prefix = format!("{instance}-");
        for c in containers {
            // A container whose image is its baseline has it from the start.
            let image_based = c
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::backend::LABEL_BASELINE_IMAGE))
                .is_some_and(|i| !i.is_empty());
            if let Some(m) = observed_machine(c, &engine_to_env, &prefix, self.endpoint()) {
                if image_based {
                    out.baselines.insert(m.name.clone());
                }
                out.machines.insert(m.name.clone(), m);
            }
        }
        for i in images {
            if let Some(m) = i.labels.get(LABEL_MACHINE) {
                out.baselines.insert(m.clone());
            }
        }
        Ok(out)
    }

    /// The instance's containers, running or not, without sizes.
    async fn list_containers(
        &self,
        instance: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, BackendError> {
        let filters = label_filter(&[(LABEL_ENV, instance)]);
        self.docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .size(false)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list containers", "containers", ""))
    }

    /// The instance's networks.
    async fn list_networks(
        &self,
        instance: &str,
    ) -> Result<Vec<bollard::models::Network>, BackendError> {
        let filters = label_filter(&[(LABEL_ENV, instance)]);
        self.docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list networks", "networks", ""))
    }

    /// The instance's baseline images.
    async fn list_baselines(
        &self,
        instance: &str,
    ) -> Result<Vec<bollard::models::ImageSummary>, BackendError> {
        let filters = label_filter(&[(LABEL_ENV, instance), (LABEL_SNAPSHOT, "baseline")]);
        self.docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list images", "images", ""))
    }

    /// Starts a container; one already running is fine, a paused one is resumed.
    ///
    /// On a swarm worker, an overlay network leaves the engine with the last container
    /// on it, asynchronously: a container started just after one was removed (a baseline
    /// or a reset recreates it) can find the network half gone ("network … not found",
    /// a 404 although the container exists). That start is tried again, a bounded number
    /// of times, while the engine takes the network up again.
    pub async fn start(&self, id: &str) -> Result<(), BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.docker.start_container(id, None).await {
                Err(e) if is_conflict(&e) => {
                    // 409 is "paused" (resume it) or "already running" (nothing to do).
                    let _ = self.docker.unpause_container(id).await;
                    return Ok(());
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) if attempt < 20
                    && message.contains("network")
                    && self.docker.inspect_container(id, None).await.is_ok() =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                r => return r.map_err(map_err(format!("start container `{id}`"), "container", id)),
            }
        }
    }

    /// Stops a container, giving its main process `grace_secs` to end after SIGTERM.
    pub async fn stop(&self, id: &str, grace_secs: i32) -> Result<(), BackendError> {
        let opts = StopContainerOptionsBuilder::default().t(grace_secs).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Err(e) if is_conflict(&e) => Ok(()),
            r => r.map_err(map_err(format!("stop container `{id}`"), "container", id)),
        }
    }

    /// Removes a container (running or not) and its anonymous volumes; gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), BackendError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            r => r.map_err(map_err(format!("remove container `{id}`"), "container", id)),
        }
    }

    /// Every object labelled `hdev.env` (of one instance, or of all when `None`).
    pub async fn labelled(&self, instance: Option<&str>) -> Result<Vec<Found>, BackendError> {
        let filters = match instance {
            Some(i) => label_filter(&[(LABEL_ENV, i)]),
            None => label_filter(&[(LABEL_ENV, "")]),
        };
        let mut out = Vec::new();
        let place = self.endpoint.clone();
        // A swarm's overlay networks are removed on a manager; a worker only shows them
        // while its containers use them.
        let manager = self.membership().await.map(|m| m.manager).unwrap_or(false);
        let mut pick = |kind: ObjectKind, id: String, labels: Option<&HashMap<String, String>>| {
            let l = labels.cloned().unwrap_or_default();
            out.push(Found {
                backend: Backend::Docker,
                kind,
                id,
                instance: l.get(LABEL_ENV).cloned().unwrap_or_default(),
                dir: l.get(super::LABEL_DIR).cloned().unwrap_or_default(),
                place: place.clone(),
            });
        };
        let cs = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list containers", "containers", ""))?;
        for c in cs {
            pick(
                ObjectKind::Container,
                c.id.unwrap_or_default(),
                c.labels.as_ref(),
            );
        }
        let ns = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list networks", "networks", ""))?;
        for n in ns {
            if n.scope.as_deref() == Some("swarm") && !manager {
                continue;
            }
            pick(
                ObjectKind::Network,
                n.id.unwrap_or_default(),
                n.labels.as_ref(),
            );
        }
        let vs = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list volumes", "volumes", ""))?;
        for v in vs.volumes.unwrap_or_default() {
            pick(ObjectKind::Volume, v.name, Some(&v.labels));
        }
        let is = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(map_err("list images", "images", ""))?;
        for i in is {
            // Box images are shared between environments; only per-environment images go.
            // Cache entries belong to no environment: `hdev cache prune` removes them.
            let cached = i
                .labels
                .get(crate::backend::LABEL_CACHE)
                .is_some_and(|h| !h.is_empty());
            if i.labels.contains_key(LABEL_SNAPSHOT) && !cached {
                pick(ObjectKind::Image, i.id, Some(&i.labels));
            }
        }
        Ok(out)
    }

    /// Removes labelled objects: containers first, then networks, volumes and images.
    /// Returns how many of each went.
    /// Removes an environment network. The engine may still list endpoints of containers
    /// it has just removed ("has active endpoints"); those are disconnected by force and
    /// the removal tried again, a bounded number of times.
    async fn remove_network(&self, id: &str) -> Result<(), BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.docker.remove_network(id).await {
                Ok(()) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) if attempt < 10 && e.to_string().contains("active endpoints") => {
                    let attached = self
                        .docker
                        .inspect_network(id, None)
                        .await
                        .ok()
                        .and_then(|n| n.containers)
                        .unwrap_or_default();
                    for (container, ep) in attached {
                        let target = ep.name.unwrap_or(container);
                        let _ = self
                            .docker
                            .disconnect_network(
                                id,
                                bollard::models::NetworkDisconnectRequest {
                                    container: target,
                                    force: Some(true),
                                },
                            )
                            .await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                Err(e) => return Err(map_err(format!("remove network `{id}`"), "network", id)(e)),
            }
        }
    }

    pub async fn remove_labelled(&self, found: &[Found]) -> Result<Counts, BackendError> {
        let of = |kind: ObjectKind| found.iter().filter(move |f| f.kind == kind).map(|f| &f.id);
        // A few at a time: removing many containers of one network at once can leave the
        // engine (20.10) with a stale endpoint that blocks removing the network for good.
        use futures_util::stream::StreamExt;
        let removals =
            futures_util::stream::iter(of(ObjectKind::Container).map(|id| self.remove(id)))
                .buffer_unordered(4)
                .collect::<Vec<_>>()
                .await;
        for r in removals {
            r?;
        }
        for id in of(ObjectKind::Network) {
            self.remove_network(id).await?;
        }
        for name in of(ObjectKind::Volume) {
            match self
                .docker
                .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
            {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                r => r.map_err(map_err(format!("remove volume `{name}`"), "volume", name))?,
            }
        }
        // Snapshot images are committed on one another: a parent goes only after its
        // children, so images that conflict are tried again in the next round.
        let mut left: Vec<&String> = of(ObjectKind::Image).collect();
        let mut stalled = 0;
        while !left.is_empty() {
            let mut again = Vec::new();
            let mut last = None;
            for id in &left {
                let opts = RemoveImageOptionsBuilder::default().force(true).build();
                match self.docker.remove_image(id, Some(opts), None).await {
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {}
                    Err(e) if is_conflict(&e) => {
                        again.push(*id);
                        last = Some(map_err(format!("remove image `{id}`"), "image", id)(e));
                    }
                    r => {
                        r.map_err(map_err(format!("remove image `{id}`"), "image", id))?;
                    }
                }
            }
            if again.len() == left.len() {
                // The engine may still hold a just-removed container's reference.
                stalled += 1;
                if stalled >= 10 {
                    if let Some(e) = last {
                        return Err(e);
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            left = again;
        }
        Ok(Counts::of(found))
    }

    /// Whether an image is present in the engine.
    pub async fn image_exists(&self, image: &str) -> Result<bool, BackendError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(map_err(format!("inspect image `{image}`"), "image", image)(
                e,
            )),
        }
    }
}

/// Labelled networks by their Envfile name, with subnet and Linux bridge.
fn observed_networks(networks: Vec<bollard::models::Network>) -> BTreeMap<String, ObservedNetwork> {
    let mut out = BTreeMap::new();
    for n in networks {
        let labels = n.labels.unwrap_or_default();
        let Some(name) = labels.get(LABEL_NETWORK).cloned() else {
            continue;
        };
        let subnet = n
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().find_map(|c| c.subnet));
        let bridge = n.options.and_then(|o| o.get(BRIDGE_NAME_OPTION).cloned());
        out.insert(
            name.clone(),
            ObservedNetwork {
                name,
                engine_name: n.name.unwrap_or_default(),
                subnet,
                bridge,
            },
        );
    }
    out
}

/// A labelled container as a machine; `None` for one without a machine label.
/// `engine_to_env` maps Docker network names to Envfile names, so addresses are keyed as
/// the Envfile names them.
fn observed_machine(
    c: bollard::models::ContainerSummary,
    engine_to_env: &BTreeMap<String, String>,
    prefix: &str,
    engine: Option<&str>,
) -> Option<ObservedMachine> {
    let labels = c.labels.unwrap_or_default();
    let name = labels.get(LABEL_MACHINE).cloned()?;
    let mut addresses = BTreeMap::new();
    for (net, ep) in c
        .network_settings
        .and_then(|s| s.networks)
        .unwrap_or_default()
    {
        let ip = ep.ip_address.unwrap_or_default();
        if ip.is_empty() {
            continue;
        }
        let key = engine_to_env
            .get(&net)
            .cloned()
            .or_else(|| net.strip_prefix(prefix).map(str::to_string))
            .unwrap_or(net);
        addresses.insert(key, ip);
    }
    Some(ObservedMachine {
        name,
        backend: Backend::Docker,
        id: c.id.unwrap_or_default(),
        state: run_state(c.state),
        hash: labels.get(super::LABEL_HASH).cloned(),
        addresses,
        ports: published_ports(c.ports),
        engine: engine.map(str::to_string),
    })
}

/// Published ports as `ip:public->private/proto`, sorted and without repeats.
fn published_ports(ports: Option<Vec<bollard::models::PortSummary>>) -> Vec<String> {
    let mut ports: Vec<String> = ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let public = p.public_port?;
            let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            let ip = p.ip.unwrap_or_default();
            Some(format!("{ip}:{public}->{}/{proto}", p.private_port))
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_linux_limits_and_differ_per_env() {
        let a = bridge_name("demo-abc123", "mgmt");
        assert!(a.len() <= 15, "{a}");
        assert!(a.starts_with("hd"));
        assert_ne!(a, bridge_name("demo-abc124", "mgmt"));
        assert_ne!(a, bridge_name("demo-abc123", "data"));
        assert_eq!(network_name("e-1", DEFAULT_NETWORK), "e-1");
        assert_eq!(network_name("e-1", "default"), "e-1-default");
    }
}
