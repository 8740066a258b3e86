//! The VM side of destroy and gc: finding an environment's domains in libvirt (by their
//! metadata, not by the Envfile, so VMs of machines since removed from it are found too)
//! and removing them with their volumes.

use crate::envfile::{Backend, Env};

#[cfg(feature = "libvirt")]
pub use crate::backend::libvirt::ObservedVm;

/// A VM found in libvirt (this build has no libvirt backend, so there are none).
#[cfg(not(feature = "libvirt"))]
#[derive(Debug, Clone)]
pub struct ObservedVm {
    pub dir: Option<String>,
    pub instance: String,
}

fn needs_libvirt(env: Option<&Env>) -> bool {
    env.is_some_and(|e| e.machines.values().any(|m| m.backend == Backend::Libvirt))
}

/// Domains hdev made, for one instance or all. Where libvirt cannot be reached this is an
/// error only when the environment has VMs.
#[cfg(feature = "libvirt")]
pub async fn domains(
    env: &Env,
    instance: Option<&str>,
) -> anyhow::Result<Vec<(String, ObservedVm)>> {
    let mut out = Vec::new();
    for uri in crate::backend::libvirt::machines::uris_of(env) {
        for v in domains_at(&uri, Some(env), instance).await? {
            out.push((uri.clone(), v));
        }
    }
    Ok(out)
}

#[cfg(feature = "libvirt")]
pub async fn domains_at(
    uri: &str,
    env: Option<&Env>,
    instance: Option<&str>,
) -> anyhow::Result<Vec<ObservedVm>> {
    use crate::backend::libvirt::LibvirtBackend;
    match LibvirtBackend::connect(uri).await {
        Ok(lv) => Ok(lv.observe(instance).await?),
        Err(e) if needs_libvirt(env) => Err(e.into()),
        Err(_) => Ok(Vec::new()),
    }
}

/// Removes the domains (one connection per libvirt URI) and their volumes; returns how
/// many.
#[cfg(feature = "libvirt")]
pub async fn destroy(vms: &[(String, ObservedVm)]) -> anyhow::Result<usize> {
    let mut by_uri: std::collections::BTreeMap<&str, Vec<&ObservedVm>> =
        std::collections::BTreeMap::new();
    for (uri, v) in vms {
        by_uri.entry(uri).or_default().push(v);
    }
    for (uri, list) in by_uri {
        let lv = crate::backend::libvirt::LibvirtBackend::connect(uri).await?;
        for v in list {
            lv.destroy(&v.domain).await?;
        }
    }
    Ok(vms.len())
}

#[cfg(not(feature = "libvirt"))]
pub async fn domains(
    env: &Env,
    _instance: Option<&str>,
) -> anyhow::Result<Vec<(String, ObservedVm)>> {
    if needs_libvirt(Some(env)) {
        anyhow::bail!("this hdev was built without the `libvirt` feature");
    }
    Ok(Vec::new())
}

#[cfg(not(feature = "libvirt"))]
pub async fn domains_at(
    _uri: &str,
    _env: Option<&Env>,
    _instance: Option<&str>,
) -> anyhow::Result<Vec<ObservedVm>> {
    Ok(Vec::new())
}

/// The file in the box store listing every libvirt URI environments used, so `gc` looks
/// on remote hosts too.
fn uris_file() -> Option<std::path::PathBuf> {
    crate::boxes::Store::open_default()
        .ok()
        .map(|s| s.root().join("libvirt-uris"))
}

/// Adds the environment's libvirt URIs to the list `gc` reads (best effort: the list
/// only widens where gc looks).
pub fn remember_uris(env: &Env) {
    if !needs_libvirt(Some(env)) {
        return;
    }
    let Some(path) = uris_file() else { return };
    let mut known: std::collections::BTreeSet<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let before = known.len();
    known.extend(crate::envfile::topology::uris_of(env));
    if known.len() != before {
        let text: String = known.iter().map(|u| format!("{u}\n")).collect();
        let _ = crate::state::write_atomic(&path, text.as_bytes());
    }
}

/// The libvirt URIs `gc` looks at: `HDEV_LIBVIRT_URI` (or the default) and every URI an
/// environment used.
pub fn gc_uris() -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = uris_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    out.insert(gc_default_uri());
    out
}

/// The libvirt URI `gc` must reach (the others it may skip when unreachable).
pub fn gc_default_uri() -> String {
    std::env::var("HDEV_LIBVIRT_URI")
        .unwrap_or_else(|_| crate::envfile::topology::DEFAULT_URI.into())
}

/// Removes the libvirt networks hdev made for instance `instance` on `uri` (those of VMs
/// on a remote host); returns how many.
#[cfg(feature = "libvirt")]
pub async fn remove_networks_at(uri: &str, instance: &str) -> anyhow::Result<usize> {
    let lv = crate::backend::libvirt::LibvirtBackend::connect(uri).await?;
    let names = lv.network_names(instance).await?;
    Ok(lv.remove_networks(names).await?)
}

#[cfg(not(feature = "libvirt"))]
pub async fn remove_networks_at(_uri: &str, _instance: &str) -> anyhow::Result<usize> {
    Ok(0)
}

/// Removes the libvirt networks the environment's VMs use on remote hosts; returns how
/// many. Run after the VMs are gone.
#[cfg(feature = "libvirt")]
pub async fn remove_remote_networks(env: &Env, instance: &str) -> anyhow::Result<usize> {
    use crate::{backend::libvirt::remote::network_name, envfile::topology::remote_networks};
    let mut by_uri: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (net, uri) in remote_networks(env) {
        by_uri
            .entry(uri)
            .or_default()
            .insert(network_name(instance, &net));
    }
    let mut n = 0;
    for (uri, names) in by_uri {
        let lv = crate::backend::libvirt::LibvirtBackend::connect(&uri).await?;
        n += lv.remove_networks(names).await?;
    }
    Ok(n)
}

#[cfg(not(feature = "libvirt"))]
pub async fn remove_remote_networks(_env: &Env, _instance: &str) -> anyhow::Result<usize> {
    Ok(0)
}

#[cfg(not(feature = "libvirt"))]
pub async fn destroy(_vms: &[(String, ObservedVm)]) -> anyhow::Result<usize> {
    Ok(0)
}
