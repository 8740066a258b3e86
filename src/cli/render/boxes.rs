//! The box store: a box as JSON, and what `box build|add|list|remove|verify|prune` did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::human;
use crate::boxes::StoredBox;
use crate::output::Printer;

/// A box as `box` commands print it under `--json`.
pub(crate) fn box_json(b: &StoredBox) -> serde_json::Value {
    json!({
        "name": b.manifest.name,
        "version": b.manifest.version,
        "digest": b.digest.to_string(),
        "created": b.manifest.created,
        "size": b.manifest.size(),
        "providers": b.manifest.providers(),
        "recipe": b.manifest.recipe,
        "stored": b.stored_rfc3339(),
        "path": b.dir,
    })
}

/// `box show`: the manifest with its provenance, as a person or a program reads it.
pub(crate) fn show(p: &Printer, b: &StoredBox) {
    let m = &b.manifest;
    let epoch = m.recipe.as_ref().and_then(|r| r.source_date_epoch);
    if p.json {
        let mut v = box_json(b);
        v["description"] = json!(m.description);
        v["boot"] = json!(m.boot);
        v["format"] = json!(m.format);
        v["source_date_epoch"] = json!(epoch);
        v["artifacts"] = json!(m.artifacts);
        v["packages"] = json!(m.packages);
        p.json(&v);
        return;
    }
    let row = |k: &str, v: String| p.line(format!("{k:<13}{v}"));
    row("name", m.name.clone());
    row("version", m.version.clone());
    row("digest", b.digest.to_string());
    if let Some(d) = &m.description {
        row("description", d.clone());
    }
    match &m.recipe {
        Some(r) => {
            row("recipe", format!("{} ({})", r.path, r.digest));
            row(
                "built at",
                match r.source_date_epoch {
                    Some(e) => format!("{} (SOURCE_DATE_EPOCH={e})", m.created),
                    None => format!(
                        "{} (wall clock: built before boxes were reproducible)",
                        m.created
                    ),
                },
            );
        }
        None => row(
            "created",
            format!("{} (not built from a recipe)", m.created),
        ),
    }
    if let Some(boot) = m.boot {
        row("boot", format!("{boot:?}").to_lowercase());
    }
    if let Some(s) = b.stored_rfc3339() {
        row(
            "stored",
            format!("{s} (in this store; not part of the digest)"),
        );
    }
    row("path", b.dir.display().to_string());
    p.line(format!(
        "artifacts ({}, {})",
        m.artifacts.len(),
        human(m.size())
    ));
    for (provider, a) in &m.artifacts {
        p.line(format!(
            "  {provider:<16} {:<12} {:>10}  sha256:{}",
            a.path,
            human(a.size),
            a.sha256
        ));
    }
    if m.packages.is_empty() {
        p.line(if m.recipe.is_some() {
            "packages     not recorded (built before hdev recorded them, or the recipe lists none)"
        } else {
            "packages     not recorded (an imported image)"
        });
    } else {
        p.line(format!("packages ({})", m.packages.len()));
        let w = m.packages.iter().map(|k| k.name.len()).max().unwrap_or(0);
        for k in &m.packages {
            p.line(format!("  {:<w$} {}", k.name, k.version));
        }
    }
}

/// `box build`: built, or found up to date; how long it took; the archive written.
pub(crate) fn built(
    p: &Printer,
    b: &StoredBox,
    built: bool,
    took: Duration,
    archive: Option<&Path>,
) {
    if p.json {
        let mut v = box_json(b);
        v["built"] = json!(built);
        v["seconds"] = json!(took.as_secs_f64());
        v["archive"] = json!(archive);
        p.json(&v);
        return;
    }
    p.line(format!(
        "{} {} {} ({}){}",
        if built { "built" } else { "up to date:" },
        b.manifest.name,
        b.digest,
        human(b.manifest.size()),
        archive
            .map(|o| format!(", archive `{}`", o.display()))
            .unwrap_or_default()
    ));
}

/// `box add`.
pub(crate) fn added(p: &Printer, b: &StoredBox) {
    if p.json {
        p.json(&box_json(b));
    } else {
        p.line(format!(
            "added {} {} ({})",
            b.manifest.name,
            b.digest,
            human(b.manifest.size())
        ));
    }
}

/// `box list`: a table, or how to get a first box when there is none.
pub(crate) fn list(p: &Printer, boxes: &[StoredBox], root: &Path) {
    if p.json {
        p.json(&boxes.iter().map(box_json).collect::<Vec<_>>());
        return;
    }
    if boxes.is_empty() {
        p.note(format!(
            "no boxes in `{}`; build one with `hdev box build boxes/busybox`",
            root.display()
        ));
        return;
    }
    p.line(format!(
        "{:<20} {:<10} {:<14} {:<22} {:>9}  {}",
        "NAME", "VERSION", "DIGEST", "CREATED", "SIZE", "PROVIDERS"
    ));
    for b in boxes {
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
}

/// One box removed by `box remove` (the JSON document comes at the end).
pub(crate) fn removed(p: &Printer, b: &StoredBox) {
    if !p.json {
        p.line(format!("removed {} {}", b.manifest.name, b.digest));
    }
}

/// `box remove`, at the end.
pub(crate) fn removed_all(p: &Printer, boxes: &[StoredBox]) {
    if p.json {
        p.json(&json!({ "removed": boxes.iter().map(box_json).collect::<Vec<_>>() }));
    }
}

/// One box checked by `box verify`, as soon as it is.
pub(crate) fn verified(p: &Printer, b: &StoredBox, r: &Result<(), String>) {
    if p.json {
        return;
    }
    match r {
        Ok(()) => p.line(format!("{} {} {}", p.green("ok"), b.label(), b.digest)),
        Err(e) => p.line(format!("{} {}: {e}", p.red("corrupt"), b.label())),
    }
}

/// `box verify`, at the end: the JSON document, or what to do about corrupt boxes.
pub(crate) fn verify_summary(p: &Printer, checked: &[(&StoredBox, Result<(), String>)]) {
    let failed = checked.iter().filter(|(_, r)| r.is_err()).count();
    if p.json {
        let boxes: Vec<serde_json::Value> = checked
            .iter()
            .map(|(b, r)| {
                json!({
                    "name": b.manifest.name,
                    "digest": b.digest.to_string(),
                    "ok": r.is_ok(),
                    "error": r.as_ref().err(),
                })
            })
            .collect();
        p.json(&json!({ "ok": failed == 0, "boxes": boxes }));
    } else if checked.is_empty() {
        p.note("no boxes to verify");
    } else if failed > 0 {
        p.note(format!(
            "{failed} of {} boxes failed verification; remove them with `hdev box remove DIGEST` and add or build them again",
            checked.len()
        ));
    }
}

/// `box prune`: the old versions (removed, or that would be), the leftovers removed.
pub(crate) fn pruned(p: &Printer, old: &[StoredBox], leftovers: Option<&[PathBuf]>, dry_run: bool) {
    if p.json {
        p.json(&json!({
            "dry_run": dry_run,
            "removed": old.iter().map(box_json).collect::<Vec<_>>(),
            "leftovers": leftovers,
        }));
        return;
    }
    for b in old {
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
            for path in l {
                p.line(format!("removed leftover `{}`", path.display()));
            }
        }
        None => p.note("another hdev command is working in the store; its work files were kept"),
    }
    if old.is_empty() && !dry_run {
        p.note("no old box versions to remove");
    }
}
