//! `hdev test`, `hdev ci` and `hdev verify`: acceptance checks against the running
//! environment, the same checks on a throwaway copy, and checking which hash a running
//! environment was built from.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::CmdResult;
use crate::acceptance::run::{run_checks, RunOptions};
use crate::acceptance::Summary;
use crate::backend::{Backends, RunState};
use crate::ops::copy::{self as copyrun, CopyOptions};
use crate::ops::session::{open, runtime, Opened};
use crate::output::Printer;
use crate::project::{find_envfile, Placement, Project};
use crate::throwaway::{self, Copy};

/// `hdev test [NAME...]`: runs the `[[test]]` checks against the running environment.
pub(super) fn test(
    p: &Printer,
    file: Option<&Path>,
    junit: Option<&Path>,
    timeout: u64,
    only: &[String],
) -> CmdResult {
    let o = open(file)?;
    let env = &o.project.env;
    for name in only {
        if !env.tests.iter().any(|t| &t.name == name) {
            let names: Vec<&str> = env.tests.iter().map(|t| t.name.as_str()).collect();
            anyhow::bail!(
                "no test `{name}` in the Envfile\nhelp: tests are: {}",
                names.join(", ")
            );
        }
    }
    if env.tests.is_empty() {
        p.note("no `[[test]]` checks in the Envfile");
    }
    let results = runtime()?.block_on(async {
        let backends = Backends::connect(env).await?;
        let observed = backends.observe(&o.ctx).await?;
        let opts = RunOptions {
            timeout: Duration::from_secs(timeout),
            parallel: env.settings.parallel as usize,
        };
        anyhow::Ok(run_checks(env, &backends, &observed, opts, only).await)
    })?;
    copyrun::report(p, &env.settings.name, &results, junit)?;
    let summary = Summary::of(&results);
    if p.json {
        p.json(&serde_json::json!({"ok": summary.ok(), "summary": summary, "results": results}));
    }
    Ok(if summary.ok() { 0 } else { 1 })
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
    let envfile = find_envfile(file)?;
    // Refuse a broken Envfile before anything is created.
    let project = Project::open_placed(&envfile, Placement::default())?;
    let home = copyrun::home_of(&envfile);
    let inner = Printer { json: false, ..*p };
    runtime()?.block_on(async {
        if a.clean {
            let removed = copyrun::sweep(&inner, &home, true).await;
            if p.json {
                p.json(&serde_json::json!({ "removed": removed }));
            } else {
                p.line(format!(
                    "removed {} throwaway cop{}",
                    removed.len(),
                    if removed.len() == 1 { "y" } else { "ies" }
                ));
            }
            return Ok(0);
        }
        let sig = copyrun::signals(p)?;
        copyrun::sweep(&inner, &home, false).await;
        let instance = throwaway::new_instance(&project.env.settings.name);
        let (copy, _run_lock) = Copy::create(&home, &instance, &envfile, "working tree")?;
        p.note(format!("throwaway copy `{instance}`"));
        let opts = CopyOptions {
            home: &home,
            timeout: Duration::from_secs(a.timeout),
            command: a.command,
            keep_on_failure: a.keep_on_failure,
        };
        let out = copyrun::run(&inner, copy, &sig, &opts).await;
        copyrun::report(p, &project.env.settings.name, &out.results, a.junit)?;
        if p.json {
            p.json(&serde_json::json!({ "ok": out.ok(), "run": out }));
        } else {
            if let Some(e) = &out.error {
                eprintln!("{} {e}", p.red("error:"));
            }
            if let Some(c) = out.command_code {
                p.line(format!("command exited with {c}"));
            }
            p.line(format!(
                "{} `{instance}`",
                if out.ok() {
                    p.green("ci passed:")
                } else {
                    p.red("ci failed:")
                }
            ));
        }
        anyhow::Ok(out.code())
    })
}

/// One way the running environment differs from the hash asked for.
#[derive(Debug, Serialize)]
struct Difference {
    machine: String,
    /// `missing`, `other-hash`, `not-running`, `extra`.
    kind: &'static str,
    expected: Option<String>,
    found: Option<String>,
    message: String,
}

/// `hdev verify [HASH]`: whether every machine runs what the environment hash stands for.
pub(super) fn verify(p: &Printer, file: Option<&Path>, hash: Option<&str>) -> CmdResult {
    let o = open(file)?;
    let want = hash.unwrap_or(&o.env_hash.0).to_string();
    let (source, machines) = expected_machines(&o, &want)?;
    let observed = runtime()?.block_on(async {
        let backends = Backends::connect(&o.project.env).await?;
        anyhow::Ok(backends.observe(&o.ctx).await?)
    })?;
    let short = |h: &str| {
        crate::envfile::hash::EnvHash(h.to_string())
            .short()
            .to_string()
    };
    let mut diffs = Vec::new();
    for (name, h) in &machines {
        let d = |kind, found: Option<String>, message: String| Difference {
            machine: name.clone(),
            kind,
            expected: Some(h.clone()),
            found,
            message,
        };
        match observed.machines.get(name) {
            None => diffs.push(d(
                "missing",
                None,
                format!("machine `{name}` is not created"),
            )),
            Some(m) if m.hash.as_deref() != Some(h.as_str()) => {
                let found = m.hash.clone().unwrap_or_default();
                diffs.push(d(
                    "other-hash",
                    m.hash.clone(),
                    format!(
                        "machine `{name}` was built from {}, expected {}",
                        short(&found),
                        short(h)
                    ),
                ))
            }
            Some(m) if m.state != RunState::Running => diffs.push(d(
                "not-running",
                m.hash.clone(),
                format!("machine `{name}` is {}", m.state),
            )),
            Some(_) => {}
        }
    }
    for (name, m) in &observed.machines {
        if !machines.contains_key(name) {
            diffs.push(Difference {
                machine: name.clone(),
                kind: "extra",
                expected: None,
                found: m.hash.clone(),
                message: format!("machine `{name}` runs but is not part of that environment"),
            });
        }
    }
    let ok = diffs.is_empty();
    if p.json {
        p.json(&serde_json::json!({
            "ok": ok, "instance": o.ctx.instance, "hash": want, "source": source,
            "machines": machines, "differences": diffs,
        }));
    } else {
        for d in &diffs {
            p.line(format!("{} {}", p.red("differs:"), d.message));
        }
        if ok {
            p.line(format!(
                "{} `{}` runs {} ({} machine{}, per-machine hashes from {source})",
                p.green("verified:"),
                o.ctx.instance,
                want,
                machines.len(),
                if machines.len() == 1 { "" } else { "s" }
            ));
        } else {
            p.line(format!("{} difference(s) from {want}", diffs.len()));
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// The per-machine hashes an environment hash stands for: from the Envfile as it is, from
/// `Envfile.lock`, or from a release whose tree has that hash.
fn expected_machines(
    o: &Opened,
    want: &str,
) -> anyhow::Result<(String, std::collections::BTreeMap<String, String>)> {
    let to_map = |m: &std::collections::BTreeMap<String, crate::envfile::hash::EnvHash>| {
        m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    };
    if o.env_hash.matches(want) {
        return Ok(("the Envfile".into(), to_map(&o.hashes)));
    }
    if let Some(lock) = o.project.lockfile()? {
        if crate::envfile::hash::EnvHash(lock.hash.clone()).matches(want) {
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
