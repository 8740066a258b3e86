//! Running a throwaway copy from start to end, for `hdev ci` and `hdev release`: set it
//! up, bring it up, run the checks (and a host command), and tear it down on every path:
//! success, failure, error, Ctrl-C (SIGINT) and SIGTERM. A second signal during teardown
//! does not stop the teardown; only SIGKILL can, and the next `hdev ci` then removes the
//! copy it left (its run lock is free).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::session::{with_images, Session};
use super::up::converge;
use crate::acceptance::run::{run_checks, RunOptions};
use crate::acceptance::{Summary, TestResult};
use crate::backend::Backends;
use crate::output::Printer;
use crate::throwaway::{self, Copy};

/// How a copy is run.
pub(crate) struct CopyOptions<'a> {
    /// Home folder of the copies (the developer's Envfile folder).
    pub home: &'a Path,
    /// Timeout of a check that sets none.
    pub timeout: Duration,
    /// Host command run against the copy after the checks.
    pub command: &'a [String],
    pub keep_on_failure: bool,
}

/// How a copy's run went.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CopyOutcome {
    pub instance: String,
    pub hash: Option<String>,
    /// Whether every machine came up.
    pub up_ok: bool,
    pub results: Vec<TestResult>,
    pub summary: Option<Summary>,
    /// Exit code of the host command, when one ran.
    pub command_code: Option<i32>,
    /// The signal that stopped the run (2 or 15).
    pub signal: Option<i32>,
    /// Why the run stopped early, when it did.
    pub error: Option<String>,
    /// Kept for debugging instead of torn down.
    pub kept: bool,
    /// Teardown failed: what is left, and why.
    pub teardown_error: Option<String>,
}

impl CopyOutcome {
    /// The verdict: everything up, every check passed, the command (if any) exited 0.
    pub(crate) fn ok(&self) -> bool {
        self.up_ok
            && self.error.is_none()
            && self.signal.is_none()
            && self.summary.is_some_and(|s| s.ok())
            && self.command_code.is_none_or(|c| c == 0)
    }

    /// The process exit code for the verdict.
    pub(crate) fn code(&self) -> i32 {
        match self.signal {
            Some(s) => 128 + s,
            None if self.ok() => 0,
            None => 1,
        }
    }
}

/// A watch that turns to the signal number on the first SIGINT or SIGTERM; later signals
/// only say that teardown is under way.
pub(crate) fn signals(p: &Printer) -> anyhow::Result<watch::Receiver<i32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let (tx, rx) = watch::channel(0);
    let p = *p;
    tokio::spawn(async move {
        loop {
            let n = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            };
            if *tx.borrow() == 0 {
                p.note("interrupted: stopping, then tearing the throwaway copy down");
                tx.send_replace(n);
            } else {
                p.note("still tearing the throwaway copy down; it is removed before hdev exits");
            }
        }
    });
    Ok(rx)
}

fn as_cancel(sig: &watch::Receiver<i32>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*sig.borrow() != 0);
    let mut sig = sig.clone();
    tokio::spawn(async move {
        while sig.changed().await.is_ok() {
            if *sig.borrow() != 0 {
                tx.send_replace(true);
                return;
            }
        }
    });
    rx
}

/// Removes copies of `home` that no process runs and that were not kept on purpose.
pub(crate) async fn sweep(p: &Printer, home: &Path, include_kept: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for (copy, lock) in throwaway::idle(home, include_kept) {
        let inst = copy.record.instance.clone();
        match teardown(&copy).await {
            Ok(()) => {
                drop(lock);
                copy.remove_dir();
                p.note(format!(
                    "removed throwaway copy `{inst}` left by an earlier run"
                ));
                removed.push(inst);
            }
            Err(e) => p.note(format!("cannot remove throwaway copy `{inst}`: {e:#}")),
        }
    }
    removed
}

/// Removes everything the copy created in the engines.
pub(crate) async fn teardown(copy: &Copy) -> anyhow::Result<()> {
    let project = copy.open().ok();
    super::teardown::remove_instance(project.as_ref().map(|p| &p.env), &copy.record.instance)
        .await?;
    Ok(())
}

/// What becomes of a copy once its run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposal {
    /// Kept for debugging (`--keep-on-failure`, and it failed by itself).
    Keep,
    /// Torn down: the engines' objects, then its folder.
    TearDown,
}

/// The rule: a copy is always torn down (success, failure, error, SIGINT, SIGTERM),
/// except a failed one asked to be kept; a signal wins over keeping.
pub(crate) fn disposal(out: &CopyOutcome, keep_on_failure: bool) -> Disposal {
    if keep_on_failure && !out.ok() && out.signal.is_none() {
        Disposal::Keep
    } else {
        Disposal::TearDown
    }
}

/// Runs a copy of the Envfile at `envfile` (already created as `copy`) to its verdict,
/// and tears it down unless it is kept.
pub(crate) async fn run(
    p: &Printer,
    mut copy: Copy,
    sig: &watch::Receiver<i32>,
    opts: &CopyOptions<'_>,
) -> CopyOutcome {
    let mut out = CopyOutcome {
        instance: copy.record.instance.clone(),
        ..CopyOutcome::default()
    };
    if let Err(e) = bring_up_and_test(p, &mut copy, sig, opts, &mut out).await {
        out.error = Some(format!("{e:#}"));
    }
    if let (Some(e), true) = (&out.error, out.results.is_empty()) {
        // A report without test cases reads as green in most CI systems.
        out.results.push(TestResult {
            name: "environment comes up".into(),
            machine: "hdev".into(),
            passed: false,
            exit_code: -1,
            duration_ms: 0,
            failure: Some(e.clone()),
            output: String::new(),
        });
    }
    if *sig.borrow() != 0 {
        out.signal = Some(*sig.borrow());
    }
    if disposal(&out, opts.keep_on_failure) == Disposal::Keep {
        copy.record.kept = true;
        if copy.save().is_ok() {
            out.kept = true;
            let envfile = copy.record.envfile.display();
            p.note(format!(
                "kept throwaway copy `{}` for debugging: HDEV_INSTANCE={} hdev -f {envfile} status|exec|ssh|logs; remove it with `hdev ci --clean`",
                out.instance, out.instance
            ));
            return out;
        }
    }
    p.note(format!("tearing down throwaway copy `{}`", out.instance));
    match teardown(&copy).await {
        Ok(()) => copy.remove_dir(),
        Err(e) => {
            out.teardown_error = Some(format!("{e:#}"));
            p.note(format!(
                "teardown of `{}` failed: {e:#}; the next `hdev ci` (or `hdev ci --clean`) removes it",
                out.instance
            ));
        }
    }
    out
}

async fn bring_up_and_test(
    p: &Printer,
    copy: &mut Copy,
    sig: &watch::Receiver<i32>,
    opts: &CopyOptions<'_>,
    out: &mut CopyOutcome,
) -> anyhow::Result<()> {
    let mut project = copy.open()?;
    let backends = Backends::connect(&project.env, &project.ctx()).await?;
    copy.place_networks(&mut project, &backends).await?;
    for (name, s) in &copy.record.subnets {
        p.note(format!("network `{name}`: {s} in this copy"));
    }
    if project.env.machines.values().any(|m| !m.ports.is_empty()) {
        p.note("published ports get ephemeral host ports in a throwaway copy (see `status`)");
    }
    let (o, backends, images) = with_images(project, p).await?;
    out.hash = Some(o.env_hash.0.clone());
    let lock = o.project.state.lock()?;
    let code = converge(p, &o, &backends, &images, None, lock, None, as_cancel(sig)).await?;
    out.up_ok = code == 0;
    if !out.up_ok || *sig.borrow() != 0 {
        anyhow::ensure!(*sig.borrow() != 0, "the environment did not come up");
        return Ok(());
    }
    out.results = tests(p, &o, &backends, opts.timeout, sig).await?;
    let summary = Summary::of(&out.results);
    out.summary = Some(summary);
    if !opts.command.is_empty() && *sig.borrow() == 0 {
        out.command_code = Some(host_command(p, copy, opts, sig).await?);
    }
    Ok(())
}

async fn tests(
    p: &Printer,
    o: &Session,
    backends: &Backends,
    timeout: Duration,
    sig: &watch::Receiver<i32>,
) -> anyhow::Result<Vec<TestResult>> {
    let n = o.project.env.tests.len();
    p.note(format!(
        "running {n} check{}",
        if n == 1 { "" } else { "s" }
    ));
    let observed = backends.observe(&o.ctx).await?;
    let opts = RunOptions {
        timeout,
        parallel: o.project.env.settings.parallel as usize,
    };
    let mut sig = sig.clone();
    tokio::select! {
        r = run_checks(&o.project.env, backends, &observed, opts, &[]) => Ok(r),
        _ = sig.wait_for(|s| *s != 0) => anyhow::bail!("interrupted while the checks ran"),
    }
}

/// Runs the host command with `HDEV_INSTANCE` and `HDEV_ENVFILE` naming the copy, so that
/// `hdev exec` and friends inside it reach the copy.
async fn host_command(
    p: &Printer,
    copy: &Copy,
    opts: &CopyOptions<'_>,
    sig: &watch::Receiver<i32>,
) -> anyhow::Result<i32> {
    p.note(format!("running `{}`", opts.command.join(" ")));
    let mut child = tokio::process::Command::new(&opts.command[0])
        .args(&opts.command[1..])
        .current_dir(opts.home)
        .env("HDEV_INSTANCE", &copy.record.instance)
        .env("HDEV_ENVFILE", &copy.record.envfile)
        .env("HDEV_CI", "1")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run `{}`: {e}", opts.command[0]))?;
    let mut sig = sig.clone();
    tokio::select! {
        s = child.wait() => Ok(s?.code().unwrap_or(1)),
        _ = sig.wait_for(|s| *s != 0) => {
            let _ = child.kill().await;
            anyhow::bail!("interrupted while `{}` ran", opts.command[0])
        }
    }
}

/// The Envfile's folder.
pub(crate) fn home_of(envfile: &Path) -> PathBuf {
    let d = crate::envfile::folder_of(envfile);
    std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acceptance::Summary;

    fn passed() -> CopyOutcome {
        let results = vec![TestResult {
            name: "t".into(),
            machine: "m".into(),
            passed: true,
            exit_code: 0,
            duration_ms: 1,
            failure: None,
            output: String::new(),
        }];
        CopyOutcome {
            up_ok: true,
            summary: Some(Summary::of(&results)),
            results,
            ..CopyOutcome::default()
        }
    }

    #[test]
    fn a_copy_is_torn_down_on_success_error_and_signal_and_kept_only_when_failed_and_asked() {
        let ok = passed();
        assert_eq!((ok.ok(), ok.code()), (true, 0));
        assert_eq!(disposal(&ok, true), Disposal::TearDown, "a green copy goes");

        let errored = CopyOutcome {
            error: Some("the environment did not come up".into()),
            ..passed()
        };
        assert_eq!(errored.code(), 1);
        assert_eq!(disposal(&errored, false), Disposal::TearDown);
        assert_eq!(disposal(&errored, true), Disposal::Keep);

        for (sig, code) in [(2, 130), (15, 143)] {
            let stopped = CopyOutcome {
                signal: Some(sig),
                ..passed()
            };
            assert_eq!(stopped.code(), code, "killed by signal {sig}");
            assert!(!stopped.ok());
            assert_eq!(
                disposal(&stopped, true),
                Disposal::TearDown,
                "a signal tears down even a copy asked to be kept"
            );
        }

        let failing_command = CopyOutcome {
            command_code: Some(3),
            ..passed()
        };
        assert_eq!(failing_command.code(), 1);
        assert_eq!(disposal(&failing_command, true), Disposal::Keep);
    }
}
