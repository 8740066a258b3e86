//! Moving a throwaway copy's networks to free address ranges.
//!
//! Docker refuses two bridge networks with overlapping subnets, so two copies of one
//! Envfile cannot both use its subnets on one engine. A copy's every network moves to an
//! unused block of the same size; each fixed address keeps its offset in the block (the
//! Envfile's `.10` stays the copy's `.10`), so the layout keeps its meaning and machines
//! that find each other by name (they always can: every machine is a network alias) see
//! no difference. Host ports are left to the engine (ephemeral), since fixed ones would
//! collide between copies too. Choosing is pure; only [`host_routes`] reads the host.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::envfile::{Env, Ipv4Net, Network};

/// Where copies look for free blocks, in order: a range home and office networks rarely
/// use, then the rest of the private ranges.
const POOLS: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(10, 64, 0, 0), 10),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
];

/// At most this many blocks are tried per pool, so choosing is bounded for tiny subnets.
const MAX_TRIES: u64 = 1 << 16;

/// A free block for every network, none overlapping `taken` or each other. `seed` spreads
/// copies over the pool so that parallel runs rarely even try the same block.
pub(crate) fn choose(
    networks: &BTreeMap<String, Network>,
    taken: &[Ipv4Net],
    seed: u64,
) -> Result<BTreeMap<String, Ipv4Net>, super::ThrowawayError> {
    let mut used: Vec<Ipv4Net> = taken.to_vec();
    let mut out = BTreeMap::new();
    // Largest networks first: they are the hardest to place.
    let mut nets: Vec<&Network> = networks.values().collect();
    nets.sort_by_key(|n| (n.subnet.prefix, n.name.clone()));
    for n in nets {
        let prefix = n.subnet.prefix;
        let found = POOLS
            .iter()
            .filter(|(_, pool_prefix)| *pool_prefix <= prefix)
            .find_map(|(base, pool_prefix)| {
                let blocks = 1u64 << (prefix - pool_prefix);
                let size = 1u64 << (32 - prefix);
                let start = seed % blocks;
                (0..blocks.min(MAX_TRIES)).find_map(|i| {
                    let idx = (start + i) % blocks;
                    let addr = u64::from(u32::from(*base)) + idx * size;
                    let cand = Ipv4Net {
                        addr: Ipv4Addr::from(addr as u32),
                        prefix,
                    };
                    (!used.iter().any(|u| u.overlaps(&cand))).then_some(cand)
                })
            })
            .ok_or_else(|| super::ThrowawayError::NoFreeSubnet {
                network: n.name.clone(),
                prefix,
            })?;
        used.push(found);
        out.insert(n.name.clone(), found);
    }
    Ok(out)
}

/// The address at the same offset in `to` as `a` has in `from`.
pub(crate) fn moved(a: Ipv4Addr, from: &Ipv4Net, to: &Ipv4Net) -> Ipv4Addr {
    let offset = u32::from(a).wrapping_sub(u32::from(from.network())) & !to.mask();
    Ipv4Addr::from(u32::from(to.network()) | offset)
}

/// Moves the environment's networks (and fixed addresses on them) to `subnets`, and
/// leaves every published port's host side to the engine.
pub(crate) fn relocate(env: &mut Env, subnets: &BTreeMap<String, Ipv4Net>) {
    let old: BTreeMap<String, Ipv4Net> = env
        .networks
        .iter()
        .map(|(k, n)| (k.clone(), n.subnet))
        .collect();
    for (name, n) in env.networks.iter_mut() {
        if let Some(s) = subnets.get(name) {
            n.subnet = *s;
        }
    }
    for m in env.machines.values_mut() {
        for a in m.networks.iter_mut() {
            if let (Some(addr), Some(from), Some(to)) =
                (a.address, old.get(&a.network), subnets.get(&a.network))
            {
                a.address = Some(moved(addr, from, to));
            }
        }
        for p in m.ports.iter_mut() {
            p.host = None;
        }
    }
}

/// Destinations of the host's routes (the default route left out): a copy must not take
/// a range the host already reaches some other way.
pub(crate) fn host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// Parses `/proc/net/route`: hex fields in the kernel's (little-endian) byte order.
pub(crate) fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            (mask != 0).then(|| Ipv4Net {
                addr: Ipv4Addr::from(dest.to_le_bytes()),
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        let (a, p) = s.split_once('/').unwrap();
        Ipv4Net {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    fn nets(list: &[(&str, &str)]) -> BTreeMap<String, Network> {
        list.iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Network {
                        name: n.to_string(),
                        subnet: net(s),
                        encrypted: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn chosen_blocks_avoid_what_is_taken_and_each_other() {
        let wanted = nets(&[("lan", "10.42.0.0/24"), ("big", "192.168.0.0/16")]);
        // Take the block the seed points at, so the chooser has to move on.
        let taken = vec![net("10.64.7.0/24"), net("10.64.0.0/16")];
        let got = choose(&wanted, &taken, 7).unwrap();
        for (name, s) in &got {
            assert_eq!(s.prefix, wanted[name].subnet.prefix);
            assert_eq!(s.addr, s.network(), "{name}: {s} is not a block start");
            assert!(!taken.iter().any(|t| t.overlaps(s)), "{name}: {s}");
        }
        assert!(!got["lan"].overlaps(&got["big"]));
        // Different seeds spread copies apart.
        let other = choose(&wanted, &taken, 1007).unwrap();
        assert_ne!(got["lan"], other["lan"]);
    }

    #[test]
    fn a_full_pool_is_an_error_naming_the_network() {
        let wanted = nets(&[("huge", "10.0.0.0/8")]);
        let taken = vec![net("10.0.0.0/8"), net("172.16.0.0/12")];
        let e = choose(&wanted, &taken, 0).unwrap_err();
        assert!(e.to_string().contains("`huge`"), "{e}");
    }

    #[test]
    fn addresses_keep_their_offset() {
        let a = moved(
            "10.42.0.10".parse().unwrap(),
            &net("10.42.0.0/24"),
            &net("10.77.3.0/24"),
        );
        assert_eq!(a, "10.77.3.10".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn routes_are_read_in_kernel_byte_order() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec![net("192.168.0.0/24")]);
    }
}
