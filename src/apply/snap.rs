//! The snapshot steps of a plan: the baseline after provisioning, `reset`, and saving or
//! restoring a named snapshot. They are not abandoned on Ctrl-C: a container half
//! recreated would be worse than a step that takes a second longer.

use super::{BaseKey, MachineError, Shared};
use crate::backend::{spec_for, AnyBackend, Engine, Resolved};
use crate::envfile::Machine;
use crate::plan::Step;
use crate::snapshot::BASELINE;
use crate::state::Phase;

/// Runs one snapshot step; returns the machine's id afterwards (a container is recreated).
/// `created` when the machine was created in this run: a container without provisioning
/// then has the image it was just created from as its baseline, and commits nothing.
pub(super) async fn snapshot_step(
    sh: &Shared<'_>,
    backend: &AnyBackend,
    m: &Machine,
    id: &str,
    hash: &str,
    (step, created): (Step, bool),
) -> Result<String, MachineError> {
    let name = &m.name;
    // The state holds the machine's base: an engine that recreates the machine puts it
    // on the state's image, not on this placeholder.
    let mut spec = spec_for(sh.env, m, hash, Resolved::Image(String::new()));
    // Later (`hdev baseline`), the baseline is what the container holds then: committed.
    spec.image_baseline &= created && step == Step::Baseline;
    if spec.image_baseline {
        let late = sh.late.and_then(|l| l.now(sh.env, m));
        let image = match late.as_ref().or(sh.images.get(&BaseKey::of(sh.env, m))) {
            Some(Ok(i)) => i.clone(),
            _ => Resolved::Image("the image it was created from".into()),
        };
        spec = spec.on(image);
    }
    let ctx = sh.ctx;
    let be = |e| MachineError::of(name, e);
    let snap = sh.snapshot.unwrap_or(BASELINE);
    let (new_id, baseline) = match step {
        Step::Baseline => {
            sh.progress.status(name, "taking its baseline");
            let c = backend
                .capture(ctx, &spec, id, BASELINE)
                .await
                .map_err(be)?;
            (c.id, Some(c.location))
        }
        Step::Reset => {
            sh.progress.status(name, "resetting to its baseline");
            let id = backend
                .restore(ctx, &spec, id, BASELINE)
                .await
                .map_err(be)?;
            (id, None)
        }
        Step::Save => {
            sh.progress
                .status(name, &format!("saving snapshot `{snap}`"));
            let c = backend.capture(ctx, &spec, id, snap).await.map_err(be)?;
            (c.id, None)
        }
        _ => {
            sh.progress
                .status(name, &format!("restoring snapshot `{snap}`"));
            let id = backend.restore(ctx, &spec, id, snap).await.map_err(be)?;
            (id, None)
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
