//! Which host each machine and network lives on. VMs may live on another host's libvirtd
//! (`libvirt_uri = "qemu+ssh://user@host/system"`).
//!
//! Pure rules over the Envfile, so validation can refuse a network that spans hosts
//! without reaching into the engines; the libvirt network that stands for a remote network
//! is made by `backend::libvirt::remote`.
//!
//! Disks reach such a host through libvirt streams like any other. Its VMs cannot plug
//! into this host's bridges, so each network that only remote VMs of one host use
//! becomes a libvirt network there (the same bridge name, gateway and subnet, NAT to the
//! outside), and hdev reaches the VMs over SSH through that host (`ProxyCommand ssh -W`),
//! with the user, port and key the URI names. A network cannot span hosts: one that joins
//! machines here and VMs there is refused with the machines named.

use std::collections::BTreeMap;

use super::model::{Backend, Env, Machine};

/// Default libvirt connection.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The libvirt URI of an environment's VMs, unless a machine names its own.
pub fn uri_of(env: &Env) -> String {
    env.settings
        .libvirt_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_URI.to_string())
}

/// The libvirt URI of one machine.
pub fn machine_uri(env: &Env, m: &Machine) -> String {
    m.libvirt_uri.clone().unwrap_or_else(|| uri_of(env))
}

/// Every libvirt URI the environment's VMs use (the environment's own always included).
pub fn uris_of(env: &Env) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = env
        .machines
        .values()
        .filter(|m| m.backend == Backend::Libvirt)
        .map(|m| machine_uri(env, m))
        .collect();
    out.insert(uri_of(env));
    out
}

/// Quotes one argument for a POSIX shell. It lives here, at the bottom, because the
/// `ProxyCommand` below is quoted with it; `backend::ssh` re-exports it for everything else
/// that talks to a shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The SSH side of a remote libvirt URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    pub user: Option<String>,
    pub host: String,
    /// Only for the ssh transport: other transports' ports are not SSH.
    pub port: Option<u16>,
    /// `?keyfile=`: the key for the host.
    pub keyfile: Option<String>,
    /// `?no_verify=1`: the host's key is not checked.
    pub no_verify: bool,
}

/// The host a libvirt URI names, or `None` for this host (`qemu:///system`, `test:///`).
pub fn remote_host(uri: &str) -> Option<RemoteHost> {
    let (scheme, rest) = uri.split_once("://")?;
    let (authority, query) = match rest.split_once('/') {
        Some((a, path)) => (a, path.split_once('?').map_or("", |(_, q)| q)),
        None => (rest.split_once('?').map_or(rest, |(a, _)| a), ""),
    };
    if authority.is_empty() {
        return None;
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => {
            (h.to_string(), p.parse().ok())
        }
        _ => (hostport.to_string(), None),
    };
    if matches!(host.as_str(), "localhost" | "") {
        return None;
    }
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    Some(RemoteHost {
        user,
        host,
        port: port.filter(|_| scheme.ends_with("+ssh") || scheme.ends_with("+libssh2")),
        keyfile: params.get("keyfile").map(|s| s.to_string()),
        no_verify: params.get("no_verify").is_some_and(|v| *v == "1"),
    })
}

impl RemoteHost {
    /// The `ProxyCommand` that carries SSH to a VM through this host.
    pub fn proxy_command(&self) -> String {
        let mut c = String::from("ssh -o BatchMode=yes -o LogLevel=ERROR");
        if let Some(k) = &self.keyfile {
            c.push_str(&format!(" -i {} -o IdentitiesOnly=yes", shell_quote(k)));
        }
        if self.no_verify {
            c.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
        }
        if let Some(p) = self.port {
            c.push_str(&format!(" -p {p}"));
        }
        if let Some(u) = &self.user {
            c.push_str(&format!(" -l {}", shell_quote(u)));
        }
        c.push_str(&format!(" -W %h:%p {}", shell_quote(&self.host)));
        c
    }
}

/// Where a network's machines live: this host, or a remote libvirt URI.
fn placements(env: &Env) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for m in env.machines.values() {
        let place = match m.backend {
            Backend::Libvirt => {
                let uri = machine_uri(env, m);
                if remote_host(&uri).is_some() {
                    uri
                } else {
                    String::new()
                }
            }
            Backend::Docker => String::new(),
        };
        for a in &m.networks {
            out.entry(a.network.clone())
                .or_default()
                .entry(place.clone())
                .or_default()
                .push(m.name.clone());
        }
    }
    out
}

/// Networks that live on a remote libvirt host (name -> URI): those every machine of
/// which is a VM on that one host.
pub fn remote_networks(env: &Env) -> BTreeMap<String, String> {
    placements(env)
        .into_iter()
        .filter_map(|(net, places)| {
            let mut it = places.keys();
            match (it.next(), it.next()) {
                (Some(uri), None) if !uri.is_empty() => Some((net, uri.clone())),
                _ => None,
            }
        })
        .collect()
}

/// Networks that would have to span hosts, each with its machines by place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network `{network}` would span hosts: {}; a network lives on one host, so give the machines on each host their own network", describe(.places))]
pub struct SpanError {
    pub network: String,
    /// Place (`this host` or a libvirt URI) -> machine names.
    pub places: BTreeMap<String, Vec<String>>,
}

fn describe(places: &BTreeMap<String, Vec<String>>) -> String {
    places
        .iter()
        .map(|(place, ms)| {
            let where_ = if place.is_empty() {
                "this host".to_string()
            } else {
                format!("`{place}`")
            };
            format!("{} on {where_}", ms.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that no network joins machines on different hosts.
pub fn check_spans(env: &Env) -> Result<(), SpanError> {
    for (network, places) in placements(env) {
        if places.len() > 1 && places.keys().any(|p| !p.is_empty()) {
            return Err(SpanError { network, places });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_remote_shell() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("/tmp/a.sh"), "/tmp/a.sh");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn local_uris_name_no_host() {
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "test:///default",
            "qemu+unix:///system",
            "qemu://localhost/system",
        ] {
            assert_eq!(remote_host(uri), None, "{uri}");
        }
    }

    #[test]
    fn ssh_uris_give_user_host_port_and_key() {
        let r = remote_host("qemu+ssh://ops@lab-7:2222/system?keyfile=/k/id&no_verify=1&no_tty=1")
            .unwrap();
        assert_eq!(
            r,
            RemoteHost {
                user: Some("ops".into()),
                host: "lab-7".into(),
                port: Some(2222),
                keyfile: Some("/k/id".into()),
                no_verify: true,
            }
        );
        assert_eq!(
            r.proxy_command(),
            "ssh -o BatchMode=yes -o LogLevel=ERROR -i /k/id -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p 2222 -l ops -W %h:%p lab-7"
        );
        let tls = remote_host("qemu+tls://lab-7:16514/system").unwrap();
        assert_eq!(tls.port, None, "a TLS port is not an SSH port");
        assert_eq!(tls.user, None);
    }
}
