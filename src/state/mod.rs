//! The `.hdev/` folder beside the Envfile: versioned state, written atomically, guarded by
//! a lock so that two hdev processes never act on one environment at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Version of `state.json`; a newer one is refused rather than misread.
pub(crate) mod drift;
pub(crate) mod records;

pub(crate) const STATE_VERSION: u32 = 1;

/// Why state could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// A file in `.hdev/` could not be read or written.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `state.json` is not valid JSON of the expected shape.
    #[error("`{}` is damaged: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// `state.json` was written by a newer hdev.
    #[error("`{}` was written by a newer hdev (state version {found}, this hdev reads {STATE_VERSION}); upgrade hdev", path.display())]
    TooNew { path: PathBuf, found: u32 },
    /// Another hdev process holds the environment's lock.
    #[error("another hdev process is working on this environment (lock `{}` is held); wait for it to finish", path.display())]
    Locked { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix:
/// a temporary file in the same folder, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`] without waiting for the disk: for records that only inform (a crash
/// may lose the last one, never leave half of it).
pub(crate) fn write_informative(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    if durable {
        tmp.as_file().sync_all().map_err(io(path))?;
    }
    tmp.persist(path).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if durable {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Where a machine is in its life, as hdev last recorded it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Creation started but was not seen to finish.
    Creating,
    /// Created and started; provisioning not finished.
    Created,
    /// Provisioning finished.
    Provisioned,
    /// Provisioned and its baseline taken.
    Ready,
}

/// What hdev recorded about one machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MachineRecord {
    pub backend: crate::envfile::Backend,
    /// Backend id: container id or domain name.
    pub id: Option<String>,
    /// Per-machine hash it was built from.
    pub hash: String,
    pub phase: Phase,
    /// Image or layer its baseline lives in.
    #[serde(default)]
    pub baseline: Option<String>,
    /// How many times provisioning ran to completion.
    #[serde(default)]
    pub provision_runs: u32,
    /// The last health check `up` ran on this machine, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
}

/// What the last health check of a machine found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HealthRecord {
    /// The engine id it ran on: a check of a machine since recreated says nothing.
    pub id: String,
    pub ok: bool,
    /// Unix seconds.
    pub at: u64,
}

impl MachineRecord {
    /// `passed` or `failed`: the last health check of the machine the engine holds as
    /// `id`; None when it has no check or none ran on it.
    pub(crate) fn health_of(&self, id: &str) -> Option<&'static str> {
        let h = self.health.as_ref().filter(|h| h.id == id)?;
        Some(if h.ok { "passed" } else { "failed" })
    }
}

impl MachineRecord {
    /// Whether this record says that the machine the engine holds (`id`, created from
    /// per-machine hash `hash`) finished its provisioning. The one rule for "provisioned":
    /// `plan` and `status` both ask it.
    pub(crate) fn provisioned(&self, id: &str, hash: Option<&str>) -> bool {
        self.phase >= Phase::Provisioned
            && Some(self.hash.as_str()) == hash
            && self.id.as_deref().is_none_or(|own| own == id)
    }
}

/// The whole of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    pub version: u32,
    /// Unique name of this environment in the backends.
    pub instance: String,
    /// Environment hash of the last successful `up`.
    #[serde(default)]
    pub env_hash: Option<String>,
    #[serde(default)]
    pub machines: BTreeMap<String, MachineRecord>,
}

impl State {
    pub(crate) fn new(instance: &str) -> Self {
        State {
            version: STATE_VERSION,
            instance: instance.to_string(),
            env_hash: None,
            machines: BTreeMap::new(),
        }
    }
}

/// Reads a versioned JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if v.version > STATE_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: v.version,
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// The `.hdev/` folder of one environment.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    pub root: PathBuf,
}

/// Held while a command acts on the environment; released on drop.
#[derive(Debug)]
pub(crate) struct EnvLock {
    _file: File,
}

impl StateDir {
    pub(crate) fn new(env_dir: &Path) -> Self {
        StateDir {
            root: env_dir.join(".hdev"),
        }
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn ensure(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let ignore = self.root.join(".gitignore");
        if !ignore.exists() {
            write_atomic(
                &ignore,
                b"# hdev's local state: keys, logs, machine records\n*\n",
            )?;
        }
        Ok(())
    }

    /// Takes the environment's lock without waiting.
    pub(crate) fn lock(&self) -> Result<EnvLock, StateError> {
        self.ensure()?;
        let path = self.root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(EnvLock { _file: file }),
            Ok(false) => Err(StateError::Locked { path }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(StateError::Locked { path })
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub(crate) fn load(&self) -> Result<Option<State>, StateError> {
        read_json(&self.state_path())
    }

    /// Saves state; the caller holds the lock.
    pub(crate) fn save(&self, _lock: &EnvLock, state: &State) -> Result<(), StateError> {
        self.ensure()?;
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: self.state_path(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(&self.state_path(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_newer_versions() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let lock = sd.lock().unwrap();
        let mut st = State::new("demo-abc123");
        st.env_hash = Some("sha256:00".into());
        sd.save(&lock, &st).unwrap();
        assert_eq!(sd.load().unwrap(), Some(st));

        std::fs::write(sd.state_path(), br#"{"version": 99, "instance": "x"}"#).unwrap();
        assert!(matches!(
            sd.load(),
            Err(StateError::TooNew { found: 99, .. })
        ));
        std::fs::write(sd.state_path(), b"{not json").unwrap();
        assert!(matches!(sd.load(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let first = sd.lock().unwrap();
        assert!(matches!(sd.lock(), Err(StateError::Locked { .. })));
        drop(first);
        assert!(sd.lock().is_ok());
    }
}
