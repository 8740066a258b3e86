//! Rendering: each report of `crate::ops` (or of the box store) as the lines a person
//! reads, or as the JSON document a program reads. Nothing here decides or changes
//! anything; the command functions call one operation and hand its report here.

pub(super) mod boxes;
pub(super) mod cache;
pub(super) mod checks;
pub(super) mod envfile;
pub(super) mod graph;
pub(super) mod machines;
pub(super) mod releases;
pub(super) mod snapshots;

use serde::Serialize;

use crate::output::Printer;

/// Prints `v` as JSON with the keys of every object sorted, as `serde_json::json!` wrote
/// them before the reports were typed: the documents stay byte-for-byte the same.
pub(super) fn json_sorted<T: Serialize>(p: &Printer, v: &T) -> anyhow::Result<()> {
    p.json(&serde_json::to_value(v)?);
    Ok(())
}

/// `""` for one, `"s"` for any other count.
pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Bytes in binary units, one decimal.
pub(super) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
