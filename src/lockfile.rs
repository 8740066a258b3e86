//! `Envfile.lock`: the box digests an environment was pinned to, and its hash.
//!
//! Written by `hdev lock`, read by `hdev hash` (so that a pinned box counts by its pinned
//! digest) and by `hdev up --locked`.
//!
//! The lock file is given what it records (the environment, its hash, the box pins) rather
//! than a project, so that a project can read its lock without the two importing each
//! other; `Project::current_lock` puts them together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::boxes::Pins;
use crate::envfile::hash::HashReport;
use crate::envfile::Env;

/// Version 2 adds `[sources]`; a lock without sources is still written as version 1, so
/// that older hdev reads it.
pub(crate) const LOCK_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
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
pub(crate) struct LockedBox {
    pub digest: String,
    pub source: String,
}

/// A source pinned to a commit, with what the Envfile said when it was pinned: the pin
/// stands only while the Envfile still says the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LockedSource {
    pub git: String,
    /// The ref as the Envfile gives it: `branch main`, `tag v1`, `rev 0123abc`.
    #[serde(rename = "ref")]
    pub pin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    pub commit: String,
    pub tree: String,
}

impl LockedSource {
    /// Whether this pin is for `def` as the Envfile says it now.
    pub(crate) fn stands_for(&self, def: &crate::envfile::SourceDef) -> bool {
        self.git == def.git && self.pin == def.pin.to_string() && self.subdir == def.subdir
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Lockfile {
    pub version: u32,
    /// Environment hash when the lock was written.
    pub hash: String,
    #[serde(default)]
    pub boxes: BTreeMap<String, LockedBox>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, LockedSource>,
    #[serde(default)]
    pub machines: BTreeMap<String, String>,
}

pub(crate) fn path_for(envfile: &Path) -> PathBuf {
    let mut name = envfile
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "Envfile".into());
    name.push(".lock");
    envfile.with_file_name(name)
}

pub(crate) fn read(path: &Path) -> Result<Option<Lockfile>, LockError> {
    let text = match crate::envfile::read_text(path, crate::envfile::TEXT_LIMIT) {
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

pub(crate) fn write(path: &Path, lock: &Lockfile) -> Result<(), LockError> {
    crate::state::write_atomic(path, text(path, lock)?.as_bytes())?;
    Ok(())
}

/// The text of the lock file at `path` (named in errors) that records `lock`.
pub(crate) fn text(path: &Path, lock: &Lockfile) -> Result<String, LockError> {
    let body = toml::to_string_pretty(lock).map_err(|e| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# Written by `hdev lock`. Do not edit: run `hdev lock` again.\n{body}"
    ))
}

impl Lockfile {
    /// The commit and tree each source is pinned to, where the pin still stands for what
    /// the Envfile says.
    pub(crate) fn source_pins(&self, env: &Env) -> BTreeMap<String, crate::sources::Pin> {
        self.sources
            .iter()
            .filter(|(n, l)| env.sources.defs.get(*n).is_some_and(|d| l.stands_for(d)))
            .map(|(n, l)| {
                let pin = crate::sources::Pin {
                    commit: l.commit.clone(),
                    tree: l.tree.clone(),
                };
                (n.clone(), pin)
            })
            .collect()
    }

    /// The digest each box is pinned to.
    pub(crate) fn pins(&self) -> Pins {
        self.boxes
            .iter()
            .map(|(name, b)| (name.clone(), b.digest.clone()))
            .collect()
    }

    /// The pins that still stand for their box in `env` as it is now (see
    /// [`crate::boxes::current_digests`]), so that building a recipe box is not mistaken
    /// for a change of it.
    pub(crate) fn standing_pins(&self, env: &Env) -> Pins {
        let mut pins = self.pins();
        pins.retain(|name, digest| {
            crate::boxes::current_digests(env, name)
                .map(|d| d.contains(digest))
                .unwrap_or(false)
        });
        pins
    }
}

/// Every way `now` differs from the `locked` inputs, one sentence each (empty when they
/// match). Where a box came from does not count, only its digest.
pub(crate) fn differences(locked: &Lockfile, now: &Lockfile) -> Vec<String> {
    let mut out = Vec::new();
    let short = |h: &str| {
        let hex = h.split_once(':').map(|(_, x)| x).unwrap_or(h);
        hex[..hex.len().min(12)].to_string()
    };
    let pairs = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
            .collect::<Vec<_>>()
    };
    let digests = |l: &Lockfile| -> BTreeMap<String, String> {
        l.boxes
            .iter()
            .map(|(k, b)| (k.clone(), b.digest.clone()))
            .collect()
    };
    for (name, was, is) in pairs(&digests(locked), &digests(now)) {
        match (was, is) {
            (Some(w), Some(i)) if w != i => out.push(format!(
                "box `{name}`: digest {} is locked, the box is now {}",
                short(&w),
                short(&i)
            )),
            (Some(_), None) => out.push(format!("box `{name}` is locked but no longer used")),
            (None, Some(_)) => out.push(format!("box `{name}` is not in the lock file")),
            _ => {}
        }
    }
    source_differences(locked, now, &mut out, &short);
    for (name, was, is) in pairs(&locked.machines, &now.machines) {
        match (was, is) {
            (Some(w), Some(i)) if w != i => out.push(format!(
                "machine `{name}`: locked as {}, its inputs now hash to {}",
                short(&w),
                short(&i)
            )),
            (Some(_), None) => out.push(format!(
                "machine `{name}` is locked but gone from the Envfile"
            )),
            (None, Some(_)) => out.push(format!("machine `{name}` is not in the lock file")),
            _ => {}
        }
    }
    if locked.hash != now.hash && out.is_empty() {
        out.push(format!(
            "environment hash: locked {}, now {} (settings, networks or tests changed)",
            short(&locked.hash),
            short(&now.hash)
        ));
    }
    out
}

fn source_differences(
    locked: &Lockfile,
    now: &Lockfile,
    out: &mut Vec<String>,
    short: &dyn Fn(&str) -> String,
) {
    let names: std::collections::BTreeSet<&String> =
        locked.sources.keys().chain(now.sources.keys()).collect();
    for name in names {
        match (locked.sources.get(name), now.sources.get(name)) {
            (Some(w), Some(i)) if w.pin != i.pin || w.git != i.git || w.subdir != i.subdir => out
                .push(format!(
                    "source `{name}`: the lock pins {} of `{}`, the Envfile now says {} of `{}`",
                    w.pin, w.git, i.pin, i.git
                )),
            (Some(w), Some(i)) if w.commit != i.commit || w.tree != i.tree => out.push(format!(
                "source `{name}`: commit {} is locked, {} is now at {}",
                short(&w.commit),
                i.pin,
                short(&i.commit)
            )),
            (Some(_), None) => {
                out.push(format!("source `{name}` is locked but no longer declared"))
            }
            (None, Some(_)) => out.push(format!("source `{name}` is not in the lock file")),
            _ => {}
        }
    }
}

/// The lock file of `env`'s inputs as they are, with boxes counted as `pins` pins them:
/// `report` is the environment hash taken that way (the caller takes it, from the Envfile
/// as written), and each box is resolved that way here.
pub(crate) fn of_inputs(
    env: &Env,
    report: &HashReport,
    pins: &Pins,
    sources: &BTreeMap<String, crate::sources::Resolved>,
) -> std::io::Result<Lockfile> {
    let boxes = crate::boxes::resolve_digests(env, pins)?;
    let sources: BTreeMap<String, LockedSource> = env
        .sources
        .defs
        .iter()
        .filter_map(|(n, d)| {
            let r = sources.get(n)?;
            let locked = LockedSource {
                git: d.git.clone(),
                pin: d.pin.to_string(),
                subdir: d.subdir.clone(),
                commit: r.commit.clone(),
                tree: r.tree.clone(),
            };
            Some((n.clone(), locked))
        })
        .collect();
    Ok(Lockfile {
        version: if sources.is_empty() { 1 } else { LOCK_VERSION },
        sources,
        hash: report.hash.to_string(),
        boxes: boxes
            .into_iter()
            .map(|(name, b)| {
                (
                    name,
                    LockedBox {
                        digest: b.digest,
                        source: b.from,
                    },
                )
            })
            .collect(),
        machines: report
            .machines
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(hash: &str, boxd: &str, web: &str) -> Lockfile {
        Lockfile {
            version: LOCK_VERSION,
            hash: hash.into(),
            boxes: BTreeMap::from([(
                "busybox".to_string(),
                LockedBox {
                    digest: boxd.into(),
                    source: "recipe".into(),
                },
            )]),
            machines: BTreeMap::from([("web".to_string(), web.into())]),
            sources: BTreeMap::new(),
        }
    }

    #[test]
    fn differences_name_each_moved_input() {
        let a = lock("sha256:aa", "sha256:b1", "sha256:w1");
        assert!(differences(&a, &a).is_empty());
        let mut b = lock("sha256:bb", "sha256:b2", "sha256:w2");
        b.boxes.get_mut("busybox").unwrap().source = "store".into();
        let d = differences(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("box `busybox`"), "{d:?}");
        assert!(d[1].starts_with("machine `web`: locked as w1"), "{d:?}");
        let c = lock("sha256:cc", "sha256:b1", "sha256:w1");
        assert!(differences(&a, &c)[0].starts_with("environment hash"));
    }
}
