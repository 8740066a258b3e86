//! `baseline`, `reset`, `drift` and `snapshot save|restore|list|delete`: thin commands
//! over `crate::snapshot`. Acting commands run as plans (machines in dependency order,
//! independent ones in parallel, health checks run again), so they share `up`'s progress,
//! Ctrl-C handling and state records.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Subcommand;
use serde::Serialize;

use super::machinecmds::{check_machine, load_state, open, run_steps, runtime, Opened};
use super::CmdResult;
use crate::backend::{Backends, Observation, RunState};
use crate::envfile::Backend;
use crate::output::Printer;
use crate::plan::{Change, MachinePlan, Plan, Step};
use crate::snapshot::{self, Drift, SnapshotPart};

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Capture every machine's current state as snapshot NAME.
    Save { name: String },
    /// Return every machine to snapshot NAME (no provisioning).
    Restore { name: String },
    /// The snapshots (the baseline included) with their disk use.
    List,
    /// Remove snapshot NAME from every machine.
    Delete { name: String },
}

/// Builds a plan that runs `steps` on `targets` (all machines when empty) and runs the
/// health check again on the machines that depend on one of them.
fn plan_for(
    o: &Opened,
    observed: &Observation,
    targets: &[String],
    steps: &[Step],
    need_running: bool,
) -> anyhow::Result<Plan> {
    let env = &o.project.env;
    for t in targets {
        check_machine(env, t)?;
    }
    let mut acted: Vec<String> = Vec::new();
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
                anyhow::bail!("machine `{}` is not created; run `hdev up` first", m.name);
            };
            if need_running && ob.state != RunState::Running {
                anyhow::bail!(
                    "machine `{}` is not running (it is {}); run `hdev up` first",
                    m.name,
                    ob.state
                );
            }
            mp.change = Change::Finish;
            mp.reason = "asked for".into();
            mp.steps = steps.to_vec();
            if checked
                && steps
                    .iter()
                    .any(|s| matches!(s, Step::Reset | Step::Restore))
            {
                mp.steps.push(Step::Health);
            }
            acted.push(m.name.clone());
        } else if checked
            && obs.is_some_and(|o| o.state == RunState::Running)
            && m.depends_on.iter().any(|d| acted.contains(d))
            && steps
                .iter()
                .any(|s| matches!(s, Step::Reset | Step::Restore))
        {
            mp.steps = vec![Step::Health];
            mp.reason = "a dependency was reset; health checked again".into();
            acted.push(m.name.clone());
        }
        machines.push(mp);
    }
    Ok(Plan {
        networks: vec![],
        machines,
    })
}

/// Runs `steps` on machines as a plan, under the environment's lock.
fn act(
    p: &Printer,
    file: Option<&Path>,
    targets: &[String],
    steps: &[Step],
    need_running: bool,
    snapshot: Option<&str>,
) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let state = load_state(&o.project)?;
    runtime()?.block_on(async {
        let backends = Backends::connect(Some(&o.project.env)).await?;
        let observed = backends.observe(&o.ctx).await?;
        let plan = plan_for(&o, &observed, targets, steps, need_running)?;
        run_steps(p, &o, &backends, &plan, lock, state, snapshot).await
    })
}

/// `hdev baseline [MACHINE]`: captures the machines' current state as their baseline.
pub fn baseline(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let targets: Vec<String> = machine.into_iter().map(str::to_string).collect();
    act(p, file, &targets, &[Step::Baseline], true, None)
}

/// `hdev reset [MACHINE...]`: returns machines to their baseline without provisioning.
pub fn reset(p: &Printer, file: Option<&Path>, machines: &[String]) -> CmdResult {
    act(p, file, machines, &[Step::Reset], false, None)
}

#[derive(Debug, Serialize)]
struct MachineDrift {
    machine: String,
    #[serde(flatten)]
    drift: Option<Drift>,
    error: Option<String>,
}

/// Drift of the running machines (or of one), computed in parallel.
async fn drifts(
    backends: &Backends,
    env: &crate::envfile::Env,
    observed: &Observation,
    only: Option<&str>,
) -> Vec<MachineDrift> {
    let jobs = env
        .topo_order()
        .into_iter()
        .filter(|m| only.is_none_or(|o| o == m.name))
        .map(|m| async move {
            let r = match (observed.machines.get(&m.name), backends.get(m)) {
                (None, _) => Err("not created".to_string()),
                (Some(_), Err(e)) => Err(e.to_string()),
                (Some(o), Ok(_))
                    if o.state != RunState::Running && m.backend == Backend::Libvirt =>
                {
                    Err(format!("not running (it is {})", o.state))
                }
                (Some(o), Ok(b)) => snapshot::drift(b, &m.name, &o.id)
                    .await
                    .map_err(|e| e.to_string()),
            };
            let (drift, error) = match r {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(e)),
            };
            MachineDrift {
                machine: m.name.clone(),
                drift,
                error,
            }
        });
    futures_util::future::join_all(jobs).await
}

/// Drift per machine, for `status`: `Some(true)` when it drifted.
pub(crate) async fn drifted(
    backends: &Backends,
    env: &crate::envfile::Env,
    observed: &Observation,
) -> BTreeMap<String, bool> {
    drifts(backends, env, observed, None)
        .await
        .into_iter()
        .filter_map(|d| d.drift.map(|x| (d.machine, !x.is_empty())))
        .collect()
}

/// `hdev drift [MACHINE]`: exit 0 without drift, 1 with drift, 2 when it cannot tell.
pub fn drift(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let o = open(file)?;
    if let Some(m) = machine {
        check_machine(&o.project.env, m)?;
    }
    let env = &o.project.env;
    let rows = runtime()?.block_on(async {
        let backends = Backends::connect(Some(env)).await?;
        let observed = backends.observe(&o.ctx).await?;
        anyhow::Ok(drifts(&backends, env, &observed, machine).await)
    })?;
    let sum = |f: fn(&Drift) -> usize| rows.iter().filter_map(|r| r.drift.as_ref()).map(f).sum();
    let (added, changed, deleted): (usize, usize, usize) = (
        sum(|d| d.added.len()),
        sum(|d| d.changed.len()),
        sum(|d| d.deleted.len()),
    );
    let drifted = rows
        .iter()
        .filter(|r| r.drift.as_ref().is_some_and(|d| !d.is_empty()))
        .count();
    let errors = rows.iter().filter(|r| r.error.is_some()).count();
    let code = if errors > 0 {
        2
    } else if drifted > 0 {
        1
    } else {
        0
    };
    let summary = format!(
        "{drifted} of {} machine{} drifted: {added} added, {changed} changed, {deleted} deleted{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if errors > 0 {
            format!(", {errors} could not be checked")
        } else {
            String::new()
        }
    );
    if p.json {
        p.json(&serde_json::json!({
            "machines": rows,
            "summary": {"drifted": drifted, "added": added, "changed": changed,
                        "deleted": deleted, "errors": errors},
        }));
        return Ok(code);
    }
    for r in &rows {
        match (&r.drift, &r.error) {
            (Some(d), _) if d.is_empty() => p.line(format!("{}: no drift", r.machine)),
            (Some(d), _) => {
                p.line(format!(
                    "{}: {} added, {} changed, {} deleted",
                    r.machine,
                    d.added.len(),
                    d.changed.len(),
                    d.deleted.len()
                ));
                for (sign, v) in [("+", &d.added), ("~", &d.changed), ("-", &d.deleted)] {
                    for path in v {
                        p.line(format!("  {sign} {path}"));
                    }
                }
            }
            (None, e) => p.line(format!(
                "{}: cannot tell: {}",
                r.machine,
                e.as_deref().unwrap_or("")
            )),
        }
    }
    p.line(summary);
    Ok(code)
}

/// The environment's VMs by machine name, for their layers.
fn vm_ids(observed: &Observation) -> BTreeMap<String, String> {
    observed
        .machines
        .values()
        .filter(|m| m.backend == Backend::Libvirt)
        .map(|m| (m.name.clone(), m.id.clone()))
        .collect()
}

fn list_all(o: &Opened) -> anyhow::Result<BTreeMap<String, Vec<SnapshotPart>>> {
    runtime()?.block_on(async {
        let backends = Backends::connect(Some(&o.project.env)).await?;
        let observed = backends.observe(&o.ctx).await?;
        Ok(snapshot::list(&backends, &o.ctx, &vm_ids(&observed)).await?)
    })
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `hdev snapshot ...`.
pub fn snapshot(p: &Printer, file: Option<&Path>, cmd: &SnapshotCmd) -> CmdResult {
    match cmd {
        SnapshotCmd::Save { name } => {
            snapshot::check_name(name)?;
            let o = open(file)?;
            if list_all(&o)?.contains_key(name) {
                anyhow::bail!(
                    "snapshot `{name}` exists\nhelp: `hdev snapshot delete {name}` first, or choose another name"
                );
            }
            act(p, file, &[], &[Step::Save], true, Some(name))
        }
        SnapshotCmd::Restore { name } => {
            snapshot::check_name(name)?;
            act(p, file, &[], &[Step::Restore], false, Some(name))
        }
        SnapshotCmd::List => list_cmd(p, file),
        SnapshotCmd::Delete { name } => {
            snapshot::check_name(name)?;
            let o = open(file)?;
            let _lock = o.project.state.lock()?;
            let env = &o.project.env;
            let deleted = runtime()?.block_on(async {
                let backends = Backends::connect(Some(env)).await?;
                let observed = backends.observe(&o.ctx).await?;
                let mut n = 0;
                for m in env.machines.values() {
                    let Ok(b) = backends.get(m) else { continue };
                    let id = observed.machines.get(&m.name).map(|o| o.id.as_str());
                    if snapshot::delete(b, &o.ctx, &m.name, id, name).await? {
                        n += 1;
                    }
                }
                anyhow::Ok(n)
            })?;
            if deleted == 0 {
                anyhow::bail!(
                    "no snapshot `{name}`\nhelp: `hdev snapshot list` shows the snapshots"
                );
            }
            if p.json {
                p.json(&serde_json::json!({"deleted": name, "machines": deleted}));
            } else {
                p.line(format!("deleted snapshot `{name}` ({deleted} machine(s))"));
            }
            Ok(0)
        }
    }
}

fn list_cmd(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let all = list_all(&o)?;
    if p.json {
        p.json(&serde_json::json!({ "snapshots": all }));
        return Ok(0);
    }
    p.line(p.bold(&format!(
        "{:<20}  {:<8}  {:<20}  {:>10}  {:>10}",
        "NAME", "MACHINES", "CREATED", "OWN", "CHAIN"
    )));
    for (name, parts) in &all {
        let created = parts.iter().map(|x| x.created).max().unwrap_or(0);
        let when = crate::boxes::manifest::rfc3339(created);
        let own: u64 = parts.iter().map(|x| x.own_bytes).sum();
        let chain: u64 = parts.iter().map(|x| x.chain_bytes).sum();
        p.line(format!(
            "{name:<20}  {:<8}  {when:<20}  {:>10}  {:>10}",
            parts.len(),
            human(own),
            human(chain)
        ));
    }
    Ok(0)
}
