//! `test`: the `[[test]]` acceptance checks of the Envfile, run against the running
//! environment, and the JUnit report that `test`, `ci` (and any CI system) read.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::Session;
use crate::acceptance::run::{run_checks, RunOptions};
use crate::acceptance::{Summary, TestResult};
use crate::envfile::Env;

/// The whole of `test`.
#[derive(Debug, Serialize)]
pub(crate) struct TestReport {
    pub ok: bool,
    pub summary: Summary,
    pub results: Vec<TestResult>,
}

/// The last run of the checks as `.hdev/tests.json` keeps it, for the dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TestRecord {
    pub version: u32,
    /// When the run ended (seconds since the epoch).
    pub at: u64,
    /// The environment hash it ran against.
    pub env_hash: String,
    /// The checks it was limited to (empty: all).
    pub only: Vec<String>,
    pub ok: bool,
    pub summary: Summary,
    pub results: Vec<TestResult>,
}

/// The last recorded run of the checks, if any.
pub(crate) fn last_run(o: &Session) -> Option<TestRecord> {
    o.project.state.last_tests()
}

impl TestReport {
    /// The process exit code: 0 when every check passed.
    pub(crate) fn code(&self) -> i32 {
        i32::from(!self.ok)
    }
}

/// Fails, listing the checks there are, when `only` names one the Envfile does not have:
/// before any engine is asked, as a typo is no failed check.
pub(crate) fn check_names(env: &Env, only: &[String]) -> anyhow::Result<()> {
    for name in only {
        if !env.tests.iter().any(|t| &t.name == name) {
            let names: Vec<&str> = env.tests.iter().map(|t| t.name.as_str()).collect();
            anyhow::bail!(
                "no test `{name}` in the Envfile\nhelp: tests are: {}",
                names.join(", ")
            );
        }
    }
    Ok(())
}

/// Runs the checks (those named in `only`, or all) against what runs, with `timeout` for
/// a check that sets none; writes the JUnit report to `junit` when asked.
pub(crate) async fn run(
    o: &Session,
    timeout: Duration,
    only: &[String],
    junit: Option<&Path>,
) -> anyhow::Result<TestReport> {
    let env = &o.project.env;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let opts = RunOptions {
        timeout,
        parallel: env.settings.parallel as usize,
    };
    let results = run_checks(env, &backends, &observed, opts, only).await;
    write_junit(junit, &env.settings.name, &results)?;
    let summary = Summary::of(&results);
    o.project.state.record_tests(&TestRecord {
        version: crate::state::STATE_VERSION,
        at: crate::state::drift::now(),
        env_hash: o.env_hash.0.clone(),
        only: only.to_vec(),
        ok: summary.ok(),
        summary,
        results: results.clone(),
    });
    Ok(TestReport {
        ok: summary.ok(),
        summary,
        results,
    })
}

/// Writes the results as a JUnit suite named `suite` to `path`, when there is one.
pub(crate) fn write_junit(
    path: Option<&Path>,
    suite: &str,
    results: &[TestResult],
) -> anyhow::Result<()> {
    if let Some(path) = path {
        crate::state::write_atomic(path, crate::acceptance::junit(suite, results).as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write the JUnit report: {e}"))?;
    }
    Ok(())
}
