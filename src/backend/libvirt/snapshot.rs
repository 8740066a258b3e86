//! Snapshots of VMs as qcow2 layers (see `backend::libvirt::layers`), and their drift
//! from inside the guest: at baseline time the guest's file list (path, type, mode, size,
//! time; volatile folders left out) is written into the guest itself, so it lives in the
//! baseline layer; `drift` lists the files again over SSH and compares.

use std::sync::Mutex;

use super::guest::{diff_lists, list_command, GUEST_BASELINE_LIST};
use super::machines::Vms;
use super::LibvirtError;
use crate::backend::BackendError;
use crate::snapshot::{missing, Drift, SnapshotError, BASELINE};

fn lv(e: LibvirtError) -> BackendError {
    match e {
        LibvirtError::NotFound { what, name } => BackendError::NotFound { what, name },
        other => BackendError::Engine {
            action: "libvirt".into(),
            message: other.to_string(),
        },
    }
}

/// Runs a shell command in the guest; (exit code, every output line).
async fn run(
    vms: &Vms,
    machine: &str,
    id: &str,
    script: &str,
) -> Result<(i64, Vec<String>), BackendError> {
    let lines = Mutex::new(Vec::new());
    let sink = |l: &str| {
        if let Ok(mut v) = lines.lock() {
            v.push(l.to_string());
        }
    };
    let cmd = ["sh".to_string(), "-c".to_string(), script.to_string()];
    let _ = machine;
    let o = vms.exec(id, &cmd, &sink).await?;
    Ok((o.exit_code, lines.into_inner().unwrap_or_default()))
}

/// Captures the VM's disk as state `name`; for the baseline, the guest's file list is
/// written first. Returns the layer's volume.
pub(super) async fn capture(
    vms: &Vms,
    machine: &str,
    id: &str,
    name: &str,
) -> Result<String, BackendError> {
    let script = if name == BASELINE {
        let list = GUEST_BASELINE_LIST;
        format!(
            "mkdir -p /var/lib/hdev && {} 2>/dev/null > {list}.new; mv {list}.new {list} && sync",
            list_command()
        )
    } else {
        "sync".to_string()
    };
    let (code, out) = run(vms, machine, id, &script).await?;
    if code != 0 {
        return Err(SnapshotError::Guest {
            machine: machine.to_string(),
            message: out.join("\n"),
        }
        .into());
    }
    let layer = vms.lv_for(id).capture_layer(id, name).await.map_err(lv)?;
    Ok(layer.volume)
}

/// Puts the VM back on state `name`: resumed from the state's memory when it has one
/// (then its clock is set to now, since it stood still while saved), booted otherwise;
/// either way it answers SSH when this returns.
pub(super) async fn restore(
    vms: &Vms,
    machine: &str,
    id: &str,
    name: &str,
) -> Result<(), BackendError> {
    let resumed = match vms.lv_for(id).reset_to_layer(id, name).await {
        Err(LibvirtError::NotFound {
            what: "snapshot layer",
            ..
        }) => return Err(missing(machine, name).into()),
        r => r.map_err(lv)?,
    };
    if !resumed {
        return vms.start(id).await;
    }
    // The first command that gets through also sets the clock, which stood still while
    // the state was saved.
    let set_clock = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("date -u -s @{now} >/dev/null")
    };
    vms.run_when_ready(id, &set_clock).await
}

/// Files added, changed and deleted in the guest since its baseline.
pub(super) async fn drift(vms: &Vms, machine: &str, id: &str) -> Result<Drift, BackendError> {
    let (code, base) = run(vms, machine, id, &format!("cat {GUEST_BASELINE_LIST}")).await?;
    if code != 0 {
        return Err(missing(machine, BASELINE).into());
    }
    let (_, now) = run(vms, machine, id, &format!("{} 2>/dev/null", list_command())).await?;
    Ok(diff_lists(&base.join("\n"), &now.join("\n")))
}
