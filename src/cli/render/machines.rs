//! Machines: the `status` table, what `halt`, `destroy` and `gc` stopped or removed, and
//! the lines of `logs`.

use crate::backend::{Counts, LogLine};
use crate::envfile::hash::EnvHash;
use crate::ops::status::{Row, StatusReport};
use crate::ops::teardown::GcReport;
use crate::output::Printer;

/// `status`: the environment, then one row per machine.
pub(crate) fn status(p: &Printer, report: &StatusReport) {
    if p.json {
        p.json(report);
        return;
    }
    let rows = &report.machines;
    let plus = if report.local.is_empty() {
        ""
    } else {
        "+local"
    };
    p.line(format!(
        "environment `{}` (instance `{}`, hash {}{plus})",
        report.env,
        report.instance,
        EnvHash(report.env_hash.clone()).short()
    ));
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(7).max(7);
    // The HOST column only where the environment places machines on hosts.
    let hw = match report.placed {
        true => rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4),
        false => 0,
    };
    p.line(p.bold(&format!(
        "{:<w$}  {}{:<7}  {:<11}  {:<13}  {:<11}  {:<8}  {:<9}  {:<24}  PORTS",
        "MACHINE",
        host_cell("HOST", hw),
        "BACKEND",
        "STATE",
        "DEFINITION",
        "PROVISIONED",
        "BASELINE",
        "DRIFTED",
        "ADDRESS"
    )));
    for r in rows {
        p.line(status_row(r, w, hw));
    }
    for u in &report.unreachable {
        p.note(format!("unreachable: {u}"));
    }
    for (name, l) in &report.local {
        let dirty = if l.dirty {
            ", with uncommitted changes"
        } else {
            ""
        };
        p.line(format!(
            "+local: source `{name}` is the working copy `{}`{dirty} (machines marked `+local`)",
            l.path.display()
        ));
    }
}

/// A HOST cell and its gap, or nothing when the column is not shown (`width` 0).
fn host_cell(host: &str, width: usize) -> String {
    match width {
        0 => String::new(),
        w => format!("{host:<w$}  "),
    }
}

fn status_row(r: &Row, w: usize, hw: usize) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let def = match (r.orphan, r.definition) {
        (true, _) => "orphan",
        (false, Some(d)) => d,
        (false, None) => "-",
    };
    let plus = if r.local.is_empty() { "" } else { "+local" };
    let def = format!("{def}{plus}");
    let addr: Vec<String> = r
        .addresses
        .iter()
        .map(|(n, a)| format!("{n}={a}"))
        .collect();
    format!(
        "{:<w$}  {}{:<7}  {:<11}  {:<13}  {:<11}  {:<8}  {:<9}  {:<24}  {}",
        r.name,
        host_cell(&r.host, hw),
        r.backend,
        // A running machine whose last health check failed says so where one looks.
        if r.health == Some("failed") && r.state == "running" {
            "unhealthy"
        } else {
            r.state.as_str()
        },
        def,
        yes(r.provisioned),
        yes(r.baseline),
        drift_cell(r),
        dash_or_join(&addr),
        dash_or_join(&r.ports),
    )
}

/// `yes`/`no` from a check made now, with the age of a recorded one (`no 5m`), or `-`
/// when none was made since hdev last changed the machine.
fn drift_cell(r: &Row) -> String {
    let word = |b: bool| if b { "yes" } else { "no" };
    match (r.drifted, r.drift_age) {
        (None, _) => "-".to_string(),
        (Some(d), None | Some(0)) => word(d).to_string(),
        (Some(d), Some(age)) => format!("{} {}", word(d), crate::state::drift::age(age)),
    }
}

fn dash_or_join(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

/// What a teardown counted, by kind of object.
pub(crate) fn counts(c: &Counts) -> String {
    format!(
        "{} VM(s), {} container(s), {} network(s), {} volume(s), {} image(s)",
        c.vms, c.containers, c.networks, c.volumes, c.images
    )
}

/// `halt`.
pub(crate) fn halted(p: &Printer, stopped: &[String]) {
    if p.json {
        p.json(&serde_json::json!({ "halted": stopped }));
    } else {
        p.line(format!("halted {} machine(s)", stopped.len()));
    }
}

/// `destroy`, when it removed (it may have found nothing).
pub(crate) fn destroyed(p: &Printer, instance: &str, removed: &Counts) {
    if p.json {
        p.json(&serde_json::json!({ "instance": instance, "removed": removed }));
    } else {
        p.line(format!(
            "destroyed `{instance}`: {} removed",
            counts(removed)
        ));
    }
}

/// `gc`: what was (or would be) removed, what could not be looked at or removed.
pub(crate) fn gc(p: &Printer, report: &GcReport, dry_run: bool) {
    if p.json {
        p.json(report);
        return;
    }
    if report.environments.is_empty() && report.failed.is_empty() {
        p.line("nothing to collect: every labelled environment still has its folder");
    }
    for e in &report.environments {
        let why = if e.idle_copy {
            format!("ci copy `{}` left by a run that ended", e.dir)
        } else {
            format!("folder `{}` is gone", e.dir)
        };
        let verb = if dry_run { "would remove" } else { "removed" };
        p.line(format!(
            "{verb} `{}` ({why}): {}",
            e.instance,
            counts(&e.removed)
        ));
    }
    for s in &report.skipped {
        p.note(format!("not looked at, unreachable: {s}"));
    }
    for f in &report.failed {
        eprintln!("{} cannot remove {f}", p.red("error:"));
    }
}

/// How `logs` prints the lines of one machine: as JSON objects, after the machine's name
/// padded to `width` (when several machines are shown), or as they came (stderr to
/// stderr).
pub(crate) fn log_sink(
    json: bool,
    prefixed: bool,
    width: usize,
    name: String,
) -> impl Fn(LogLine) + Send + Sync {
    move |l: LogLine| {
        if json {
            println!(
                "{}",
                serde_json::json!({"machine": name, "stream": if l.stderr {"stderr"} else {"stdout"}, "line": l.text})
            );
        } else if prefixed {
            println!("{name:<width$} | {}", l.text);
        } else if l.stderr {
            eprintln!("{}", l.text);
        } else {
            println!("{}", l.text);
        }
    }
}
