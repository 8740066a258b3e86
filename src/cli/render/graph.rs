//! `hdev graph`: the laid out picture as SVG, DOT or JSON, to standard output or a file;
//! its notes (what could not be read) also go to stderr.

use std::path::Path;

use anyhow::Context;

use crate::graph::{dot, svg};
use crate::ops::graph::GraphReport;
use crate::output::Printer;

/// What `hdev graph` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GraphFormat {
    Svg,
    Dot,
    Json,
}

pub(crate) fn write(
    p: &Printer,
    r: &GraphReport,
    format: GraphFormat,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let text = match format {
        GraphFormat::Svg => svg::render(&r.picture),
        GraphFormat::Dot => dot::render(&r.picture),
        GraphFormat::Json => serde_json::to_string_pretty(&r.picture)? + "\n",
    };
    for n in &r.picture.notes {
        p.note(n);
    }
    match output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
