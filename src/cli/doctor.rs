//! `hdev doctor`: can hdev reach Docker and libvirt, and will VMs run under KVM or software
//! emulation.

use serde::Serialize;

use super::CmdResult;
use crate::host::{self, KvmProbe};
use crate::output::Printer;

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

async fn docker_check() -> Check {
    let result = async {
        let docker = bollard::Docker::connect_with_local_defaults()?;
        let docker = docker.negotiate_version().await?;
        let v = docker.version().await?;
        Ok::<_, bollard::errors::Error>(format!(
            "engine {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), result).await {
        Ok(Ok(detail)) => Check {
            name: "docker",
            ok: true,
            detail,
        },
        Ok(Err(e)) => Check {
            name: "docker",
            ok: false,
            detail: format!(
                "cannot reach the Docker engine: {e}; start dockerd (`bash .ci/setup`)"
            ),
        },
        Err(_) => Check {
            name: "docker",
            ok: false,
            detail: "the Docker engine did not answer within 10s".into(),
        },
    }
}

#[cfg(feature = "libvirt")]
fn libvirt_check(uri: &str) -> Check {
    fn ver(v: u32) -> String {
        format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
    }
    match virt::connect::Connect::open(Some(uri)) {
        Ok(c) => {
            let detail = format!(
                "{uri}: libvirt {}, {} {}",
                c.lib_version().map(ver).unwrap_or_default(),
                c.driver_type().unwrap_or_default(),
                c.hyp_version().map(ver).unwrap_or_default()
            );
            Check {
                name: "libvirt",
                ok: true,
                detail,
            }
        }
        Err(e) => Check {
            name: "libvirt",
            ok: false,
            detail: format!("cannot connect to `{uri}`: {e}; start libvirtd (`bash .ci/setup`)"),
        },
    }
}

#[cfg(not(feature = "libvirt"))]
fn libvirt_check(_uri: &str) -> Check {
    Check {
        name: "libvirt",
        ok: false,
        detail: "this hdev was built without the `libvirt` feature".into(),
    }
}

pub fn doctor(p: &Printer, uri: &str) -> CmdResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let docker = rt.block_on(docker_check());
    let libvirt = libvirt_check(uri);
    let probe = KvmProbe::read();
    let domain = host::choose(crate::envfile::Accel::Auto, &probe)?;
    let accel = Check {
        name: "acceleration",
        ok: true,
        detail: match domain {
            host::DomainType::Kvm => "VMs run under KVM".to_string(),
            host::DomainType::Qemu => format!(
                "VMs run under software emulation (domain type qemu): {}",
                probe.explain()
            ),
        },
    };
    let checks = [docker, libvirt, accel];
    let ok = checks.iter().all(|c| c.ok);
    if p.json {
        p.json(
            &serde_json::json!({ "ok": ok, "checks": checks, "kvm": probe, "domain_type": domain }),
        );
    } else {
        for c in &checks {
            let mark = if c.ok { p.green("ok  ") } else { p.red("FAIL") };
            p.line(format!("{mark} {:<13} {}", c.name, c.detail));
        }
    }
    Ok(if ok { 0 } else { 1 })
}
