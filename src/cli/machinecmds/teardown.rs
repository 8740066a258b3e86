//! Commands that stop or remove: halt, destroy, gc; the work is in `crate::ops::teardown`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::backend::Counts;
use crate::cli::{render, CmdResult};
use crate::ops::session::{load_state, open, runtime, Session};
use crate::ops::teardown;
use crate::output::Printer;
use crate::state::State;

/// `hdev halt`: stops every running machine; they keep their state for the next `up`.
pub(crate) fn halt(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let on_stopped = |name: &str| p.note(format!("{name}: stopped"));
    let stopped = runtime()?.block_on(teardown::halt_env(&o, &lock, &on_stopped))?;
    render::machines::halted(p, &stopped);
    Ok(0)
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// `hdev destroy [-y]`: removes every object this environment's instance created.
pub(crate) fn destroy(p: &Printer, file: Option<&Path>, force: bool) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let instance = o.ctx.instance.clone();
    // Ask only a person: on a terminal, without `-y`, and not under `--json`.
    let ask = !force && std::io::stdin().is_terminal() && !p.json;
    let Some(removed) = runtime()?.block_on(remove(&o, ask))? else {
        p.note("nothing destroyed");
        return Ok(1);
    };
    let st = load_state(&o.project)?;
    if !st.machines.is_empty() || st.env_hash.is_some() {
        o.project.state.save(&lock, &State::new(&instance))?;
    }
    render::machines::destroyed(p, &instance, &removed);
    Ok(0)
}

/// Finds what the instance holds and removes it, after asking when `ask`; `None` when
/// the answer was no.
async fn remove(o: &Session, ask: bool) -> anyhow::Result<Option<Counts>> {
    let instance = &o.ctx.instance;
    let backends = teardown::connect_for_removal(Some(&o.project.env)).await?;
    let found = teardown::find_instance(&backends, instance).await?;
    let total = Counts::of(&found);
    if total.total() > 0 && ask {
        let q = format!(
            "destroy environment `{instance}`: {}?",
            render::machines::counts(&total)
        );
        if !confirm(&q) {
            return Ok(None);
        }
    }
    teardown::close_connections(&o.project.env);
    Ok(Some(teardown::remove(&backends, &found).await?))
}

/// `hdev gc [--dry-run]`: removes objects of environments whose folder no longer exists.
pub(crate) fn gc(p: &Printer, dry_run: bool) -> CmdResult {
    let report = runtime()?.block_on(teardown::gc(dry_run))?;
    render::machines::gc(p, &report, dry_run);
    Ok(i32::from(!report.failed.is_empty()))
}
