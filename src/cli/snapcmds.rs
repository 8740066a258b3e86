//! `baseline`, `reset`, `drift` and `snapshot save|restore|list|delete`: each calls one
//! operation in `crate::ops::snapshot` and renders it.

use std::path::Path;

use clap::Subcommand;

use super::{render, CmdResult};
use crate::ops::session::{open, runtime};
use crate::ops::snapshot as ops;
use crate::output::Printer;
use crate::plan::Step;
use crate::snapshot;

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
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    runtime()?.block_on(ops::reset(p, &o, lock, machines))
}

/// `hdev drift [MACHINE] [--deep]`: exit 0 without drift, 1 with drift, 2 when it cannot
/// tell.
pub(crate) fn drift(
    p: &Printer,
    file: Option<&Path>,
    machine: Option<&str>,
    deep: bool,
) -> CmdResult {
    let o = open(file)?;
    let report = runtime()?.block_on(ops::drift(&o, machine, deep))?;
    render::snapshots::drift(p, &report)?;
    Ok(report.code())
}

/// `hdev snapshot ...`.
pub(crate) fn snapshot(p: &Printer, file: Option<&Path>, cmd: &SnapshotCmd) -> CmdResult {
    match cmd {
        SnapshotCmd::Save { name } => {
            let o = open(file)?;
            let lock = o.project.state.lock()?;
            runtime()?.block_on(ops::save(p, &o, lock, name))
        }
        SnapshotCmd::Restore { name } => {
            let o = open(file)?;
            let lock = o.project.state.lock()?;
            runtime()?.block_on(ops::restore(p, &o, lock, name))
        }
        SnapshotCmd::List => {
            let o = open(file)?;
            render::snapshots::list(p, &runtime()?.block_on(ops::list(&o))?);
            Ok(0)
        }
        SnapshotCmd::Delete { name } => delete(p, file, name),
    }
}

/// `hdev snapshot delete NAME`: from every machine that has it.
fn delete(p: &Printer, file: Option<&Path>, name: &str) -> CmdResult {
    snapshot::check_name(name)?;
    let o = open(file)?;
    let deleted = runtime()?.block_on(ops::delete(&o, name))?;
    if deleted == 0 {
        anyhow::bail!("no snapshot `{name}`\nhelp: `hdev snapshot list` shows the snapshots");
    }
    render::snapshots::deleted(p, name, deleted);
    Ok(0)
}
