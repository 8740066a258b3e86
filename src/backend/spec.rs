//! The resolved, owned description an engine creates a machine from: everything it needs
//! from the Envfile, with paths made absolute, networks looked up and the base prepared,
//! so that engines never read the Envfile model.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::envfile::addresses::vm_addresses;
use crate::envfile::topology::{machine_uri, overlay_networks, remote_networks};
use crate::envfile::{Accel, Backend, Env, Ipv4Net, Machine, PortMap};

/// What a machine is created from, once an engine prepared it.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A Docker image reference (or id).
    Image(String),
    /// A VM's base volumes in libvirt.
    Volumes(super::libvirt::BaseVolumes),
}

/// A network a machine attaches to, as its engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Envfile network name.
    pub name: String,
    pub subnet: Ipv4Net,
    /// The machine's address on it: a container's fixed address if the Envfile gives one
    /// (else the engine assigns one); a VM's always (given, or from the upper half).
    pub address: Option<Ipv4Addr>,
    /// The engine connection (a libvirt URI) on whose host the network is a network of
    /// that engine, when it is not on this host's bridges (VMs on a remote libvirt).
    pub remote: Option<String>,
    /// The network spans Docker engines: an attachable Swarm overlay network.
    pub overlay: bool,
    /// An overlay whose traffic between hosts is encrypted (IPsec ESP).
    pub encrypted: bool,
}

impl NetSpec {
    /// The default network (machines that name none) as an overlay: the engine picks its
    /// subnet, which a /0 subnet stands for.
    pub fn default_overlay() -> NetSpec {
        NetSpec {
            name: crate::envfile::topology::DEFAULT_NETWORK.to_string(),
            subnet: Ipv4Net {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            },
            address: None,
            remote: None,
            overlay: true,
            encrypted: false,
        }
    }
}

/// A host folder shared with a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedFolder {
    /// Absolute host path.
    pub host: PathBuf,
    pub guest: String,
    pub readonly: bool,
}

/// Everything an engine needs to create one machine.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub name: String,
    pub backend: Backend,
    /// Per-machine hash, stored as a label.
    pub hash: String,
    pub base: Resolved,
    pub cpus: u32,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Disk size in bytes (VMs).
    pub disk: Option<u64>,
    /// Acceleration a VM asks for (its own, else the environment's).
    pub accel: Accel,
    /// The engine connection the machine lives on (a VM's libvirt URI).
    pub place: Option<String>,
    /// Networks in the Envfile's order.
    pub networks: Vec<NetSpec>,
    pub ports: Vec<PortMap>,
    pub synced: Vec<SyncedFolder>,
    pub env: BTreeMap<String, String>,
    /// Main process of a container; a keep-alive when absent.
    pub command: Option<Vec<String>>,
    /// `NAME:ADDRESS` entries for the machine's hosts file (VMs, which Docker's DNS does
    /// not know).
    pub extra_hosts: Vec<String>,
    /// For a VM whose host has a Docker engine: what its anchor gives it (filled in once
    /// the anchor exists; see `backend::anchor`).
    pub anchor: Option<super::anchor::AnchorNics>,
    /// A container without provisioning: the image it is created from is its baseline.
    /// It is created carrying that image in a label, and its baseline, taken in the run
    /// that creates it, commits nothing (see `docker::snapshot`).
    pub image_baseline: bool,
}

impl MachineSpec {
    /// The same machine on another base (a container recreated on a snapshot image).
    pub fn on(&self, base: Resolved) -> MachineSpec {
        MachineSpec {
            base,
            ..self.clone()
        }
    }

    /// The Docker image it is created from (empty for a VM).
    pub fn image(&self) -> &str {
        match &self.base {
            Resolved::Image(i) => i,
            Resolved::Volumes(_) => "",
        }
    }
}

/// Resolves machine `m` of `env` into the spec its engine creates it from.
pub fn spec_for(env: &Env, m: &Machine, hash: &str, base: Resolved) -> MachineSpec {
    let vm = m.backend == Backend::Libvirt;
    let overlays = overlay_networks(env);
    let (vm_ips, remote) = if vm {
        (vm_addresses(env), remote_networks(env))
    } else {
        Default::default()
    };
    MachineSpec {
        name: m.name.clone(),
        backend: m.backend,
        hash: hash.to_string(),
        base,
        cpus: m.cpus,
        memory: m.memory,
        disk: m.disk,
        accel: m.accel.unwrap_or(env.settings.accel),
        place: vm.then(|| machine_uri(env, m)),
        networks: m
            .networks
            .iter()
            .filter_map(|a| {
                env.networks.get(&a.network).map(|n| NetSpec {
                    name: n.name.clone(),
                    subnet: n.subnet,
                    address: match vm {
                        true => vm_ips.get(&(m.name.clone(), n.name.clone())).copied(),
                        false => a.address,
                    },
                    remote: remote.get(&n.name).cloned(),
                    overlay: overlays.contains(&n.name),
                    encrypted: n.encrypted,
                })
            })
            .collect(),
        ports: m.ports.clone(),
        synced: m
            .synced_folders
            .iter()
            .map(|s| SyncedFolder {
                host: env.resolve(&s.host),
                guest: s.guest.clone(),
                readonly: s.readonly,
            })
            .collect(),
        env: m.env.clone(),
        command: m.command.clone(),
        extra_hosts: crate::envfile::addresses::vm_host_entries(env),
        anchor: None,
        image_baseline: m.backend == Backend::Docker && m.provision.is_empty(),
    }
}
