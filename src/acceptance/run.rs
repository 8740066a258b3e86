//! Running the `[[test]]` checks against a running environment: every check through its
//! machine's backend (`AnyBackend::exec`, containers and VMs alike), in parallel, each
//! under its own timeout. A check whose machine is missing or stopped fails with that
//! reason instead of stopping the run, so a report always covers every check.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{errored, judge, TestResult};
use crate::backend::{Backends, Engine, Observation, RunState};
use crate::envfile::{Env, TestCheck};

/// How much output of one check is kept for judging.
const MAX_OUTPUT: usize = 1 << 20;
/// How many trailing lines of output a result reports.
const REPORT_LINES: usize = 100;

/// How checks are run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOptions {
    /// Timeout of a check that sets none in the Envfile.
    pub timeout: Duration,
    /// Checks at once.
    pub parallel: usize,
}

/// Runs the checks (all when `only` is empty, else those named) and returns their results
/// in Envfile order.
pub(crate) async fn run_checks(
    env: &Env,
    backends: &Backends,
    observed: &Observation,
    opts: RunOptions,
    only: &[String],
) -> Vec<TestResult> {
    let sem = Semaphore::new(opts.parallel.max(1));
    let checks = env
        .tests
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name));
    let runs = checks.map(|c| run_one(c, backends, observed, opts, &sem));
    futures_util::future::join_all(runs).await
}

async fn run_one(
    check: &TestCheck,
    backends: &Backends,
    observed: &Observation,
    opts: RunOptions,
    sem: &Semaphore,
) -> TestResult {
    let Some(m) = observed.machines.get(&check.machine) else {
        return errored(check, format!("machine `{}` is not created", check.machine));
    };
    if m.state != RunState::Running {
        return errored(
            check,
            format!(
                "machine `{}` is not running (it is {})",
                check.machine, m.state
            ),
        );
    }
    let backend = match backends.get_observed(m) {
        Ok(b) => b,
        Err(e) => return errored(check, e.to_string()),
    };
    let Ok(_permit) = sem.acquire().await else {
        return errored(check, "the run was stopped".into());
    };
    let limit = check
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(opts.timeout);
    let output = Mutex::new(String::new());
    let sink = |line: &str| {
        if let Ok(mut o) = output.lock() {
            if o.len() < MAX_OUTPUT {
                o.push_str(line);
                o.push('\n');
            }
        }
    };
    let cmd = watched(&check.run, limit);
    let t0 = Instant::now();
    // The machine kills the check at `limit`; this bound only covers a machine that stops
    // answering.
    let r = tokio::time::timeout(limit + OUTER_GRACE, backend.exec(&m.id, &cmd, &sink)).await;
    let ms = t0.elapsed().as_millis() as u64;
    let out = output.lock().map(|o| o.clone()).unwrap_or_default();
    let timed_out = || {
        let mut r = errored(check, format!("timed out after {}", human(limit)));
        r.output = out.clone();
        r
    };
    let mut result = match r {
        Ok(Ok(outcome)) if outcome.exit_code == KILLED && ms >= limit.as_millis() as u64 => {
            timed_out()
        }
        Ok(Ok(outcome)) => judge(check, outcome.exit_code, &out, ms),
        Ok(Err(e)) => errored(check, e.to_string()),
        Err(_) => timed_out(),
    };
    result.duration_ms = ms;
    result.output = last_lines(&result.output, REPORT_LINES);
    result
}

/// Extra time the exec itself gets beyond a check's limit.
const OUTER_GRACE: Duration = Duration::from_secs(10);

/// Exit code of a check the watchdog killed (128 + SIGKILL).
const KILLED: i64 = 137;

/// The check's command under a watchdog inside the machine: the check runs in its own
/// session (so everything it started is one process group), and at `limit` the whole
/// group is killed. Without this, a check that timed out would keep running in the
/// machine. Needs only a POSIX shell; without `setsid` only the check's shell is killed.
pub(crate) fn watched(run: &str, limit: Duration) -> [String; 5] {
    let secs = limit.as_millis().div_ceil(1000).max(1);
    let wrapper = format!(
        r#"S=; command -v setsid >/dev/null 2>&1 && S=setsid
$S sh -c "$1" &
p=$!
$S sh -c "sleep {secs}; kill -KILL -$p 2>/dev/null || kill -KILL $p" </dev/null >/dev/null 2>&1 &
w=$!
wait "$p" 2>/dev/null; c=$?
kill -KILL -"$w" 2>/dev/null || kill "$w" 2>/dev/null
exit "$c"
"#
    );
    [
        "sh".to_string(),
        "-c".to_string(),
        wrapper,
        "hdev-check".to_string(),
        run.to_string(),
    ]
}

fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The last `n` lines of `s`.
pub(crate) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = lines[from..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
