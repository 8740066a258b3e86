//! `sources`: each source of the environment, its pinned commit, what the cache holds,
//! the working copy standing for it, and (after a fetch) whether its ref moved.

use std::path::Path;

use serde::Serialize;

use crate::sources::{Cached, LocalUse, Origin};

/// One source in `sources`.
#[derive(Debug, Serialize)]
pub(crate) struct SourceRow {
    pub name: String,
    pub git: String,
    /// `branch main`, `tag v1`, `rev 0123abc`.
    pub pin: String,
    pub subdir: Option<String>,
    pub commit: String,
    pub tree: String,
    /// Whether the commit is the lock's or resolved now (not locked).
    pub origin: Origin,
    pub cached: Cached,
    pub local: Option<LocalUse>,
    /// With `--fetch`: where the ref is in the repository now, when it moved (`None`
    /// inside: the ref is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Option<String>>,
    /// With `--fetch`: whether the repository was asked.
    pub fetched: bool,
    /// Machines that use it.
    pub machines: Vec<String>,
}

/// The sources of the environment, each with its state; `fetch` asks each repository
/// where its ref is now.
pub(crate) fn sources(file: Option<&Path>, fetch: bool) -> anyhow::Result<Vec<SourceRow>> {
    let project = crate::throwaway::open_project(file)?;
    let env = &project.env;
    let moved = match fetch {
        true => crate::sources::moved(env, &project.sources)?,
        false => Vec::new(),
    };
    let mut rows = Vec::new();
    for (name, def) in &env.sources.defs {
        let Some(r) = project.sources.get(name) else {
            continue;
        };
        let machines = env
            .machines
            .values()
            .filter(|m| env.sources_of(m).contains(name.as_str()))
            .map(|m| m.name.clone())
            .collect();
        rows.push(SourceRow {
            name: name.clone(),
            git: def.git.clone(),
            pin: def.pin.to_string(),
            subdir: def.subdir.clone(),
            commit: r.commit.clone(),
            tree: r.tree.clone(),
            origin: r.origin,
            cached: crate::sources::cached(r)?,
            local: r.local.clone(),
            moved: moved.iter().find(|m| &m.0 == name).map(|m| m.2.clone()),
            fetched: fetch,
            machines,
        });
    }
    Ok(rows)
}
