//! `hdev doctor`: whether hdev can reach its engines, whether VMs get KVM, and, for an
//! environment placed on hosts, each host's engines and swarm and the kernel features
//! overlay networks need.

use std::path::Path;

use crate::backend::Probe;
use crate::host::{self, KernelFeatures, KvmProbe};

/// Everything `doctor` found.
pub(crate) struct DoctorReport {
    pub checks: Vec<Probe>,
    pub kvm: KvmProbe,
    pub domain: host::DomainType,
    pub kernel: Option<KernelFeatures>,
}

/// Runs the checks; `file` is the Envfile whose hosts are checked too (when one is found).
pub(crate) async fn doctor(uri: &str, file: Option<&Path>) -> anyhow::Result<DoctorReport> {
    let mut checks = crate::backend::probes(uri).await;
    let kvm = KvmProbe::read();
    let domain = host::choose(crate::envfile::Accel::Auto, &kvm)?;
    checks.push(Probe {
        name: "acceleration".into(),
        ok: true,
        detail: match domain {
            host::DomainType::Kvm => "VMs run under KVM".to_string(),
            host::DomainType::Qemu => format!(
                "VMs run under software emulation (domain type qemu): {}",
                kvm.explain()
            ),
        },
    });
    let env = match crate::project::find_envfile(file) {
        Ok(_) => match crate::throwaway::open_project(file) {
            Ok(p) => Some(p.env),
            Err(e) => {
                checks.push(Probe {
                    name: "envfile".into(),
                    ok: false,
                    detail: format!("{e:#}"),
                });
                None
            }
        },
        Err(_) => None,
    };
    let Some(env) = env.filter(|e| !e.layout.hosts.is_empty()) else {
        return Ok(DoctorReport {
            checks,
            kvm,
            domain,
            kernel: None,
        });
    };
    let probes = env.layout.hosts.values().filter_map(|h| {
        h.docker.as_ref().map(|d| {
            let (name, at, labels) = (h.name.clone(), d.clone(), h.labels.clone());
            async move {
                crate::backend::docker::swarm::host_probes(&name, Some(&at), &labels).await
            }
        })
    });
    for p in futures_util::future::join_all(probes).await {
        checks.extend(p);
    }
    let kernel = KernelFeatures::read();
    checks.push(kernel_probe(&kernel, &env));
    Ok(DoctorReport {
        checks,
        kvm,
        domain,
        kernel: Some(kernel),
    })
}

/// The kernel line: VXLAN is needed; IPVS and ESP are not relied on, and said so.
fn kernel_probe(k: &KernelFeatures, env: &crate::envfile::Env) -> Probe {
    let word = |f: Option<bool>| match f {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let mut detail = format!(
        "this machine's kernel: VXLAN {}, IPVS {}, ESP {}",
        word(k.vxlan),
        word(k.ipvs),
        word(k.esp)
    );
    if k.ipvs != Some(true) {
        detail.push_str("; without IPVS, Swarm services' virtual IPs do not work: hdev uses plain containers on attachable overlays and names from Docker's DNS");
    }
    if k.esp != Some(true) {
        detail.push_str(
            "; without ESP, encrypted overlays pass nothing: hdev refuses `encrypted = true`",
        );
    }
    if !crate::envfile::topology::overlay_networks(env).is_empty() {
        detail.push_str(&format!(
            "; overlay networks have MTU {} (VXLAN takes 50 bytes), and anchored VMs' NICs use it",
            crate::backend::anchor::OVERLAY_MTU
        ));
    }
    Probe {
        name: "kernel".into(),
        ok: k.vxlan != Some(false),
        detail,
    }
}
