//! What the dashboard (`hdev ui`) shows, read in one go: `status` (the engines and the
//! state), the picture `graph` draws of it, and per machine what its details panel lists
//! (hashes, baseline and snapshots, drift, the last provisioning output), with the last
//! run of the checks. Drift is checked now for containers (a `docker diff` each, cheap
//! enough to repeat every few seconds) and recorded like `status --drift`; for VMs (a
//! round trip into the guest) it is the last recorded check.

use std::collections::BTreeMap;

use serde::Serialize;

use super::graph::{describe, with_states};
use super::session::{load_state, Session};
use super::snapshot::{check_drift_of, states};
use super::status::{recorded_drift, report, StatusReport};
use super::test::{last_run, TestRecord};
use crate::envfile::Backend;
use crate::graph::{self, Picture};
use crate::snapshot::Drift;
use crate::state::records::ProvisionOutput;

/// One read of the whole environment for the dashboard.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub status: StatusReport,
    /// The topology with the states of `status`.
    pub picture: Picture,
    /// Per machine of the Envfile, what its details panel shows.
    pub details: BTreeMap<String, Details>,
    /// Snapshot names (the baseline included) with the machines that have each.
    pub snapshots: BTreeMap<String, Vec<String>>,
    /// The last run of the checks (`hdev test` or the dashboard's), if recorded.
    pub tests: Option<TestRecord>,
    /// The checks of the Envfile, by name.
    pub checks: Vec<String>,
}

/// A machine's details beside its `status` row.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Details {
    /// The per-machine hash the Envfile gives it now.
    pub hash: Option<String>,
    /// When its baseline was captured (seconds since the epoch).
    pub baseline_at: Option<i64>,
    /// The files changed since the baseline, when checked now (containers).
    pub drift: Option<Drift>,
    /// Why drift could not be checked now.
    pub drift_error: Option<String>,
    /// Its last provisioning output, if recorded.
    pub provision: Option<ProvisionOutput>,
}

/// Reads the engines and the records once (see the module's comment).
pub(crate) async fn overview(o: &Session) -> anyhow::Result<Overview> {
    let env = &o.project.env;
    let state = load_state(&o.project)?;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let is_container = |m: &crate::envfile::Machine| m.backend == Backend::Docker;
    let checked = check_drift_of(o, &backends, &observed, &is_container).await;
    let mut drifted = recorded_drift(o, &observed);
    let mut details: BTreeMap<String, Details> = env
        .machines
        .keys()
        .map(|n| {
            let d = Details {
                hash: o.hashes.get(n).map(|h| h.0.clone()),
                provision: o.project.state.provision_output(n),
                ..Details::default()
            };
            (n.clone(), d)
        })
        .collect();
    for c in checked {
        if let Some(d) = &c.drift {
            drifted.insert(c.machine.clone(), (!d.is_empty(), 0));
        }
        if let Some(x) = details.get_mut(&c.machine) {
            x.drift = c.drift;
            x.drift_error = c.error;
        }
    }
    let mut snapshots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, parts) in states(o, &backends, &observed).await? {
        for part in &parts {
            if name == crate::snapshot::BASELINE {
                if let Some(x) = details.get_mut(&part.machine) {
                    x.baseline_at = Some(part.created);
                }
            }
        }
        snapshots.insert(name, parts.into_iter().map(|p| p.machine).collect());
    }
    let status = report(o, &state, &backends, observed, &drifted);
    Ok(Overview {
        picture: picture_of(o, Some(&status)),
        status,
        details,
        snapshots,
        tests: last_run(o),
        checks: env.tests.iter().map(|t| t.name.clone()).collect(),
    })
}

/// The picture with the states of `status`, or with every state unknown and `why` as a
/// note when the engines could not be read.
pub(crate) fn picture_of(o: &Session, status: Option<&StatusReport>) -> Picture {
    let mut d = describe(&o.project.env);
    match status {
        Some(r) => with_states(&mut d, r),
        None => {
            for m in &mut d.machines {
                m.state = graph::State::Unknown;
            }
        }
    }
    graph::layout(&d)
}
