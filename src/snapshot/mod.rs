//! Baselines, reset, drift and named snapshots, as policy and data: the reason
//! environments stop drifting.
//!
//! Right after provisioning, each machine's state is captured as its baseline (a
//! committed image for a container, a read-only qcow2 layer for a VM); `reset` returns to
//! it without provisioning, at the cost of recreating a container or resuming a VM on a
//! fresh empty overlay, never of copying a disk. Named snapshots use the same mechanism for
//! the whole environment at once. The mechanisms are the engines' (`backend::*::snapshot`,
//! behind `Engine::capture`/`restore`/`drift`); this module holds names, errors and drift
//! as data ([`changes`]), and imports no engine.

pub(crate) mod changes;

pub(crate) use changes::Drift;

/// Name of the state every machine gets after provisioning.
pub(crate) const BASELINE: &str = "baseline";

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
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
pub(crate) fn check_name(name: &str) -> Result<(), SnapshotError> {
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
