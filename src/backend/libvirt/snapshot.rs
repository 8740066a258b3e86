//! Snapshots of VMs as qcow2 layers (see `backend::libvirt::layers`), and their drift
//! from inside the guest: at baseline time the guest's file list (path, type, mode, size,
//! time; volatile folders left out) is written into the guest itself, so it lives in the
//! baseline layer; `drift` lists the files again over SSH and compares.

use std::sync::Mutex;

use super::guest::{
    content_changes, content_diff_command, diff_lists, list_command, BASELINE_SERIAL,
    GUEST_BASELINE_LIST,
};
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
/// The most a guest's answer to one of these commands may hold.
const GUEST_OUTPUT_LIMIT: usize = 256 << 20;

async fn run(
    vms: &Vms,
    machine: &str,
    id: &str,
    script: &str,
) -> Result<(i64, Vec<String>), BackendError> {
    // Bounded: a guest cannot make hdev hold more than GUEST_OUTPUT_LIMIT bytes.
    let lines = Mutex::new((Vec::new(), 0usize));
    let sink = |l: &str| {
        if let Ok(mut v) = lines.lock() {
            v.1 += l.len() + 1;
            if v.1 <= GUEST_OUTPUT_LIMIT {
                v.0.push(l.to_string());
            }
        }
    };
    let cmd = ["sh".to_string(), "-c".to_string(), script.to_string()];
    let o = vms.exec(id, &cmd, &sink).await?;
    let (lines, bytes) = lines.into_inner().unwrap_or_default();
    if bytes > GUEST_OUTPUT_LIMIT {
        return Err(BackendError::Engine {
            action: format!("read from `{machine}`"),
            message: format!(
                "the guest sent {bytes} bytes, more than hdev reads ({GUEST_OUTPUT_LIMIT})"
            ),
        });
    }
    Ok((o.exit_code, lines))
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
    vms.run_when_ready(id, &super::machines::set_clock_command)
        .await
}

/// Files added, changed and deleted in the guest since its baseline.
pub(super) async fn drift(vms: &Vms, machine: &str, id: &str) -> Result<Drift, BackendError> {
    // One round trip; the guest compares its file list with the baseline's and sends only
    // the lines that differ: the baseline's (as they were) and the current ones (after a
    // tab), which `diff_lists` reads like whole lists.
    let script = format!(
        "[ -r {GUEST_BASELINE_LIST} ] || exit 3; t=$(mktemp); \
         ({}) 2>/dev/null | LC_ALL=C sort > \"$t\"; \
         LC_ALL=C sort {GUEST_BASELINE_LIST} | LC_ALL=C comm -3 - \"$t\"; rc=$?; rm -f \"$t\"; exit $rc",
        list_command()
    );
    let (code, lines) = run(vms, machine, id, &script).await?;
    match code {
        0 => {}
        3 => return Err(missing(machine, BASELINE).into()),
        c => {
            return Err(BackendError::Engine {
                action: format!("drift of `{machine}`"),
                message: format!("the file list comparison in the guest failed (exit {c})"),
            })
        }
    }
    let (mut base, mut now) = (String::new(), String::new());
    for l in &lines {
        match l.strip_prefix('\t') {
            Some(current) => {
                now.push_str(current);
                now.push('\n');
            }
            None => {
                base.push_str(l);
                base.push('\n');
            }
        }
    }
    Ok(diff_lists(&base, &now))
}

/// [`drift`], with file contents compared as well: the baseline's disk layer is attached to
/// the running guest read-only, and the guest hashes the regular files of both trees (one
/// round trip; only differing lines travel). Adds to the metadata drift the files whose
/// bytes changed while their type, mode, size and time did not. Costs a read of both
/// trees in the guest: about 75 s for the debian box under software emulation.
pub(super) async fn drift_deep(vms: &Vms, machine: &str, id: &str) -> Result<Drift, BackendError> {
    let mut d = drift(vms, machine, id).await?;
    let lv_ = vms.lv_for(id);
    let file = match lv_.layer_file(id, BASELINE).await {
        Err(LibvirtError::NotFound { .. }) => return Err(missing(machine, BASELINE).into()),
        r => r.map_err(lv)?,
    };
    lv_.attach_readonly(id, &file, BASELINE_SERIAL)
        .await
        .map_err(lv)?;
    let compared = run(vms, machine, id, &content_diff_command()).await;
    let detached = lv_.detach_readonly(id, &file, BASELINE_SERIAL).await;
    let (code, lines) = compared?;
    detached.map_err(lv)?;
    if code != 0 {
        let why = match code {
            4 => "the baseline's disk did not appear in the guest".to_string(),
            5 => "the baseline's disk could not be mounted in the guest".to_string(),
            c => format!("the comparison in the guest failed (exit {c})"),
        };
        return Err(BackendError::Engine {
            action: format!("content drift of `{machine}`"),
            message: why,
        });
    }
    let known: std::collections::BTreeSet<String> = d
        .added
        .iter()
        .chain(&d.changed)
        .chain(&d.deleted)
        .cloned()
        .collect();
    d.changed.extend(
        content_changes(&lines)
            .into_iter()
            .filter(|p| !known.contains(p)),
    );
    d.changed.sort();
    Ok(d)
}
