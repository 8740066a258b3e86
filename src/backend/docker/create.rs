//! Creating what a Docker environment is made of: one labelled bridge network per
//! Envfile network (with a Linux bridge name a VM backend can attach to), and one labelled
//! container per machine.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use super::{
    bridge_name, container_name, is_conflict, map_err, network_name, DockerBackend,
    BRIDGE_NAME_OPTION, DEFAULT_NETWORK,
};
use crate::backend::{
    BackendError, EnvCtx, MachineSpec, NetSpec, LABEL_BASELINE_IMAGE, LABEL_DIR, LABEL_ENV,
    LABEL_HASH, LABEL_MACHINE, LABEL_NETWORK,
};

/// Main process of a container without `command`: sleeps, and ends at once on SIGTERM so
/// that `halt` is quick.
pub(super) const KEEP_ALIVE: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done";

pub(super) fn env_labels(ctx: &EnvCtx) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_ENV.to_string(), ctx.instance.clone()),
        (
            LABEL_DIR.to_string(),
            ctx.dir.to_string_lossy().into_owned(),
        ),
    ])
}

impl DockerBackend {
    /// Creates an environment network unless it exists; `None` is the default network of
    /// machines that name none.
    pub async fn ensure_network(
        &self,
        ctx: &EnvCtx,
        net: Option<&NetSpec>,
    ) -> Result<(), BackendError> {
        let env_name = net.map(|n| n.name.as_str()).unwrap_or(DEFAULT_NETWORK);
        let name = network_name(&ctx.instance, env_name);
        let mut labels = env_labels(ctx);
        labels.insert(LABEL_NETWORK.to_string(), env_name.to_string());
        let overlay = net.is_some_and(|n| n.overlay);
        // A /0 subnet: the engine picks one (the default network as an overlay).
        let ipam = net.filter(|n| n.subnet.prefix > 0).map(|n| Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(format!("{}/{}", n.subnet.network(), n.subnet.prefix)),
                gateway: Some(n.subnet.gateway().to_string()),
                // Containers without a fixed address get one from the lower half; VMs
                // are given addresses from the upper half (see libvirt::xml::vm_addresses).
                ip_range: Some(crate::backend::docker::container_range(&n.subnet).to_string()),
                ..Default::default()
            }]),
            options: None,
        });
        // An overlay spans hosts' engines (made on a swarm manager, attachable so plain
        // containers join it); a bridge is one engine's, with a Linux bridge name VMs on
        // this host plug into.
        let (driver, options) = if overlay {
            let encrypted = net.is_some_and(|n| n.encrypted);
            let options =
                encrypted.then(|| HashMap::from([("encrypted".to_string(), String::new())]));
            ("overlay", options)
        } else {
            let bridge = bridge_name(&ctx.instance, env_name);
            let options = HashMap::from([(BRIDGE_NAME_OPTION.to_string(), bridge)]);
            ("bridge", Some(options))
        };
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(driver.into()),
            attachable: Some(overlay),
            ipam,
            options,
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) if e.to_string().contains("Pool overlaps") => {
                let subnet = net.map(|n| n.subnet.to_string()).unwrap_or_default();
                Err(BackendError::Engine {
                    action: format!("create network `{name}` for `{env_name}`"),
                    message: format!(
                        "subnet {subnet} overlaps {}; give `{env_name}` another subnet, or remove that network",
                        self.holder_of(net).await
                    ),
                })
            }
            Err(e) => Err(map_err(
                format!("create network `{name}` for `{env_name}`"),
                "network",
                &name,
            )(e)),
        }
    }

    /// Which network on this engine holds a subnet that overlaps `net`'s, and which
    /// environment it belongs to, in words.
    async fn holder_of(&self, net: Option<&NetSpec>) -> String {
        let Some(want) = net.map(|n| n.subnet) else {
            return "a network of this engine".into();
        };
        let all = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .unwrap_or_default();
        for n in all {
            let subnets = n
                .ipam
                .and_then(|i| i.config)
                .into_iter()
                .flatten()
                .filter_map(|c| crate::envfile::units::parse_subnet(&c.subnet?).ok());
            if subnets.into_iter().any(|s| s.overlaps(&want)) {
                let name = n.name.unwrap_or_default();
                return match n.labels.and_then(|l| l.get(LABEL_ENV).cloned()) {
                    Some(env) => format!("network `{name}` of hdev environment `{env}`"),
                    None => format!("network `{name}` (not made by hdev)"),
                };
            }
        }
        "a network of this engine".into()
    }

    /// Creates (does not start) a machine's container and attaches it to its networks.
    /// A container whose image is its baseline carries that image in a label.
    pub async fn create_machine(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
    ) -> Result<String, BackendError> {
        let baseline = spec.image_baseline.then(|| spec.image().to_string());
        self.create_container_of(ctx, spec, baseline.as_deref())
            .await
    }

    /// [`Self::create_machine`] with the image its baseline is, if that is an image it was
    /// created from (a container recreated on a snapshot keeps its first image's label).
    pub(super) async fn create_container_of(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        baseline_image: Option<&str>,
    ) -> Result<String, BackendError> {
        let name = container_name(&ctx.instance, &spec.name);
        let endpoints = endpoints(ctx, spec);
        let mut body = create_body(ctx, spec, endpoints.first().cloned());
        if let (Some(image), Some(labels)) = (baseline_image, body.labels.as_mut()) {
            labels.insert(LABEL_BASELINE_IMAGE.to_string(), image.to_string());
        }
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => BackendError::ImageMissing {
                    machine: spec.name.clone(),
                    image: spec.image().to_string(),
                },
                e => map_err(
                    format!("create container `{name}` for machine `{}`", spec.name),
                    "container",
                    &name,
                )(e),
            })?;
        self.attach_further(&spec.name, &created.id, endpoints)
            .await?;
        Ok(created.id)
    }

    /// Joins a created container to the networks after its first; API 1.41 attaches one
    /// network at creation, the others join before the start.
    pub(super) async fn attach_further(
        &self,
        machine: &str,
        id: &str,
        endpoints: Vec<(String, EndpointSettings)>,
    ) -> Result<(), BackendError> {
        for (net, ep) in endpoints.into_iter().skip(1) {
            let req = NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: Some(ep),
            };
            if let Err(e) = self.docker.connect_network(&net, req).await {
                // Half-attached is worse than absent: the next `up` would keep it as is.
                let _ = self.remove(id).await;
                return Err(map_err(
                    format!("attach machine `{machine}` to network `{net}`"),
                    "network",
                    &net,
                )(e));
            }
        }
        Ok(())
    }
}

/// The Docker network and endpoint of each of a machine's networks, in the Envfile's
/// order; a machine that names none is on the environment's default network.
fn endpoints(ctx: &EnvCtx, m: &MachineSpec) -> Vec<(String, EndpointSettings)> {
    let mut endpoints: Vec<(String, EndpointSettings)> = Vec::new();
    if m.networks.is_empty() {
        endpoints.push((
            network_name(&ctx.instance, DEFAULT_NETWORK),
            endpoint(&m.name, None),
        ));
    }
    for a in &m.networks {
        endpoints.push((
            network_name(&ctx.instance, &a.name),
            endpoint(&m.name, a.address.map(|ip| ip.to_string())),
        ));
    }
    endpoints
}

/// Host bindings by `port/protocol` key, as Docker's host config takes them.
type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// Published ports: the exposed `port/protocol` keys, in the Envfile's order, and the host
/// bindings of each. A port without a host address is published on loopback only (a
/// developer's services are not for the network by default); `0.0.0.0:` opens it to all.
fn port_bindings(m: &MachineSpec) -> (Vec<String>, PortBindings) {
    let mut exposed = Vec::new();
    let mut bindings: PortBindings = HashMap::new();
    for p in &m.ports {
        let key = format!("{}/{}", p.guest, p.protocol);
        exposed.push(key.clone());
        bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.unwrap_or(Ipv4Addr::LOCALHOST).to_string()),
                host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    (exposed, bindings)
}

/// Synced folders as bind mounts, `host:guest[:ro]`.
fn binds(m: &MachineSpec) -> Vec<String> {
    m.synced
        .iter()
        .map(|f| {
            format!(
                "{}:{}{}",
                f.host.to_string_lossy(),
                f.guest,
                if f.readonly { ":ro" } else { "" }
            )
        })
        .collect()
}

/// The container's create request; `first` is the network it is attached to at creation.
fn create_body(
    ctx: &EnvCtx,
    m: &MachineSpec,
    first: Option<(String, EndpointSettings)>,
) -> ContainerCreateBody {
    let mut labels = env_labels(ctx);
    labels.insert(LABEL_MACHINE.to_string(), m.name.clone());
    labels.insert(LABEL_HASH.to_string(), m.hash.clone());
    let (exposed, bindings) = port_bindings(m);
    let binds = binds(m);
    let cmd = m
        .command
        .clone()
        .unwrap_or_else(|| vec!["sh".to_string(), "-c".to_string(), KEEP_ALIVE.to_string()]);
    ContainerCreateBody {
        hostname: Some(m.name.clone()),
        image: Some(m.image().to_string()),
        cmd: Some(cmd),
        env: Some(m.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(5),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            nano_cpus: Some(i64::from(m.cpus) * 1_000_000_000),
            memory: m.memory.and_then(|b| i64::try_from(b).ok()),
            // A real init forwards SIGTERM to a user command that is PID 1 (and would
            // ignore it); the keep-alive handles TERM itself.
            init: m.command.is_some().then_some(true),
            network_mode: first.as_ref().map(|(n, _)| n.clone()),
            extra_hosts: (!m.extra_hosts.is_empty()).then(|| m.extra_hosts.clone()),
            ..Default::default()
        }),
        networking_config: first.map(|(n, ep)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n, ep)])),
        }),
        ..Default::default()
    }
}

pub(super) fn endpoint(machine: &str, address: Option<String>) -> EndpointSettings {
    EndpointSettings {
        aliases: Some(vec![machine.to_string()]),
        ipam_config: address.map(|a| EndpointIpamConfig {
            ipv4_address: Some(a),
            ..Default::default()
        }),
        ..Default::default()
    }
}
