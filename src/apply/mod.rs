//! Running a plan: machines as a DAG (each waits for what it depends on to be up and
//! healthy), independent machines in parallel under a semaphore of `env.parallel`, and
//! every finished step recorded in `.hdev/state.json` at once, so that an interrupted `up`
//! leaves a true record and the next `up` finishes the job.
//!
//! A machine that fails stops only itself and its dependants; the others go on. Ctrl-C
//! stops new work from starting, abandons provisioning and health checks in flight, and
//! leaves every machine where the record says it is.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

mod anchors;
mod cached;
mod hosts;
mod images;
mod record;
mod snap;
mod steps;

pub(crate) use cached::mark_in_plan;
#[cfg(test)]
pub(crate) use cached::FROM_CACHE;
pub(crate) use images::{
    bases, must_be_built, resolve_images, resolve_images_into, unusable, BaseKey, Images,
    LateImages,
};
pub(crate) use record::Recorder;
use snap::snapshot_step;
use steps::{provision_one, wait_healthy};

use crate::backend::{
    spec_for, AnyBackend, BackendError, Backends, Engine, EngineKey, EnvCtx, NetSpec,
};
use crate::envfile::Env;
use crate::plan::{Change, MachinePlan, NetChange, Plan, Step};
use crate::progress::Progress;
use crate::provision::ProvisionError;
use crate::state::{MachineRecord, Phase, StateError};

/// Why one machine did not come up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MachineError {
    /// The backend failed an operation on the machine.
    #[error("machine `{machine}`: {source}")]
    Backend {
        machine: String,
        source: BackendError,
    },
    /// The machine's backend is not in this build.
    #[error(transparent)]
    Unavailable(BackendError),
    /// A provisioning step failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// Taking or returning to a baseline or snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The health check never passed.
    #[error("machine `{machine}`: health check `{command}` did not pass after {tries} tries (last exit code {code}){}", tail(.output))]
    Unhealthy {
        machine: String,
        command: String,
        tries: u32,
        code: i64,
        output: Vec<String>,
    },
    /// A machine it depends on did not come up, so it was not started.
    #[error("machine `{machine}` skipped: it depends on `{dependency}`, which did not come up")]
    DependencyFailed { machine: String, dependency: String },
    /// Ctrl-C arrived before the machine was done.
    #[error("machine `{machine}`: interrupted before it was done")]
    Interrupted { machine: String },
    /// The state file could not be written.
    #[error("machine `{machine}`: cannot record its state: {source}")]
    State { machine: String, source: StateError },
}

impl MachineError {
    /// An engine error of machine `machine`; a missing baseline or snapshot says so itself.
    pub(crate) fn of(machine: &str, source: BackendError) -> MachineError {
        match source {
            BackendError::Snapshot(s) => MachineError::Snapshot(s),
            source => MachineError::Backend {
                machine: machine.to_string(),
                source,
            },
        }
    }
}

fn tail(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n    {l}")).collect()
}

/// Why a plan could not be run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// An environment network exists with a different subnet.
    #[error("network `{name}` exists with subnet {observed}, but the Envfile says {wanted}; run `hdev destroy` and `hdev up` to move it")]
    NetworkConflict {
        name: String,
        observed: String,
        wanted: String,
    },
    /// An environment network could not be created.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// How one machine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Done,
    Unchanged,
    Failed,
    Skipped,
    Interrupted,
}

#[derive(Debug, Serialize)]
pub(crate) struct MachineResult {
    pub name: String,
    pub change: Change,
    pub outcome: Outcome,
    pub seconds: f64,
    pub error: Option<String>,
    /// The per-machine hash (short) of the provisioned-state cache entry it was created
    /// from, instead of being provisioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_cache: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ApplyReport {
    pub machines: Vec<MachineResult>,
    pub interrupted: bool,
}

impl ApplyReport {
    pub(crate) fn ok(&self) -> bool {
        !self.interrupted
            && self
                .machines
                .iter()
                .all(|m| matches!(m.outcome, Outcome::Done | Outcome::Unchanged))
    }
}

/// What every machine task shares.
pub(super) struct Shared<'a> {
    env: &'a Env,
    ctx: &'a EnvCtx,
    backends: &'a Backends,
    rec: &'a Recorder,
    progress: &'a Progress,
    sem: Semaphore,
    cancel: watch::Receiver<bool>,
    images: &'a Images,
    late: Option<&'a LateImages<'a>>,
    snapshot: Option<&'a str>,
    cache: &'a crate::cache::Policy,
    done: BTreeMap<String, watch::Sender<Option<bool>>>,
    /// VMs that host containers of the plan: ready for them (their own steps done, but
    /// for the snapshot steps, which wait for the containers: a VM's snapshot holds what
    /// runs in it).
    ready: BTreeMap<String, watch::Sender<Option<bool>>>,
    /// Each such VM's containers in the plan.
    guests: BTreeMap<String, Vec<String>>,
    /// Those VMs that this run restarts or returns to a snapshot: the containers in them
    /// are found again in their engines (a restored VM holds the containers of its
    /// snapshot, not the ones the plan saw).
    restarted: std::collections::BTreeSet<String>,
}

/// Resolves after Ctrl-C (or never, if the sender is gone without it).
pub(super) async fn cancelled(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What a run of a plan works with.
pub(crate) struct ApplyCtx<'a> {
    pub env: &'a Env,
    pub ctx: &'a EnvCtx,
    pub backends: &'a Backends,
    pub rec: &'a Recorder,
    pub progress: &'a Progress,
    /// Machine operations at once.
    pub parallel: usize,
    /// Images for the machines to create (see [`resolve_images`]).
    pub images: &'a Images,
    /// Bases still being prepared when the plan was made (`up` while boxes build).
    pub late: Option<&'a LateImages<'a>>,
    /// Snapshot the `Save` and `Restore` steps act on.
    pub snapshot: Option<&'a str>,
    /// Whether machines are created from the provisioned-state cache, and its bound.
    pub cache: &'a crate::cache::Policy,
}

/// Runs `plan`; Ctrl-C arrives through `cancel`.
pub(crate) async fn apply(
    a: &ApplyCtx<'_>,
    plan: &Plan,
    cancel: watch::Receiver<bool>,
) -> Result<ApplyReport, ApplyError> {
    ensure_networks(a, plan).await?;
    // What `status` recorded about their drift is no longer true of the machines this
    // run changes.
    let changing = |mp: &&MachinePlan| {
        mp.steps
            .iter()
            .any(|s| !matches!(s, Step::Save | Step::Health))
    };
    a.rec.dir().forget_drift(
        plan.machines
            .iter()
            .filter(changing)
            .map(|mp| mp.name.as_str()),
    );
    let done = plan
        .machines
        .iter()
        .map(|m| (m.name.clone(), watch::channel(None).0))
        .collect();
    let mut guests: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mp in &plan.machines {
        if let Some(vm) = a.env.machines.get(&mp.name).and_then(|m| m.place.vm_host()) {
            guests
                .entry(vm.to_string())
                .or_default()
                .push(mp.name.clone());
        }
    }
    let shared = Shared {
        env: a.env,
        ctx: a.ctx,
        backends: a.backends,
        rec: a.rec,
        progress: a.progress,
        sem: Semaphore::new(a.parallel.max(1)),
        cancel: cancel.clone(),
        images: a.images,
        late: a.late,
        snapshot: a.snapshot,
        cache: a.cache,
        done,
        ready: guests
            .keys()
            .map(|vm| (vm.clone(), watch::channel(None).0))
            .collect(),
        restarted: plan
            .machines
            .iter()
            .filter(|mp| guests.contains_key(&mp.name) && restarts(mp))
            .map(|mp| mp.name.clone())
            .collect(),
        guests,
    };
    let tasks = plan.machines.iter().map(|mp| machine_task(&shared, mp));
    let machines = futures_util::future::join_all(tasks).await;
    let interrupted = *cancel.borrow();
    // A machine that just took its baseline or returned to it has not drifted.
    let at_baseline: Vec<(String, String, usize)> = {
        let state = a.rec.snapshot();
        machines
            .iter()
            .filter(|r| r.outcome == Outcome::Done)
            .filter_map(|r| {
                let mp = plan.machines.iter().find(|mp| mp.name == r.name)?;
                let id = state.machines.get(&r.name)?.id.clone()?;
                mp.steps
                    .iter()
                    .any(|s| matches!(s, Step::Baseline | Step::Reset))
                    .then(|| (r.name.clone(), id, 0))
            })
            .collect()
    };
    a.rec
        .dir()
        .record_drift(crate::state::drift::now(), at_baseline);
    if !interrupted && containers_moved(plan) {
        hosts::refresh(a.env, a.ctx, a.backends, a.progress).await;
    }
    Ok(ApplyReport {
        machines,
        interrupted,
    })
}

/// Whether the plan made containers anew (their addresses on overlay networks may have
/// changed, and VMs hold the others' addresses in `/etc/hosts`).
fn containers_moved(plan: &Plan) -> bool {
    plan.machines.iter().any(|mp| {
        mp.backend == crate::envfile::Backend::Docker
            && mp.steps.iter().any(|s| {
                matches!(
                    s,
                    Step::Create | Step::Reset | Step::Restore | Step::Baseline
                )
            })
    })
}

/// Networks first, before any machine: a subnet conflict stops the whole run, and the
/// networks to create are made on the engine that holds the environment's networks.
async fn ensure_networks(a: &ApplyCtx<'_>, plan: &Plan) -> Result<(), ApplyError> {
    for n in &plan.networks {
        if n.change == NetChange::Conflict {
            return Err(ApplyError::NetworkConflict {
                name: n.name.clone(),
                observed: n.observed_subnet.clone().unwrap_or_default(),
                wanted: n.subnet.clone().unwrap_or_default(),
            });
        }
        let create = n.change == NetChange::Create;
        place_network(a.env, a.ctx, a.backends, &n.name, create).await?;
    }
    Ok(())
}

/// Puts one environment network where its machines are (made when `create`): a bridge
/// on the one Docker engine that holds them, or an attachable Swarm overlay, made on a
/// swarm manager and kept on every other engine for as long as the environment lives
/// (see `DockerBackend::keep_network`).
pub(crate) async fn place_network(
    env: &Env,
    ctx: &EnvCtx,
    backends: &Backends,
    name: &str,
    create: bool,
) -> Result<(), BackendError> {
    let engines = crate::envfile::topology::engines_of(env, name);
    if crate::envfile::topology::inside_vm(env, name) {
        // Inside a VM's engine: made with the containers there, once the VM runs.
        return Ok(());
    }
    let overlay = engines.len() > 1;
    let at = match overlay {
        true => backends.ensure_swarm(env).await?,
        false => engines.iter().next().cloned().flatten(),
    };
    let what = format!("network `{name}`");
    if create {
        if overlay && env.networks.get(name).is_some_and(|n| n.encrypted) {
            check_esp(name, &engines)?;
        }
        let spec = match env.networks.get(name) {
            Some(net) => Some(NetSpec {
                name: net.name.clone(),
                subnet: net.subnet,
                address: None,
                remote: None,
                overlay,
                encrypted: overlay && net.encrypted,
            }),
            None if overlay => Some(NetSpec::default_overlay()),
            None => None,
        };
        let host = backends.engine(&what, &EngineKey::docker(at.as_deref()))?;
        host.ensure_network(ctx, spec.as_ref()).await?;
    }
    if overlay {
        for other in engines.iter().filter(|e| **e != at) {
            backends
                .docker(&what, other.as_deref())?
                .keep_network(ctx, name)
                .await?;
        }
    }
    Ok(())
}

/// Refuses an encrypted overlay on engines of this machine when its kernel has no ESP:
/// Docker would create it and start its containers, and nothing would pass. (The kernels
/// of other machines' engines cannot be read from here.)
fn check_esp(
    name: &str,
    engines: &std::collections::BTreeSet<Option<String>>,
) -> Result<(), BackendError> {
    let here = engines
        .iter()
        .any(|e| e.as_deref().is_none_or(|e| e.starts_with("unix://")));
    if here && crate::host::KernelFeatures::read().esp == Some(false) {
        return Err(BackendError::Engine {
            action: format!("create network `{name}`"),
            message: "`encrypted = true` needs IPsec (ESP) in the kernel, and this machine's kernel has none: Docker would create the overlay and pass nothing over it; drop `encrypted`, or run the hosts on kernels with ESP (`hdev doctor` tells)".into(),
        });
    }
    Ok(())
}

/// One machine's task: runs its plan (unless there is nothing to do), tells its
/// dependants how it went, reports the end to `progress` and returns its result.
async fn machine_task(shared: &Shared<'_>, mp: &MachinePlan) -> MachineResult {
    let t0 = Instant::now();
    let r = if mp.steps.is_empty() && mp.change == Change::Keep {
        Ok(None)
    } else {
        run_machine(shared, mp).await
    };
    let from_cache = r.as_ref().ok().cloned().flatten();
    let r = r.map(|_| ());
    let ok = r.is_ok();
    if let Some(tx) = shared.ready.get(&mp.name) {
        if tx.borrow().is_none() {
            tx.send_replace(Some(ok));
        }
    }
    if let Some(tx) = shared.done.get(&mp.name) {
        tx.send_replace(Some(ok));
    }
    let outcome = match &r {
        Ok(()) if mp.change == Change::Keep => Outcome::Unchanged,
        Ok(()) => Outcome::Done,
        Err(MachineError::DependencyFailed { .. }) => Outcome::Skipped,
        Err(MachineError::Interrupted { .. }) => Outcome::Interrupted,
        Err(_) => Outcome::Failed,
    };
    let msg = match (&r, outcome) {
        (_, Outcome::Unchanged) => "up to date".to_string(),
        (Ok(()), _) if mp.change == Change::Remove => "removed".to_string(),
        (Ok(()), _) if from_cache.is_some() => "up, from the provisioned-state cache".to_string(),
        (Ok(()), _) => "up".to_string(),
        (Err(e), _) => e.to_string().lines().next().unwrap_or("").to_string(),
    };
    if mp.change != Change::Keep || !ok {
        shared.progress.finish(&mp.name, ok, &msg);
    }
    MachineResult {
        name: mp.name.clone(),
        change: mp.change,
        outcome,
        seconds: t0.elapsed().as_secs_f64(),
        error: r.err().map(|e| e.to_string()),
        from_cache,
    }
}

/// Runs one machine's steps; the short hash of the cache entry it was created from, if any.
async fn run_machine(sh: &Shared<'_>, mp: &MachinePlan) -> Result<Option<String>, MachineError> {
    let name = mp.name.as_str();
    wait_for_dependencies(sh, mp).await?;
    let machine = sh.env.machines.get(name);
    if let Some(vm) = machine.and_then(|m| m.place.vm_host()) {
        // Its VM runs now: reach the engine in it.
        sh.backends
            .reach_vm_engine(vm)
            .await
            .map_err(|e| MachineError::of(name, e))?;
    }
    let backend: &AnyBackend = match machine {
        Some(m) => sh.backends.get(m).map_err(MachineError::Unavailable)?,
        None => sh
            .backends
            .get_at(name, &mp.engine_key())
            .map_err(|e| MachineError::of(name, e))?,
    };
    let replanned;
    let vm_acted = machine
        .and_then(|m| m.place.vm_host())
        .is_some_and(|vm| sh.restarted.contains(vm));
    let waits_for_box =
        machine.is_some_and(|m| sh.late.is_some_and(|l| l.waits_for(sh.env, m).is_some()));
    let mp = match mp.change {
        Change::Later if waits_for_box => {
            replanned = replan_on_box(sh, mp, backend).await?;
            &replanned
        }
        Change::Later => {
            replanned = replan_guest(sh, mp, backend).await?;
            &replanned
        }
        _ if vm_acted => {
            replanned = with_found(mp, find_again(sh, mp, backend).await?.as_ref());
            &replanned
        }
        _ => mp,
    };
    let mut permit = Some(acquire(sh, name).await?);
    let mut id = mp.existing.clone();
    let caching = cached::applies(sh, mp, machine);
    let from = match caching {
        true => cached::lookup(sh, mp, backend).await,
        false => None,
    };
    let m = Machine {
        plan: mp,
        machine,
        backend,
        from: from.as_deref(),
    };
    for step in &mp.steps {
        if *sh.cancel.borrow() {
            return Err(interrupted(name));
        }
        if let (Some(def), Some(cid)) = (machine.filter(|_| caching), id.as_deref()) {
            match step {
                Step::Provision if from.is_some() => {
                    cached::mark_provisioned(sh, def, cid, &mp.hash, false).map_err(|source| {
                        MachineError::State {
                            machine: name.to_string(),
                            source,
                        }
                    })?;
                    continue;
                }
                Step::Baseline if from.is_none() && !cached::keeps_baseline(backend) => {
                    id = Some(cached::keep(sh, backend, def, cid, &mp.hash).await?);
                }
                _ => {}
            }
        }
        if matches!(step, Step::Baseline | Step::Save) && sh.guests.contains_key(name) {
            // Its snapshot holds its containers: they come first (without holding a slot,
            // which they may need).
            drop(permit.take());
            ready_for_guests(sh, mp).await;
            wait_for_guests(sh, name).await?;
            permit = Some(acquire(sh, name).await?);
        }
        id = match step {
            // Waits for a VM to boot: a Ctrl-C stops waiting at once (the machine is
            // left as the engine has it, and the next `up` finishes it).
            Step::Create | Step::Start => {
                let boot_log = id.as_deref().and_then(|i| backend.boot_log(i));
                tokio::select! {
                    r = steps::showing_boot(sh, name, boot_log, run_step(sh, &m, *step, id)) => r?,
                    _ = cancelled(sh.cancel.clone()) => return Err(interrupted(name)),
                }
            }
            // A VM returned to a state boots again (or resumes) before it answers.
            Step::Reset | Step::Restore => {
                let boot_log = id.as_deref().and_then(|i| backend.boot_log(i));
                steps::showing_boot(sh, name, boot_log, run_step(sh, &m, *step, id)).await?
            }
            _ => run_step(sh, &m, *step, id).await?,
        };
        if let (Step::Baseline, true, None, Some(def), Some(cid)) =
            (step, caching, &from, machine, id.as_deref())
        {
            if cached::keeps_baseline(backend) {
                id = Some(cached::keep(sh, backend, def, cid, &mp.hash).await?);
            }
        }
    }
    ready_for_guests(sh, mp).await;
    drop(permit);
    if mp.steps.contains(&Step::Health) {
        if let (Some(def), Some(cid)) = (machine, id.as_deref()) {
            let r = wait_healthy(sh, backend, def, cid).await;
            if def.healthcheck.is_some() && !matches!(r, Err(MachineError::Interrupted { .. })) {
                record_health(sh, &mp.name, cid, r.is_ok());
            }
            r?;
        }
    }
    Ok(from.map(|_| cached::short(&mp.hash)))
}

/// Keeps what the health check found, for `status`, `graph` and the dashboard. A state
/// file that cannot be written costs only this record: the check's verdict stands.
fn record_health(sh: &Shared<'_>, name: &str, id: &str, ok: bool) {
    let health = crate::state::HealthRecord {
        id: id.to_string(),
        ok,
        at: crate::state::drift::now(),
    };
    let _ = sh.rec.update(name, |r| {
        r.map(|mut r| {
            r.health = Some(health);
            r
        })
    });
}

/// A container in a VM that did not run when the plan was made: what it needs, now that
/// the engine in the VM can be asked.
async fn replan_guest(
    sh: &Shared<'_>,
    mp: &MachinePlan,
    backend: &AnyBackend,
) -> Result<MachinePlan, MachineError> {
    let name = mp.name.as_str();
    let def = sh.env.machines.get(name).ok_or_else(|| {
        MachineError::Unavailable(BackendError::NotFound {
            what: "machine",
            name: name.to_string(),
        })
    })?;
    decide_now(sh, mp, backend, def, mp.hash.clone()).await
}

/// What machine `def` (planned `Later` as `mp`) needs now, with hash `hash`, against what
/// its engine holds and the state records; said on its line.
async fn decide_now(
    sh: &Shared<'_>,
    mp: &MachinePlan,
    backend: &AnyBackend,
    def: &crate::envfile::Machine,
    hash: String,
) -> Result<MachinePlan, MachineError> {
    let found = find_again(sh, mp, backend).await?;
    let state = sh.rec.snapshot();
    let (change, reason, steps) =
        crate::plan::decide(def, &hash, found.as_ref(), state.machines.get(&mp.name));
    sh.progress.status(
        &mp.name,
        &format!("{}: {reason}", crate::plan::mark_of(change).1),
    );
    Ok(MachinePlan {
        change,
        reason,
        steps,
        hash,
        ..with_found(mp, found.as_ref())
    })
}

/// A machine whose box was still being built when the plan was made: once its base is
/// prepared, what it needs, with its hash as the built box makes it.
async fn replan_on_box(
    sh: &Shared<'_>,
    mp: &MachinePlan,
    backend: &AnyBackend,
) -> Result<MachinePlan, MachineError> {
    let name = mp.name.as_str();
    let (Some(def), Some(late)) = (sh.env.machines.get(name), sh.late) else {
        return Err(MachineError::Unavailable(not_in_envfile(name)));
    };
    let box_name = late.waits_for(sh.env, def).unwrap_or_default().to_string();
    sh.progress
        .status(name, &format!("waiting for box `{box_name}`"));
    // The box's line, in this run's progress, until its build and import end.
    if late.now(sh.env, def).is_none() {
        crate::progress::report(
            &format!("box {box_name}"),
            crate::progress::Update::Status("being built"),
        );
    }
    let fail = |message: String| {
        MachineError::of(
            name,
            BackendError::Engine {
                action: format!("prepare box `{box_name}`"),
                message,
            },
        )
    };
    tokio::select! {
        r = late.wait(sh.env, def) => r.map_err(fail)?,
        _ = cancelled(sh.cancel.clone()) => return Err(interrupted(name)),
    };
    let hash = (late.rehash)()
        .map_err(fail)?
        .remove(name)
        .map(|h| h.0)
        .ok_or_else(|| fail("no hash".into()))?;
    decide_now(sh, mp, backend, def, hash).await
}

/// Whether a VM's plan restarts it or returns it to a snapshot.
fn restarts(mp: &MachinePlan) -> bool {
    mp.steps.iter().any(|s| {
        matches!(
            s,
            Step::Remove | Step::Create | Step::Start | Step::Reset | Step::Restore
        )
    })
}

/// What the engine of a container in a VM holds of it now (after a restore: the
/// container of the VM's snapshot, not the one the plan saw).
async fn find_again(
    sh: &Shared<'_>,
    mp: &MachinePlan,
    backend: &AnyBackend,
) -> Result<Option<crate::backend::ObservedMachine>, MachineError> {
    let mut observed = backend
        .observe(sh.ctx)
        .await
        .map_err(|e| MachineError::of(&mp.name, e))?;
    Ok(observed.machines.remove(&mp.name))
}

/// `mp` acting on what exists now.
fn with_found(mp: &MachinePlan, found: Option<&crate::backend::ObservedMachine>) -> MachinePlan {
    MachinePlan {
        existing: found.map(|o| o.id.clone()),
        engine: found.and_then(|o| o.engine.clone()),
        ..mp.clone()
    }
}

/// Tells the containers of VM `mp` (if it hosts any in the plan) that it is ready for
/// them, once: after a run that restarted or restored it, the engine in it is reached
/// again first. If that fails, they fail as dependants of a VM that is not ready.
async fn ready_for_guests(sh: &Shared<'_>, mp: &MachinePlan) {
    let Some(tx) = sh.ready.get(&mp.name) else {
        return;
    };
    if tx.borrow().is_some() {
        return;
    }
    let mut ok = true;
    if sh.restarted.contains(&mp.name) {
        sh.progress
            .status(&mp.name, "reaching the Docker engine in it");
        if let Err(e) = sh.backends.refresh_vm_engine(&mp.name).await {
            sh.progress.output(&mp.name, &e.to_string());
            ok = false;
        }
    }
    tx.send_replace(Some(ok));
}

fn interrupted(name: &str) -> MachineError {
    MachineError::Interrupted {
        machine: name.to_string(),
    }
}

/// A slot among the machine operations that run at once (or the run was stopped).
async fn acquire<'s>(
    sh: &'s Shared<'_>,
    name: &str,
) -> Result<tokio::sync::SemaphorePermit<'s>, MachineError> {
    let permit = tokio::select! {
        p = sh.sem.acquire() => p.ok(),
        _ = cancelled(sh.cancel.clone()) => None,
    };
    permit.ok_or_else(|| interrupted(name))
}

/// Waits until `tx` says how a machine ended (or is ready); false when it is gone.
async fn outcome(
    sh: &Shared<'_>,
    name: &str,
    tx: &watch::Sender<Option<bool>>,
) -> Result<bool, MachineError> {
    let mut rx = tx.subscribe();
    loop {
        if let Some(ok) = *rx.borrow_and_update() {
            return Ok(ok);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Ok(false) },
            _ = cancelled(sh.cancel.clone()) => return Err(interrupted(name)),
        }
    }
}

/// Waits until every container of VM `vm` in the plan has ended, however it went.
async fn wait_for_guests(sh: &Shared<'_>, vm: &str) -> Result<(), MachineError> {
    sh.progress.status(vm, "waiting for the containers in it");
    for g in sh.guests.get(vm).into_iter().flatten() {
        if let Some(tx) = sh.done.get(g) {
            outcome(sh, vm, tx).await?;
        }
    }
    Ok(())
}

/// Waits until every machine `mp` depends on is up (and healthy, where it has a check);
/// the VM a container is in, only until it is ready for it.
async fn wait_for_dependencies(sh: &Shared<'_>, mp: &MachinePlan) -> Result<(), MachineError> {
    let host = sh
        .env
        .machines
        .get(&mp.name)
        .and_then(|m| m.place.vm_host());
    for dep in &mp.depends_on {
        // The VM a container is in is ready for it before its own snapshot steps.
        let signal = match host == Some(dep.as_str()) {
            true => sh.ready.get(dep).or_else(|| sh.done.get(dep)),
            false => sh.done.get(dep),
        };
        let Some(tx) = signal else { continue };
        sh.progress
            .status(&mp.name, &format!("waiting for `{dep}`"));
        let ok = outcome(sh, &mp.name, tx).await?;
        if !ok {
            return Err(MachineError::DependencyFailed {
                machine: mp.name.clone(),
                dependency: dep.clone(),
            });
        }
    }
    Ok(())
}

/// One machine of a running plan: its plan, its Envfile definition (absent for a machine
/// being removed) and its engine.
struct Machine<'a> {
    plan: &'a MachinePlan,
    machine: Option<&'a crate::envfile::Machine>,
    backend: &'a AnyBackend,
    /// The provisioned-state cache entry it is created from, if any.
    from: Option<&'a str>,
}

impl Machine<'_> {
    fn err(&self, source: BackendError) -> MachineError {
        MachineError::of(&self.plan.name, source)
    }

    /// The error of a step that needs what the machine lacks (a definition, an id).
    fn missing(&self) -> MachineError {
        self.err(not_in_envfile(&self.plan.name))
    }

    fn state_err(&self, source: StateError) -> MachineError {
        MachineError::State {
            machine: self.plan.name.clone(),
            source,
        }
    }
}

/// Runs one step; returns the machine's id afterwards.
async fn run_step(
    sh: &Shared<'_>,
    m: &Machine<'_>,
    step: Step,
    id: Option<String>,
) -> Result<Option<String>, MachineError> {
    let name = &m.plan.name;
    match step {
        Step::Remove => {
            sh.progress.status(name, "removing");
            if let Some(old) = &id {
                // What exists may be on another engine than the machine's (it moved host).
                let holder = sh
                    .backends
                    .get_at(name, &m.plan.engine_key())
                    .unwrap_or(m.backend);
                holder.remove(old).await.map_err(|e| m.err(e))?;
            }
            sh.rec.update(name, |_| None).map_err(|e| m.state_err(e))?;
            Ok(None)
        }
        Step::Create => create(sh, m).await.map(Some),
        Step::Start => {
            sh.progress.status(name, "starting");
            let cid = id.clone().ok_or_else(|| m.missing())?;
            m.backend.start(&cid).await.map_err(|e| m.err(e))?;
            replug(sh, m).await?;
            if m.plan.backend == crate::envfile::Backend::Libvirt {
                if let Some(def) = m.machine {
                    // VMs are not in Docker's DNS: they get the others' names in /etc/hosts.
                    let observed = sh.backends.observe(sh.ctx).await.map_err(|e| m.err(e))?;
                    let lines = hosts::entries(sh.env, def, &observed);
                    hosts::write(m.backend, &cid, &lines)
                        .await
                        .map_err(|e| m.err(e))?;
                }
            }
            Ok(Some(cid))
        }
        Step::Provision => {
            let cid = id.clone().ok_or_else(|| m.missing())?;
            provision_one(
                sh,
                m.backend,
                m.machine.ok_or_else(|| m.missing())?,
                &cid,
                &m.plan.hash,
            )
            .await?;
            Ok(Some(cid))
        }
        Step::Baseline | Step::Reset | Step::Save | Step::Restore => {
            let cid = id.clone().ok_or_else(|| m.missing())?;
            let new = snapshot_step(
                sh,
                m.backend,
                m.machine.ok_or_else(|| m.missing())?,
                &cid,
                &m.plan.hash,
                (step, m.plan.steps.contains(&Step::Create)),
            )
            .await?;
            replug(sh, m).await?;
            Ok(Some(new))
        }
        Step::Health => Ok(id),
    }
}

/// Plugs an anchored VM into its anchor after its guest (re)started.
async fn replug(sh: &Shared<'_>, m: &Machine<'_>) -> Result<(), MachineError> {
    match m.machine {
        Some(def) => anchors::plug(sh.env, sh.ctx, sh.backends, def, &m.plan.hash)
            .await
            .map_err(|e| m.err(e)),
        None => Ok(()),
    }
}

/// Creates a machine from its prepared base, recorded as creating, then created.
async fn create(sh: &Shared<'_>, m: &Machine<'_>) -> Result<String, MachineError> {
    let (name, def) = (&m.plan.name, m.machine.ok_or_else(|| m.missing())?);
    sh.progress.status(name, "creating");
    let late = match sh.images.get(&BaseKey::of(sh.env, def)) {
        None if def.place.vm_host().is_some() => {
            Some(images::prepare_now(sh.env, def, m.backend).await)
        }
        // A box built while the plan ran.
        None => sh.late.and_then(|l| l.now(sh.env, def)),
        _ => None,
    };
    let prepared = late.as_ref().or(sh.images.get(&BaseKey::of(sh.env, def)));
    let resolved = match prepared {
        _ if m.from.is_some() => cached::base(m.from.unwrap_or_default(), def.backend, prepared)
            .map_err(|e| {
                m.err(BackendError::Engine {
                    action: "resolve its image".into(),
                    message: e,
                })
            })?,
        Some(Ok(i)) => i.clone(),
        Some(Err(e)) => {
            return Err(m.err(BackendError::Engine {
                action: "resolve its image".into(),
                message: e.clone(),
            }))
        }
        None => return Err(m.err(not_in_envfile(name))),
    };
    let mut spec = spec_for(sh.env, def, &m.plan.hash, resolved);
    anchors::prepare(sh.env, sh.ctx, sh.backends, def, &mut spec)
        .await
        .map_err(|e| m.err(e))?;
    if def.place.vm_host().is_some() {
        // The networks of containers in a VM are its engine's own, made with them.
        let nets: Vec<Option<&NetSpec>> = match spec.networks.is_empty() {
            true => vec![None],
            false => spec.networks.iter().map(Some).collect(),
        };
        for n in nets {
            m.backend
                .ensure_network(sh.ctx, n)
                .await
                .map_err(|e| m.err(e))?;
        }
    }
    let hash = m.plan.hash.clone();
    sh.rec
        .update(name, |_| {
            Some(MachineRecord {
                backend: def.backend,
                id: None,
                hash,
                phase: Phase::Creating,
                baseline: None,
                provision_runs: 0,
                health: None,
            })
        })
        .map_err(|e| m.state_err(e))?;
    let new_id = m
        .backend
        .create(sh.ctx, &spec)
        .await
        .map_err(|e| m.err(e))?;
    let rid = new_id.clone();
    sh.rec
        .update(name, |r| {
            r.map(|mut r| {
                r.id = Some(rid);
                r.phase = Phase::Created;
                r
            })
        })
        .map_err(|e| m.state_err(e))?;
    Ok(new_id)
}

fn not_in_envfile(name: &str) -> BackendError {
    BackendError::NotFound {
        what: "machine",
        name: name.to_string(),
    }
}
