//! `hdev box build|add|list|remove|verify|prune`: the box store from the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::CmdResult;
use crate::boxes::{BoxDigest, Recipe, Store, StoredBox};
use crate::output::Printer;

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
        BoxCmd::Remove { boxes } => remove(p, &store, boxes),
        BoxCmd::Verify { boxes } => verify(p, &store, boxes),
        BoxCmd::Prune { keep, dry_run } => prune(p, &store, *keep, *dry_run),
    }
}

fn box_json(b: &StoredBox) -> serde_json::Value {
    json!({
        "name": b.manifest.name,
        "version": b.manifest.version,
        "digest": b.digest.to_string(),
        "created": b.manifest.created,
        "size": b.manifest.size(),
        "providers": b.manifest.providers(),
        "recipe": b.manifest.recipe,
        "path": b.dir,
    })
}

fn build(p: &Printer, store: &Store, dir: &Path, output: Option<&Path>, force: bool) -> CmdResult {
    let shown = dir.display().to_string();
    let recipe = Recipe::load(dir, &shown)?;
    let started = std::time::Instant::now();
    let digest = recipe.digest()?;
    let found = if force {
        None
    } else {
        store.by_recipe(&digest)?
    };
    let (b, built) = match found {
        Some(b) => (b, false),
        None => {
            // Another process may be building it: wait for it, then look again.
            let _lock = store.lock(&recipe.name)?;
            match store.by_recipe(&digest)?.filter(|_| !force) {
                Some(b) => (b, false),
                None => {
                    p.note(building(store, &recipe, &shown)?);
                    (store.build(&recipe)?, true)
                }
            }
        }
    };
    if let Some(out) = output {
        crate::boxes::archive::write_archive(&b.manifest, &b.dir, out)
            .with_context(|| format!("cannot write the box archive `{}`", out.display()))?;
    }
    if p.json {
        let mut v = box_json(&b);
        v["built"] = json!(built);
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        v["archive"] = json!(output);
        p.json(&v);
    } else {
        p.line(format!(
            "{} {} {} ({}){}",
            if built { "built" } else { "up to date:" },
            b.manifest.name,
            b.digest,
            human(b.manifest.size()),
            output
                .map(|o| format!(", archive `{}`", o.display()))
                .unwrap_or_default()
        ));
    }
    Ok(0)
}

fn building(store: &Store, recipe: &Recipe, shown: &str) -> anyhow::Result<String> {
    Ok(format!(
        "building box `{}` from `{shown}` (log: `{}`)",
        recipe.name,
        store.build_log(&recipe.name)?.display()
    ))
}

fn add(
    p: &Printer,
    store: &Store,
    source: &str,
    sha: Option<&str>,
    name: Option<&str>,
) -> CmdResult {
    let expected = match sha {
        Some(s) => Some(BoxDigest::parse(s).with_context(|| {
            format!(
                "`--sha256 {s}` is not a sha256 digest (64 hex digits, optionally `sha256:` first)"
            )
        })?),
        None => None,
    };
    let b = if source.starts_with("http://") || source.starts_with("https://") {
        p.note(format!("downloading `{source}`"));
        crate::boxes::ensure::download(store, source, expected.as_ref())?
    } else {
        let path = Path::new(source);
        if !path.is_file() {
            anyhow::bail!("no box file `{source}`");
        }
        if crate::boxes::ensure::is_box_archive(path)? {
            store.add_file(path, expected.as_ref())?
        } else {
            let stem = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .filter(|n| !n.is_empty())
                .unwrap_or("box");
            let name = name.unwrap_or(stem);
            crate::boxes::import::import_file(store, path, name, expected.as_ref())?
        }
    };
    if p.json {
        p.json(&box_json(&b));
    } else {
        p.line(format!(
            "added {} {} ({})",
            b.manifest.name,
            b.digest,
            human(b.manifest.size())
        ));
    }
    Ok(0)
}

fn list(p: &Printer, store: &Store) -> CmdResult {
    let boxes = store.list()?;
    if p.json {
        p.json(&boxes.iter().map(box_json).collect::<Vec<_>>());
        return Ok(0);
    }
    if boxes.is_empty() {
        p.note(format!(
            "no boxes in `{}`; build one with `hdev box build boxes/busybox`",
            store.root().display()
        ));
        return Ok(0);
    }
    p.line(format!(
        "{:<20} {:<10} {:<14} {:<22} {:>9}  {}",
        "NAME", "VERSION", "DIGEST", "CREATED", "SIZE", "PROVIDERS"
    ));
    for b in &boxes {
        p.line(format!(
            "{:<20} {:<10} {:<14} {:<22} {:>9}  {}",
            b.manifest.name,
            b.manifest.version,
            b.digest.short(),
            b.manifest.created,
            human(b.manifest.size()),
            b.manifest.providers().join(",")
        ));
    }
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
        if !p.json {
            p.line(format!("removed {} {}", b.manifest.name, b.digest));
        }
    }
    if p.json {
        p.json(&json!({ "removed": boxes.iter().map(box_json).collect::<Vec<_>>() }));
    }
    Ok(0)
}

fn verify(p: &Printer, store: &Store, queries: &[String]) -> CmdResult {
    let boxes = if queries.is_empty() {
        store.list()?
    } else {
        select(store, queries)?
    };
    let mut results = Vec::new();
    let mut failed = 0;
    for b in &boxes {
        let r = store.verify(b);
        if !p.json {
            match &r {
                Ok(()) => p.line(format!("{} {} {}", p.green("ok"), b.label(), b.digest)),
                Err(e) => p.line(format!("{} {}: {e}", p.red("corrupt"), b.label())),
            }
        }
        failed += usize::from(r.is_err());
        results.push(json!({
            "name": b.manifest.name,
            "digest": b.digest.to_string(),
            "ok": r.is_ok(),
            "error": r.err().map(|e| e.to_string()),
        }));
    }
    if p.json {
        p.json(&json!({ "ok": failed == 0, "boxes": results }));
    } else if boxes.is_empty() {
        p.note("no boxes to verify");
    } else if failed > 0 {
        p.note(format!(
            "{failed} of {} boxes failed verification; remove them with `hdev box remove DIGEST` and add or build them again",
            boxes.len()
        ));
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn prune(p: &Printer, store: &Store, keep: usize, dry_run: bool) -> CmdResult {
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
    if p.json {
        p.json(&json!({
            "dry_run": dry_run,
            "removed": old.iter().map(box_json).collect::<Vec<_>>(),
            "leftovers": leftovers,
        }));
        return Ok(0);
    }
    for b in &old {
        p.line(format!(
            "{} {} {} ({})",
            if dry_run { "would remove" } else { "removed" },
            b.manifest.name,
            b.digest,
            b.manifest.created
        ));
    }
    match leftovers {
        Some(l) => {
            for path in &l {
                p.line(format!("removed leftover `{}`", path.display()));
            }
        }
        None => p.note("another hdev command is working in the store; its work files were kept"),
    }
    if old.is_empty() && !dry_run {
        p.note("no old box versions to remove");
    }
    Ok(0)
}

/// Bytes in binary units, one decimal.
pub(super) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
