//! Stopping and removing: `halt`, `destroy` (everything one environment created, and
//! nothing else), `gc` (leftovers of environments whose folder is gone, and of ci copies
//! no run holds any more), and the teardown of a throwaway copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::backend::{Backends, Counts, Engine, Found, RunState};
use crate::envfile::topology::{host_docker_engines, uris_of, vm_of_engine, DEFAULT_URI};
use crate::envfile::{Backend, Env};

/// `halt` under the lock the caller holds: stops every running machine of the session's
/// environment; returns their names.
pub(crate) async fn halt_env(
    o: &crate::ops::session::Session,
    _lock: &crate::state::EnvLock,
    on_stopped: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<String>> {
    let backends = o.connect().await?;
    halt(&backends, &o.ctx, on_stopped).await
}

/// Stops every running machine of the instance; returns their names.
pub(crate) async fn halt(
    backends: &Backends,
    ctx: &crate::backend::EnvCtx,
    on_stopped: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<String>> {
    let obs = backends.observe(ctx).await?;
    // Containers inside VMs first, while the engines in the VMs still answer.
    let (in_vms, others): (Vec<_>, Vec<_>) = obs
        .machines
        .values()
        .filter(|m| m.state == RunState::Running)
        .partition(|m| vm_of_engine(m.engine.as_deref()).is_some());
    let mut names = Vec::new();
    for group in [in_vms, others] {
        let stops = group.iter().map(|m| async {
            let b = backends.get_observed(m)?;
            b.stop(&m.id).await?;
            on_stopped(&m.name);
            anyhow::Ok(m.name.clone())
        });
        for r in futures_util::future::join_all(stops).await {
            names.push(r?);
        }
    }
    Ok(names)
}

/// The engines that may hold objects of `env` (or, without one, of any environment):
/// Docker, and libvirt on every URI the environment (or any environment) used.
pub(crate) async fn connect_for_removal(env: Option<&Env>) -> anyhow::Result<Backends> {
    let (uris, endpoints) = match env {
        Some(env) => (uris_of(env), host_docker_engines(env)),
        None => (gc_uris(), gc_endpoints()),
    };
    let backends = Backends::connect_all(&uris, &endpoints, env).await?;
    let needs_libvirt =
        env.is_some_and(|e| e.machines.values().any(|m| m.backend == Backend::Libvirt));
    if needs_libvirt {
        if let Some(e) = backends.error(Backend::Libvirt) {
            anyhow::bail!("libvirt: {e}");
        }
    }
    if env.is_some() {
        // Removing an environment needs every host it placed machines on.
        if let Some((key, e)) = backends.errors().next() {
            anyhow::bail!("{key}: {e}");
        }
    }
    Ok(backends)
}

/// Everything the engines hold for one instance, VM engines first (their NICs sit on the
/// network host's bridges).
pub(crate) async fn find_instance(
    backends: &Backends,
    instance: &str,
) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    for b in removal_order(backends) {
        let d = b.discover(Some(instance)).await?;
        if let Some(u) = d.unreachable.first() {
            // Removing an instance needs every host of its VMs.
            anyhow::bail!("cannot look for the VMs of `{instance}`: {u}");
        }
        found.extend(d.found);
    }
    Ok(found)
}

/// Engines in the order their objects go: VM engines first (their NICs sit on Docker's
/// bridges), Docker engines after.
fn removal_order(backends: &Backends) -> Vec<&crate::backend::AnyBackend> {
    let mut v: Vec<_> = backends.all().collect();
    v.sort_by_key(|b| b.kind() == Backend::Docker);
    v
}

/// Removes found objects engine by engine, in [`removal_order`]: everything but networks
/// first on every engine, then networks, so that an overlay network goes from its
/// manager once no host's container is on it.
pub(crate) async fn remove(backends: &Backends, found: &[Found]) -> anyhow::Result<Counts> {
    let mut total = Counts::default();
    for networks in [false, true] {
        for b in removal_order(backends) {
            let key = b.key();
            let mine: Vec<Found> = found
                .iter()
                .filter(|f| {
                    f.backend == key.kind && (key.kind != Backend::Docker || f.place == key.at)
                })
                .filter(|f| (f.kind == crate::backend::ObjectKind::Network) == networks)
                .cloned()
                .collect();
            if !mine.is_empty() {
                total.add(b.remove_found(&mine).await?);
            }
        }
    }
    Ok(total)
}

/// Ends the SSH connections `env`'s commands share with its VMs (kept open a while
/// between commands), before the VMs go: a VM made again with the same address is not
/// reached through a connection to the one that went.
pub(crate) fn close_connections(env: &Env) {
    crate::backend::ssh::close_all_shared(&env.dir.join(".hdev"));
}

/// Removes everything an instance created; how much went.
pub(crate) async fn remove_instance(env: Option<&Env>, instance: &str) -> anyhow::Result<Counts> {
    if let Some(env) = env {
        close_connections(env);
    }
    let backends = connect_for_removal(env).await?;
    let found = find_instance(&backends, instance).await?;
    remove(&backends, &found).await
}

/// One environment `gc` collects.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Collected {
    pub instance: String,
    pub dir: String,
    /// Its folder still exists: a ci copy whose run ended.
    pub idle_copy: bool,
    pub removed: Counts,
}

/// What `gc` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct GcReport {
    pub dry_run: bool,
    pub environments: Vec<Collected>,
    /// Environments that could not be removed, with why.
    pub failed: Vec<String>,
    /// Engine connections not looked at (unreachable).
    pub skipped: Vec<String>,
}

/// Groups found objects by instance and keeps the instances that are dead: `alive(dir)`
/// decides for each folder (asked once per folder). Pure, so the rule is tested without
/// engines.
pub(crate) fn dead_instances(
    found: Vec<Found>,
    mut alive: impl FnMut(&str) -> bool,
) -> BTreeMap<String, (String, Vec<Found>)> {
    let mut verdict: BTreeMap<String, bool> = BTreeMap::new();
    let mut dead: BTreeMap<String, (String, Vec<Found>)> = BTreeMap::new();
    for f in found {
        let is_alive = *verdict
            .entry(f.dir.clone())
            .or_insert_with(|| !f.dir.is_empty() && alive(&f.dir));
        if is_alive {
            continue;
        }
        let e = dead
            .entry(f.instance.clone())
            .or_insert_with(|| (f.dir.clone(), Vec::new()));
        if e.0.is_empty() {
            e.0 = f.dir.clone();
        }
        e.1.push(f);
    }
    dead
}

/// `gc`: removes what hdev created for environments whose folder is gone, and for ci
/// copies no run holds any more (their folder goes too).
pub(crate) async fn gc(dry_run: bool) -> anyhow::Result<GcReport> {
    let backends = connect_for_removal(None).await?;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut found = Vec::new();
    report
        .skipped
        .extend(backends.errors().map(|(k, e)| format!("{k}: {e}")));
    for b in removal_order(&backends) {
        let d = b.discover(None).await?;
        report.skipped.extend(d.unreachable);
        found.extend(d.found);
    }
    // A folder that exists is alive, unless it is a ci copy no process runs any more (its
    // run lock is free): then its objects are collected with the folder, the lock held
    // meanwhile.
    let mut idle: BTreeMap<String, Option<(crate::throwaway::Copy, crate::throwaway::RunLock)>> =
        BTreeMap::new();
    let dead = dead_instances(found, |dir| {
        if !Path::new(dir).exists() {
            return false;
        }
        idle.entry(dir.to_string())
            .or_insert_with(|| crate::throwaway::idle_at(Path::new(dir)))
            .is_none()
    });
    for (instance, (dir, objects)) in dead {
        let idle_copy = Path::new(&dir).exists();
        if dry_run {
            report.environments.push(Collected {
                instance,
                dir,
                idle_copy,
                removed: Counts::of(&objects),
            });
            continue;
        }
        // One environment that cannot be removed does not keep the others.
        match remove(&backends, &objects).await {
            Ok(removed) => {
                if let Some(Some((copy, _lock))) = idle.remove(&dir) {
                    copy.remove_dir();
                }
                report.environments.push(Collected {
                    instance,
                    dir,
                    idle_copy,
                    removed,
                });
            }
            Err(e) => report.failed.push(format!("`{instance}`: {e:#}")),
        }
    }
    Ok(report)
}

/// The file in the box store listing every libvirt URI environments used, so `gc` looks
/// on remote hosts too.
fn uris_file() -> Option<std::path::PathBuf> {
    crate::boxes::Store::open_default()
        .ok()
        .map(|s| s.root().join("libvirt-uris"))
}

/// The file in the box store listing every Docker endpoint other than this machine's
/// that environments placed machines on.
fn endpoints_file() -> Option<std::path::PathBuf> {
    crate::boxes::Store::open_default()
        .ok()
        .map(|s| s.root().join("docker-endpoints"))
}

/// Adds lines to a list file (best effort: the list only widens where gc looks).
fn remember(path: Option<std::path::PathBuf>, lines: impl IntoIterator<Item = String>) {
    let Some(path) = path else { return };
    let mut known = listed(Some(path.clone()));
    let before = known.len();
    known.extend(lines);
    if known.len() != before {
        let text: String = known.iter().map(|u| format!("{u}\n")).collect();
        let _ = crate::state::write_atomic(&path, text.as_bytes());
    }
}

/// The Docker endpoints `gc` looks at besides this machine's: every one an environment
/// placed machines on.
pub(crate) fn gc_endpoints() -> BTreeSet<Option<String>> {
    listed(endpoints_file()).into_iter().map(Some).collect()
}

/// The lines of a list file (none when it cannot be read).
fn listed(path: Option<std::path::PathBuf>) -> BTreeSet<String> {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Adds the environment's libvirt URIs and Docker endpoints to the lists `gc` reads.
pub(crate) fn remember_uris(env: &Env) {
    remember(
        endpoints_file(),
        host_docker_engines(env).into_iter().flatten(),
    );
    if env.machines.values().any(|m| m.backend == Backend::Libvirt) {
        remember(uris_file(), uris_of(env));
    }
}

/// The libvirt URIs `gc` looks at: `HDEV_LIBVIRT_URI` (or the default) and every URI an
/// environment used.
pub(crate) fn gc_uris() -> BTreeSet<String> {
    let mut out = listed(uris_file());
    out.insert(std::env::var("HDEV_LIBVIRT_URI").unwrap_or_else(|_| DEFAULT_URI.into()));
    out
}
