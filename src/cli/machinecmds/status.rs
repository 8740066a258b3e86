//! `hdev status`: each machine as the engine reports it (found by label, so it is true
//! even when `.hdev/state.json` is stale), beside what hdev recorded.

use std::path::Path;

use serde::Serialize;

use super::{load_state, open, runtime};
use crate::backend::Backends;
use crate::cli::CmdResult;
use crate::output::Printer;
use crate::state::Phase;

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    backend: String,
    /// running, stopped, paused, busy, not created, unavailable.
    state: String,
    /// current, changed, or absent when not created.
    definition: Option<&'static str>,
    provisioned: bool,
    baseline: bool,
    /// Whether files changed since the baseline (absent when it cannot be told: no
    /// baseline, not running).
    drifted: Option<bool>,
    /// In the engine but no longer in the Envfile.
    orphan: bool,
    addresses: std::collections::BTreeMap<String, String>,
    ports: Vec<String>,
    id: Option<String>,
}

pub fn status(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    let (observed, available, drifted) = runtime()?.block_on(async {
        let backends = Backends::connect(Some(env)).await?;
        let obs = backends.observe(&o.ctx).await?;
        let drifted = crate::cli::snapcmds::drifted(&backends, env, &obs).await;
        anyhow::Ok((obs, backends.available(), drifted))
    })?;
    let mut rows = Vec::new();
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
            (Some(ob), Some(r)) => {
                r.phase >= Phase::Provisioned && r.id.as_deref().is_none_or(|id| id == ob.id)
            }
            _ => false,
        };
        rows.push(Row {
            baseline: observed.baselines.contains(&name),
            drifted: drifted.get(&name).copied(),
            orphan: m.is_none(),
            addresses: obs.map(|o| o.addresses.clone()).unwrap_or_default(),
            ports: obs.map(|o| o.ports.clone()).unwrap_or_default(),
            id: obs.map(|o| o.id.chars().take(12).collect()),
            name,
            backend,
            state: st,
            definition,
            provisioned,
        });
    }
    if p.json {
        p.json(&serde_json::json!({
            "env": env.settings.name,
            "instance": o.ctx.instance,
            "env_hash": o.env_hash,
            "recorded_env_hash": state.env_hash,
            "machines": rows,
            "networks": observed.networks,
        }));
        return Ok(0);
    }
    p.line(format!(
        "environment `{}` (instance `{}`, hash {})",
        env.settings.name,
        o.ctx.instance,
        o.env_hash.short()
    ));
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(7).max(7);
    p.line(p.bold(&format!(
        "{:<w$}  {:<7}  {:<11}  {:<10}  {:<11}  {:<8}  {:<7}  {:<24}  PORTS",
        "MACHINE",
        "BACKEND",
        "STATE",
        "DEFINITION",
        "PROVISIONED",
        "BASELINE",
        "DRIFTED",
        "ADDRESS"
    )));
    for r in &rows {
        let addr: Vec<String> = r
            .addresses
            .iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let def = match (r.orphan, r.definition) {
            (true, _) => "orphan",
            (false, Some(d)) => d,
            (false, None) => "-",
        };
        p.line(format!(
            "{:<w$}  {:<7}  {:<11}  {:<10}  {:<11}  {:<8}  {:<7}  {:<24}  {}",
            r.name,
            r.backend,
            r.state,
            def,
            yes(r.provisioned),
            yes(r.baseline),
            r.drifted.map_or("-", yes),
            if addr.is_empty() {
                "-".to_string()
            } else {
                addr.join(",")
            },
            if r.ports.is_empty() {
                "-".to_string()
            } else {
                r.ports.join(",")
            },
        ));
    }
    Ok(0)
}
