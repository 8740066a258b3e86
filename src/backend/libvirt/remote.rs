//! Libvirt networks on a remote host, for the VMs there. Which networks those are is the
//! Envfile's business (`envfile::topology`); their libvirt names and XML are this engine's.

use std::collections::BTreeSet;

use super::xml::esc;
use super::{call, LibvirtBackend, LibvirtError};
use crate::backend::NetSpec;

/// Name of the libvirt network standing for an environment network on a remote host.
pub fn network_name(instance: &str, network: &str) -> String {
    format!("hdev-{instance}-{network}")
}

/// The libvirt network XML: the bridge name VMs plug into, the gateway on it, NAT out;
/// its metadata names the environment and its folder, so `gc` can tell when it is gone.
pub fn network_xml(instance: &str, env_dir: &std::path::Path, n: &NetSpec) -> String {
    format!(
        "<network><name>{}</name><metadata><hdev:network xmlns:hdev='{}' env='{}' network='{}' dir='{}'/></metadata><forward mode='nat'/><bridge name='{}' stp='off'/><ip address='{}' prefix='{}'/></network>",
        esc(&network_name(instance, &n.name)),
        "https://hdev.dev/xmlns/network/1",
        esc(instance),
        esc(&n.name),
        esc(&env_dir.display().to_string()),
        crate::backend::docker::bridge_name(instance, &n.name),
        n.subnet.gateway(),
        n.subnet.prefix
    )
}

impl LibvirtBackend {
    /// Defines and starts the libvirt network (kept across host restarts); an existing
    /// one is started if it is down.
    pub async fn ensure_network(&self, name: &str, xml: String) -> Result<(), LibvirtError> {
        let name = name.to_string();
        self.blocking(move |c| {
            let net = match c.lookup_network_by_name(&name) {
                Ok(n) => n,
                Err(_) => match c.define_network_xml(&xml) {
                    Ok(n) => n,
                    // Another VM of the same network defined it meanwhile.
                    Err(e) => c
                        .lookup_network_by_name(&name)
                        .map_err(|_| call(format!("define network `{name}`"))(e))?,
                },
            };
            let _ = net.set_autostart(true);
            if !net.is_active().unwrap_or(false) {
                if let Err(e) = net.create() {
                    if !net.is_active().unwrap_or(false) {
                        return Err(call(format!("start network `{name}`"))(e));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Every libvirt network hdev made, whatever the environment: `(name, instance, the
    /// environment's folder if recorded)`, from each network's metadata.
    pub async fn hdev_networks(
        &self,
    ) -> Result<Vec<(String, String, Option<String>)>, LibvirtError> {
        self.blocking(move |c| {
            let mut nets = c.list_all_networks(0).map_err(call("list networks"))?;
            let mut out = Vec::new();
            for net in nets.drain(..) {
                let (Ok(name), Ok(xml)) = (net.name(), net.xml_desc(0)) else {
                    continue;
                };
                let meta = super::xml::parse_element_metadata(&xml, "network");
                if let Some(env) = meta.get("env") {
                    out.push((name, env.clone(), meta.get("dir").cloned()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The libvirt networks hdev made for instance `instance` (by name).
    pub async fn network_names(&self, instance: &str) -> Result<BTreeSet<String>, LibvirtError> {
        let prefix = format!("hdev-{instance}-");
        self.blocking(move |c| {
            let mut names: BTreeSet<String> = c
                .list_networks()
                .map_err(call("list networks"))?
                .into_iter()
                .collect();
            names.extend(c.list_defined_networks().map_err(call("list networks"))?);
            names.retain(|n| n.starts_with(&prefix));
            Ok(names)
        })
        .await
    }

    /// Stops and undefines the environment's libvirt networks named in `names`; missing
    /// ones are fine. Returns how many were removed.
    pub async fn remove_networks(&self, names: BTreeSet<String>) -> Result<usize, LibvirtError> {
        self.blocking(move |c| {
            let mut removed = 0;
            for name in names {
                let Ok(net) = c.lookup_network_by_name(&name) else {
                    continue;
                };
                if net.is_active().unwrap_or(false) {
                    net.destroy()
                        .map_err(call(format!("stop network `{name}`")))?;
                }
                net.undefine()
                    .map_err(call(format!("remove network `{name}`")))?;
                removed += 1;
            }
            Ok(removed)
        })
        .await
    }
}
