//! The host side of anchoring a VM (see `docker::anchor`): in the anchor container's
//! network namespace each of its interfaces becomes a bridge port, and the VM's taps,
//! which libvirt opens in this machine's namespace, move onto those bridges.
//!
//! A VM reaches the outside and hdev reaches the VM through one more NIC, first and
//! plain: a bridge on this machine's Docker engine (the `_manage` network), so SSH,
//! provisioning and drift work as for any VM here. Moving links between namespaces needs
//! CAP_NET_ADMIN on this machine: anchoring is refused clearly without it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{BackendError, NetSpec};
use crate::envfile::Ipv4Net;

/// Envfile-side name of the network anchored VMs are managed through.
pub const MANAGE_NETWORK: &str = "_manage";

/// MTU of a Docker overlay network (VXLAN takes 50 bytes).
pub const OVERLAY_MTU: u32 = 1450;

/// What an anchored VM's NICs are made of, beside its networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorNics {
    /// The management network with the VM's address on it (its first NIC).
    pub manage: NetSpec,
    /// Envfile network -> the MAC the VM takes from its anchor.
    pub macs: BTreeMap<String, String>,
}

/// The management network of an instance: a /24 of 169.254.0.0/16 picked by the
/// instance's name (never 169.254.169.0/24, where clouds keep their metadata service).
pub fn manage_net(instance: &str) -> Ipv4Net {
    let d = Sha256::digest(instance.as_bytes());
    let mut third = 1 + (u16::from_be_bytes([d[0], d[1]]) % 253) as u8;
    if third == 169 {
        third = 170;
    }
    Ipv4Net {
        addr: Ipv4Addr::new(169, 254, third, 0),
        prefix: 24,
    }
}

/// The management NIC of the `index`-th anchored VM of an instance.
pub fn manage_spec(instance: &str, index: u32) -> NetSpec {
    let subnet = manage_net(instance);
    NetSpec {
        name: MANAGE_NETWORK.to_string(),
        subnet,
        address: Ipv4Net::offset(subnet.auto_start(), 1 + index),
        remote: None,
        overlay: false,
        encrypted: false,
    }
}

/// The tap of a VM's NIC on `network`: `hdt` and 12 hex digits (Linux allows 15).
pub fn tap_name(instance: &str, machine: &str, network: &str) -> String {
    let d = Sha256::digest(format!("{instance}\0{machine}\0{network}").as_bytes());
    format!("hdt{}", &hex::encode(d)[..12])
}

fn failed(action: &str, message: impl Into<String>) -> BackendError {
    BackendError::Engine {
        action: action.to_string(),
        message: message.into(),
    }
}

/// Fails clearly when this process cannot move network links between namespaces.
pub fn check_privilege(machine: &str) -> Result<(), BackendError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Ok(());
    }
    Err(failed(
        &format!("anchor VM `{machine}`"),
        "a VM placed on a host's Docker engine joins its networks through an anchor container, which needs root on this machine (moving its NICs into the anchor's namespace takes CAP_NET_ADMIN); run hdev as root, or place the VM without `host`",
    ))
}

/// Runs `ip ARGS` in the network namespace of `pid` (this machine's own when `None`).
fn ip(pid: Option<u32>, args: &[&str]) -> Result<String, BackendError> {
    let mut c = match pid {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &p.to_string(), "-n", "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    let out = c
        .args(args)
        .output()
        .map_err(|e| failed("run `ip`", e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            &format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// One link as `ip -j link` reports it.
#[derive(Debug, serde::Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    mtu: u32,
}

fn links(pid: Option<u32>) -> Result<Vec<Link>, BackendError> {
    let text = ip(pid, &["-j", "link", "show"])?;
    serde_json::from_str(&text).map_err(|e| failed("read links", e.to_string()))
}

/// The bridge of the anchor's `i`-th network, inside its namespace.
fn bridge(i: usize) -> String {
    format!("hb{i}")
}

/// Makes each of the anchor's interfaces (found by MAC, in `macs`' order) a port of a
/// bridge of its own, without its address and with another MAC, so the VM can take both.
/// Done once per namespace: a bridge that exists is kept. Returns each bridge's MTU.
pub fn bridge_anchor(
    pid: u32,
    macs: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, (String, u32)>, BackendError> {
    let now = links(Some(pid))?;
    let mut out = BTreeMap::new();
    for (i, (network, mac)) in macs.iter().enumerate() {
        let br = bridge(i);
        if let Some(b) = now.iter().find(|l| l.ifname == br) {
            out.insert(network.clone(), (br, b.mtu));
            continue;
        }
        let dev = now
            .iter()
            .find(|l| l.address.eq_ignore_ascii_case(mac))
            .ok_or_else(|| {
                failed(
                    "bridge the anchor",
                    format!("no interface with MAC {mac} (network `{network}`)"),
                )
            })?;
        let mtu = dev.mtu.to_string();
        // Locally administered and unicast: 0e:… keeps the rest of the address.
        let moved = format!("0e{}", &mac[2..]);
        ip(Some(pid), &["link", "add", &br, "type", "bridge"])?;
        ip(Some(pid), &["link", "set", &br, "mtu", &mtu, "up"])?;
        ip(Some(pid), &["addr", "flush", "dev", &dev.ifname])?;
        ip(Some(pid), &["link", "set", &dev.ifname, "address", &moved])?;
        ip(Some(pid), &["link", "set", &dev.ifname, "master", &br])?;
        out.insert(network.clone(), (br, dev.mtu));
    }
    Ok(out)
}

/// Moves the VM's taps (network -> tap) from this machine's namespace into the anchor's
/// and onto the bridges of [`bridge_anchor`]. A tap already there is only set up again.
pub fn plug(
    pid: u32,
    taps: &BTreeMap<String, String>,
    bridges: &BTreeMap<String, (String, u32)>,
) -> Result<(), BackendError> {
    let here: Vec<String> = links(None)?.into_iter().map(|l| l.ifname).collect();
    let there: Vec<String> = links(Some(pid))?.into_iter().map(|l| l.ifname).collect();
    for (network, tap) in taps {
        let (br, mtu) = bridges
            .get(network)
            .ok_or_else(|| failed("plug the VM", format!("no bridge for network `{network}`")))?;
        if here.contains(tap) {
            ip(None, &["link", "set", tap, "netns", &pid.to_string()])?;
        } else if !there.contains(tap) {
            return Err(failed(
                "plug the VM",
                format!("its NIC `{tap}` (network `{network}`) is nowhere: is the VM running?"),
            ));
        }
        let mtu = mtu.to_string();
        ip(Some(pid), &["link", "set", tap, "mtu", &mtu])?;
        ip(Some(pid), &["link", "set", tap, "master", br])?;
        ip(Some(pid), &["link", "set", tap, "up"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_subnets_avoid_the_metadata_block_and_taps_fit() {
        for i in 0..2000 {
            let n = manage_net(&format!("env-{i}"));
            assert_ne!(n.addr.octets()[2], 169);
            assert_ne!(n.addr.octets()[2], 0);
            assert_ne!(n.addr.octets()[2], 255);
        }
        let s = manage_spec("e-1", 2);
        assert_eq!(
            s.address,
            Some(Ipv4Addr::new(
                169,
                254,
                manage_net("e-1").addr.octets()[2],
                131
            ))
        );
        let t = tap_name("e-1", "vm", "lan");
        assert!(t.len() <= 15, "{t}");
        assert_ne!(t, tap_name("e-1", "vm", "data"));
    }
}
