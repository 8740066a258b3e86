//! `drift` (per machine, then the totals) and the `snapshot list` table.

use std::collections::BTreeMap;

use super::{human, json_sorted, plural};
use crate::backend::StatePart;
use crate::ops::snapshot::{DriftReport, DriftSummary, MachineDrift};
use crate::output::Printer;

/// `drift`: each machine's changed files, then the totals.
pub(crate) fn drift(p: &Printer, r: &DriftReport) -> anyhow::Result<()> {
    if p.json {
        return json_sorted(p, r);
    }
    for m in &r.machines {
        machine_drift(p, m);
    }
    p.line(summary(&r.summary, r.machines.len()));
    Ok(())
}

fn machine_drift(p: &Printer, r: &MachineDrift) {
    match (&r.drift, &r.error) {
        (Some(d), _) if d.is_empty() => {
            p.line(format!("{}: no drift ({} compared)", r.machine, r.check))
        }
        (Some(d), _) => {
            p.line(format!(
                "{}: {} added, {} changed, {} deleted ({} compared)",
                r.machine,
                d.added.len(),
                d.changed.len(),
                d.deleted.len(),
                r.check
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

fn summary(s: &DriftSummary, machines: usize) -> String {
    let errors = if s.errors > 0 {
        format!(", {} could not be checked", s.errors)
    } else {
        String::new()
    };
    format!(
        "{} of {machines} machine{} drifted: {} added, {} changed, {} deleted{errors}",
        s.drifted,
        plural(machines),
        s.added,
        s.changed,
        s.deleted,
    )
}

/// `snapshot list`: one row per snapshot, with its machines, newest part and disk use.
pub(crate) fn list(p: &Printer, all: &BTreeMap<String, Vec<StatePart>>) {
    if p.json {
        p.json(&serde_json::json!({ "snapshots": all }));
        return;
    }
    p.line(p.bold(&format!(
        "{:<20}  {:<8}  {:<20}  {:>10}  {:>10}",
        "NAME", "MACHINES", "CREATED", "OWN", "CHAIN"
    )));
    for (name, parts) in all {
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
}

/// `snapshot delete`.
pub(crate) fn deleted(p: &Printer, name: &str, machines: usize) {
    if p.json {
        p.json(&serde_json::json!({"deleted": name, "machines": machines}));
    } else {
        p.line(format!("deleted snapshot `{name}` ({machines} machine(s))"));
    }
}
