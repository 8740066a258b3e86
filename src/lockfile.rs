//! `Envfile.lock`: the box digests an environment was pinned to, and its hash.
//!
//! Written by `hdev lock`, read by `hdev hash` (so that a pinned box counts by its pinned
//! digest) and by `hdev up --locked`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The lock file is not what `hdev lock` writes.
    #[error("`{}` is not a valid lock file: {message}; run `hdev lock` to rewrite it", path.display())]
    Invalid { path: PathBuf, message: String },
    /// Written by a newer hdev.
    #[error("`{}` was written by a newer hdev (lock version {found}); upgrade hdev", path.display())]
    TooNew { path: PathBuf, found: u32 },
    /// Could not be written.
    #[error(transparent)]
    Write(#[from] crate::state::StateError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockedBox {
    pub digest: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lockfile {
    pub version: u32,
    /// Environment hash when the lock was written.
    pub hash: String,
    #[serde(default)]
    pub boxes: BTreeMap<String, LockedBox>,
    #[serde(default)]
    pub machines: BTreeMap<String, String>,
}

pub fn path_for(envfile: &Path) -> PathBuf {
    let mut name = envfile
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "Envfile".into());
    name.push(".lock");
    envfile.with_file_name(name)
}

pub fn read(path: &Path) -> Result<Option<Lockfile>, LockError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let lock: Lockfile = toml::from_str(&text).map_err(|e| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    if lock.version > LOCK_VERSION {
        return Err(LockError::TooNew {
            path: path.to_path_buf(),
            found: lock.version,
        });
    }
    Ok(Some(lock))
}

pub fn write(path: &Path, lock: &Lockfile) -> Result<(), LockError> {
    let body = toml::to_string_pretty(lock).map_err(|e| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = format!("# Written by `hdev lock`. Do not edit: run `hdev lock` again.\n{body}");
    crate::state::write_atomic(path, text.as_bytes())?;
    Ok(())
}
