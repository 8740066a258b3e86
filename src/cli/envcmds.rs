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

pub(super) fn hash(p: &Printer, file: Option<&Path>, explain: bool, short: bool) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let report = project.hash()?;
    if p.json {
        p.json(&report);
        return Ok(0);
    }
    if explain {
        for item in &report.inputs {
            p.line(format!("{:<40} {}", item.what, item.digest));
        }
        p.line(format!("{:<40} {}", "environment", report.hash));
    } else if short {
        p.line(report.hash.short());
    } else {
        p.line(report.hash.to_string());
    }
    Ok(0)
}

/// `hdev lock [--check]`: writes `Envfile.lock`, or checks that it is up to date.
pub(super) fn lock(p: &Printer, file: Option<&Path>, check: bool) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let new = project.current_lock()?;
    let path = project.lock_path();
    let changed = lockfile::read(&path)?.as_ref() != Some(&new);
    if check {
        return Ok(render::envfile::lock_checked(p, &path, changed, &new.hash));
    }
    if changed {
        lockfile::write(&path, &new)?;
    }
    render::envfile::locked(p, &path, changed, &new);
    Ok(0)
}
