//! `releases`, the plan `update` shows before it moves, and `release`'s verdict.

use super::json_sorted;
use crate::ops::release::{Move, ReleaseReport, ReleaseRow};
use crate::output::Printer;

/// `releases`: one line per tag (its commit, date and short hash).
pub(crate) fn list(p: &Printer, rows: &[ReleaseRow]) {
    if p.json {
        p.json(&rows);
        return;
    }
    if rows.is_empty() {
        p.note("no releases yet: `hdev release TAG` tests a fresh copy and tags it");
        return;
    }
    for r in rows {
        p.line(format!(
            "{:<16} {}  {}  {}",
            r.tag,
            &r.commit[..r.commit.len().min(10)],
            &r.date[..r.date.len().min(10)],
            hash(r)
        ));
    }
}

/// A release's short hash, whether it differs from the one its tag records, or why it has
/// none.
fn hash(r: &ReleaseRow) -> String {
    match (&r.hash, &r.error) {
        (Some(h), _) => {
            let short = h.strip_prefix("sha256:").unwrap_or(h);
            let mut s = short[..12.min(short.len())].to_string();
            if r.recorded_hash.as_deref().is_some_and(|rec| rec != h) {
                s.push_str(" (differs from the hash recorded in the tag)");
            }
            s
        }
        (None, Some(e)) => format!("no hash: {e}"),
        (None, None) => String::new(),
    }
}

/// Before `up --at` or `update` moves: the release, and the plan when there is one.
pub(crate) fn moving(p: &Printer, m: &Move) {
    let (o, tag) = (&m.opened, &m.tag.name);
    let Some(plan) = &m.plan else {
        if !p.json {
            p.note(format!("release `{tag}` ({})", o.env_hash));
        }
        return;
    };
    if p.json {
        p.line(
            serde_json::json!({"event": "update", "tag": tag, "hash": o.env_hash, "plan": plan})
                .to_string(),
        );
    } else {
        p.line(format!(
            "update `{}` to release `{tag}` ({})",
            o.ctx.instance, o.env_hash
        ));
        for l in crate::plan::render(plan) {
            p.line(l);
        }
    }
}

/// `release`: tagged, or refused and why.
pub(crate) fn release(p: &Printer, r: &ReleaseReport) -> anyhow::Result<()> {
    if p.json {
        return json_sorted(p, r);
    }
    let tag = &r.tag;
    if r.tagged {
        p.line(format!(
            "{} tagged `{tag}` on {}: {}",
            p.green("released:"),
            r.short,
            r.run.hash.as_deref().unwrap_or_default()
        ));
        return Ok(());
    }
    if let Some(e) = &r.run.error {
        eprintln!("{} {e}", p.red("error:"));
    }
    p.line(format!(
        "{} no tag `{tag}`: the checks did not all pass",
        p.red("refused:")
    ));
    Ok(())
}

/// `cite`: BibTeX, plain text, both (the default) or JSON; warnings to stderr.
pub(crate) fn citation(
    p: &Printer,
    c: &crate::release::cite::Citation,
    format: Option<crate::cli::releasecmds::CiteFormat>,
) {
    use crate::cli::releasecmds::CiteFormat as F;
    match format {
        Some(F::Json) => {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["bibtex"] = serde_json::json!(c.bibtex());
            v["text"] = serde_json::json!(c.text());
            v["rebuild"] = serde_json::json!(c.rebuild());
            p.json(&v);
            return;
        }
        Some(F::Bibtex) => p.line(c.bibtex().trim_end()),
        Some(F::Text) => p.line(c.text().trim_end()),
        None => {
            p.line(c.bibtex());
            p.line(c.text().trim_end());
        }
    }
    for w in &c.warnings {
        eprintln!("{} {w}", p.red("warning:"));
    }
}

/// `export`: the archive, its hash and what it carries.
pub(crate) fn exported(p: &Printer, r: &crate::ops::export::ExportReport) {
    if p.json {
        p.json(r);
        return;
    }
    p.line(format!(
        "wrote `{}` ({}): environment {}, {} machine{}, {} file{}",
        r.file.display(),
        super::human(r.bytes),
        r.hash,
        r.machines.len(),
        super::plural(r.machines.len()),
        r.files,
        super::plural(r.files)
    ));
    for b in &r.boxes {
        let how = if b.included { "carried" } else { "named only" };
        p.line(format!(
            "  box `{}` {} ({how})",
            b.names.join("`, `"),
            b.digest
        ));
    }
}

/// `up --from`: what was unpacked, before the machines come up.
pub(crate) fn unpacked(p: &Printer, u: &crate::ops::export::Unpacked) {
    let how = if u.resumed {
        "found unpacked"
    } else {
        "unpacked"
    };
    p.note(format!(
        "environment {} {how} in `{}`; boxes: {} added from the archive, {} already stored",
        u.hash,
        u.envfile
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .display(),
        u.added.len(),
        u.present.len()
    ));
}
