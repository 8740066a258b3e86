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
//! with the user, port and key the URI names.
//!
//! Machines placed with `host = "NAME"` run on that host's Docker engine; a network whose
//! machines are on more than one engine becomes a Swarm overlay network, and a VM whose
//! host has a Docker engine joins its networks through anchor containers there. Only a
//! network that would join VMs of a remote libvirt host without a Docker engine to
//! machines elsewhere is refused, with the machines named.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Backend, Env, Machine};

/// Envfile-side name of the network containers without `networks` join.
pub const DEFAULT_NETWORK: &str = "_default";

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
    m.libvirt_uri
        .clone()
        .or_else(|| m.place.libvirt_uri.clone())
        .unwrap_or_else(|| uri_of(env))
}

/// Every libvirt URI the environment's VMs use (the environment's own always included).
pub fn uris_of(env: &Env) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = env
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

/// Where a machine meets its networks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Site {
    /// A Docker engine (`None`: this machine's): a container, a VM whose host has a
    /// Docker engine (joined through anchor containers there), or a VM on this machine's
    /// libvirt (bridged into this machine's Docker networks).
    Engine(Option<String>),
    /// VMs on a remote libvirt host without a Docker engine of their host.
    RemoteVms(String),
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Site::Engine(None) => f.write_str("this host"),
            Site::Engine(Some(e)) => write!(f, "`{e}`"),
            Site::RemoteVms(uri) => write!(f, "`{uri}`"),
        }
    }
}

/// Whether a VM joins its networks through anchor containers on its host's Docker engine.
pub fn anchored(m: &Machine) -> bool {
    m.backend == Backend::Libvirt && m.place.docker.is_some()
}

/// Where one machine meets its networks.
pub fn site_of(env: &Env, m: &Machine) -> Site {
    match m.backend {
        Backend::Docker => Site::Engine(m.place.docker.clone()),
        Backend::Libvirt if anchored(m) => Site::Engine(m.place.docker.clone()),
        Backend::Libvirt => {
            let uri = machine_uri(env, m);
            if remote_host(&uri).is_some() {
                Site::RemoteVms(uri)
            } else {
                Site::Engine(None)
            }
        }
    }
}

/// Where each network's machines are: network -> site -> machine names.
fn placements(env: &Env) -> BTreeMap<String, BTreeMap<Site, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<Site, Vec<String>>> = BTreeMap::new();
    for m in env.machines.values() {
        let site = site_of(env, m);
        // Containers inside a VM have a default network of their own there.
        let default =
            (m.backend == Backend::Docker && m.networks.is_empty() && m.place.vm_host().is_none())
                .then(|| DEFAULT_NETWORK.to_string());
        for net in m.networks.iter().map(|a| a.network.clone()).chain(default) {
            out.entry(net)
                .or_default()
                .entry(site.clone())
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
        .filter_map(|(net, sites)| {
            let mut it = sites.keys();
            match (it.next(), it.next()) {
                (Some(Site::RemoteVms(uri)), None) => Some((net, uri.clone())),
                _ => None,
            }
        })
        .collect()
}

/// The Docker engines each network lives on (`None`: this machine's); a network on more
/// than one is a Swarm overlay network.
pub fn network_engines(env: &Env) -> BTreeMap<String, BTreeSet<Option<String>>> {
    placements(env)
        .into_iter()
        .map(|(net, sites)| {
            let engines = sites
                .into_keys()
                .filter_map(|s| match s {
                    Site::Engine(e) => Some(e),
                    Site::RemoteVms(_) => None,
                })
                .collect();
            (net, engines)
        })
        .collect()
}

/// The Docker engines network `name` lives on.
pub fn engines_of(env: &Env, name: &str) -> BTreeSet<Option<String>> {
    network_engines(env).remove(name).unwrap_or_default()
}

/// Networks that span Docker engines: they become attachable Swarm overlay networks.
pub fn overlay_networks(env: &Env) -> BTreeSet<String> {
    network_engines(env)
        .into_iter()
        .filter(|(_, e)| e.len() > 1)
        .map(|(n, _)| n)
        .collect()
}

/// Every Docker engine the environment's machines use (`None`: this machine's), the
/// engines inside its VMs (`vm://NAME`) among them.
pub fn docker_engines(env: &Env) -> BTreeSet<Option<String>> {
    env.machines
        .values()
        .filter_map(|m| match site_of(env, m) {
            Site::Engine(e) => Some(e),
            Site::RemoteVms(_) => None,
        })
        .collect()
}

pub use super::model::vm_of_engine;

/// Whether network `name` joins only containers inside VMs: it is made in the VM's
/// engine, with them, not where the environment's networks are.
pub fn inside_vm(env: &Env, name: &str) -> bool {
    let engines = engines_of(env, name);
    !engines.is_empty() && engines.iter().all(|e| vm_of_engine(e.as_deref()).is_some())
}

/// The Docker engines of hosts (not those inside the environment's VMs, which go with
/// their VMs): what removal and `gc` connect to.
pub fn host_docker_engines(env: &Env) -> BTreeSet<Option<String>> {
    docker_engines(env)
        .into_iter()
        .filter(|e| vm_of_engine(e.as_deref()).is_none())
        .collect()
}

/// The host name of a Docker endpoint (`None`: this machine), for messages and status.
pub fn host_of_engine(env: &Env, engine: Option<&str>) -> String {
    if let Some(vm) = vm_of_engine(engine) {
        return vm.to_string();
    }
    match engine {
        None => "local".to_string(),
        Some(e) => env
            .layout
            .hosts
            .values()
            .find(|h| h.docker.as_deref() == Some(e))
            .map(|h| h.name.clone())
            .unwrap_or_else(|| e.to_string()),
    }
}

/// A network that would join VMs of a remote libvirt host to machines elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network `{network}` would span hosts: {}; VMs on a remote libvirt host share a network with other hosts only through their host's Docker engine, so give that host a `docker` endpoint in `[host.NAME]`, or give the machines on each host their own network", describe(.places))]
pub struct SpanError {
    pub network: String,
    /// Where -> machine names.
    pub places: BTreeMap<Site, Vec<String>>,
}

fn describe(places: &BTreeMap<Site, Vec<String>>) -> String {
    places
        .iter()
        .map(|(site, ms)| format!("{} on {site}", ms.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that no network joins VMs of a remote libvirt host to machines elsewhere
/// (networks across Docker engines are overlays).
pub fn check_spans(env: &Env) -> Result<(), SpanError> {
    for (network, places) in placements(env) {
        if places.len() > 1 && places.keys().any(|p| matches!(p, Site::RemoteVms(_))) {
            return Err(SpanError { network, places });
        }
    }
    Ok(())
}

/// A network that would join containers inside a VM to machines outside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network `{network}` joins containers inside VM `{vm}` ({}) with machines outside it ({}); the Docker engine in a VM is not in the environment's swarm, so its containers share networks only with each other: reach them from outside through ports they publish on the VM's addresses", .inside.join(", "), .outside.join(", "))]
pub struct VmSpanError {
    pub network: String,
    pub vm: String,
    pub inside: Vec<String>,
    pub outside: Vec<String>,
}

/// Checks that the containers inside each VM keep their networks to themselves.
pub fn check_vm_networks(env: &Env) -> Result<(), VmSpanError> {
    for (network, places) in placements(env) {
        let vm = places.keys().find_map(|s| match s {
            Site::Engine(e) => vm_of_engine(e.as_deref()),
            _ => None,
        });
        let Some(vm) = vm else { continue };
        if places.len() > 1 {
            let (inside, outside): (Vec<_>, Vec<_>) = places.iter().partition(
                |(s, _)| matches!(s, Site::Engine(e) if vm_of_engine(e.as_deref()) == Some(vm)),
            );
            return Err(VmSpanError {
                network,
                vm: vm.to_string(),
                inside: inside.into_iter().flat_map(|(_, m)| m.clone()).collect(),
                outside: outside.into_iter().flat_map(|(_, m)| m.clone()).collect(),
            });
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
