//! VMs placed on a host's Docker engine: before such a VM is created its anchor container
//! stands on its networks there (see `backend::docker::anchor`), and after every start
//! (and every snapshot step, which restarts the guest) its taps move into the anchor's
//! namespace (see `backend::anchor`).

use std::collections::BTreeMap;

use crate::backend::anchor::{self, AnchorNics};
use crate::backend::docker::DockerBackend;
use crate::backend::{spec_for, BackendError, Backends, EnvCtx, MachineSpec, Resolved};
use crate::envfile::topology::{anchored, machine_uri, remote_host};
use crate::envfile::{Env, Machine};

/// The Docker engine that holds a VM's anchor, once the VM is known to be anchorable
/// from here: its libvirt and its Docker engine on this machine, and hdev able to move
/// links between namespaces.
fn anchor_engine<'b>(
    env: &Env,
    backends: &'b Backends,
    vm: &Machine,
) -> Result<&'b DockerBackend, BackendError> {
    let at = vm.place.docker.as_deref().unwrap_or_default();
    let local_docker = at.starts_with("unix://");
    if remote_host(&machine_uri(env, vm)).is_some() || !local_docker {
        return Err(BackendError::Engine {
            action: format!("anchor VM `{}`", vm.name),
            message: format!(
                "a VM joins a host's Docker networks through an anchor container beside it, so the host's libvirt and Docker engine must be on the machine hdev runs on (here: libvirt `{}`, Docker `{at}`); run hdev on that host",
                machine_uri(env, vm)
            ),
        });
    }
    anchor::check_privilege(&vm.name)?;
    backends.docker(&format!("machine `{}`", vm.name), Some(at))
}

/// The position of `vm` among the environment's anchored VMs (its management address).
fn index_of(env: &Env, vm: &Machine) -> u32 {
    env.machines
        .values()
        .filter(|m| anchored(m))
        .position(|m| m.name == vm.name)
        .unwrap_or(0) as u32
}

/// Makes the anchor of `vm` and this machine's management network, and tells the spec
/// what the VM's NICs take from them. Nothing happens for a VM that is not anchored.
pub(super) async fn prepare(
    env: &Env,
    ctx: &EnvCtx,
    backends: &Backends,
    vm: &Machine,
    spec: &mut MachineSpec,
) -> Result<(), BackendError> {
    if !anchored(vm) {
        return Ok(());
    }
    let docker = anchor_engine(env, backends, vm)?;
    let a = docker.ensure_anchor(ctx, spec).await?;
    let manage = anchor::manage_spec(&ctx.instance, index_of(env, vm));
    let here = backends.get_at(&vm.name, &crate::backend::EngineKey::docker(None))?;
    let net = crate::backend::NetSpec {
        address: None,
        ..manage.clone()
    };
    crate::backend::Engine::ensure_network(here, ctx, Some(&net)).await?;
    spec.anchor = Some(AnchorNics {
        manage,
        macs: a.macs,
    });
    Ok(())
}

/// Moves the running VM's taps onto its anchor's bridges (again, after a restart of the
/// guest or of the anchor). Nothing happens for a VM that is not anchored.
pub(super) async fn plug(
    env: &Env,
    ctx: &EnvCtx,
    backends: &Backends,
    vm: &Machine,
    hash: &str,
) -> Result<(), BackendError> {
    if !anchored(vm) {
        return Ok(());
    }
    let docker = anchor_engine(env, backends, vm)?;
    let spec = spec_for(env, vm, hash, Resolved::Image(String::new()));
    let a = docker.ensure_anchor(ctx, &spec).await?;
    let taps: BTreeMap<String, String> = spec
        .networks
        .iter()
        .map(|n| {
            let tap = anchor::tap_name(&ctx.instance, &vm.name, &n.name);
            (n.name.clone(), tap)
        })
        .collect();
    let pid = a.pid;
    tokio::task::spawn_blocking(move || {
        let bridges = anchor::bridge_anchor(pid, &a.macs)?;
        anchor::plug(pid, &taps, &bridges)
    })
    .await
    .map_err(|e| BackendError::Engine {
        action: "plug the VM into its anchor".into(),
        message: e.to_string(),
    })?
}
