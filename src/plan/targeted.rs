//! Plans for commands that act on machines that exist: `provision`, `baseline`, `reset`
//! and snapshots. Pure, like [`super::plan`]: what they would run is decided here, from
//! the Envfile and what the engines hold.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, MachinePlan, Plan, Step};
use crate::backend::{Observation, RunState};
use crate::envfile::hash::EnvHash;
use crate::envfile::{Backend, Env};

/// Why a targeted plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("no machine `{name}` in the Envfile{near}\nhelp: machines are: {known}")]
    Unknown {
        name: String,
        near: String,
        known: String,
    },
    #[error("machine `{0}` is not created; run `hdev up` first")]
    NotCreated(String),
    #[error("machine `{name}` is not running (it is {state}); run `hdev up` first")]
    NotRunning { name: String, state: RunState },
    #[error("machine `{0}` is not running; run `hdev up` first")]
    NotRunningToProvision(String),
}

/// Fails with the known names when `name` is not a machine of the environment.
pub(crate) fn check_machine(env: &Env, name: &str) -> Result<(), TargetError> {
    if env.machines.contains_key(name) {
        return Ok(());
    }
    let names: Vec<&str> = env.machines.keys().map(String::as_str).collect();
    let near = names
        .iter()
        .find(|n| strsim::levenshtein(n, name) <= 2)
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    Err(TargetError::Unknown {
        name: name.to_string(),
        near,
        known: names.join(", "),
    })
}

/// Runs `steps` on `targets` (every machine when empty), in dependency order, and runs the
/// health check again on the running machines that depend on one that was reset or
/// restored.
pub(crate) fn targeted_plan(
    env: &Env,
    observed: &Observation,
    targets: &[String],
    steps: &[Step],
    need_running: bool,
) -> Result<Plan, TargetError> {
    for t in targets {
        check_machine(env, t)?;
    }
    let resets = steps
        .iter()
        .any(|s| matches!(s, Step::Reset | Step::Restore));
    let mut acted: BTreeSet<String> = BTreeSet::new();
    let mut machines = Vec::new();
    for m in env.topo_order() {
        let obs = observed.machines.get(&m.name);
        let target = targets.is_empty() || targets.contains(&m.name);
        let mut mp = MachinePlan::untouched(
            m,
            obs.map(|o| o.id.clone()),
            obs.and_then(|o| o.hash.clone()).unwrap_or_default(),
        );
        let checked = m.healthcheck.is_some();
        if target {
            let Some(ob) = obs else {
                return Err(TargetError::NotCreated(m.name.clone()));
            };
            if need_running && ob.state != RunState::Running {
                return Err(TargetError::NotRunning {
                    name: m.name.clone(),
                    state: ob.state,
                });
            }
            mp.change = Change::Finish;
            mp.reason = "asked for".into();
            mp.steps = steps.to_vec();
            if checked && resets {
                mp.steps.push(Step::Health);
            }
            acted.insert(m.name.clone());
        } else if checked
            && resets
            && obs.is_some_and(|o| o.state == RunState::Running)
            && m.depends_on.iter().any(|d| acted.contains(d))
        {
            mp.steps = vec![Step::Health];
            mp.reason = "a dependency was reset; health checked again".into();
            acted.insert(m.name.clone());
        }
        machines.push(mp);
    }
    Ok(Plan {
        networks: vec![],
        machines,
    })
}

/// `provision [MACHINE]`: provisioning again, then a new baseline, on running machines
/// (one named machine must be running; without a name, machines that are not running
/// are left alone).
pub(crate) fn provision_plan(
    env: &Env,
    hashes: &BTreeMap<String, EnvHash>,
    observed: &Observation,
    available: &BTreeSet<Backend>,
    machine: Option<&str>,
) -> Result<Plan, TargetError> {
    if let Some(m) = machine {
        check_machine(env, m)?;
    }
    let mut machines = Vec::new();
    for m in env.topo_order() {
        let target = machine.is_none_or(|t| t == m.name);
        let obs = observed.machines.get(&m.name);
        let hash = hashes.get(&m.name).map(|h| h.0.clone()).unwrap_or_default();
        let mut mp = MachinePlan::untouched(m, obs.map(|o| o.id.clone()), hash);
        if target {
            match obs {
                Some(ob) if ob.state == RunState::Running => {
                    mp.change = Change::Finish;
                    mp.reason = "provisioning asked for".into();
                    mp.steps = vec![Step::Provision, Step::Baseline];
                    if m.healthcheck.is_some() {
                        mp.steps.push(Step::Health);
                    }
                }
                _ if !available.contains(&m.backend) => mp.change = Change::Unavailable,
                _ if machine.is_some() => {
                    return Err(TargetError::NotRunningToProvision(m.name.clone()))
                }
                _ => {}
            }
        }
        machines.push(mp);
    }
    Ok(Plan {
        networks: vec![],
        machines,
    })
}
