//! Commands that act on machines: plan, up, provision, status, exec, ssh, logs, halt,
//! destroy, gc. Each parses nothing more, calls one operation in `crate::ops`, and renders
//! what it returns.

mod interact;
mod status;
mod teardown;

use std::path::Path;

use super::CmdResult;
use crate::ops::session::{ctrl_c, load_state, open, runtime};
use crate::ops::up;
use crate::output::Printer;
use crate::plan;

pub(super) use interact::{exec, logs, ssh};
pub(super) use status::{graph, status};
pub(super) use teardown::{destroy, gc, halt};

/// `hdev plan`: what `up` would do.
pub(super) fn plan_cmd(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let state = load_state(&o.project)?;
    runtime()?.block_on(async {
        let backends = o.connect().await?;
        let plan = up::make_plan(&o, &backends, &state).await?;
        if p.json {
            p.json(&plan);
        } else {
            for l in plan::render(&plan) {
                p.line(l);
            }
        }
        Ok(0)
    })
}

/// `hdev up`.
pub(super) fn up(p: &Printer, file: Option<&Path>, parallel: Option<usize>) -> CmdResult {
    runtime()?.block_on(async { up::up(p, file, parallel, None, ctrl_c(p)).await })
}

/// `hdev provision [MACHINE]`: runs provisioning again on running machines.
pub(super) fn provision(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let o = open(file)?;
    runtime()?.block_on(up::provision(p, &o, machine))
}
