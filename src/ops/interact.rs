//! Reaching into running machines: finding the one `exec` and `ssh` run in, and streaming
//! the main processes' output for `logs` (each line to a sink the front end gives).

use super::session::{check_machine, Session};
use crate::backend::{BackendError, Backends, Engine, LogLine, ObservedMachine, RunState};

/// Finds a running machine of the environment in the engine.
pub(crate) async fn running(
    backends: &Backends,
    o: &Session,
    name: &str,
) -> anyhow::Result<ObservedMachine> {
    check_machine(&o.project.env, name)?;
    if let Some(m) = o.project.env.machines.get(name) {
        backends.get(m)?;
    }
    let obs = backends.observe(&o.ctx).await?;
    let m =
        obs.machines.get(name).cloned().ok_or_else(|| {
            anyhow::anyhow!("machine `{name}` is not created; run `hdev up` first")
        })?;
    if m.state != RunState::Running {
        return Err(BackendError::NotRunning {
            machine: name.to_string(),
            state: m.state.to_string(),
        }
        .into());
    }
    Ok(m)
}

/// What `logs` reads: the machine named (or every created one), its last `tail` lines,
/// and new ones while `follow`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogsOptions<'a> {
    pub machine: Option<&'a str>,
    pub follow: bool,
    pub tail: Option<u32>,
}

/// Streams the logs of the machines into the sinks `sink_for` makes, one per machine
/// from its name and the width of the longest name; all at once, until every stream ends.
pub(crate) async fn logs<F, S>(
    o: &Session,
    opts: LogsOptions<'_>,
    sink_for: F,
) -> anyhow::Result<()>
where
    F: Fn(&str, usize) -> S,
    S: Fn(LogLine) + Send + Sync,
{
    let machine = opts.machine;
    if let Some(m) = machine {
        check_machine(&o.project.env, m)?;
    }
    let backends = o.connect().await?;
    let obs = backends.observe(&o.ctx).await?;
    let targets: Vec<&ObservedMachine> = obs
        .machines
        .values()
        .filter(|m| machine.is_none_or(|t| t == m.name))
        .collect();
    if targets.is_empty() {
        anyhow::bail!(
            "{} not created; run `hdev up` first",
            machine.map_or("no machine is".to_string(), |m| format!("machine `{m}` is"))
        );
    }
    let w = targets.iter().map(|m| m.name.len()).max().unwrap_or(0);
    let streams = targets.iter().map(|m| {
        let sink = sink_for(&m.name, w);
        let (id, b) = (m.id.clone(), backends.get_observed(m));
        async move { anyhow::Ok(b?.logs(&id, opts.follow, opts.tail, &sink).await?) }
    });
    for r in futures_util::future::join_all(streams).await {
        r?;
    }
    Ok(())
}
