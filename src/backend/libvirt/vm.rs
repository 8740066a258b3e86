//! Bringing one VM up: its box's boot files and base disk in the `hdev` pool, its overlay,
//! its domain, and waiting until it answers SSH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::seed;
use super::volumes::BaseVolumes;
use super::xml::{self, Boot, DomainSpec, Nic};
use super::{LibvirtBackend, LibvirtError};
use crate::backend::ssh::{HostKey, SshKey, SshTarget};
use crate::backend::MachineSpec;
use crate::boxes::manifest::Boot as BoxBoot;
use crate::host::DomainType;

/// How long a VM may take from start to accepting SSH. Under software emulation a Debian
/// guest boots in tens of seconds; the bound is generous for loaded CI machines.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Memory a VM gets when the Envfile gives none.
pub const DEFAULT_MEMORY: u64 = 512 << 20;

/// Everything about a VM that follows from the environment, before touching libvirt.
#[derive(Debug, Clone)]
pub struct VmLayout {
    pub domain: String,
    pub nics: Vec<Nic>,
}

/// Works out a VM's NICs: its networks' bridges, MACs and addresses.
pub fn layout(
    instance: &str,
    spec: &MachineSpec,
    bridges: &BTreeMap<String, String>,
) -> Result<VmLayout, LibvirtError> {
    let mut nics = Vec::new();
    if let Some(a) = &spec.anchor {
        // Anchored: managed through a NIC on this machine's `_manage` bridge, first.
        let m = &a.manage;
        nics.push(Nic {
            network: m.name.clone(),
            bridge: crate::backend::docker::bridge_name(instance, &m.name),
            tap: None,
            mtu: None,
            mac: xml::mac_for(instance, &spec.name, &m.name),
            address: m.address.ok_or_else(|| LibvirtError::NotFound {
                what: "address on network",
                name: m.name.clone(),
            })?,
            prefix: m.subnet.prefix,
            gateway: m.subnet.gateway(),
        });
    }
    for n in &spec.networks {
        let address = n.address.ok_or_else(|| LibvirtError::NotFound {
            what: "address on network",
            name: n.name.clone(),
        })?;
        let anchored = spec.anchor.as_ref().and_then(|a| a.macs.get(&n.name));
        let (bridge, tap, mac) = match anchored {
            // The anchor's identity, through a tap that hdev moves into its namespace.
            Some(mac) => (
                String::new(),
                Some(crate::backend::anchor::tap_name(
                    instance, &spec.name, &n.name,
                )),
                mac.clone(),
            ),
            None => (
                bridges
                    .get(&n.name)
                    .ok_or_else(|| LibvirtError::NotFound {
                        what: "bridge of network",
                        name: n.name.clone(),
                    })?
                    .clone(),
                None,
                xml::mac_for(instance, &spec.name, &n.name),
            ),
        };
        nics.push(Nic {
            network: n.name.clone(),
            bridge,
            mtu: (tap.is_some() && n.overlay).then_some(crate::backend::anchor::OVERLAY_MTU),
            tap,
            mac,
            address,
            prefix: n.subnet.prefix,
            gateway: n.subnet.gateway(),
        });
    }
    Ok(VmLayout {
        domain: xml::domain_name(instance, &spec.name),
        nics,
    })
}

/// The SSH endpoint of a VM: its first NIC's address, checked against the host key hdev
/// pinned for it in the environment's state folder `state_root`.
pub fn ssh_target(key: &SshKey, layout: &VmLayout, state_root: &Path) -> Option<SshTarget> {
    layout.nics.first().map(|n| SshTarget {
        key: key.private.clone(),
        user: "root".into(),
        host: n.address,
        proxy: None,
        pin: HostKey::pin(state_root, &layout.domain),
        control: None,
    })
}

/// Inputs of [`define`] that come from outside the libvirt backend.
pub struct VmInputs<'a> {
    pub spec: &'a MachineSpec,
    pub instance: &'a str,
    /// The environment's folder, recorded in the domain's metadata.
    pub env_dir: &'a Path,
    pub base: &'a BaseVolumes,
    pub layout: &'a VmLayout,
    pub key: &'a SshKey,
    /// The VM's own host key, handed to it through its seed.
    pub host_key: &'a HostKey,
    pub domain_type: DomainType,
    pub console_log: PathBuf,
    /// The memory image the VM's base disk was kept with, if any: the VM resumes from it
    /// when its identity is that image's (see [`xml::identity`]).
    pub memory: Option<&'a KeptMemory>,
}

/// The memory image of a kept disk layer, and what the guest in it holds of its
/// identity beyond the domain definition.
#[derive(Debug, Clone)]
pub struct KeptMemory {
    /// The memory image's path.
    pub path: String,
    /// The identity of the domain it was saved from.
    pub identity: String,
    /// That domain's UUID, which the image carries.
    pub uuid: String,
    /// The host key the guest in it runs with.
    pub host_key: HostKey,
}

/// Defines the VM on a fresh or existing overlay of its base volume, without starting it.
/// When it is to resume from `v.memory` (its identity is the image's), its seed carries
/// the image's host key and the host key it returns is that one; otherwise `None`.
pub async fn define(lv: &LibvirtBackend, v: VmInputs<'_>) -> Result<Option<HostKey>, VmError> {
    if v.layout.nics.is_empty() {
        return Err(VmError::NoNetwork {
            machine: v.spec.name.clone(),
        });
    }
    let a = v.base;
    let dns = crate::host::upstream_resolvers();
    let boot = seed_and_boot(lv, &v, v.host_key, &dns).await?;
    let disk = lv
        .ensure_overlay(&v.layout.domain, &a.disk, v.spec.disk)
        .await?;
    if let Some(dir) = v.console_log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LibvirtError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut spec = DomainSpec {
        instance: v.instance.to_string(),
        machine: v.spec.name.clone(),
        hash: v.spec.hash.clone(),
        env_dir: v.env_dir.display().to_string(),
        domain_type: v.domain_type,
        cpus: v.spec.cpus,
        memory_bytes: v.spec.memory.unwrap_or(DEFAULT_MEMORY),
        disk,
        boot,
        nics: v.layout.nics.clone(),
        ssh_public_key: v.key.public.clone(),
        console_log: v.console_log.clone(),
        dns: dns.clone(),
        resume: None,
    };
    let kept = v.memory.filter(|m| m.identity == xml::identity(&spec));
    if let Some(m) = kept {
        // The guest in the image runs with the host key it was given: its seed (read
        // again at every later boot) gives the same one.
        spec.boot = seed_and_boot(lv, &v, &m.host_key, &dns).await?;
        spec.resume = Some(xml::Resume {
            uuid: m.uuid.clone(),
            memory: m.path.clone(),
        });
    }
    lv.define(xml::domain_xml(&spec)).await?;
    Ok(kept.map(|m| m.host_key.clone()))
}

/// Writes the VM's seed (with `host_key`) into the pool; how the VM boots.
async fn seed_and_boot(
    lv: &LibvirtBackend,
    v: &VmInputs<'_>,
    host_key: &HostKey,
    dns: &[std::net::Ipv4Addr],
) -> Result<Boot, VmError> {
    let a = v.base;
    Ok(match (a.boot, &a.kernel, &a.initrd) {
        // The kernel command line says the rest, but it is readable by every user in the
        // guest: the host key's private half comes on a seed disk only root reads.
        (BoxBoot::Kernel, Some(k), Some(i)) => Boot::Kernel {
            kernel: k.clone(),
            initrd: i.clone(),
            seed: lv
                .put_seed(
                    &format!("{}.seed.tar", v.layout.domain),
                    seed::host_key_tar(host_key),
                )
                .await?,
        },
        (BoxBoot::Kernel, _, _) => {
            return Err(VmError::NoKernel {
                machine: v.spec.name.clone(),
                box_name: a.name.clone(),
            })
        }
        // A disk with its own boot loader: configured by cloud-init from a NoCloud
        // seed (an image without cloud-init ignores it).
        (BoxBoot::CloudInit | BoxBoot::Disk, _, _) => {
            let iso = seed_iso_for(v, host_key, dns);
            Boot::Disk {
                seed: lv
                    .put_seed(&format!("{}.seed.iso", v.layout.domain), iso)
                    .await?,
            }
        }
    })
}

/// The NoCloud seed of a machine; its instance id follows the seed's content, so a
/// changed seed is applied again.
fn seed_iso_for(v: &VmInputs<'_>, host_key: &HostKey, dns: &[std::net::Ipv4Addr]) -> Vec<u8> {
    let spec = seed::SeedSpec {
        hostname: &v.spec.name,
        instance_id: "",
        ssh_public_key: &v.key.public,
        host_key,
        nics: &v.layout.nics,
        dns,
    };
    let mut h = Sha256::new();
    for (name, data) in seed::files(&spec) {
        h.update(name.as_bytes());
        h.update(&data);
    }
    let id = format!("{}-{}", v.layout.domain, &hex::encode(h.finalize())[..12]);
    seed::seed_iso(&seed::SeedSpec {
        instance_id: &id,
        ..spec
    })
}

/// Why a VM could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    /// The box says it boots its kernel directly but carries no kernel and initrd.
    #[error("machine `{machine}`: box `{box_name}` boots its kernel directly but has no kernel and initrd; rebuild the box, or mark it `boot = \"cloud-init\"` if its disk boots by itself")]
    NoKernel { machine: String, box_name: String },
    /// A VM needs a network to be reached over SSH.
    #[error("machine `{machine}` is on no network, so hdev cannot reach it over SSH; give it `networks = [...]`")]
    NoNetwork { machine: String },
    /// The VM started but never answered SSH.
    #[error("machine `{machine}` did not come up: {message}; its console is in `{}`", console.display())]
    Boot {
        machine: String,
        message: String,
        console: PathBuf,
    },
}

/// Console log path of a machine inside the environment's state folder.
pub fn console_log(state_root: &Path, machine: &str) -> PathBuf {
    state_root
        .join("logs")
        .join(format!("{machine}.console.log"))
}
