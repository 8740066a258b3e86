//! `hdev doctor`: can hdev reach Docker and libvirt, and will VMs run under KVM or software
//! emulation.

use super::{render, CmdResult};
use crate::backend::Probe;
use crate::host::{self, KvmProbe};
use crate::output::Printer;

pub(super) fn doctor(p: &Printer, uri: &str) -> CmdResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut checks = rt.block_on(crate::backend::probes(uri));
    let probe = KvmProbe::read();
    let domain = host::choose(crate::envfile::Accel::Auto, &probe)?;
    checks.push(Probe {
        name: "acceleration",
        ok: true,
        detail: match domain {
            host::DomainType::Kvm => "VMs run under KVM".to_string(),
            host::DomainType::Qemu => format!(
                "VMs run under software emulation (domain type qemu): {}",
                probe.explain()
            ),
        },
    });
    let ok = checks.iter().all(|c| c.ok);
    render::envfile::doctor(p, &checks, &probe, domain);
    Ok(if ok { 0 } else { 1 })
}
