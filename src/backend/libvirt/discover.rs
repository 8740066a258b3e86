//! The VM side of destroy and gc: finding domains hdev made (by their metadata, not by
//! the Envfile, so VMs of machines since removed from it are found too), and the libvirt
//! networks made for VMs on remote hosts; removing them, VMs first.

use std::collections::{BTreeMap, BTreeSet};

use super::machines::Vms;
use super::LibvirtError;
use crate::backend::{BackendError, Counts, Discovery, Found, ObjectKind};
use crate::envfile::Backend;

fn err(e: LibvirtError) -> BackendError {
    BackendError::Engine {
        action: "libvirt".into(),
        message: e.to_string(),
    }
}

/// Domains (and, for one instance, its remote networks) on every connection.
pub(super) async fn discover(vms: &Vms, instance: Option<&str>) -> Result<Discovery, BackendError> {
    let mut out = Discovery {
        found: Vec::new(),
        unreachable: vms.unreachable.clone(),
    };
    for (uri, lv) in &vms.conns {
        for v in lv.observe(instance).await.map_err(err)? {
            out.found.push(Found {
                backend: Backend::Libvirt,
                kind: ObjectKind::Vm,
                id: v.domain,
                instance: v.instance,
                dir: v.dir.unwrap_or_default(),
                place: Some(uri.clone()),
            });
        }
    }
    match instance {
        // One environment: the networks its Envfile puts on remote hosts, by exact name.
        Some(instance) => {
            for (name, uri) in vms.remote_network_names(instance) {
                out.found.push(Found {
                    backend: Backend::Libvirt,
                    kind: ObjectKind::Network,
                    id: name,
                    instance: instance.to_string(),
                    dir: String::new(),
                    place: Some(uri),
                });
            }
        }
        // Every environment (gc, no Envfile): every network hdev made, with the folder
        // its metadata records, else that of the instance's VMs; one that names neither
        // (made by an older hdev, its VMs gone) serves no VM and counts as dead.
        None => {
            let owners: BTreeMap<(String, String), String> = out
                .found
                .iter()
                .filter_map(|f| {
                    let uri = f.place.clone()?;
                    Some(((uri, f.instance.clone()), f.dir.clone()))
                })
                .collect();
            for (uri, lv) in &vms.conns {
                for (name, inst, dir) in lv.hdev_networks().await.map_err(err)? {
                    let dir = dir
                        .or_else(|| owners.get(&(uri.clone(), inst.clone())).cloned())
                        .unwrap_or_default();
                    out.found.push(Found {
                        backend: Backend::Libvirt,
                        kind: ObjectKind::Network,
                        id: name,
                        instance: inst,
                        dir,
                        place: Some(uri.clone()),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Removes found domains with their volumes, then the found libvirt networks.
pub(super) async fn remove(vms: &Vms, found: &[Found]) -> Result<Counts, BackendError> {
    let mut counts = Counts::default();
    let mut nets: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for f in found {
        let Some(uri) = f.place.as_deref() else {
            continue;
        };
        let Some(lv) = vms.conns.get(uri) else {
            continue;
        };
        match f.kind {
            ObjectKind::Vm => {
                lv.destroy(&f.id).await.map_err(err)?;
                counts.vms += 1;
            }
            ObjectKind::Network => {
                nets.entry(uri).or_default().insert(f.id.clone());
            }
            _ => {}
        }
    }
    for (uri, names) in nets {
        if let Some(lv) = vms.conns.get(uri) {
            counts.networks += lv.remove_networks(names).await.map_err(err)?;
        }
    }
    Ok(counts)
}
