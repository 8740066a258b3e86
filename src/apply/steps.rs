//! The longer steps of a machine: provisioning (recorded when it finishes) and waiting for
//! the health check; both are abandoned on Ctrl-C.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{cancelled, MachineError, Shared};
use crate::backend::{AnyBackend, Engine};
use crate::envfile::Machine;
use crate::provision;
use crate::state::records::ProvisionOutput;

/// Runs a machine's provisioning and records it; abandoned on Ctrl-C.
pub(super) async fn provision_one(
    sh: &Shared<'_>,
    backend: &AnyBackend,
    m: &Machine,
    id: &str,
    hash: &str,
) -> Result<(), MachineError> {
    let name = &m.name;
    let p = sh.progress;
    let n = m.provision.len();
    let on_step = |i: usize, d: &str| p.status(name, &format!("provisioning {i}/{n}: {d}"));
    // Kept for the dashboard (`.hdev/provision/NAME.json`), whether it succeeds or not.
    let lines = Mutex::new(Vec::<String>::new());
    let sink = |line: &str| {
        p.output(name, line);
        if let Ok(mut v) = lines.lock() {
            v.push(line.to_string());
        }
    };
    if n == 0 {
        p.status(name, "nothing to provision");
    }
    let ran = tokio::select! {
        r = provision::run(sh.env, backend, id, m, &on_step, &sink) => r,
        _ = cancelled(sh.cancel.clone()) => {
            return Err(MachineError::Interrupted { machine: name.clone() });
        }
    };
    let lines = lines.into_inner().unwrap_or_else(|p| p.into_inner());
    let out = ProvisionOutput::new(ran.is_ok(), lines);
    sh.rec.dir().record_provision(name, &out);
    ran?;
    super::cached::mark_provisioned(sh, m, id, hash, true).map_err(|source| MachineError::State {
        machine: name.clone(),
        source,
    })
}

pub(super) async fn wait_healthy(
    sh: &Shared<'_>,
    backend: &AnyBackend,
    m: &Machine,
    id: &str,
) -> Result<(), MachineError> {
    let Some(hc) = &m.healthcheck else {
        return Ok(());
    };
    let cmd = vec!["sh".to_string(), "-c".to_string(), hc.command.clone()];
    let tries = hc.retries.max(1);
    let mut last = (0i64, Vec::new());
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    for attempt in 1..=tries {
        // The first attempt is said at once; the wait for the others is a tick (live on a
        // terminal, otherwise a line now and then).
        match attempt {
            1 => sh
                .progress
                .status(&m.name, &format!("health check 1/{tries}: {}", hc.command)),
            _ => sh.progress.tick(
                &m.name,
                &format!(
                    "waiting for health (attempt {attempt}/{tries}, {}s)",
                    t0.elapsed().as_secs()
                ),
            ),
        }
        let o = out.clone();
        let sink = move |l: &str| {
            if let Ok(mut v) = o.lock() {
                v.push(l.to_string());
            }
        };
        let run = tokio::time::timeout(
            Duration::from_millis(hc.timeout_ms),
            backend.exec(id, &cmd, &sink),
        );
        let r = tokio::select! {
            r = run => r,
            _ = cancelled(sh.cancel.clone()) => {
                return Err(MachineError::Interrupted { machine: m.name.clone() });
            }
        };
        match r {
            Ok(Ok(o)) if o.exit_code == 0 => return Ok(()),
            Ok(Ok(o)) => last = (o.exit_code, o.tail),
            Ok(Err(e)) => {
                return Err(MachineError::Backend {
                    machine: m.name.clone(),
                    source: e,
                })
            }
            Err(_) => last = (-1, vec![format!("timed out after {} ms", hc.timeout_ms)]),
        }
        if let Ok(mut v) = out.lock() {
            v.clear();
        }
        if attempt < tries {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(hc.interval_ms)) => {}
                _ = cancelled(sh.cancel.clone()) => {
                    return Err(MachineError::Interrupted { machine: m.name.clone() });
                }
            }
        }
    }
    Err(MachineError::Unhealthy {
        machine: m.name.clone(),
        command: hc.command.clone(),
        tries,
        code: last.0,
        output: last.1,
    })
}

/// Runs `work` (a step that waits for a VM to answer) and meanwhile shows, every second,
/// how long it has waited and the last line of the machine's console: live on a
/// terminal, otherwise throttled by [`crate::progress::Progress::tick`].
pub(super) async fn showing_boot<T>(
    sh: &Shared<'_>,
    name: &str,
    boot_log: Option<PathBuf>,
    work: impl Future<Output = T>,
) -> T {
    let Some(log) = boot_log else {
        return work.await;
    };
    let t0 = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = every.tick() => {
                let last = crate::progress::last_line(&log);
                sh.progress.tick(name, &crate::progress::waiting("booting", t0.elapsed(), last));
            }
        }
    }
}
