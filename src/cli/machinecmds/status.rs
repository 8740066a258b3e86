//! `hdev status` and `hdev graph`: render `crate::ops::status` and `crate::ops::graph`.

use std::path::Path;

use crate::cli::render::graph::GraphFormat;
use crate::cli::{render, CmdResult};
use crate::ops::session::{open, runtime};
use crate::ops::status::status as read_status;
use crate::output::Printer;

pub(crate) fn status(p: &Printer, file: Option<&Path>, drift: bool) -> CmdResult {
    let o = open(file)?;
    let report = runtime()?.block_on(read_status(&o, drift))?;
    render::machines::status(p, &report);
    Ok(0)
}

/// `hdev graph`: renders `crate::ops::graph`, to standard output or `output`.
pub(crate) fn graph(
    p: &Printer,
    file: Option<&Path>,
    format: Option<GraphFormat>,
    output: Option<&Path>,
    offline: bool,
) -> CmdResult {
    let o = open(file)?;
    let report = runtime()?.block_on(crate::ops::graph::graph(&o, offline));
    let format = format.unwrap_or(match p.json {
        true => GraphFormat::Json,
        false => GraphFormat::Svg,
    });
    render::graph::write(p, &report, format, output)?;
    Ok(0)
}
