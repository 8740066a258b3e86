//! `hdev status`: renders `crate::ops::status`.

use std::path::Path;

use crate::cli::CmdResult;
use crate::ops::session::{open, runtime};
use crate::ops::status::status as read_status;
use crate::output::Printer;

pub(crate) fn status(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let report = runtime()?.block_on(read_status(&o))?;
    if p.json {
        p.json(&report);
        return Ok(0);
    }
    let rows = &report.machines;
    p.line(format!(
        "environment `{}` (instance `{}`, hash {})",
        report.env,
        report.instance,
        o.env_hash.short()
    ));
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(7).max(7);
    p.line(p.bold(&format!(
        "{:<w$}  {:<7}  {:<11}  {:<10}  {:<11}  {:<8}  {:<7}  {:<24}  PORTS",
        "MACHINE",
        "BACKEND",
        "STATE",
        "DEFINITION",
        "PROVISIONED",
        "BASELINE",
        "DRIFTED",
        "ADDRESS"
    )));
    for r in rows {
        let addr: Vec<String> = r
            .addresses
            .iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let def = match (r.orphan, r.definition) {
            (true, _) => "orphan",
            (false, Some(d)) => d,
            (false, None) => "-",
        };
        p.line(format!(
            "{:<w$}  {:<7}  {:<11}  {:<10}  {:<11}  {:<8}  {:<7}  {:<24}  {}",
            r.name,
            r.backend,
            r.state,
            def,
            yes(r.provisioned),
            yes(r.baseline),
            r.drifted.map_or("-", yes),
            if addr.is_empty() {
                "-".to_string()
            } else {
                addr.join(",")
            },
            if r.ports.is_empty() {
                "-".to_string()
            } else {
                r.ports.join(",")
            },
        ));
    }
    Ok(0)
}
