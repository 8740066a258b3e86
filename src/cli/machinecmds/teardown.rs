//! Commands that stop or remove: halt, destroy, gc; the work is in `crate::ops::teardown`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::backend::Counts;
use crate::cli::CmdResult;
use crate::ops::session::{load_state, open, runtime};
use crate::ops::teardown;
use crate::output::Printer;
use crate::state::State;

/// `hdev halt`: stops every running machine; they keep their state for the next `up`.
pub(crate) fn halt(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let _lock = o.project.state.lock()?;
    let stopped = runtime()?.block_on(async {
        let backends = o.connect().await?;
        teardown::halt(&backends, &o.ctx, &|name| {
            p.note(format!("{name}: stopped"))
        })
        .await
    })?;
    if p.json {
        p.json(&serde_json::json!({ "halted": stopped }));
    } else {
        p.line(format!("halted {} machine(s)", stopped.len()));
    }
    Ok(0)
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn counts_text(c: &Counts) -> String {
    format!(
        "{} VM(s), {} container(s), {} network(s), {} volume(s), {} image(s)",
        c.vms, c.containers, c.networks, c.volumes, c.images
    )
}

/// `hdev destroy [-y]`: removes every object this environment's instance created.
pub(crate) fn destroy(p: &Printer, file: Option<&Path>, force: bool) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let instance = o.ctx.instance.clone();
    let removed = runtime()?.block_on(async {
        let backends = teardown::connect_for_removal(Some(&o.project.env)).await?;
        let found = teardown::find_instance(&backends, &instance).await?;
        let total = Counts::of(&found);
        if total.total() > 0 && !force && std::io::stdin().is_terminal() && !p.json {
            let q = format!("destroy environment `{instance}`: {}?", counts_text(&total));
            if !confirm(&q) {
                return anyhow::Ok(None);
            }
        }
        Ok(Some(teardown::remove(&backends, &found).await?))
    })?;
    let Some(removed) = removed else {
        p.note("nothing destroyed");
        return Ok(1);
    };
    let st = load_state(&o.project)?;
    if !st.machines.is_empty() || st.env_hash.is_some() {
        o.project.state.save(&lock, &State::new(&instance))?;
    }
    if p.json {
        p.json(&serde_json::json!({ "instance": instance, "removed": removed }));
    } else {
        p.line(format!(
            "destroyed `{instance}`: {} removed",
            counts_text(&removed)
        ));
    }
    Ok(0)
}

/// `hdev gc [--dry-run]`: removes objects of environments whose folder no longer exists.
pub(crate) fn gc(p: &Printer, dry_run: bool) -> CmdResult {
    let report = runtime()?.block_on(teardown::gc(dry_run))?;
    let code = i32::from(!report.failed.is_empty());
    if p.json {
        p.json(&report);
        return Ok(code);
    }
    if report.environments.is_empty() && report.failed.is_empty() {
        p.line("nothing to collect: every labelled environment still has its folder");
    }
    for e in &report.environments {
        p.line(format!(
            "{} `{}` ({}): {}",
            if dry_run { "would remove" } else { "removed" },
            e.instance,
            if e.idle_copy {
                format!("ci copy `{}` left by a run that ended", e.dir)
            } else {
                format!("folder `{}` is gone", e.dir)
            },
            counts_text(&e.removed)
        ));
    }
    for s in &report.skipped {
        p.note(format!("not looked at, unreachable: {s}"));
    }
    for f in &report.failed {
        eprintln!("{} cannot remove {f}", p.red("error:"));
    }
    Ok(code)
}
