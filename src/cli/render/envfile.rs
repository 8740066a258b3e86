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
