//! `hdev box build|add|list|show|remove|verify|prune`: the box store from the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{render, CmdResult};
use crate::boxes::{BoxDigest, Recipe, Store, StoredBox};
use crate::output::Printer;
use anyhow::Context;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum BoxCmd {
    /// Build a box from a recipe folder (box.toml + script) into the store.
    Build {
        /// Recipe folder, e.g. `boxes/busybox`.
        recipe: PathBuf,
        /// Also write the box archive to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Build again even if the store has a box for this recipe.
        #[arg(long)]
        force: bool,
    },
    /// Add a box archive (or a cloud qcow2 / vagrant-libvirt box) from a file or URL.
    Add {
        /// File path, or an http(s) URL.
        source: String,
        /// Expected box digest (sha256 of its manifest); a box that differs is refused.
        #[arg(long)]
        sha256: Option<String>,
        /// Name for a qcow2 or vagrant box (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the boxes in the store.
    List,
    /// Print a box's manifest: digest, recipe, build time, artifacts and packages.
    Show {
        /// A box name (its newest version) or a digest prefix (7+ hex digits).
        #[arg(value_name = "NAME|DIGEST")]
        query: String,
    },
    /// Remove boxes by name (every version) or digest prefix.
    Remove {
        #[arg(required = true)]
        boxes: Vec<String>,
    },
    /// Re-read boxes and check every digest (all boxes when none are named).
    Verify { boxes: Vec<String> },
    /// Remove leftovers of interrupted commands and all but the newest versions of a box.
    Prune {
        /// Versions to keep of each box name.
        #[arg(long, default_value_t = 1)]
        keep: usize,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(super) fn run(p: &Printer, cmd: &BoxCmd) -> CmdResult {
    let store = Store::open_default()?;
    match cmd {
        BoxCmd::Build {
            recipe,
            output,
            force,
        } => build(p, &store, recipe, output.as_deref(), *force),
        BoxCmd::Add {
            source,
            sha256,
            name,
        } => add(p, &store, source, sha256.as_deref(), name.as_deref()),
        BoxCmd::List => list(p, &store),
        BoxCmd::Show { query } => {
            render::boxes::show(p, &store.find_one(query)?);
            Ok(0)
        }
        BoxCmd::Remove { boxes } => remove(p, &store, boxes),
        BoxCmd::Verify { boxes } => verify(p, &store, boxes),
        BoxCmd::Prune { keep, dry_run } => prune(p, &store, *keep, *dry_run),
    }
}

/// `box build`: the store's box for the recipe, built when there is none (or `--force`).
fn build(p: &Printer, store: &Store, dir: &Path, output: Option<&Path>, force: bool) -> CmdResult {
    let shown = dir.display().to_string();
    let recipe = Recipe::load(dir, &shown)?;
    let started = std::time::Instant::now();
    let (b, built) = find_or_build(p, store, &recipe, &shown, force)?;
    if let Some(out) = output {
        crate::boxes::archive::write_archive(&b.manifest, &b.dir, out)
            .with_context(|| format!("cannot write the box archive `{}`", out.display()))?;
    }
    render::boxes::built(p, &b, built, started.elapsed(), output);
    Ok(0)
}

/// The store's box for `recipe`, or a new build of it; whether it was built.
fn find_or_build(
    p: &Printer,
    store: &Store,
    recipe: &Recipe,
    shown: &str,
    force: bool,
) -> anyhow::Result<(StoredBox, bool)> {
    let digest = recipe.digest()?;
    if !force {
        if let Some(b) = store.by_recipe(&digest)? {
            return Ok((b, false));
        }
    }
    // Another process may be building it: wait for it, then look again.
    let _lock = store.lock(&recipe.name)?;
    if let Some(b) = store.by_recipe(&digest)?.filter(|_| !force) {
        return Ok((b, false));
    }
    p.note(building(store, recipe, shown)?);
    Ok((store.build(recipe)?, true))
}

fn building(store: &Store, recipe: &Recipe, shown: &str) -> anyhow::Result<String> {
    Ok(format!(
        "building box `{}` from `{shown}` (log: `{}`)",
        recipe.name,
        store.build_log(&recipe.name)?.display()
    ))
}

/// `box add SOURCE`: a box archive, qcow2 or vagrant box, from a file or a URL.
fn add(
    p: &Printer,
    store: &Store,
    source: &str,
    sha: Option<&str>,
    name: Option<&str>,
) -> CmdResult {
    let expected = sha.map(expected_digest).transpose()?;
    let b = if source.starts_with("http://") || source.starts_with("https://") {
        p.note(format!("downloading `{source}`"));
        crate::boxes::ensure::download(store, source, expected.as_ref())?
    } else {
        add_file(store, source, name, expected.as_ref())?
    };
    render::boxes::added(p, &b);
    Ok(0)
}

fn expected_digest(s: &str) -> anyhow::Result<BoxDigest> {
    BoxDigest::parse(s).with_context(|| {
        format!("`--sha256 {s}` is not a sha256 digest (64 hex digits, optionally `sha256:` first)")
    })
}

/// A box archive as it is; any other file (qcow2, vagrant box) imported under `name`, by
/// default its file name without extension.
fn add_file(
    store: &Store,
    source: &str,
    name: Option<&str>,
    expected: Option<&BoxDigest>,
) -> anyhow::Result<StoredBox> {
    let path = Path::new(source);
    if !path.is_file() {
        anyhow::bail!("no box file `{source}`");
    }
    if crate::boxes::ensure::is_box_archive(path)? {
        return Ok(store.add_file(path, expected)?);
    }
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("box");
    let name = name.unwrap_or(stem);
    Ok(crate::boxes::import::import_file(
        store, path, name, expected,
    )?)
}

fn list(p: &Printer, store: &Store) -> CmdResult {
    render::boxes::list(p, &store.list()?, store.root());
    Ok(0)
}

/// Boxes named by each query; an unknown name is an error.
fn select(store: &Store, queries: &[String]) -> anyhow::Result<Vec<StoredBox>> {
    let mut out: BTreeMap<BoxDigest, StoredBox> = BTreeMap::new();
    for q in queries {
        let found = store.find(q)?;
        if found.is_empty() {
            return Err(crate::boxes::BoxError::NotFound { query: q.clone() }.into());
        }
        let by_digest = found.iter().filter(|b| b.digest.matches(q)).count();
        if by_digest > 1 {
            return Err(crate::boxes::BoxError::Ambiguous {
                query: q.clone(),
                matches: found.iter().map(StoredBox::label).collect(),
            }
            .into());
        }
        for b in found {
            out.insert(b.digest.clone(), b);
        }
    }
    Ok(out.into_values().collect())
}

fn remove(p: &Printer, store: &Store, queries: &[String]) -> CmdResult {
    let boxes = select(store, queries)?;
    for b in &boxes {
        store.remove(b)?;
        render::boxes::removed(p, b);
    }
    render::boxes::removed_all(p, &boxes);
    Ok(0)
}

/// `box verify [BOX...]`: reads every box again and checks its digests.
fn verify(p: &Printer, store: &Store, queries: &[String]) -> CmdResult {
    let boxes = if queries.is_empty() {
        store.list()?
    } else {
        select(store, queries)?
    };
    let mut checked = Vec::new();
    for b in &boxes {
        let r = store.verify(b).map_err(|e| e.to_string());
        render::boxes::verified(p, b, &r);
        checked.push((b, r));
    }
    render::boxes::verify_summary(p, &checked);
    Ok(i32::from(checked.iter().any(|(_, r)| r.is_err())))
}

/// `box prune`: all but the newest `keep` versions of each box, and leftovers of
/// interrupted commands.
fn prune(p: &Printer, store: &Store, keep: usize, dry_run: bool) -> CmdResult {
    let old = old_versions(store, keep)?;
    if !dry_run {
        for b in &old {
            store.remove(b)?;
        }
    }
    let leftovers = if dry_run {
        Some(vec![])
    } else {
        store.prune_leftovers()?
    };
    render::boxes::pruned(p, &old, leftovers.as_deref(), dry_run);
    Ok(0)
}

/// The versions of each box name beyond the newest `keep`.
fn old_versions(store: &Store, keep: usize) -> anyhow::Result<Vec<StoredBox>> {
    // Newest first within each name (the store lists them so).
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut old = Vec::new();
    for b in store.list()? {
        let n = seen.entry(b.manifest.name.clone()).or_default();
        *n += 1;
        if *n > keep {
            old.push(b);
        }
    }
    Ok(old)
}
