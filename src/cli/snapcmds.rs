//! `baseline`, `reset`, `drift` and `snapshot save|restore|list|delete`: each calls one
//! operation in `crate::ops::snapshot` and renders it.

use std::path::Path;

use clap::Subcommand;

use super::CmdResult;
use crate::ops::session::{check_machine, open, runtime};
use crate::ops::snapshot as ops;
use crate::output::Printer;
use crate::plan::Step;
use crate::snapshot::{self, Drift};

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCmd {
    /// Capture every machine's current state as snapshot NAME.
    Save { name: String },
    /// Return every machine to snapshot NAME (no provisioning).
    Restore { name: String },
    /// The snapshots (the baseline included) with their disk use.
    List,
    /// Remove snapshot NAME from every machine.
    Delete { name: String },
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
    runtime()?.block_on(ops::act(p, &o, targets, steps, need_running, snapshot))
}

/// `hdev baseline [MACHINE]`: captures the machines' current state as their baseline.
pub(crate) fn baseline(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let targets: Vec<String> = machine.into_iter().map(str::to_string).collect();
    act(p, file, &targets, &[Step::Baseline], true, None)
}

/// `hdev reset [MACHINE...]`: returns machines to their baseline without provisioning.
pub(crate) fn reset(p: &Printer, file: Option<&Path>, machines: &[String]) -> CmdResult {
    act(p, file, machines, &[Step::Reset], false, None)
}

/// `hdev drift [MACHINE]`: exit 0 without drift, 1 with drift, 2 when it cannot tell.
pub(crate) fn drift(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let o = open(file)?;
    if let Some(m) = machine {
        check_machine(&o.project.env, m)?;
    }
    let env = &o.project.env;
    let rows = runtime()?.block_on(async {
        let backends = o.connect().await?;
        let observed = backends.observe(&o.ctx).await?;
        anyhow::Ok(ops::drifts(&backends, env, &observed, machine).await)
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

fn list_all(
    o: &crate::ops::session::Opened,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<crate::backend::StatePart>>> {
    runtime()?.block_on(ops::list(o))
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
pub(crate) fn snapshot(p: &Printer, file: Option<&Path>, cmd: &SnapshotCmd) -> CmdResult {
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
            let deleted = runtime()?.block_on(ops::delete(&o, name))?;
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
