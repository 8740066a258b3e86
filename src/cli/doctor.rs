//! `hdev doctor`: can hdev reach Docker and libvirt, will VMs run under KVM or software
//! emulation, and, for an environment placed on hosts, each host's engine and swarm.

use std::path::Path;

use super::{render, CmdResult};

pub(super) fn doctor(p: &crate::output::Printer, uri: &str, file: Option<&Path>) -> CmdResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(crate::ops::doctor::doctor(uri, file))?;
    let ok = report.checks.iter().all(|c| c.ok);
    render::envfile::doctor(p, &report);
    Ok(if ok { 0 } else { 1 })
}
