//! `hdev cache list|prune`: the provisioned-state cache of this host's engines (Docker's
//! images of containers, libvirt's disk layers of VMs on `qemu:///system`), each entry
//! with what the index in the store adds (its last use); entries the index lacks are
//! listed with their creation as last use, and index entries the engines no longer hold
//! are dropped. An engine this host does not run holds no entries.

use serde::Serialize;

use std::collections::BTreeSet;

use crate::backend::docker::DockerBackend;
use crate::backend::libvirt::machines::{Vms, DEFAULT_URI};
use crate::backend::{AnyBackend, CachedState, Engine};
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
    /// Where the engine holds it: an image id, or a volume path.
    pub image: String,
    /// The engine holding it (`docker`, `libvirt`).
    pub engine: String,
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

/// This host's engines that can keep a cache: Docker, and libvirt's system connection
/// when it answers. Neither answering is an error.
async fn engines() -> anyhow::Result<Vec<AnyBackend>> {
    let mut out = Vec::new();
    let docker = DockerBackend::connect().await;
    if let Ok(d) = &docker {
        out.push(AnyBackend::Docker(d.clone()));
    }
    let uris = BTreeSet::from([DEFAULT_URI.to_string()]);
    if let Ok(v) = Vms::at_uris(&uris, None).await {
        out.push(AnyBackend::Libvirt(Box::new(v)));
    }
    if out.is_empty() {
        docker?;
    }
    Ok(out)
}

/// The engines' entries joined with the index (which is brought up to date).
async fn read(engines: &[AnyBackend], policy: &Policy) -> anyhow::Result<(Index, Vec<Listed>)> {
    let mut states = Vec::new();
    for e in engines {
        states.extend(
            e.cache_list()
                .await?
                .into_iter()
                .map(|s| (e.kind().to_string(), s)),
        );
    }
    let mut index = match &policy.index {
        Some(path) => Index::load(path)?,
        None => Index::default(),
    };
    index
        .entries
        .retain(|h, _| states.iter().any(|(_, s)| s.hash == *h));
    for (_, s) in &states {
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
    let listed = index
        .entries
        .iter()
        .map(|(h, e)| {
            let engine = states
                .iter()
                .find(|(_, s)| s.hash == *h)
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            listed(h, e, engine)
        })
        .collect();
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

fn listed(hash: &str, e: &Entry, engine: String) -> Listed {
    Listed {
        hash: hash.to_string(),
        machine: e.machine.clone(),
        env: e.env.clone(),
        size: e.size,
        created: e.created,
        last_used: e.last_used,
        image: e.location.clone(),
        engine,
    }
}

/// `cache list`: every entry, least recently used first.
pub(crate) async fn list() -> anyhow::Result<CacheList> {
    let policy = Policy::current();
    let (index, mut entries) = read(&engines().await?, &policy).await?;
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
    let engines = engines().await?;
    let (mut index, listed_now) = read(&engines, &policy).await?;
    let go: Vec<String> = match all {
        true => index.entries.keys().cloned().collect(),
        false => over_bound(&index, keep_bytes.unwrap_or(policy.max_bytes), &[]),
    };
    let mut out = Pruned::default();
    for h in go {
        let Some(e) = index.entries.get(&h).cloned() else {
            continue;
        };
        let kind = listed_now
            .iter()
            .find(|l| l.hash == h)
            .map(|l| l.engine.clone())
            .unwrap_or_default();
        let Some(engine) = engines.iter().find(|b| b.kind().to_string() == kind) else {
            continue;
        };
        match engine.cache_remove(&e.location).await {
            Ok(()) => {
                index.entries.remove(&h);
                out.removed.push(listed(&h, &e, kind));
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
