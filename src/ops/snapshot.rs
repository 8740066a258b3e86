//! `baseline`, `reset`, `drift` and `snapshot save|restore|list|delete` over the engine
//! contract. Acting operations run as targeted plans (machines in dependency order,
//! independent ones in parallel, health checks run again), so they share `up`'s progress,
//! Ctrl-C handling and state records.

use std::collections::BTreeMap;

use serde::Serialize;

use super::session::{load_state, Session};
use super::up::{run_steps, Code};
use crate::backend::{Backends, Engine, Observation, RunState, StatePart};
use crate::envfile::{Backend, Env};
use crate::output::Printer;
use crate::plan::{self, Step};
use crate::snapshot::Drift;
use crate::state::EnvLock;

/// Runs `steps` on `targets` (every machine when empty) as a plan, under the lock.
pub(crate) async fn act(
    p: &Printer,
    o: &Session,
    targets: &[String],
    steps: &[Step],
    need_running: bool,
    snapshot: Option<&str>,
) -> Code {
    let lock = o.project.state.lock()?;
    act_locked(p, o, lock, targets, steps, need_running, snapshot).await
}

/// `reset [MACHINE...]` under the lock the caller holds: back to the baseline.
pub(crate) async fn reset(p: &Printer, o: &Session, lock: EnvLock, targets: &[String]) -> Code {
    act_locked(p, o, lock, targets, &[Step::Reset], false, None).await
}

/// `snapshot save NAME` under the lock the caller holds; refuses a name that is taken.
pub(crate) async fn save(p: &Printer, o: &Session, lock: EnvLock, name: &str) -> Code {
    crate::snapshot::check_name(name)?;
    if list(o).await?.contains_key(name) {
        anyhow::bail!(
            "snapshot `{name}` exists\nhelp: `hdev snapshot delete {name}` first, or choose another name"
        );
    }
    act_locked(p, o, lock, &[], &[Step::Save], true, Some(name)).await
}

/// `snapshot restore NAME` under the lock the caller holds.
pub(crate) async fn restore(p: &Printer, o: &Session, lock: EnvLock, name: &str) -> Code {
    crate::snapshot::check_name(name)?;
    act_locked(p, o, lock, &[], &[Step::Restore], false, Some(name)).await
}

/// [`act`] under the lock the caller holds (a front end that took it to refuse a second
/// action at once).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn act_locked(
    p: &Printer,
    o: &Session,
    lock: EnvLock,
    targets: &[String],
    steps: &[Step],
    need_running: bool,
    snapshot: Option<&str>,
) -> Code {
    let state = load_state(&o.project)?;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let plan = plan::targeted_plan(&o.project.env, &observed, targets, steps, need_running)?;
    run_steps(p, o, &backends, &plan, lock, state, snapshot).await
}

/// One machine's drift, or why it could not be told.
#[derive(Debug, Serialize)]
pub(crate) struct MachineDrift {
    pub machine: String,
    /// What was compared: `writes` (every file written since the baseline: Docker's
    /// diff), `metadata` (type, mode, size and time of every file: a VM's default) or
    /// `contents` (a VM's files read and hashed: `--deep`).
    pub check: &'static str,
    #[serde(flatten)]
    pub drift: Option<Drift>,
    pub error: Option<String>,
}

/// What a machine's drift compares (see [`MachineDrift::check`]).
fn check_of(m: &crate::envfile::Machine, deep: bool) -> &'static str {
    match (m.backend, deep) {
        (Backend::Docker, _) => "writes",
        (_, true) => "contents",
        (_, false) => "metadata",
    }
}

/// Drift of the machines `pick` chooses, computed in parallel; with `deep`, file contents
/// are compared where the engine's drift would not see them otherwise.
pub(crate) async fn drifts(
    backends: &Backends,
    env: &Env,
    observed: &Observation,
    pick: &(dyn Fn(&crate::envfile::Machine) -> bool + Sync),
    deep: bool,
) -> Vec<MachineDrift> {
    let jobs = env
        .topo_order()
        .into_iter()
        .filter(|m| pick(m))
        .map(|m| async move {
            let r = match (observed.machines.get(&m.name), backends.get(m)) {
                (None, _) => Err("not created".to_string()),
                (Some(_), Err(e)) => Err(e.to_string()),
                (Some(o), Ok(_))
                    if o.state != RunState::Running && m.backend == Backend::Libvirt =>
                {
                    Err(format!("not running (it is {})", o.state))
                }
                (Some(o), Ok(b)) if deep => b
                    .drift_deep(&m.name, &o.id)
                    .await
                    .map_err(|e| e.to_string()),
                (Some(o), Ok(b)) => b.drift(&m.name, &o.id).await.map_err(|e| e.to_string()),
            };
            let (drift, error) = match r {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(e)),
            };
            MachineDrift {
                machine: m.name.clone(),
                check: check_of(m, deep),
                drift,
                error,
            }
        });
    futures_util::future::join_all(jobs).await
}

/// Totals of `drift` over the machines.
#[derive(Debug, Default, Serialize)]
pub(crate) struct DriftSummary {
    /// Machines with any file added, changed or deleted.
    pub drifted: usize,
    pub added: usize,
    pub changed: usize,
    pub deleted: usize,
    /// Machines whose drift could not be told.
    pub errors: usize,
}

/// The whole of `drift`.
#[derive(Debug, Serialize)]
pub(crate) struct DriftReport {
    pub machines: Vec<MachineDrift>,
    pub summary: DriftSummary,
}

impl DriftReport {
    /// The process exit code: 0 without drift, 1 with drift, 2 when it cannot tell.
    pub(crate) fn code(&self) -> i32 {
        if self.summary.errors > 0 {
            2
        } else if self.summary.drifted > 0 {
            1
        } else {
            0
        }
    }
}

/// `drift [MACHINE] [--deep]`: the files added, changed and deleted since the baseline.
pub(crate) async fn drift(
    o: &Session,
    machine: Option<&str>,
    deep: bool,
) -> anyhow::Result<DriftReport> {
    if let Some(m) = machine {
        super::session::check_machine(&o.project.env, m)?;
    }
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let pick = |m: &crate::envfile::Machine| machine.is_none_or(|n| n == m.name);
    let machines = check_drift_at(o, &backends, &observed, &pick, deep).await;
    let summary = summarize(&machines);
    Ok(DriftReport { machines, summary })
}

fn summarize(rows: &[MachineDrift]) -> DriftSummary {
    let sum = |f: fn(&Drift) -> usize| rows.iter().filter_map(|r| r.drift.as_ref()).map(f).sum();
    DriftSummary {
        drifted: rows
            .iter()
            .filter(|r| r.drift.as_ref().is_some_and(|d| !d.is_empty()))
            .count(),
        added: sum(|d| d.added.len()),
        changed: sum(|d| d.changed.len()),
        deleted: sum(|d| d.deleted.len()),
        errors: rows.iter().filter(|r| r.error.is_some()).count(),
    }
}

/// Drift of the machines (or of one), computed now and recorded for `status`.
pub(crate) async fn check_drift(
    o: &Session,
    backends: &Backends,
    observed: &Observation,
    only: Option<&str>,
) -> Vec<MachineDrift> {
    check_drift_of(o, backends, observed, &|m| only.is_none_or(|n| n == m.name)).await
}

/// Drift of the machines `pick` chooses, computed now and recorded for `status`.
pub(crate) async fn check_drift_of(
    o: &Session,
    backends: &Backends,
    observed: &Observation,
    pick: &(dyn Fn(&crate::envfile::Machine) -> bool + Sync),
) -> Vec<MachineDrift> {
    check_drift_at(o, backends, observed, pick, false).await
}

/// [`check_drift_of`], comparing file contents when `deep`.
pub(crate) async fn check_drift_at(
    o: &Session,
    backends: &Backends,
    observed: &Observation,
    pick: &(dyn Fn(&crate::envfile::Machine) -> bool + Sync),
    deep: bool,
) -> Vec<MachineDrift> {
    let started = crate::state::drift::now();
    let machines = drifts(backends, &o.project.env, observed, pick, deep).await;
    let checks = machines
        .iter()
        .filter_map(|d| {
            let drift = d.drift.as_ref()?;
            let id = observed.machines.get(&d.machine)?.id.clone();
            Some((d.machine.clone(), id, drift.total()))
        })
        .collect();
    o.project.state.record_drift(started, checks);
    machines
}

/// Every snapshot of the environment (the baseline included), by name, parts sorted by
/// machine.
pub(crate) async fn list(o: &Session) -> anyhow::Result<BTreeMap<String, Vec<StatePart>>> {
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    states(o, &backends, &observed).await
}

/// [`list`] over engines already connected and read.
pub(crate) async fn states(
    o: &Session,
    backends: &Backends,
    observed: &Observation,
) -> anyhow::Result<BTreeMap<String, Vec<StatePart>>> {
    let mut out: BTreeMap<String, Vec<StatePart>> = BTreeMap::new();
    for b in backends.all() {
        for part in b.states(&o.ctx, observed).await? {
            out.entry(part.name.clone()).or_default().push(part);
        }
    }
    for parts in out.values_mut() {
        parts.sort_by(|a, b| a.machine.cmp(&b.machine));
    }
    Ok(out)
}

/// Deletes snapshot `name` from every machine; on how many machines it existed.
pub(crate) async fn delete(o: &Session, name: &str) -> anyhow::Result<usize> {
    let _lock = o.project.state.lock()?;
    let env = &o.project.env;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let mut n = 0;
    for m in env.machines.values() {
        let Ok(b) = backends.get(m) else { continue };
        let id = observed.machines.get(&m.name).map(|o| o.id.as_str());
        if b.delete_state(&o.ctx, &m.name, id, name).await? {
            n += 1;
        }
    }
    Ok(n)
}
