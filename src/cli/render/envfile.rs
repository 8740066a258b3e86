//! The Envfile and the host: what `validate` found, what `lock` wrote or checked, and
//! `doctor`'s checks.

use std::path::Path;

use crate::envfile::Env;
use crate::lockfile::Lockfile;
use crate::output::Printer;

/// `validate`: the environment's name and how many of each thing it has.
pub(crate) fn valid(p: &Printer, env: &Env) {
    let file = crate::envfile::display_name(&env.file);
    if p.json {
        p.json(&serde_json::json!({
            "ok": true,
            "file": file,
            "env": env.settings.name,
            "machines": env.machines.keys().collect::<Vec<_>>(),
            "networks": env.networks.keys().collect::<Vec<_>>(),
            "boxes": env.boxes.keys().collect::<Vec<_>>(),
            "tests": env.tests.len(),
        }));
        return;
    }
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    p.line(format!(
        "{} `{file}` is valid: environment `{}`, {}, {}, {}, {}",
        p.green("ok:"),
        env.settings.name,
        count(env.machines.len(), "machine", "machines"),
        count(env.networks.len(), "network", "networks"),
        count(env.boxes.len(), "box", "boxes"),
        count(env.tests.len(), "test", "tests"),
    ));
}

/// `lock --check`: whether `path` is up to date; the exit code.
pub(crate) fn lock_checked(p: &Printer, path: &Path, changed: bool, hash: &str) -> i32 {
    let name = crate::envfile::display_name(path);
    if changed {
        p.note(format!(
            "`{name}` is out of date (environment hash now {hash}); run `hdev lock`"
        ));
        return 1;
    }
    p.note(format!("`{name}` is up to date"));
    0
}

/// `lock`: written, or unchanged.
pub(crate) fn locked(p: &Printer, path: &Path, changed: bool, lock: &Lockfile) {
    if p.json {
        p.json(&serde_json::json!({ "file": path, "changed": changed, "lock": lock }));
    } else {
        p.line(format!(
            "{} {} ({})",
            if changed { "wrote" } else { "unchanged:" },
            crate::envfile::display_name(path),
            lock.hash
        ));
    }
}

/// `doctor`: one line per check.
pub(crate) fn doctor(p: &Printer, r: &crate::ops::doctor::DoctorReport) {
    if p.json {
        let ok = r.checks.iter().all(|c| c.ok);
        p.json(&serde_json::json!({
            "ok": ok,
            "checks": r.checks,
            "kvm": r.kvm,
            "domain_type": r.domain,
            "kernel": r.kernel,
        }));
        return;
    }
    for c in &r.checks {
        let mark = if c.ok { p.green("ok  ") } else { p.red("FAIL") };
        p.line(format!("{mark} {:<13} {}", c.name, c.detail));
    }
}

/// Under `hash`: which working copies counted (on standard error, so the hash stays
/// alone on standard output).
pub(crate) fn local_note(p: &Printer, project: &crate::project::Project) {
    if p.json {
        return;
    }
    for (name, r) in &project.sources {
        if let Some(l) = &r.local {
            let dirty = if l.dirty {
                ", with uncommitted changes"
            } else {
                ""
            };
            p.note(format!(
                "+local: source `{name}` is the working copy `{}`{dirty}",
                l.path.display()
            ));
        }
    }
}

/// `sources`: one block per source.
pub(crate) fn sources(p: &Printer, rows: &[crate::ops::sources::SourceRow]) {
    if p.json {
        p.json(&serde_json::json!({ "sources": rows }));
        return;
    }
    if rows.is_empty() {
        p.line("no sources: the Envfile has no `[source.NAME]`");
    }
    for r in rows {
        let origin = match r.origin {
            crate::sources::Origin::Locked => "locked",
            crate::sources::Origin::Resolved => "not locked: `hdev lock` pins it",
        };
        p.line(p.bold(&format!("{}  {} ({})", r.name, r.git, r.pin)));
        p.line(format!("  commit   {} ({origin})", r.commit));
        p.line(format!("  tree     {}", r.tree));
        p.line(format!("  cache    {}", cached_words(&r.cached)));
        if let Some(l) = &r.local {
            let state = if l.dirty {
                "uncommitted changes"
            } else {
                "clean"
            };
            p.line(format!("  override {} ({state})", l.path.display()));
        }
        p.line(format!("  remote   {}", remote_words(r)));
        p.line(format!(
            "  used by  {}",
            if r.machines.is_empty() {
                "-".to_string()
            } else {
                r.machines.join(", ")
            }
        ));
    }
}

fn cached_words(c: &crate::sources::Cached) -> String {
    match (&c.mirror, c.has_commit, &c.tree) {
        (None, _, _) => "no mirror yet".to_string(),
        (Some(_), false, _) => "mirror without the commit".to_string(),
        (Some(m), true, Some(_)) => {
            format!("mirror {} with the commit, files exported", m.display())
        }
        (Some(m), true, None) => format!("mirror {} with the commit", m.display()),
    }
}

fn remote_words(r: &crate::ops::sources::SourceRow) -> String {
    match (&r.moved, r.fetched) {
        (_, false) => "not asked (`--fetch` asks)".to_string(),
        (None, true) => format!("{} is still at the pinned commit", r.pin),
        (Some(Some(c)), true) => format!(
            "{} moved to {c}: `hdev lock --update {}` follows it",
            r.pin, r.name
        ),
        (Some(None), true) => format!("{} is gone from the repository", r.pin),
    }
}
