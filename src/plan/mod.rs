//! Planning: what `up` must do, from what the Envfile wants (desired), what the engines
//! have (observed) and what hdev recorded (state). Pure: no I/O, so every case is tested
//! without daemons, and `hdev plan` shows exactly what `up` would run.
//!
//! The engine decides whether a machine exists and which hash it was built from; the
//! record decides only whether its provisioning finished, since the engine cannot tell.

mod render;
mod targeted;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backend::Observation;
use crate::envfile::hash::EnvHash;
use crate::envfile::{Backend, Env, Machine};
use crate::state::{Phase, State};

pub(crate) use render::{mark_of, render};
pub(crate) use targeted::{check_machine, provision_plan, targeted_plan};

/// What happens to a machine, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Change {
    /// Does not exist: create, start, provision.
    Create,
    /// Exists from an older definition: remove, then create anew.
    Recreate,
    /// Exists and was provisioned, but is not running.
    Start,
    /// Exists, but its provisioning never finished (interrupted or failed).
    Finish,
    /// Up to date; nothing to do.
    Keep,
    /// Exists but is no longer in the Envfile.
    Remove,
    /// A container inside one of the environment's VMs that does not run now: what it
    /// needs is decided once the VM runs and its engine can be asked.
    Later,
    /// Its backend is not in this build.
    Unavailable,
}

/// One step of a machine's plan, run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Step {
    Remove,
    Create,
    Start,
    Provision,
    /// Capture the baseline (after provisioning succeeded).
    Baseline,
    /// Return to the baseline without provisioning (`hdev reset`).
    Reset,
    /// Capture a named snapshot (`hdev snapshot save`).
    Save,
    /// Return to a named snapshot (`hdev snapshot restore`).
    Restore,
    /// Wait until the health check passes (dependants wait for this).
    Health,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MachinePlan {
    pub name: String,
    pub backend: Backend,
    pub change: Change,
    /// Why, in a few words.
    pub reason: String,
    pub steps: Vec<Step>,
    pub depends_on: Vec<String>,
    /// Engine id of what exists now.
    pub existing: Option<String>,
    /// The Docker endpoint of the engine that holds what exists now (`None`: this
    /// machine's, or a VM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Per-machine hash the machine will carry.
    pub hash: String,
}

impl MachinePlan {
    /// The engine that holds what exists of the machine now.
    pub(crate) fn engine_key(&self) -> crate::backend::EngineKey {
        crate::backend::EngineKey::of(self.backend, self.engine.as_deref())
    }

    /// A machine left as it is ("not asked for"), for plans that act on some machines
    /// only; the caller adds the steps of those it acts on.
    pub(crate) fn untouched(m: &Machine, existing: Option<String>, hash: String) -> MachinePlan {
        MachinePlan {
            name: m.name.clone(),
            backend: m.backend,
            change: Change::Keep,
            reason: "not asked for".into(),
            steps: vec![],
            depends_on: m.depends_on.clone(),
            existing,
            engine: m
                .place
                .docker
                .clone()
                .filter(|_| m.backend == Backend::Docker),
            hash,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetChange {
    Create,
    Keep,
    /// Exists with another subnet; hdev will not move machines off it by itself.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NetworkPlan {
    /// Envfile network name (`_default` for machines that name none).
    pub name: String,
    pub change: NetChange,
    pub subnet: Option<String>,
    pub observed_subnet: Option<String>,
}

/// Everything `up` would do, machines in dependency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Plan {
    pub networks: Vec<NetworkPlan>,
    pub machines: Vec<MachinePlan>,
}

impl Plan {
    /// Whether `up` has nothing to do.
    pub(crate) fn is_noop(&self) -> bool {
        self.networks.iter().all(|n| n.change == NetChange::Keep)
            && self.machines.iter().all(|m| m.change == Change::Keep)
    }

    /// The plan of one machine (tests read plans by name).
    #[cfg(test)]
    pub(crate) fn machine(&self, name: &str) -> Option<&MachinePlan> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// Counts per change, for summaries.
    pub(crate) fn counts(&self) -> BTreeMap<Change, usize> {
        let mut c = BTreeMap::new();
        for m in &self.machines {
            *c.entry(m.change).or_default() += 1;
        }
        c
    }
}

/// The Docker networks the environment needs: every Envfile network on this host, and the
/// default one when a docker machine names none.
fn wanted_networks(env: &Env) -> Vec<(String, Option<String>)> {
    // Networks of VMs on a remote libvirt host are made there, with the VMs.
    let remote = crate::envfile::topology::remote_networks(env);
    // Networks of containers in a VM are made in its engine, with the containers.
    let in_vm = |name: &str| crate::envfile::topology::inside_vm(env, name);
    let mut out: Vec<(String, Option<String>)> = env
        .networks
        .values()
        .filter(|n| !remote.contains_key(&n.name) && !in_vm(&n.name))
        .map(|n| {
            (
                n.name.clone(),
                Some(format!("{}/{}", n.subnet.network(), n.subnet.prefix)),
            )
        })
        .collect();
    if env.machines.values().any(|m| {
        m.backend == Backend::Docker && m.networks.is_empty() && m.place.vm_host().is_none()
    }) {
        out.push((crate::backend::docker::DEFAULT_NETWORK.to_string(), None));
    }
    out
}

fn steps_for(m: &Machine, base: &[Step]) -> Vec<Step> {
    let mut s = base.to_vec();
    if m.healthcheck.is_some() {
        s.push(Step::Health);
    }
    s
}

/// Diffs desired against observed and recorded.
pub(crate) fn plan(
    env: &Env,
    hashes: &BTreeMap<String, EnvHash>,
    observed: &Observation,
    recorded: &State,
    available: &BTreeSet<Backend>,
) -> Plan {
    let networks = plan_networks(env, observed);
    let mut machines = Vec::new();
    for m in env.topo_order() {
        let hash = hashes.get(&m.name).map(|h| h.0.clone()).unwrap_or_default();
        let obs = observed.machines.get(&m.name);
        let rec = recorded.machines.get(&m.name);
        // A container in a VM that does not run: its engine cannot be asked yet.
        let vm_down = m.place.vm_host().filter(|vm| {
            observed
                .machines
                .get(*vm)
                .is_none_or(|o| o.state != crate::backend::RunState::Running)
        });
        let (change, reason, steps) = if !available.contains(&m.backend) {
            (
                Change::Unavailable,
                format!("the {} backend is not available in this build", m.backend),
                vec![],
            )
        } else if let (None, Some(vm)) = (obs, vm_down) {
            let s = steps_for(
                m,
                &[Step::Create, Step::Start, Step::Provision, Step::Baseline],
            );
            let why = format!("in VM `{vm}`, which does not run: decided once it runs");
            (Change::Later, why, s)
        } else {
            decide(m, &hash, obs, rec)
        };
        machines.push(MachinePlan {
            name: m.name.clone(),
            backend: m.backend,
            change,
            reason,
            steps,
            depends_on: m.depends_on.clone(),
            existing: obs.map(|o| o.id.clone()),
            engine: obs.and_then(|o| o.engine.clone()),
            hash,
        });
    }
    check_before_dependants(env, &mut machines);
    baseline_with_guests(env, &mut machines);
    for (name, o) in &observed.machines {
        if !env.machines.contains_key(name) {
            machines.push(MachinePlan {
                name: name.clone(),
                backend: o.backend,
                change: Change::Remove,
                reason: "no longer in the Envfile".to_string(),
                steps: vec![Step::Remove],
                depends_on: vec![],
                existing: Some(o.id.clone()),
                engine: o.engine.clone(),
                hash: o.hash.clone().unwrap_or_default(),
            });
        }
    }
    Plan { networks, machines }
}

/// Each wanted network: created when absent, kept when its subnet matches, a conflict
/// otherwise (hdev does not move machines off a network by itself).
fn plan_networks(env: &Env, observed: &Observation) -> Vec<NetworkPlan> {
    wanted_networks(env)
        .into_iter()
        .map(|(name, subnet)| {
            let obs = observed.networks.get(&name);
            let observed_subnet = obs.and_then(|o| o.subnet.clone());
            let change = match (obs, &subnet) {
                (None, _) => NetChange::Create,
                (Some(_), None) => NetChange::Keep,
                (Some(_), Some(s)) if observed_subnet.as_deref() == Some(s.as_str()) => {
                    NetChange::Keep
                }
                (Some(_), Some(_)) => NetChange::Conflict,
            };
            NetworkPlan {
                name,
                change,
                subnet,
                observed_subnet,
            }
        })
        .collect()
}

/// What one machine of the Envfile needs, from what the engine holds (`obs`, the truth
/// about existence and hash) and what hdev recorded (`rec`, the truth about provisioning).
pub(crate) fn decide(
    m: &Machine,
    hash: &str,
    obs: Option<&crate::backend::ObservedMachine>,
    rec: Option<&crate::state::MachineRecord>,
) -> (Change, String, Vec<Step>) {
    let Some(o) = obs else {
        let why = if rec.is_some() {
            "recorded, but missing from the engine"
        } else {
            "not created"
        };
        let s = steps_for(
            m,
            &[Step::Create, Step::Start, Step::Provision, Step::Baseline],
        );
        return (Change::Create, why.to_string(), s);
    };
    let moved = m.backend == Backend::Docker && o.engine != m.place.docker;
    if o.hash.as_deref() != Some(hash) || moved {
        let why = if moved {
            format!(
                "moved to host `{}`",
                m.place.host.as_deref().unwrap_or("local")
            )
        } else {
            "definition changed".to_string()
        };
        let s = steps_for(
            m,
            &[
                Step::Remove,
                Step::Create,
                Step::Start,
                Step::Provision,
                Step::Baseline,
            ],
        );
        return (Change::Recreate, why, s);
    }
    let provisioned = rec.is_some_and(|r| r.provisioned(&o.id, o.hash.as_deref()));
    let running = o.state == crate::backend::RunState::Running;
    let ready = rec.is_some_and(|r| r.phase >= Phase::Ready);
    // A VM that runs may still be booting (hdev was killed while it booted): a start,
    // which waits until it answers, comes before anything that needs it to.
    let wait = m.backend == Backend::Libvirt;
    match (running, provisioned) {
        (true, true) if ready => (Change::Keep, "up to date".to_string(), vec![]),
        (true, true) => (
            Change::Finish,
            "baseline not taken".to_string(),
            if wait {
                vec![Step::Start, Step::Baseline]
            } else {
                vec![Step::Baseline]
            },
        ),
        (false, true) => {
            let mut base = vec![Step::Start];
            if !ready {
                base.push(Step::Baseline);
            }
            (Change::Start, format!("{}", o.state), steps_for(m, &base))
        }
        (r, false) => {
            let mut base = vec![];
            if !r || wait {
                base.push(Step::Start);
            }
            base.push(Step::Provision);
            base.push(Step::Baseline);
            (
                Change::Finish,
                "provisioning did not finish".to_string(),
                steps_for(m, &base),
            )
        }
    }
}

/// A kept machine with a health check is checked again when a dependant is about to
/// act, so that an unhealthy machine left by an earlier run still gates it.
fn check_before_dependants(env: &Env, machines: &mut [MachinePlan]) {
    let acting: BTreeSet<String> = machines
        .iter()
        .filter(|m| {
            matches!(
                m.change,
                Change::Create | Change::Recreate | Change::Start | Change::Finish | Change::Later
            )
        })
        .flat_map(|m| m.depends_on.iter().cloned())
        .collect();
    for mp in machines.iter_mut() {
        let checked = env
            .machines
            .get(&mp.name)
            .is_some_and(|m| m.healthcheck.is_some());
        if mp.change == Change::Keep && checked && acting.contains(&mp.name) {
            mp.steps = vec![Step::Health];
            mp.reason = "up to date; health checked for its dependants".into();
        }
    }
}

/// A VM's baseline holds the containers in it (taken once they have theirs): when one of
/// them takes a new baseline, the VM takes its own again after them, so that a reset of
/// the VM brings back the containers' baselines too.
fn baseline_with_guests(env: &Env, machines: &mut [MachinePlan]) {
    let hosts: BTreeSet<String> = machines
        .iter()
        .filter(|mp| mp.change != Change::Later && mp.steps.contains(&Step::Baseline))
        .filter_map(|mp| {
            env.machines
                .get(&mp.name)?
                .place
                .vm_host()
                .map(str::to_string)
        })
        .collect();
    for mp in machines.iter_mut().filter(|mp| hosts.contains(&mp.name)) {
        if mp.steps.contains(&Step::Baseline) || !matches!(mp.change, Change::Keep | Change::Start)
        {
            continue;
        }
        mp.steps.push(Step::Baseline);
        mp.steps.sort();
        if mp.change == Change::Keep {
            mp.change = Change::Finish;
            mp.reason = "containers in it take new baselines: its own follows".into();
        }
    }
}

#[cfg(test)]
mod tests;
