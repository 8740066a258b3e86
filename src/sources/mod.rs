//! Sources: sub-projects from git repositories (`[source.NAME]`), resolved to a commit and
//! the tree of files at it, and a developer's working copy in their place.
//!
//! A source resolves, in order, to the working copy an override names (`--use`,
//! `Envfile.local`), to its pin in `Envfile.lock` while that pin still stands for what the
//! Envfile says (same repository, ref and subdir), or to what its ref names in the
//! repository's mirror (fetched when the mirror lacks it). Problems are reported at their
//! place: a ref or a path the repository does not have in the Envfile, an override that
//! is not a working copy of the repository in `Envfile.local` (or as an error about
//! `--use`).

pub(crate) mod cache;
pub(crate) mod git;
pub(crate) mod local;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::envfile::diag::{did_you_mean, Diagnostic};
use crate::envfile::sources::{envfile_error, override_error};
use crate::envfile::{Env, LoadError, Override, SourceDef};
use cache::{Cache, Mirror};

/// Why a source could not be resolved (beyond what the Envfile says wrong).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// No store folder to keep mirrors in.
    #[error("{0}")]
    Store(String),
    /// A file of the cache could not be read or written.
    #[error("cannot use `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// git failed on the cache.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// The repository could not be fetched (network, credentials, wrong URL).
    #[error("cannot fetch `{url}`: {why}\nhelp: check the URL and that `git ls-remote {url}` works with your git setup (hdev uses your git's credentials)")]
    Fetch { url: String, why: git::GitError },
    /// The Envfile or an override is wrong, at its place.
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl SourceError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A source's pin in `Envfile.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub commit: String,
    pub tree: String,
}

/// Where a source's files come from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    /// The commit `Envfile.lock` pins.
    Locked,
    /// The commit its ref names in the mirror (not locked).
    Resolved,
}

/// A working copy standing for a source.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LocalUse {
    pub path: PathBuf,
    pub head: Option<String>,
    pub dirty: bool,
}

/// A source, resolved.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Resolved {
    /// The repository as git is given it (a path made absolute).
    pub url: String,
    /// The commit the source is pinned (or resolved) to.
    pub commit: String,
    /// The tree at that commit (of `subdir`).
    pub tree: String,
    pub origin: Origin,
    /// The working copy counted in its place, if any.
    pub local: Option<LocalUse>,
    /// The tree that counts: the working copy's when there is one.
    pub counted_tree: String,
    /// The folder with the files machines get.
    pub root: PathBuf,
}

/// The repository URL git is given: URLs and `host:path` as written, a local path made
/// absolute against the Envfile's folder.
pub(crate) fn url_of(env_dir: &Path, git: &str) -> String {
    let scp_like = git
        .split_once(':')
        .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'));
    if git.contains("://") || scp_like {
        return git.to_string();
    }
    let p = env_dir.join(git);
    std::fs::canonicalize(&p)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// What resolving is told: the lock's pins, overrides, and sources to fetch afresh (their
/// pins ignored).
#[derive(Debug, Default)]
pub(crate) struct Request<'a> {
    pub pins: BTreeMap<String, Pin>,
    pub overrides: BTreeMap<String, Override>,
    pub refresh: BTreeSet<String>,
    pub cache: Option<&'a Cache>,
    /// The folder relative repository paths are taken from (default: the Envfile's): a
    /// release or throwaway copy checked out elsewhere reaches its project's repositories.
    pub base: Option<PathBuf>,
}

/// Resolves every source of `env`, checks every path the Envfile names in one, and fills
/// `env.sources.roots`.
pub(crate) fn resolve(
    env: &mut Env,
    req: &Request<'_>,
) -> Result<BTreeMap<String, Resolved>, SourceError> {
    if env.sources.defs.is_empty() && req.overrides.is_empty() {
        return Ok(BTreeMap::new());
    }
    let owned;
    let cache = match req.cache {
        Some(c) => c,
        None => {
            owned = Cache::open_default()?;
            &owned
        }
    };
    for o in req.overrides.values() {
        if !env.sources.defs.contains_key(&o.source) {
            let known: Vec<&str> = env.sources.defs.keys().map(String::as_str).collect();
            let help = match did_you_mean(&o.source, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the Envfile's sources: {}", known.join(", ")),
            };
            return Err(override_error(
                o,
                format!("no source `{}` in the Envfile", o.source),
                &help,
            )
            .into());
        }
    }
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for def in env.sources.defs.values() {
        match resolve_one(env, def, req, cache)? {
            Ok(r) => {
                out.insert(def.name.clone(), r);
            }
            Err(d) => problems.push(d),
        }
    }
    check_uses(env, &out, cache, &mut problems)?;
    if !problems.is_empty() {
        return Err(envfile_error(&env.file, problems).into());
    }
    env.sources.roots = out
        .iter()
        .map(|(n, r)| (n.clone(), r.root.clone()))
        .collect();
    Ok(out)
}

/// One source; a problem in the Envfile is the inner error.
fn resolve_one(
    env: &Env,
    def: &SourceDef,
    req: &Request<'_>,
    cache: &Cache,
) -> Result<Result<Resolved, Diagnostic>, SourceError> {
    let url = url_of(req.base.as_deref().unwrap_or(&env.dir), &def.git);
    let mirror = cache.mirror(&url);
    let pin = req
        .pins
        .get(&def.name)
        .filter(|_| !req.refresh.contains(&def.name));
    let (commit, origin) = match pin {
        Some(p) => {
            if !mirror.has_commit(&p.commit)? {
                mirror.fetch()?;
            }
            if !mirror.has_commit(&p.commit)? {
                return Ok(Err(gone(def, &url, &p.commit)));
            }
            (p.commit.clone(), Origin::Locked)
        }
        None => match find_commit(&mirror, def, req.refresh.contains(&def.name))? {
            Some(c) => (c, Origin::Resolved),
            None => return Ok(Err(no_ref(def, &url))),
        },
    };
    let Some(tree) = mirror.tree_of(&commit, def.subdir.as_deref())? else {
        return Ok(Err(no_subdir(def, &commit)));
    };
    let (local, counted_tree, root) = match req.overrides.get(&def.name) {
        Some(o) => {
            let wc = local::read(
                &o.path,
                def.subdir.as_deref(),
                Some((&mirror.path, &commit)),
            )?
            .map_err(|why| {
                override_error(
                    o,
                    why,
                    "give the top of a git working copy (a clone) of the source's repository",
                )
            })?;
            let root = match def.subdir.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => wc.top.join(s),
                None => wc.top.clone(),
            };
            let use_ = LocalUse {
                path: wc.top,
                head: wc.head,
                dirty: wc.dirty,
            };
            (Some(use_), wc.tree, root)
        }
        None => (None, tree.clone(), cache.export(&mirror, &tree)?),
    };
    Ok(Ok(Resolved {
        url,
        commit,
        tree,
        origin,
        local,
        counted_tree,
        root,
    }))
}

/// The commit `def`'s ref names: in the mirror as it is, else after a fetch (always
/// after one when `fresh`).
fn find_commit(
    mirror: &Mirror,
    def: &SourceDef,
    fresh: bool,
) -> Result<Option<String>, SourceError> {
    if !fresh {
        if let Some(c) = mirror.commit_of(&def.pin)? {
            return Ok(Some(c));
        }
    }
    mirror.fetch()?;
    mirror.commit_of(&def.pin)
}

fn no_ref(def: &SourceDef, url: &str) -> Diagnostic {
    Diagnostic::new(
        def.span.clone(),
        format!("`{url}` has no {} `{}`", def.pin.key(), def.pin.value()),
    )
    .label(format!("no such {}", def.pin.key()))
    .help(format!("`git ls-remote {url}` lists its branches and tags"))
}

fn gone(def: &SourceDef, url: &str, commit: &str) -> Diagnostic {
    Diagnostic::new(
        def.span.clone(),
        format!(
            "the commit `Envfile.lock` pins for source `{}` ({commit}) is not in `{url}`",
            def.name
        ),
    )
    .label("locked commit missing")
    .help(format!(
        "`hdev lock --update {}` pins the commit this ref names now",
        def.name
    ))
}

fn no_subdir(def: &SourceDef, commit: &str) -> Diagnostic {
    Diagnostic::new(
        def.span.clone(),
        format!(
            "source `{}` has no folder `{}` at commit {}",
            def.name,
            def.subdir.as_deref().unwrap_or(""),
            &commit[..commit.len().min(12)]
        ),
    )
    .label("`subdir` not in this commit")
    .help("check `subdir`, or pin a commit that has it")
}

/// Every `source:` path of the Envfile is in its source: in the tree at the pinned
/// commit, or in the working copy standing for it.
fn check_uses(
    env: &Env,
    resolved: &BTreeMap<String, Resolved>,
    cache: &Cache,
    problems: &mut Vec<Diagnostic>,
) -> Result<(), SourceError> {
    let mut listings: BTreeMap<&str, BTreeMap<String, bool>> = BTreeMap::new();
    for u in &env.sources.uses {
        let Some(r) = resolved.get(&u.source) else {
            continue; // its own problem was reported
        };
        if u.path.is_empty() {
            continue;
        }
        let folder = if r.local.is_some() {
            let p = r.root.join(&u.path);
            p.exists().then(|| p.is_dir())
        } else {
            if !listings.contains_key(u.source.as_str()) {
                let mirror = cache.mirror(&r.url);
                let entries = git::ls_tree(&mirror.path, &r.tree)?;
                let map = entries.into_iter().map(|e| (e.path, e.folder)).collect();
                listings.insert(&u.source, map);
            }
            listings[u.source.as_str()].get(&u.path).copied()
        };
        let at = match &r.local {
            Some(l) => format!("the working copy `{}`", l.path.display()),
            None => format!("commit {}", &r.commit[..r.commit.len().min(12)]),
        };
        let (problem, label) = match folder {
            None => (
                format!("`{}` is not in source `{}` at {at}", u.path, u.source),
                "not in the source",
            ),
            Some(true) if u.file_only => (
                format!(
                    "`{}` is a folder in source `{}`, not a file",
                    u.path, u.source
                ),
                "a folder",
            ),
            Some(_) => continue,
        };
        let names = listings.get(u.source.as_str()).filter(|_| folder.is_none());
        let help = names
            .and_then(|m| did_you_mean(&u.path, m.keys().map(String::as_str)))
            .map(|s| format!("did you mean `source:{}/{s}`?", u.source))
            .unwrap_or_else(|| {
                format!(
                    "`hdev sources` shows the commit; paths are relative to the source's {}",
                    if env.sources.defs[&u.source].subdir.is_some() {
                        "`subdir`"
                    } else {
                        "repository"
                    }
                )
            });
        problems.push(
            Diagnostic::new(u.span.clone(), problem)
                .label(label)
                .help(help),
        );
    }
    Ok(())
}

/// Where a source's ref is in its repository now (after a fetch), when that is not the
/// commit it resolved to: `(name, ref, now)` for each source that moved.
pub(crate) fn moved(
    env: &Env,
    resolved: &BTreeMap<String, Resolved>,
) -> Result<Vec<(String, String, Option<String>)>, SourceError> {
    let cache = Cache::open_default()?;
    let mut out = Vec::new();
    for (name, def) in &env.sources.defs {
        let Some(r) = resolved.get(name) else {
            continue;
        };
        let mirror = cache.mirror(&r.url);
        mirror.fetch()?;
        let now = mirror.commit_of(&def.pin)?;
        if now.as_deref() != Some(r.commit.as_str()) {
            out.push((name.clone(), def.pin.to_string(), now));
        }
    }
    Ok(out)
}

/// What the cache holds of a resolved source.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cached {
    /// The mirror's folder, if it exists.
    pub mirror: Option<PathBuf>,
    /// Whether the mirror holds the commit.
    pub has_commit: bool,
    /// The tree's files, if exported.
    pub tree: Option<PathBuf>,
}

/// What the cache holds of source `r`.
pub(crate) fn cached(r: &Resolved) -> Result<Cached, SourceError> {
    let cache = Cache::open_default()?;
    let mirror = cache.mirror(&r.url);
    let tree = cache.tree_dir(&r.tree);
    Ok(Cached {
        has_commit: mirror.has_commit(&r.commit)?,
        mirror: mirror.exists().then_some(mirror.path),
        tree: tree.is_dir().then_some(tree),
    })
}
