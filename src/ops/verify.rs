//! `verify`: whether every machine of the running environment was built from what an
//! environment hash stands for. The hash names per-machine hashes (from the Envfile as it
//! is, from `Envfile.lock`, or from a release); the engines report what runs; the
//! comparison between the two is pure, so that it is tested without an engine.

use std::collections::BTreeMap;

use serde::Serialize;

use super::session::Session;
use crate::backend::{Observation, RunState};
use crate::envfile::hash::EnvHash;

/// One way the running environment differs from the hash asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Difference {
    pub machine: String,
    /// `missing`, `other-hash`, `not-running`, `extra`, `drifted` (with `--deep`).
    pub kind: &'static str,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub message: String,
}

/// The whole of `verify`.
#[derive(Debug, Serialize)]
pub(crate) struct VerifyReport {
    pub ok: bool,
    pub instance: String,
    /// The environment hash asked for.
    pub hash: String,
    /// Where its per-machine hashes came from: the Envfile, `Envfile.lock`, a release.
    pub source: String,
    /// Machine name -> the hash it should have been built from.
    pub machines: BTreeMap<String, String>,
    pub differences: Vec<Difference>,
    /// With `--deep`: machine -> what its drift compared (`contents` for VMs, `writes`
    /// for containers); empty otherwise.
    pub drift_checks: BTreeMap<String, &'static str>,
}

impl VerifyReport {
    /// The process exit code: 0 when nothing differs.
    pub(crate) fn code(&self) -> i32 {
        i32::from(!self.ok)
    }
}

/// Checks the running environment against `hash` (the Envfile's when none is given); with
/// `deep`, also that no machine drifted from its baseline, VM file contents compared.
pub(crate) async fn verify(
    o: &Session,
    hash: Option<&str>,
    deep: bool,
) -> anyhow::Result<VerifyReport> {
    let want = hash.unwrap_or(&o.env_hash.0).to_string();
    // Before any engine is asked: an unknown hash is the caller's mistake, whatever runs.
    let (source, machines) = expected_machines(o, &want)?;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let mut differences = differences(&machines, &observed);
    let mut drift_checks = BTreeMap::new();
    if deep {
        let ok: Vec<String> = machines
            .keys()
            .filter(|m| !differences.iter().any(|d| &d.machine == *m))
            .cloned()
            .collect();
        let pick = |m: &crate::envfile::Machine| ok.contains(&m.name);
        let rows = super::snapshot::check_drift_at(o, &backends, &observed, &pick, true).await;
        for r in &rows {
            drift_checks.insert(r.machine.clone(), r.check);
        }
        differences.extend(rows.iter().filter_map(drifted));
    }
    Ok(VerifyReport {
        drift_checks,
        ok: differences.is_empty(),
        instance: o.ctx.instance.clone(),
        hash: want,
        source,
        machines,
        differences,
    })
}

/// A machine that drifted from its baseline (or whose drift could not be told).
fn drifted(r: &super::snapshot::MachineDrift) -> Option<Difference> {
    let message = match (&r.drift, &r.error) {
        (Some(d), _) if d.is_empty() => return None,
        (Some(d), _) => format!(
            "machine `{}` differs from its baseline ({} compared): {} added, {} changed, {} deleted; `hdev drift {}` lists them",
            r.machine,
            r.check,
            d.added.len(),
            d.changed.len(),
            d.deleted.len(),
            r.machine
        ),
        (None, e) => format!(
            "machine `{}`: its drift cannot be told: {}",
            r.machine,
            e.as_deref().unwrap_or("")
        ),
    };
    Some(Difference {
        machine: r.machine.clone(),
        kind: "drifted",
        expected: None,
        found: None,
        message,
    })
}

/// Every difference between the per-machine hashes `expected` and what the engines
/// report: machines missing, built from another hash, not running, and machines that run
/// but are not expected. Expected machines first, by name; then the extra ones.
pub(crate) fn differences(
    expected: &BTreeMap<String, String>,
    observed: &Observation,
) -> Vec<Difference> {
    let mut diffs: Vec<Difference> = expected
        .iter()
        .filter_map(|(name, h)| expected_difference(name, h, observed))
        .collect();
    for (name, m) in &observed.machines {
        if !expected.contains_key(name) {
            diffs.push(Difference {
                machine: name.clone(),
                kind: "extra",
                expected: None,
                found: m.hash.clone(),
                message: format!("machine `{name}` runs but is not part of that environment"),
            });
        }
    }
    diffs
}

/// How one expected machine differs, if it does.
fn expected_difference(name: &str, h: &str, observed: &Observation) -> Option<Difference> {
    let d = |kind, found: Option<String>, message: String| Difference {
        machine: name.to_string(),
        kind,
        expected: Some(h.to_string()),
        found,
        message,
    };
    let short = |h: &str| EnvHash(h.to_string()).short().to_string();
    match observed.machines.get(name) {
        None => Some(d(
            "missing",
            None,
            format!("machine `{name}` is not created"),
        )),
        Some(m) if m.hash.as_deref() != Some(h) => {
            let found = m.hash.clone().unwrap_or_default();
            Some(d(
                "other-hash",
                m.hash.clone(),
                format!(
                    "machine `{name}` was built from {}, expected {}",
                    short(&found),
                    short(h)
                ),
            ))
        }
        Some(m) if m.state != RunState::Running => Some(d(
            "not-running",
            m.hash.clone(),
            format!("machine `{name}` is {}", m.state),
        )),
        Some(_) => None,
    }
}

/// The per-machine hashes an environment hash stands for, and where they came from: the
/// Envfile as it is, `Envfile.lock`, or a release whose tree has that hash.
pub(crate) fn expected_machines(
    o: &Session,
    want: &str,
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let to_map =
        |m: &BTreeMap<String, EnvHash>| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    if o.env_hash.matches(want) {
        return Ok(("the Envfile".into(), to_map(&o.hashes)));
    }
    if let Some(lock) = o.project.lockfile()? {
        if EnvHash(lock.hash.clone()).matches(want) {
            return Ok(("Envfile.lock".into(), lock.machines));
        }
    }
    let envfile = &o.project.env.file;
    if let Ok((repo, _)) = crate::release::repo_of(&o.project.env.dir) {
        for tag in crate::release::tags(&repo).unwrap_or_default() {
            if let Ok((t, report)) = crate::release::hash_at(envfile, &tag.name) {
                if report.hash.matches(want) {
                    return Ok((format!("release `{}`", t.name), to_map(&report.machines)));
                }
            }
        }
    }
    anyhow::bail!(
        "no Envfile, Envfile.lock or release has hash `{want}`, so hdev cannot tell what its machines should be\nhelp: `hdev hash` prints the Envfile's hash; `hdev releases` lists the releases' hashes"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObservedMachine;
    use crate::envfile::Backend;

    fn hash(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn machine(name: &str, h: Option<String>, state: RunState) -> (String, ObservedMachine) {
        let m = ObservedMachine {
            name: name.into(),
            backend: Backend::Docker,
            id: format!("id-{name}"),
            state,
            hash: h,
            addresses: BTreeMap::new(),
            ports: vec![],
            engine: None,
        };
        (name.to_string(), m)
    }

    fn expected(pairs: &[(&str, char)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, c)| (n.to_string(), hash(*c)))
            .collect()
    }

    #[test]
    fn nothing_differs_when_every_machine_runs_its_hash() {
        let observed = Observation {
            machines: [
                machine("db", Some(hash('a')), RunState::Running),
                machine("web", Some(hash('b')), RunState::Running),
            ]
            .into(),
            ..Observation::default()
        };
        assert!(differences(&expected(&[("db", 'a'), ("web", 'b')]), &observed).is_empty());
    }

    #[test]
    fn missing_other_hash_stopped_and_extra_are_each_reported() {
        let observed = Observation {
            machines: [
                machine("cache", Some(hash('c')), RunState::Running),
                machine("db", Some(hash('x')), RunState::Running),
                machine("web", Some(hash('b')), RunState::Stopped),
                machine("old", None, RunState::Stopped),
            ]
            .into(),
            ..Observation::default()
        };
        let want = expected(&[("cache", 'c'), ("db", 'a'), ("queue", 'q'), ("web", 'b')]);
        let diffs = differences(&want, &observed);
        let kinds: Vec<(&str, &str)> = diffs.iter().map(|d| (d.machine.as_str(), d.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("db", "other-hash"),
                ("queue", "missing"),
                ("web", "not-running"),
                ("old", "extra"),
            ]
        );
        assert_eq!(diffs[0].expected, Some(hash('a')));
        assert_eq!(diffs[0].found, Some(hash('x')));
        assert_eq!(
            diffs[0].message,
            format!(
                "machine `db` was built from {}, expected {}",
                EnvHash(hash('x')).short(),
                EnvHash(hash('a')).short()
            )
        );
        assert_eq!(diffs[1].message, "machine `queue` is not created");
        assert_eq!(diffs[1].found, None);
        assert_eq!(diffs[2].message, "machine `web` is stopped");
        assert_eq!(diffs[3].expected, None);
        assert_eq!(
            diffs[3].message,
            "machine `old` runs but is not part of that environment"
        );
    }

    #[test]
    fn a_machine_without_a_hash_label_is_built_from_another_hash() {
        let observed = Observation {
            machines: [machine("db", None, RunState::Running)].into(),
            ..Observation::default()
        };
        let diffs = differences(&expected(&[("db", 'a')]), &observed);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].kind, "other-hash");
        assert_eq!(diffs[0].found, None);
    }
}
