//! The provisioned-state cache in a run: a machine created anew whose per-machine hash the
//! engine holds a provisioned state of is created from it and not provisioned; one that
//! was provisioned on a fresh create is kept in the cache (a container before its
//! baseline, a VM with it: see [`keeps_baseline`]), and the
//! cache is brought back under its bound (least recently used first). A hash that
//! differs is never served: entries are found by the exact hash.

use super::{MachineError, Shared};
use crate::backend::libvirt::BaseVolumes;
use std::collections::BTreeSet;

use crate::backend::{spec_for, AnyBackend, Backends, CachedState, Engine, Resolved};
use crate::cache::{over_bound, Entry, Index, Policy};
use crate::envfile::{Backend, Env, Machine};
use crate::plan::{MachinePlan, Plan, Step};
use crate::state::{MachineRecord, Phase};

/// Whether the cache can serve or keep this machine in this run: the cache is on, the
/// machine is created anew and then provisioned, it has provisioning to skip, and its
/// engine is this host's own.
pub(super) fn applies(sh: &Shared<'_>, mp: &MachinePlan, def: Option<&Machine>) -> bool {
    sh.cache.enabled && eligible(mp, def, sh.guests.contains_key(&mp.name))
}

/// The machine is created anew and then provisioned, has provisioning to skip, holds no
/// containers (`hosts_guests`) and is on this host's own engine.
fn eligible(mp: &MachinePlan, def: Option<&Machine>, hosts_guests: bool) -> bool {
    mp.steps.contains(&Step::Create)
        && mp.steps.contains(&Step::Provision)
        && !hosts_guests
        && def.is_some_and(|d| {
            !d.provision.is_empty()
                && d.place.host.is_none()
                && d.place.docker.is_none()
                && d.place.vm_host().is_none()
        })
}

/// Whether `backend` keeps a machine's baseline in the cache (taken first), not its
/// state before the baseline: a VM's baseline holds its memory with its disk, captured at
/// one instant, which a VM of the same identity resumes from. A container's provisioned
/// state is committed before its baseline, which then stands on the kept image.
pub(super) fn keeps_baseline(backend: &AnyBackend) -> bool {
    backend.kind() == Backend::Libvirt
}

/// What a plan says of a machine that its engine's cache holds the hash of.
pub(crate) const FROM_CACHE: &str = "from the provisioned-state cache, not provisioned";

/// Marks in `plan` the machines that a run with `policy` would create from the cache:
/// their reason says so (`hdev plan`, and the plan `up` shows before it runs). Each
/// engine is asked for the exact hash; one that cannot answer marks nothing.
pub(crate) async fn mark_in_plan(env: &Env, backends: &Backends, policy: &Policy, plan: &mut Plan) {
    if !policy.enabled {
        return;
    }
    let hosts: BTreeSet<&str> = env
        .machines
        .values()
        .filter_map(|m| m.place.vm_host())
        .collect();
    for mp in &mut plan.machines {
        let def = env.machines.get(&mp.name);
        if !eligible(mp, def, hosts.contains(mp.name.as_str())) {
            continue;
        }
        let Some(backend) = def.and_then(|d| backends.get(d).ok()) else {
            continue;
        };
        if let Ok(Some(_)) = backend.cache_find(&mp.hash).await {
            mp.reason = format!("{}; {FROM_CACHE}", mp.reason);
        }
    }
}

/// The cache entry this machine is created from, if the engine holds one of its hash
/// (its last use recorded).
pub(super) async fn lookup(
    sh: &Shared<'_>,
    mp: &MachinePlan,
    backend: &AnyBackend,
) -> Option<String> {
    let found = backend.cache_find(&mp.hash).await.ok().flatten()?;
    update_index(sh, |i| {
        if let Some(e) = i.entries.get_mut(&mp.hash) {
            e.last_used = crate::cache::now();
        }
    });
    sh.progress.status(
        &mp.name,
        &format!(
            "from the provisioned-state cache ({}…): not provisioned again",
            short(&mp.hash)
        ),
    );
    Some(found)
}

/// `sha256:` and the first 12 hex digits of a hash.
pub(super) fn short(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// The base a machine served from the cache is created on: the entry's image for a
/// container; for a VM, its box's boot files (kernel, initrd) with the entry's disk
/// layer, so a VM's box must have been prepared.
pub(super) fn base(
    location: &str,
    backend: Backend,
    prepared: Option<&Result<Resolved, String>>,
) -> Result<Resolved, String> {
    match (backend, prepared) {
        (Backend::Docker, _) => Ok(Resolved::Image(location.to_string())),
        (Backend::Libvirt, Some(Ok(Resolved::Volumes(v)))) => Ok(Resolved::Volumes(BaseVolumes {
            disk: location.into(),
            ..v.clone()
        })),
        (Backend::Libvirt, Some(Err(e))) => Err(e.clone()),
        (Backend::Libvirt, _) => Err("its box's boot files were not prepared".into()),
    }
}

/// Records machine `def` (engine id `id`, built from `hash`) as provisioned; `ran` when
/// its steps ran to completion (counted in its runs), not when it came from the cache.
pub(super) fn mark_provisioned(
    sh: &Shared<'_>,
    def: &Machine,
    id: &str,
    hash: &str,
    ran: bool,
) -> Result<(), crate::state::StateError> {
    let (id, hash) = (id.to_string(), hash.to_string());
    sh.rec.update(&def.name, |r| {
        let mut r = r.unwrap_or(MachineRecord {
            backend: def.backend,
            id: Some(id.clone()),
            hash: hash.clone(),
            phase: Phase::Created,
            baseline: None,
            provision_runs: 0,
            health: None,
        });
        r.id = Some(id);
        r.hash = hash;
        r.phase = r.phase.max(Phase::Provisioned);
        r.provision_runs += u32::from(ran);
        Some(r)
    })
}

/// Keeps provisioned machine `id` in the cache; its id afterwards. A cache that cannot
/// keep it is said on the machine's output and the machine goes on as it was.
pub(super) async fn keep(
    sh: &Shared<'_>,
    backend: &AnyBackend,
    def: &Machine,
    id: &str,
    hash: &str,
) -> Result<String, MachineError> {
    let name = &def.name;
    sh.progress
        .status(name, "keeping its provisioned state in the cache");
    let spec = spec_for(sh.env, def, hash, Resolved::Image(String::new()));
    let kept = match backend
        .cache_keep(sh.ctx, &spec, id, &sh.env.settings.name)
        .await
    {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(id.to_string()),
        Err(e) => {
            sh.progress.output(
                name,
                &format!("not kept in the provisioned-state cache: {e}"),
            );
            // The commit may have failed after the container was replaced: find it again.
            return Ok(backend
                .observe(sh.ctx)
                .await
                .ok()
                .and_then(|mut o| o.machines.remove(name))
                .map_or_else(|| id.to_string(), |o| o.id));
        }
    };
    let (new_id, state) = kept;
    let rid = new_id.clone();
    sh.rec
        .update(name, |r| {
            r.map(|mut r| {
                r.id = Some(rid);
                r
            })
        })
        .map_err(|source| MachineError::State {
            machine: name.clone(),
            source,
        })?;
    add_and_bound(sh, backend, state).await;
    Ok(new_id)
}

/// Adds `state` to the index, then removes the least recently used entries beyond the
/// bound (never the one just kept), as far as they are this engine's.
async fn add_and_bound(sh: &Shared<'_>, backend: &AnyBackend, state: CachedState) {
    let hash = state.hash.clone();
    let mut evict = Vec::new();
    update_index(sh, |i| {
        i.entries.insert(
            state.hash.clone(),
            Entry {
                location: state.location.clone(),
                machine: state.machine.clone(),
                env: state.env.clone(),
                size: state.size,
                created: state.created,
                last_used: crate::cache::now(),
            },
        );
        // This engine removes its own entries only (the other's go at its next keep, or
        // with `hdev cache prune`, which sees every engine).
        let kind = backend.kind();
        for h in over_bound(i, sh.cache.max_bytes, &[hash.as_str()]) {
            if i.entries
                .get(&h)
                .is_some_and(|e| held_by(kind, &e.location))
            {
                if let Some(e) = i.entries.remove(&h) {
                    evict.push((h, e));
                }
            }
        }
    });
    for (h, e) in evict {
        let _ = backend.cache_remove(&e.location).await;
        sh.progress.output(
            &state.machine,
            &format!(
                "the provisioned-state cache is over {} bytes: removed {} (machine `{}` of `{}`, last used first)",
                sh.cache.max_bytes,
                short(&h),
                e.machine,
                e.env
            ),
        );
    }
}

/// Whether an entry at `location` is one engine `kind` keeps: libvirt's are volume paths,
/// Docker's image ids.
fn held_by(kind: Backend, location: &str) -> bool {
    location.starts_with('/') == (kind == Backend::Libvirt)
}

/// Reads, changes and writes the index, when one is kept (best effort: the engine is
/// the truth about entries; the index only adds their last use).
fn update_index(sh: &Shared<'_>, f: impl FnOnce(&mut Index)) {
    let Some(path) = sh.cache.index.as_deref() else {
        return;
    };
    let Ok(mut index) = Index::load(path) else {
        return;
    };
    f(&mut index);
    let _ = index.save(path);
}
