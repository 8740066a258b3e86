//! `hdev test`, `hdev ci` and `hdev verify`: acceptance checks against the running
//! environment, the same checks on a throwaway copy, and checking which hash a running
//! environment was built from. The work is in `crate::ops::{test, ci, verify}`.

use std::path::Path;
use std::time::Duration;

use super::{render, CmdResult};
use crate::ops::ci::{self, CiOptions};
use crate::ops::session::{open, runtime};
use crate::ops::{test as checks, verify as verifying};
use crate::output::Printer;

/// `hdev test [NAME...]`: runs the `[[test]]` checks against the running environment.
pub(super) fn test(
    p: &Printer,
    file: Option<&Path>,
    junit: Option<&Path>,
    timeout: u64,
    only: &[String],
) -> CmdResult {
    let o = open(file)?;
    checks::check_names(&o.project.env, only)?;
    if o.project.env.tests.is_empty() {
        p.note("no `[[test]]` checks in the Envfile");
    }
    let timeout = Duration::from_secs(timeout);
    let report = runtime()?.block_on(checks::run(&o, timeout, only, junit))?;
    render::checks::test(p, &report)?;
    Ok(report.code())
}

/// Options of `hdev ci`.
pub(super) struct CiArgs<'a> {
    pub junit: Option<&'a Path>,
    pub keep_on_failure: bool,
    pub clean: bool,
    pub timeout: u64,
    pub command: &'a [String],
}

/// `hdev ci`: a throwaway copy of this folder's environment, tested, always torn down.
pub(super) fn ci(p: &Printer, file: Option<&Path>, a: &CiArgs<'_>) -> CmdResult {
    let rt = runtime()?;
    if a.clean {
        let removed = rt.block_on(ci::clean(p, file))?;
        render::checks::ci_clean(p, &removed);
        return Ok(0);
    }
    let opts = CiOptions {
        junit: a.junit,
        keep_on_failure: a.keep_on_failure,
        timeout: a.timeout,
        command: a.command,
    };
    let out = rt.block_on(ci::run(p, file, &opts))?;
    render::checks::ci(p, &out);
    Ok(out.code())
}

/// `hdev verify [HASH]`: whether every machine runs what the environment hash stands for.
pub(super) fn verify(
    p: &Printer,
    file: Option<&Path>,
    hash: Option<&str>,
    deep: bool,
) -> CmdResult {
    let o = open(file)?;
    let report = runtime()?.block_on(verifying::verify(&o, hash, deep))?;
    render::checks::verify(p, &report)?;
    Ok(report.code())
}
