//! `status`: each machine as the engines report it (found by label, so it is true even
//! when `.hdev/state.json` is stale), beside what hdev recorded.

use std::collections::BTreeMap;

use serde::Serialize;

use super::session::{load_state, Session};
use crate::backend::{Backends, Observation, ObservedNetwork, RunState};
use crate::envfile::Env;
use crate::state::State;

/// One machine in `status`.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub name: String,
    pub backend: String,
    /// The host it runs on (`local`: this machine).
    pub host: String,
    /// running, stopped, paused, busy, not created, unavailable.
    pub state: String,
    /// current, changed, or absent when not created.
    pub definition: Option<&'static str>,
    pub provisioned: bool,
    /// The last health check `up` ran on this very machine: `passed` or `failed`;
    /// absent without a check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    pub baseline: bool,
    /// Whether files changed since the baseline, as the last drift check found (absent
    /// when none was made of this machine since hdev last changed it, or it could not be
    /// told: no baseline, not running).
    pub drifted: Option<bool>,
    /// How many seconds ago that check was made (0: by this `status --drift`).
    pub drift_age: Option<u64>,
    /// In the engine but no longer in the Envfile.
    pub orphan: bool,
    pub addresses: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub id: Option<String>,
    /// Sources this machine uses that a working copy stands for (`--use`, `Envfile.local`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<String>,
}

/// The whole of `status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    pub env: String,
    pub instance: String,
    pub env_hash: String,
    pub recorded_env_hash: Option<String>,
    pub machines: Vec<Row>,
    pub networks: BTreeMap<String, ObservedNetwork>,
    /// The environment places machines on hosts (status shows a HOST column).
    pub placed: bool,
    /// Engines the environment uses that could not be reached, with why and what to do:
    /// their machines show `unreachable`.
    pub unreachable: Vec<String>,
    /// Sources a working copy stands for, with the copy's folder and whether it has
    /// uncommitted changes: the hash is then a developer's (`+local`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub local: BTreeMap<String, crate::sources::LocalUse>,
}

/// Reads the engines and the state. Drift comes from the last recorded check (no guest
/// is asked), unless `check_drift` asks for a check now, which is recorded in turn.
pub(crate) async fn status(o: &Session, check_drift: bool) -> anyhow::Result<StatusReport> {
    let state = load_state(&o.project)?;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let drifted = match check_drift {
        true => checked_drift(o, &backends, &observed).await,
        false => recorded_drift(o, &observed),
    };
    Ok(report(o, &state, &backends, observed, &drifted))
}

/// Drift checked now (and recorded), with age 0, as `report` takes it.
pub(crate) async fn checked_drift(
    o: &Session,
    backends: &Backends,
    observed: &Observation,
) -> BTreeMap<String, (bool, u64)> {
    super::snapshot::check_drift(o, backends, observed, None)
        .await
        .into_iter()
        .filter_map(|d| d.drift.map(|x| (d.machine, (!x.is_empty(), 0))))
        .collect()
}

/// Drift as last checked, with the check's age, for the machines the engines hold now.
pub(crate) fn recorded_drift(o: &Session, observed: &Observation) -> BTreeMap<String, (bool, u64)> {
    let records = o.project.state.drift_records();
    let now = crate::state::drift::now();
    observed
        .machines
        .iter()
        .filter_map(|(name, ob)| {
            let c = records.check(name, &ob.id)?;
            Some((name.clone(), (c.files > 0, now.saturating_sub(c.at))))
        })
        .collect()
}

/// The report from what was read: pure.
pub(crate) fn report(
    o: &Session,
    state: &State,
    backends: &Backends,
    observed: Observation,
    drifted: &BTreeMap<String, (bool, u64)>,
) -> StatusReport {
    let env: &Env = &o.project.env;
    let available = backends.available();
    let names = env
        .topo_order()
        .into_iter()
        .map(|m| (m.name.clone(), Some(m)))
        .chain(
            observed
                .machines
                .keys()
                .filter(|k| !env.machines.contains_key(*k))
                .map(|k| (k.clone(), None)),
        );
    let mut rows = Vec::new();
    for (name, m) in names {
        let obs = observed.machines.get(&name);
        let rec = state.machines.get(&name);
        let backend = m
            .map(|m| m.backend)
            .or(obs.map(|o| o.backend))
            .map(|b| b.to_string())
            .unwrap_or_default();
        let st = match (obs, m) {
            (Some(o), _) => o.state.to_string(),
            (None, Some(m)) if !available.contains(&m.backend) => "unavailable".to_string(),
            // In a VM that does not run: it stopped with the VM, if it was made.
            (None, Some(m))
                if m.place.vm_host().is_some_and(|vm| {
                    observed
                        .machines
                        .get(vm)
                        .is_none_or(|v| v.state != RunState::Running)
                }) =>
            {
                match rec {
                    Some(_) => "stopped".to_string(),
                    None => "not created".to_string(),
                }
            }
            // Its host's engine did not answer: whether it exists is not known.
            (None, Some(m)) if backends.get(m).is_err() => "unreachable".to_string(),
            (None, _) => "not created".to_string(),
        };
        let want = o.hashes.get(&name).map(|h| h.0.as_str());
        let definition = obs.map(|ob| {
            if m.is_some() && ob.hash.as_deref() == want {
                "current"
            } else {
                "changed"
            }
        });
        let provisioned = match (obs, rec) {
            (Some(ob), Some(r)) => r.provisioned(&ob.id, ob.hash.as_deref()),
            _ => false,
        };
        let health = obs.zip(rec).and_then(|(ob, r)| r.health_of(&ob.id));
        let host = host_of(env, m, obs);
        let local = m
            .map(|m| env.sources_of(m))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| o.project.sources.get(*s).is_some_and(|r| r.local.is_some()))
            .map(str::to_string)
            .collect();
        rows.push(Row {
            local,
            host,
            baseline: observed.baselines.contains(&name),
            drifted: drifted.get(&name).map(|d| d.0),
            drift_age: drifted.get(&name).map(|d| d.1),
            orphan: m.is_none(),
            addresses: obs.map(|o| o.addresses.clone()).unwrap_or_default(),
            ports: obs.map(|o| o.ports.clone()).unwrap_or_default(),
            id: obs.map(|o| o.id.chars().take(12).collect()),
            name,
            backend,
            state: st,
            definition,
            provisioned,
            health,
        });
    }
    StatusReport {
        env: env.settings.name.clone(),
        instance: o.ctx.instance.clone(),
        env_hash: o.env_hash.0.clone(),
        recorded_env_hash: state.env_hash.clone(),
        machines: rows,
        networks: observed.networks,
        placed: !env.layout.hosts.is_empty(),
        unreachable: backends
            .errors()
            .map(|(k, e)| format!("{k}: {e}"))
            .collect(),
        local: o
            .project
            .sources
            .iter()
            .filter_map(|(n, r)| Some((n.clone(), r.local.clone()?)))
            .collect(),
    }
}

/// The host a machine is on: where the engine found it, else where the Envfile places it.
pub(crate) fn host_of(
    env: &Env,
    m: Option<&crate::envfile::Machine>,
    obs: Option<&crate::backend::ObservedMachine>,
) -> String {
    use crate::envfile::topology::host_of_engine;
    match (obs, m) {
        (Some(o), _) if o.engine.is_some() => host_of_engine(env, o.engine.as_deref()),
        (_, Some(m)) => match &m.place.host {
            Some(h) => h.clone(),
            None if m.backend == crate::envfile::Backend::Libvirt => {
                let uri = crate::envfile::topology::machine_uri(env, m);
                crate::envfile::topology::remote_host(&uri)
                    .map_or_else(|| "local".to_string(), |r| r.host)
            }
            None => "local".to_string(),
        },
        (_, None) => "local".to_string(),
    }
}
