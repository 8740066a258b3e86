//! `cache list` and `cache prune` as text or JSON.

use super::human;
use crate::ops::cache::{CacheList, Listed, Pruned};
use crate::output::Printer;

/// An age in the largest whole unit (`3m`, `2h`, `5d`).
fn age(then: i64) -> String {
    let s = (crate::cache::now() - then).max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn short(hash: &str) -> &str {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    &hex[..hex.len().min(12)]
}

fn row(e: &Listed) -> String {
    format!(
        "{:<14} {:<24} {:>9} {:>6} {:>9}",
        short(&e.hash),
        format!("{}/{}", e.env, e.machine),
        human(e.size),
        age(e.created),
        age(e.last_used)
    )
}

/// `cache list`: a table, least recently used first, and the total against the bound.
pub(crate) fn list(p: &Printer, l: &CacheList) {
    if p.json {
        p.json(l);
        return;
    }
    if l.entries.is_empty() {
        p.note(
            "the provisioned-state cache is empty; `hdev up` fills it as it provisions containers and VMs",
        );
    } else {
        p.line(format!(
            "{:<14} {:<24} {:>9} {:>6} {:>9}",
            "HASH", "ENV/MACHINE", "SIZE", "AGE", "LAST USED"
        ));
        for e in &l.entries {
            p.line(row(e));
        }
    }
    p.note(format!(
        "{} of at most {}{}",
        human(l.total),
        human(l.max_bytes),
        if l.enabled {
            ""
        } else {
            " (off: HDEV_NO_CACHE)"
        }
    ));
}

/// `cache prune`: what went, and what is left.
pub(crate) fn pruned(p: &Printer, r: &Pruned) {
    if p.json {
        p.json(r);
        return;
    }
    for e in &r.removed {
        p.line(format!("removed {}", row(e)));
    }
    for f in &r.failed {
        p.error(format!("not removed: {f}"));
    }
    p.note(format!(
        "{} entr{} removed; {} left",
        r.removed.len(),
        if r.removed.len() == 1 { "y" } else { "ies" },
        human(r.left_bytes)
    ));
}
