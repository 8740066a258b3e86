//! The last drift check of each machine, in `.hdev/drift.json`, so that `status` shows
//! drift without asking any guest (a check costs a `docker diff` per container and an
//! SSH round trip per VM): what the check found, when, and on which machine id.
//!
//! A record is a cache, never the truth: it is forgotten whenever hdev changes the machine
//! (any step of `up`, `reset`, `restore`, `provision`, `exec`, `ssh`), and a check that
//! started before the machine was last forgotten is not recorded. Writers take a short
//! lock of their own (`drift.lock`), not the environment's: `status --drift` runs beside
//! an `up`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{read_json, write_atomic, StateDir, STATE_VERSION};

/// What one drift check of a machine found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DriftCheck {
    /// The machine's id (container id or domain) when it was checked.
    pub id: String,
    /// When the check started (seconds since the epoch).
    pub at: u64,
    /// Files added, changed or deleted since the baseline.
    pub files: usize,
}

/// A machine's entry: its last check, or that hdev changed it since (a check older than
/// that is not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DriftEntry {
    Checked(DriftCheck),
    ChangedAt(u64),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DriftRecords {
    pub version: u32,
    #[serde(default)]
    pub machines: BTreeMap<String, DriftEntry>,
}

impl DriftRecords {
    /// The last check of `machine`, when it is still about the machine with id `id`.
    pub(crate) fn check(&self, machine: &str, id: &str) -> Option<&DriftCheck> {
        match self.machines.get(machine)? {
            DriftEntry::Checked(c) if c.id == id => Some(c),
            _ => None,
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl StateDir {
    fn drift_path(&self) -> std::path::PathBuf {
        self.root.join("drift.json")
    }

    /// The recorded checks; none when the file is missing or unreadable (it is a cache).
    pub(crate) fn drift_records(&self) -> DriftRecords {
        read_json(&self.drift_path())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Changes the records under `drift.lock`; best effort (a cache that cannot be
    /// written only makes `status` say less).
    fn edit_drift(&self, f: impl FnOnce(&mut DriftRecords)) {
        if !self.root.is_dir() {
            return;
        }
        let lock_path = self.root.join("drift.lock");
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        else {
            return;
        };
        if fs4::fs_std::FileExt::lock_exclusive(&file).is_err() {
            return;
        }
        let mut records = self.drift_records();
        records.version = STATE_VERSION;
        f(&mut records);
        if let Ok(mut bytes) = serde_json::to_vec_pretty(&records) {
            bytes.push(b'\n');
            let _ = write_atomic(&self.drift_path(), &bytes);
        }
        // The lock goes with `file`.
    }

    /// Records checks that started at `started` (seconds since the epoch), except for
    /// machines hdev changed after that.
    pub(crate) fn record_drift(&self, started: u64, checks: Vec<(String, String, usize)>) {
        self.edit_drift(|r| {
            for (machine, id, files) in checks {
                if let Some(DriftEntry::ChangedAt(t)) = r.machines.get(&machine) {
                    if *t > started {
                        continue;
                    }
                }
                r.machines.insert(
                    machine,
                    DriftEntry::Checked(DriftCheck {
                        id,
                        at: started,
                        files,
                    }),
                );
            }
        });
    }

    /// Forgets the checks of `machines`: hdev is changing them.
    pub(crate) fn forget_drift<'a>(&self, machines: impl IntoIterator<Item = &'a str>) {
        let t = now();
        let names: Vec<&str> = machines.into_iter().collect();
        if names.is_empty() {
            return;
        }
        self.edit_drift(|r| {
            for m in names {
                r.machines.insert(m.to_string(), DriftEntry::ChangedAt(t));
            }
        });
    }
}

/// A short age: `12s`, `5m`, `3h`, `2d`.
pub(crate) fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_kept_per_machine_id_and_a_change_made_after_it_began_wins() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        std::fs::create_dir_all(&sd.root).unwrap();
        sd.record_drift(100, vec![("web".into(), "c1".into(), 3)]);
        let r = sd.drift_records();
        assert_eq!(r.check("web", "c1").map(|c| c.files), Some(3));
        assert_eq!(
            r.check("web", "c2"),
            None,
            "another container: not its check"
        );
        sd.forget_drift(["web"]);
        assert_eq!(sd.drift_records().check("web", "c1"), None);
        // A check that began before hdev changed the machine is not recorded…
        sd.record_drift(100, vec![("web".into(), "c1".into(), 0)]);
        assert_eq!(sd.drift_records().check("web", "c1"), None);
        // …one that began after is.
        sd.record_drift(now() + 1, vec![("web".into(), "c1".into(), 0)]);
        assert_eq!(
            sd.drift_records().check("web", "c1").map(|c| c.files),
            Some(0)
        );
        assert_eq!(age(59), "59s");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(7200), "2h");
    }
}
