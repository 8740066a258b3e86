//! Baselines, reset, drift and named snapshots: the reason environments stop drifting.
//!
//! Right after provisioning, each machine's state is captured as its baseline (a
//! committed image for a container, a read-only qcow2 layer for a VM); `reset` returns to
//! it without provisioning, at the cost of recreating a container or booting a VM on a
//! fresh empty overlay, never of copying a disk. Named snapshots use the same mechanism for
//! the whole environment at once. This module dispatches per backend; the mechanisms live
//! in [`docker`] and [`libvirt`], drift as data in [`changes`].

pub mod changes;
pub mod docker;
#[cfg(feature = "libvirt")]
pub mod libvirt;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::{AnyBackend, BackendError, Backends, EnvCtx};
use crate::envfile::{Backend, Env, Machine};

pub use changes::Drift;

/// Name of the state every machine gets after provisioning.
pub const BASELINE: &str = "baseline";

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The backend failed an operation on the machine.
    #[error("machine `{machine}`: {source}")]
    Backend {
        machine: String,
        source: BackendError,
    },
    /// The machine has no baseline (it was never provisioned to the end, or the baseline
    /// was removed).
    #[error(
        "machine `{machine}` has no baseline; run `hdev up` (or `hdev baseline {machine}`) first"
    )]
    NoBaseline { machine: String },
    /// A named snapshot does not exist for the machine.
    #[error("snapshot `{name}` does not exist for machine `{machine}`\nhelp: `hdev snapshot list` shows the snapshots")]
    NoSnapshot { machine: String, name: String },
    /// A snapshot name that cannot be used.
    #[error("snapshot name `{name}` is not allowed: use letters, digits, `.`, `_` and `-` (up to 64, starting with a letter or digit), and not `baseline`")]
    BadName { name: String },
    /// A command run in the guest to prepare the snapshot failed.
    #[error("machine `{machine}`: preparing the snapshot failed in the guest: {message}")]
    Guest { machine: String, message: String },
}

/// Checks a user-given snapshot name (it becomes a Docker tag and part of a volume name).
pub fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != BASELINE
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadName {
            name: name.to_string(),
        })
    }
}

pub(crate) fn missing(machine: &str, name: &str) -> SnapshotError {
    if name == BASELINE {
        SnapshotError::NoBaseline {
            machine: machine.to_string(),
        }
    } else {
        SnapshotError::NoSnapshot {
            machine: machine.to_string(),
            name: name.to_string(),
        }
    }
}

/// What one machine is captured from.
pub struct Target<'a> {
    pub env: &'a Env,
    pub ctx: &'a EnvCtx,
    pub machine: &'a Machine,
    /// Engine id (container id, domain name).
    pub id: &'a str,
    /// Per-machine hash the machine carries.
    pub hash: &'a str,
}

/// Captures state `name` of a machine. Returns (machine id afterwards, where the state
/// lives: image id or layer volume).
pub async fn capture(
    b: &AnyBackend,
    t: &Target<'_>,
    name: &str,
) -> Result<(String, String), SnapshotError> {
    match b {
        AnyBackend::Docker(d) => {
            docker::capture(d, t.env, t.ctx, t.machine, t.id, t.hash, name).await
        }
        #[cfg(feature = "libvirt")]
        AnyBackend::Libvirt(v) => {
            let layer = libvirt::capture(v, &t.machine.name, t.id, name).await?;
            Ok((t.id.to_string(), layer))
        }
    }
}

/// Returns a machine to state `name` and starts it; returns its id afterwards.
pub async fn restore(b: &AnyBackend, t: &Target<'_>, name: &str) -> Result<String, SnapshotError> {
    match b {
        AnyBackend::Docker(d) => {
            docker::restore(d, t.env, t.ctx, t.machine, t.id, t.hash, name).await
        }
        #[cfg(feature = "libvirt")]
        AnyBackend::Libvirt(v) => {
            libvirt::restore(v, &t.machine.name, t.id, name).await?;
            Ok(t.id.to_string())
        }
    }
}

/// What changed in a machine since its baseline.
pub async fn drift(b: &AnyBackend, machine: &str, id: &str) -> Result<Drift, SnapshotError> {
    match b {
        AnyBackend::Docker(d) => docker::drift(d, machine, id).await,
        #[cfg(feature = "libvirt")]
        AnyBackend::Libvirt(v) => libvirt::drift(v, machine, id).await,
    }
}

/// One machine's part of a named snapshot (or of the baseline).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotPart {
    pub machine: String,
    pub backend: Backend,
    /// Unix time it was captured.
    pub created: i64,
    /// Bytes it adds on top of what it was captured on.
    pub own_bytes: u64,
    /// Bytes of its whole chain of layers (VMs; the box excluded).
    pub chain_bytes: u64,
}

/// Every snapshot of an environment (the baseline included), by name.
pub async fn list(
    backends: &Backends,
    ctx: &EnvCtx,
    vm_ids: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<SnapshotPart>>, SnapshotError> {
    let mut out: BTreeMap<String, Vec<SnapshotPart>> = BTreeMap::new();
    if let Some(d) = backends.docker() {
        let snaps =
            docker::list(d, &ctx.instance)
                .await
                .map_err(|source| SnapshotError::Backend {
                    machine: "*".into(),
                    source,
                })?;
        for s in snaps {
            out.entry(s.name).or_default().push(SnapshotPart {
                machine: s.machine,
                backend: Backend::Docker,
                created: s.created,
                own_bytes: s.own_size,
                chain_bytes: s.own_size,
            });
        }
    }
    #[cfg(feature = "libvirt")]
    if let Some(v) = backends.libvirt() {
        for (machine, domain) in vm_ids {
            let layers =
                v.lv_for(domain)
                    .layers(domain)
                    .await
                    .map_err(|e| SnapshotError::Backend {
                        machine: machine.clone(),
                        source: BackendError::Engine {
                            action: "list layers".into(),
                            message: e.to_string(),
                        },
                    })?;
            for l in layers {
                out.entry(l.name).or_default().push(SnapshotPart {
                    machine: machine.clone(),
                    backend: Backend::Libvirt,
                    created: l.layer.created,
                    own_bytes: l.own,
                    chain_bytes: l.chain,
                });
            }
        }
    }
    #[cfg(not(feature = "libvirt"))]
    let _ = vm_ids;
    for parts in out.values_mut() {
        parts.sort_by(|a, b| a.machine.cmp(&b.machine));
    }
    Ok(out)
}

/// Deletes snapshot `name` of one machine; whether it existed.
pub async fn delete(
    b: &AnyBackend,
    ctx: &EnvCtx,
    machine: &str,
    id: Option<&str>,
    name: &str,
) -> Result<bool, SnapshotError> {
    #[cfg(not(feature = "libvirt"))]
    let _ = id;
    match b {
        AnyBackend::Docker(d) => Ok(docker::delete(d, &ctx.instance, machine, name).await),
        #[cfg(feature = "libvirt")]
        AnyBackend::Libvirt(v) => match id {
            Some(id) => {
                v.lv_for(id)
                    .drop_layer(id, name)
                    .await
                    .map_err(|e| SnapshotError::Backend {
                        machine: machine.to_string(),
                        source: BackendError::Engine {
                            action: "delete layer".into(),
                            message: e.to_string(),
                        },
                    })
            }
            None => Ok(false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_checked() {
        for ok in ["v1", "before-upgrade", "a.b_c", "X9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "baseline", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
