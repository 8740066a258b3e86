//! Bringing one VM up: its box's boot files and base disk in the `hdev` pool, its overlay,
//! its domain, and waiting until it answers SSH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::xml::{self, Boot, DomainSpec, Nic};
use super::{LibvirtBackend, LibvirtError};
use crate::backend::ssh::{SshKey, SshTarget};
use crate::boxes::libvirt::BaseVolumes;
use crate::envfile::{Env, Machine};
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
    env: &Env,
    instance: &str,
    m: &Machine,
    bridges: &BTreeMap<String, String>,
) -> Result<VmLayout, LibvirtError> {
    let addresses = xml::vm_addresses(env);
    let mut nics = Vec::new();
    for a in &m.networks {
        let net = env
            .networks
            .get(&a.network)
            .ok_or_else(|| LibvirtError::NotFound {
                what: "network",
                name: a.network.clone(),
            })?;
        let bridge = bridges
            .get(&a.network)
            .ok_or_else(|| LibvirtError::NotFound {
                what: "bridge of network",
                name: a.network.clone(),
            })?;
        let address = addresses
            .get(&(m.name.clone(), a.network.clone()))
            .copied()
            .ok_or_else(|| LibvirtError::NotFound {
                what: "address on network",
                name: a.network.clone(),
            })?;
        nics.push(Nic {
            network: a.network.clone(),
            bridge: bridge.clone(),
            mac: xml::mac_for(instance, &m.name, &a.network),
            address,
            prefix: net.subnet.prefix,
            gateway: net.subnet.gateway(),
        });
    }
    Ok(VmLayout {
        domain: xml::domain_name(instance, &m.name),
        nics,
    })
}

/// The SSH endpoint of a VM: its first NIC's address.
pub fn ssh_target(key: &SshKey, layout: &VmLayout) -> Option<SshTarget> {
    layout.nics.first().map(|n| SshTarget {
        key: key.private.clone(),
        user: "root".into(),
        host: n.address,
    })
}

/// Inputs of [`bring_up`] that come from outside the libvirt backend.
pub struct VmInputs<'a> {
    pub env: &'a Env,
    pub instance: &'a str,
    pub machine: &'a Machine,
    pub hash: &'a str,
    pub base: &'a BaseVolumes,
    pub layout: &'a VmLayout,
    pub key: &'a SshKey,
    pub domain_type: DomainType,
    pub console_log: PathBuf,
}

/// Defines and starts the VM (or starts it when it is defined and stopped), then waits
/// until it accepts SSH.
pub async fn bring_up(lv: &LibvirtBackend, v: VmInputs<'_>) -> Result<(), VmError> {
    let (key, layout, machine, console) = (
        v.key,
        v.layout,
        v.machine.name.clone(),
        v.console_log.clone(),
    );
    define(lv, v).await?;
    lv.start(&layout.domain).await?;
    let target = ssh_target(key, layout).ok_or_else(|| VmError::NoNetwork {
        machine: machine.clone(),
    })?;
    target
        .wait_ready(BOOT_TIMEOUT)
        .await
        .map_err(|e| VmError::Boot {
            machine,
            message: e.to_string(),
            console,
        })
}

/// Defines the VM on a fresh or existing overlay of its base volume, without starting it.
pub async fn define(lv: &LibvirtBackend, v: VmInputs<'_>) -> Result<(), VmError> {
    if v.layout.nics.is_empty() {
        return Err(VmError::NoNetwork {
            machine: v.machine.name.clone(),
        });
    }
    let a = v.base;
    let boot = match (&a.kernel, &a.initrd) {
        (Some(k), Some(i)) => Boot::Kernel {
            kernel: k.clone(),
            initrd: i.clone(),
        },
        _ => {
            return Err(VmError::NoKernel {
                machine: v.machine.name.clone(),
                box_name: a.name.clone(),
            })
        }
    };
    let disk = lv
        .ensure_overlay(&v.layout.domain, &a.disk, v.machine.disk)
        .await?;
    if let Some(dir) = v.console_log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LibvirtError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let spec = DomainSpec {
        instance: v.instance.to_string(),
        machine: v.machine.name.clone(),
        hash: v.hash.to_string(),
        env_dir: v.env.dir.display().to_string(),
        domain_type: v.domain_type,
        cpus: v.machine.cpus,
        memory_bytes: v.machine.memory.unwrap_or(DEFAULT_MEMORY),
        disk,
        boot,
        nics: v.layout.nics.clone(),
        ssh_public_key: v.key.public.clone(),
        console_log: v.console_log.clone(),
    };
    lv.define(xml::domain_xml(&spec)).await?;
    Ok(())
}

/// Why a VM could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    /// The box has a disk but no kernel to boot directly, and no cloud-init seed path
    /// applies.
    #[error("machine `{machine}`: box `{box_name}` has no kernel and initrd to boot directly")]
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
