//! Check results (`test`, `ci`, `release`), `ci`'s verdict and `verify`'s differences.

use super::{json_sorted, plural};
use crate::acceptance::{Summary, TestResult};
use crate::ops::copy::CopyOutcome;
use crate::ops::test::TestReport;
use crate::ops::verify::VerifyReport;
use crate::output::Printer;

/// Check results as lines, the last ten lines of a failed check's output under it, and
/// the summary; nothing under `--json` (the caller's document carries them).
pub(crate) fn results(p: &Printer, results: &[TestResult]) {
    if p.json {
        return;
    }
    for r in results {
        let mark = if r.passed {
            p.green("pass")
        } else {
            p.red("FAIL")
        };
        p.line(format!(
            "{mark} {} ({}, {:.1}s)",
            r.name,
            r.machine,
            r.duration_ms as f64 / 1000.0
        ));
        if let Some(f) = &r.failure {
            failure(p, f, &r.output);
        }
    }
    p.line(format!("{}", Summary::of(results)));
}

fn failure(p: &Printer, failure: &str, output: &str) {
    p.line(format!("     {failure}"));
    let lines: Vec<&str> = output.lines().collect();
    for l in &lines[lines.len().saturating_sub(10)..] {
        p.line(format!("     | {l}"));
    }
}

/// `test`.
pub(crate) fn test(p: &Printer, report: &TestReport) -> anyhow::Result<()> {
    results(p, &report.results);
    if p.json {
        json_sorted(p, report)?;
    }
    Ok(())
}

/// `ci --clean`.
pub(crate) fn ci_clean(p: &Printer, removed: &[String]) {
    if p.json {
        p.json(&serde_json::json!({ "removed": removed }));
    } else {
        p.line(format!(
            "removed {} throwaway cop{}",
            removed.len(),
            if removed.len() == 1 { "y" } else { "ies" }
        ));
    }
}

/// `ci`: the results, then the verdict.
pub(crate) fn ci(p: &Printer, out: &CopyOutcome) {
    results(p, &out.results);
    if p.json {
        p.json(&serde_json::json!({ "ok": out.ok(), "run": out }));
        return;
    }
    if let Some(e) = &out.error {
        eprintln!("{} {e}", p.red("error:"));
    }
    if let Some(c) = out.command_code {
        p.line(format!("command exited with {c}"));
    }
    let verdict = if out.ok() {
        p.green("ci passed:")
    } else {
        p.red("ci failed:")
    };
    p.line(format!("{verdict} `{}`", out.instance));
}

/// `verify`: every difference, then the verdict.
pub(crate) fn verify(p: &Printer, r: &VerifyReport) -> anyhow::Result<()> {
    if p.json {
        return json_sorted(p, r);
    }
    for d in &r.differences {
        p.line(format!("{} {}", p.red("differs:"), d.message));
    }
    if r.ok {
        p.line(format!(
            "{} `{}` runs {} ({} machine{}, per-machine hashes from {})",
            p.green("verified:"),
            r.instance,
            r.hash,
            r.machines.len(),
            plural(r.machines.len()),
            r.source
        ));
    } else {
        p.line(format!(
            "{} difference(s) from {}",
            r.differences.len(),
            r.hash
        ));
    }
    Ok(())
}
