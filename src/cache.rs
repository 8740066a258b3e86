//! The provisioned-state cache, engine-neutral part: whether `up` uses it and how much it
//! may hold ([`Policy`]), and its index in the store (`$HDEV_HOME/cache/provisioned.json`: for
//! each per-machine hash, where the engine keeps it, what it came from, its size and when
//! it was last used), from which the least recently used entries go first when the cache
//! holds more than its bound.
//!
//! The engine is the truth about which entries exist (an entry is found by its hash in
//! the engine, so a fresh `$HDEV_HOME` still uses what the engine holds); the index adds
//! what the engine cannot tell: the last use. Writes are atomic; two processes that
//! update it at once may lose one's last-use time, never an entry's existence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The default bound on what the cache holds: 10 GiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// Whether `up` uses the cache, and its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Machines are created from cached states, and provisioned ones kept.
    pub enabled: bool,
    /// Bytes the entries may hold together; the least recently used go beyond it.
    pub max_bytes: u64,
    /// The index kept beside the engines' entries (`None`: none is kept).
    pub index: Option<PathBuf>,
}

impl Policy {
    /// From the environment: `HDEV_NO_CACHE` (set and not `0`: off) and
    /// `HDEV_CACHE_MAX` (a size such as `10G`).
    pub(crate) fn from_env() -> Policy {
        let off = std::env::var("HDEV_NO_CACHE").is_ok_and(|v| !v.is_empty() && v != "0");
        let max_bytes = std::env::var("HDEV_CACHE_MAX")
            .ok()
            .and_then(|v| crate::envfile::units::parse_size(&v).ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        Policy {
            enabled: !off,
            max_bytes,
            index: default_index().ok(),
        }
    }

    /// No cache at all (the fast tier's default).
    #[cfg(test)]
    pub(crate) fn off() -> Policy {
        Policy {
            enabled: false,
            max_bytes: DEFAULT_MAX_BYTES,
            index: None,
        }
    }

    /// The policy of this process: the environment's, turned off by `--no-cache`.
    pub(crate) fn current() -> Policy {
        // The fast tier never reads or writes the developer's store: its tests that want
        // the cache set a policy of their own.
        if cfg!(test) {
            return Policy {
                enabled: false,
                max_bytes: DEFAULT_MAX_BYTES,
                index: None,
            };
        }
        let mut p = Policy::from_env();
        if NO_CACHE.get().copied().unwrap_or(false) {
            p.enabled = false;
        }
        p
    }
}

static NO_CACHE: OnceLock<bool> = OnceLock::new();

/// `--no-cache` was given: this process neither uses nor fills the cache.
pub(crate) fn set_no_cache(no: bool) {
    let _ = NO_CACHE.set(no);
}

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Where the engine keeps it (an image id).
    pub location: String,
    pub machine: String,
    pub env: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    pub last_used: i64,
}

const VERSION: u32 = 1;

/// The index: per-machine hash -> entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Index {
    pub version: u32,
    pub entries: BTreeMap<String, Entry>,
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// The store's folder could not be found.
    #[error("cannot find the store: {0}")]
    Store(String),
    /// The index is not one this hdev reads.
    #[error("cannot read the cache index `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    /// The index could not be written.
    #[error("cannot write the cache index: {0}")]
    Write(#[from] crate::state::StateError),
}

/// The index file of the store at `root`.
pub(crate) fn index_path(root: &Path) -> PathBuf {
    root.join("cache").join("provisioned.json")
}

/// The index file of the default store (`$HDEV_HOME`).
pub(crate) fn default_index() -> Result<PathBuf, CacheError> {
    let store =
        crate::boxes::Store::open_default().map_err(|e| CacheError::Store(e.to_string()))?;
    Ok(index_path(store.root()))
}

impl Index {
    /// Reads the index at `path`; none yet is an empty one.
    pub(crate) fn load(path: &Path) -> Result<Index, CacheError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => {
                return Err(CacheError::Read {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            }
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| CacheError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if index.version > VERSION {
            return Err(CacheError::Read {
                path: path.to_path_buf(),
                message: format!(
                    "version {} is newer than this hdev's {VERSION}; update hdev",
                    index.version
                ),
            });
        }
        Ok(index)
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), CacheError> {
        let mut me = self.clone();
        me.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&me).unwrap_or_default();
        Ok(crate::state::write_atomic(path, &bytes)?)
    }

    /// Total bytes of the entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }
}

/// The hashes to remove so that the entries hold at most `max_bytes`: the least recently
/// used first, never one of `keep`.
pub(crate) fn over_bound(index: &Index, max_bytes: u64, keep: &[&str]) -> Vec<String> {
    let mut by_use: Vec<(&String, &Entry)> = index.entries.iter().collect();
    by_use.sort_by_key(|(h, e)| (e.last_used, *h));
    let mut total = index.bytes();
    let mut out = Vec::new();
    for (hash, e) in by_use {
        if total <= max_bytes {
            break;
        }
        if keep.contains(&hash.as_str()) {
            continue;
        }
        total = total.saturating_sub(e.size);
        out.push(hash.clone());
    }
    out
}

/// Now, in seconds since the epoch.
pub(crate) fn now() -> i64 {
    i64::try_from(crate::state::drift::now()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, last_used: i64) -> Entry {
        Entry {
            location: String::new(),
            machine: "m".into(),
            env: "e".into(),
            size,
            created: 0,
            last_used,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_until_the_bound_holds() {
        let mut i = Index::default();
        i.entries.insert("a".into(), entry(4, 30));
        i.entries.insert("b".into(), entry(4, 10));
        i.entries.insert("c".into(), entry(4, 20));
        assert!(over_bound(&i, 12, &[]).is_empty());
        assert_eq!(over_bound(&i, 8, &[]), vec!["b".to_string()]);
        assert_eq!(
            over_bound(&i, 4, &[]),
            vec!["b".to_string(), "c".to_string()]
        );
        // The entry just kept stays, even when it is the oldest.
        assert_eq!(over_bound(&i, 8, &["b"]), vec!["c".to_string()]);
        assert_eq!(over_bound(&i, 0, &["a"]).len(), 2);
    }

    #[test]
    fn the_index_round_trips_and_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("temp folder");
        let path = index_path(dir.path());
        assert_eq!(Index::load(&path).expect("empty"), Index::default());
        let mut i = Index::default();
        i.entries.insert("sha256:ab".into(), entry(7, 1));
        i.save(&path).expect("save");
        let back = Index::load(&path).expect("load");
        assert_eq!(back.entries, i.entries);
        std::fs::write(&path, r#"{"version": 99, "entries": {}}"#).expect("write");
        assert!(Index::load(&path).is_err());
    }
}
