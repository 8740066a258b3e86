//! Commands about the Envfile itself: init, validate, hash, lock.

use std::path::Path;

use anyhow::Context;

use super::{render, CmdResult};
use crate::lockfile;
use crate::output::Printer;
use crate::templates;

pub(super) fn init(p: &Printer, template: &str, list: bool, force: bool) -> CmdResult {
    if list {
        for t in templates::TEMPLATES {
            p.line(format!("{:<10} {}", t.name, t.about));
        }
        return Ok(0);
    }
    let t = templates::find(template).ok_or_else(|| {
        let names: Vec<&str> = templates::TEMPLATES.iter().map(|t| t.name).collect();
        anyhow::anyhow!("no template `{template}`; templates: {}", names.join(", "))
    })?;
    let dir = std::env::current_dir().context("cannot read the current folder")?;
    let written = templates::write(t, &dir, force)?;
    for f in &written {
        p.note(format!("wrote {}", f.display()));
    }
    p.note(format!(
        "initialised `{}` from template `{}`; next: `hdev validate`, then `hdev up`",
        dir.display(),
        t.name
    ));
    Ok(0)
}

/// `hdev validate`: the Envfile loads (or every problem is reported with its place).
pub(super) fn validate(p: &Printer, file: Option<&Path>) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    render::envfile::valid(p, &project.env);
    Ok(0)
}

/// `hdev hash`: with `+local` when a working copy stands for a source.
pub(super) fn hash(p: &Printer, file: Option<&Path>, explain: bool, short: bool) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let report = project.hash()?;
    if p.json {
        let mut v = serde_json::to_value(&report)?;
        v["hash"] = report.shown().into();
        p.json(&v);
        return Ok(0);
    }
    if explain {
        for item in &report.inputs {
            p.line(format!("{:<40} {}", item.what, item.digest));
        }
        p.line(format!("{:<40} {}", "environment", report.shown()));
    } else if short {
        p.line(report.shown_short());
    } else {
        p.line(report.shown());
    }
    render::envfile::local_note(p, &project);
    Ok(0)
}

/// `hdev lock [--check] [--update [NAME...]]`: writes `Envfile.lock`, or checks that it is
/// up to date; refused while a working copy stands for a source.
pub(super) fn lock(
    p: &Printer,
    file: Option<&Path>,
    check: bool,
    update: Option<&[String]>,
) -> CmdResult {
    let mut project = crate::throwaway::open_project(file)?;
    project.refuse_overrides("`hdev lock`")?;
    let path = project.lock_path();
    let old = lockfile::read(&path)?;
    let new = project.next_lock(update, old.as_ref(), check)?;
    let changed = old.as_ref() != Some(&new);
    if check {
        return Ok(render::envfile::lock_checked(p, &path, changed, &new.hash));
    }
    if changed {
        lockfile::write(&path, &new)?;
    }
    render::envfile::locked(p, &path, changed, &new);
    Ok(0)
}

/// `hdev sources [--fetch]`.
pub(super) fn sources(p: &Printer, file: Option<&Path>, fetch: bool) -> CmdResult {
    let rows = crate::ops::sources::sources(file, fetch)?;
    render::envfile::sources(p, &rows);
    Ok(0)
}
