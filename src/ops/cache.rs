//! `hdev cache list|prune`: the provisioned-state cache of this host's Docker engine (the
//! only engine that keeps one), each entry with what the index in the store adds (its
//! last use); entries the index lacks are listed with their creation as last use, and
//! index entries whose image is gone are dropped.

use serde::Serialize;

use crate::backend::docker::DockerBackend;
use crate::backend::{CachedState, Engine};
use crate::cache::{over_bound, Entry, Index, Policy};

/// One entry, as `cache list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    pub hash: String,
    pub machine: String,
    pub env: String,
    pub size: u64,
    pub created: i64,
    pub last_used: i64,
    pub image: String,
}

/// What `cache list` reports.
#[derive(Debug, Serialize)]
pub(crate) struct CacheList {
    pub entries: Vec<Listed>,
    pub total: u64,
    pub max_bytes: u64,
    pub enabled: bool,
}

/// What `cache prune` removed.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Pruned {
    pub removed: Vec<Listed>,
    pub failed: Vec<String>,
    pub left_bytes: u64,
}

/// The engine's entries joined with the index (which is brought up to date).
async fn read(d: &DockerBackend, policy: &Policy) -> anyhow::Result<(Index, Vec<Listed>)> {
    let states = d.cache_list().await?;
    let mut index = match &policy.index {
        Some(path) => Index::load(path)?,
        None => Index::default(),
    };
    index
        .entries
        .retain(|h, _| states.iter().any(|s| s.hash == *h));
    for s in &states {
        let e = index
            .entries
            .entry(s.hash.clone())
            .or_insert_with(|| entry(s));
        e.location.clone_from(&s.location);
        e.size = s.size;
    }
    if let Some(path) = &policy.index {
        index.save(path)?;
    }
    let listed = index.entries.iter().map(|(h, e)| listed(h, e)).collect();
    Ok((index, listed))
}

fn entry(s: &CachedState) -> Entry {
    Entry {
        location: s.location.clone(),
        machine: s.machine.clone(),
        env: s.env.clone(),
        size: s.size,
        created: s.created,
        last_used: s.created,
    }
}

fn listed(hash: &str, e: &Entry) -> Listed {
    Listed {
        hash: hash.to_string(),
        machine: e.machine.clone(),
        env: e.env.clone(),
        size: e.size,
        created: e.created,
        last_used: e.last_used,
        image: e.location.clone(),
    }
}

/// `cache list`: every entry, least recently used first.
pub(crate) async fn list() -> anyhow::Result<CacheList> {
    let policy = Policy::current();
    let d = DockerBackend::connect().await?;
    let (index, mut entries) = read(&d, &policy).await?;
    entries.sort_by_key(|e| (e.last_used, e.hash.clone()));
    Ok(CacheList {
        entries,
        total: index.bytes(),
        max_bytes: policy.max_bytes,
        enabled: policy.enabled,
    })
}

/// `cache prune`: every entry (`all`), or the least recently used until the cache holds
/// at most `keep_bytes` (default: its bound).
pub(crate) async fn prune(all: bool, keep_bytes: Option<u64>) -> anyhow::Result<Pruned> {
    let policy = Policy::current();
    let d = DockerBackend::connect().await?;
    let (mut index, _) = read(&d, &policy).await?;
    let go: Vec<String> = match all {
        true => index.entries.keys().cloned().collect(),
        false => over_bound(&index, keep_bytes.unwrap_or(policy.max_bytes), &[]),
    };
    let mut out = Pruned::default();
    for h in go {
        let Some(e) = index.entries.get(&h).cloned() else {
            continue;
        };
        match d.cache_remove(&e.location).await {
            Ok(()) => {
                index.entries.remove(&h);
                out.removed.push(listed(&h, &e));
            }
            Err(err) => out.failed.push(format!("{h}: {err}")),
        }
    }
    if let Some(path) = &policy.index {
        index.save(path)?;
    }
    out.left_bytes = index.bytes();
    Ok(out)
}
