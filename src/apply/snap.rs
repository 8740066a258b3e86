//! The snapshot steps of a plan: the baseline after provisioning, `reset`, and saving or
//! restoring a named snapshot. They are not abandoned on Ctrl-C: a container half
//! recreated would be worse than a step that takes a second longer.

use super::{MachineError, Shared};
use crate::backend::AnyBackend;
use crate::envfile::Machine;
use crate::plan::Step;
use crate::snapshot::{self, Target, BASELINE};
use crate::state::Phase;

/// Runs one snapshot step; returns the machine's id afterwards (a container is recreated).
pub(super) async fn snapshot_step(
    sh: &Shared<'_>,
    backend: &AnyBackend,
    m: &Machine,
    id: &str,
    hash: &str,
    step: Step,
) -> Result<String, MachineError> {
    let name = &m.name;
    let t = Target {
        env: sh.env,
        ctx: sh.ctx,
        machine: m,
        id,
        hash,
    };
    let snap = sh.snapshot.unwrap_or(BASELINE);
    let (new_id, baseline) = match step {
        Step::Baseline => {
            sh.progress.status(name, "taking its baseline");
            let (id, at) = snapshot::capture(backend, &t, BASELINE).await?;
            (id, Some(at))
        }
        Step::Reset => {
            sh.progress.status(name, "resetting to its baseline");
            (snapshot::restore(backend, &t, BASELINE).await?, None)
        }
        Step::Save => {
            sh.progress
                .status(name, &format!("saving snapshot `{snap}`"));
            (snapshot::capture(backend, &t, snap).await?.0, None)
        }
        _ => {
            sh.progress
                .status(name, &format!("restoring snapshot `{snap}`"));
            (snapshot::restore(backend, &t, snap).await?, None)
        }
    };
    let rid = new_id.clone();
    sh.rec
        .update(name, |r| {
            r.map(|mut r| {
                r.id = Some(rid);
                if let Some(b) = baseline {
                    r.phase = Phase::Ready;
                    r.baseline = Some(b);
                }
                r
            })
        })
        .map_err(|source| MachineError::State {
            machine: name.clone(),
            source,
        })?;
    Ok(new_id)
}
