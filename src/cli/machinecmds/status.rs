//! `hdev status`: renders `crate::ops::status`.

use std::path::Path;

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
