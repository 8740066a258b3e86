//! Commands about the Envfile itself: init, validate, hash, lock.

use std::path::Path;

use anyhow::Context;

use super::CmdResult;
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

pub(super) fn validate(p: &Printer, file: Option<&Path>) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let env = &project.env;
    if p.json {
        p.json(&serde_json::json!({
            "ok": true,
            "file": crate::envfile::display_name(&env.file),
            "env": env.settings.name,
            "machines": env.machines.keys().collect::<Vec<_>>(),
            "networks": env.networks.keys().collect::<Vec<_>>(),
            "boxes": env.boxes.keys().collect::<Vec<_>>(),
            "tests": env.tests.len(),
        }));
    } else {
        p.line(format!(
            "{} `{}` is valid: environment `{}`, {} machine{}, {} network{}, {} box{}, {} test{}",
            p.green("ok:"),
            crate::envfile::display_name(&env.file),
            env.settings.name,
            env.machines.len(),
            plural(env.machines.len()),
            env.networks.len(),
            plural(env.networks.len()),
            env.boxes.len(),
            if env.boxes.len() == 1 { "" } else { "es" },
            env.tests.len(),
            plural(env.tests.len()),
        ));
    }
    Ok(0)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
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

pub(super) fn lock(p: &Printer, file: Option<&Path>, check: bool) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let new = project.current_lock()?;
    let report_hash = new.hash.clone();
    let path = project.lock_path();
    let old = lockfile::read(&path)?;
    let changed = old.as_ref() != Some(&new);
    if check {
        if changed {
            p.note(format!(
                "`{}` is out of date (environment hash now {}); run `hdev lock`",
                crate::envfile::display_name(&path),
                report_hash
            ));
            return Ok(1);
        }
        p.note(format!(
            "`{}` is up to date",
            crate::envfile::display_name(&path)
        ));
        return Ok(0);
    }
    if changed {
        lockfile::write(&path, &new)?;
    }
    if p.json {
        p.json(&serde_json::json!({ "file": path, "changed": changed, "lock": new }));
    } else {
        p.line(format!(
            "{} {} ({})",
            if changed { "wrote" } else { "unchanged:" },
            crate::envfile::display_name(&path),
            report_hash
        ));
    }
    Ok(0)
}
