//! Addresses hdev assigns on environment networks. The lower half of a subnet is for the
//! Envfile's fixed addresses; Docker's IPAM hands out the third quarter to containers
//! without one, and VMs without one get the fourth, in machine-name order. Pure: the same
//! Envfile always gives the same addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::model::{Backend, Env, Ipv4Net};

/// The first address VMs may be given without a fixed address: the last quarter of the
/// subnet (Docker hands out the third quarter, fixed addresses live in the lower half).
pub fn vm_pool_start(net: &Ipv4Net) -> Ipv4Addr {
    let size = 1u64 << (32 - net.prefix);
    Ipv4Addr::from(u32::from(net.auto_start()) + (size / 4) as u32)
}

/// Addresses of every VM NIC: fixed ones as the Envfile gives them, the others from the
/// last quarter of the subnet in machine-name order.
pub fn vm_addresses(env: &Env) -> BTreeMap<(String, String), Ipv4Addr> {
    let mut taken: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for m in env.machines.values() {
        for a in &m.networks {
            if let Some(ip) = a.address {
                taken.entry(a.network.clone()).or_default().push(ip);
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut next: BTreeMap<String, u32> = BTreeMap::new();
    for m in env
        .machines
        .values()
        .filter(|m| m.backend == Backend::Libvirt)
    {
        for a in &m.networks {
            let Some(net) = env.networks.get(&a.network) else {
                continue;
            };
            let ip = match a.address {
                Some(ip) => ip,
                None => {
                    let cursor = next
                        .entry(a.network.clone())
                        .or_insert_with(|| u32::from(vm_pool_start(&net.subnet)));
                    let used = taken.entry(a.network.clone()).or_default();
                    while used.contains(&Ipv4Addr::from(*cursor)) {
                        *cursor += 1;
                    }
                    let ip = Ipv4Addr::from(*cursor);
                    *cursor += 1;
                    used.push(ip);
                    ip
                }
            };
            out.insert((m.name.clone(), a.network.clone()), ip);
        }
    }
    out
}

/// `NAME:ADDRESS` host entries for every VM, so that containers (which resolve each
/// other through Docker's DNS) reach VMs by name too.
pub fn vm_host_entries(env: &Env) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    vm_addresses(env)
        .into_iter()
        .filter(|((m, _), _)| seen.insert(m.clone()))
        .map(|((m, _), ip)| format!("{m}:{ip}"))
        .collect()
}
