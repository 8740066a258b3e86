//! Bringing an environment to its Envfile: planning against what the engines hold and
//! running the plan (the body of `up`, `up --at`, `update`, `ci` and `release`), and the
//! targeted plans of `provision`, `baseline`, `reset` and snapshots.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

use super::session::{ctrl_c, load_state, Session};
use crate::apply::{self, Recorder};
use crate::backend::Backends;
use crate::output::Printer;
use crate::plan::{self, Change, Plan};
use crate::progress::Progress;

/// What running a plan ended with: the process exit code.
pub(crate) type Code = anyhow::Result<i32>;

/// The plan of an opened environment against the engines, as `hdev plan` shows it and
/// `up` runs it: machines that the provisioned-state cache will serve say so.
pub(crate) async fn make_plan(
    o: &Session,
    backends: &Backends,
    state: &crate::state::State,
) -> anyhow::Result<Plan> {
    let env = &o.project.env;
    let observed = backends.observe(&o.ctx).await?;
    let mut plan = plan::plan(env, &o.hashes, &observed, state, &backends.available());
    let cache = crate::cache::Policy::current();
    apply::mark_in_plan(env, backends, &cache, &mut plan).await;
    Ok(plan)
}

/// Plans an opened environment against the engines and runs the plan: the body of `up`,
/// shared by `up --at`, `update`, `ci` and `release`. The caller holds the state lock.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn converge(
    p: &Printer,
    o: &Session,
    backends: &Backends,
    images: &apply::Images,
    late: Option<&apply::LateImages<'_>>,
    lock: crate::state::EnvLock,
    parallel: Option<usize>,
    cancel: watch::Receiver<bool>,
) -> Code {
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    // So that `gc` also looks on the libvirt hosts this environment uses.
    super::teardown::remember_uris(env);
    let mut plan = make_plan(o, backends, &state).await?;
    let mut waiting = Vec::new();
    if let Some(late) = late {
        // Machines on a box still being built: planned once it is (their hash counts
        // the built box).
        for mp in &mut plan.machines {
            let Some(b) = env
                .machines
                .get(&mp.name)
                .and_then(|m| late.waits_for(env, m))
            else {
                continue;
            };
            mp.change = Change::Later;
            mp.reason = format!("box `{b}` is being built: decided once it is");
            mp.steps = Vec::new();
            waiting.push(mp.name.clone());
        }
    }
    let rec = Recorder::new(o.project.state.clone(), lock, state);
    if plan.is_noop() {
        if rec.snapshot().env_hash.as_deref() != Some(o.env_hash.0.as_str()) {
            rec.set_env_hash(Some(o.env_hash.0.clone()))?;
        }
        let n = plan.machines.len();
        if p.json {
            p.line(
                serde_json::json!({"event": "summary", "changed": false, "machines": n, "ok": true})
                    .to_string(),
            );
        } else {
            p.note(format!(
                "nothing to do: {n} machine{} up to date",
                if n == 1 { "" } else { "s" }
            ));
        }
        return Ok(0);
    }
    // Those waiting for a box are checked too: most will be created.
    let creating: Vec<&str> = plan
        .machines
        .iter()
        .filter(|mp| mp.steps.contains(&plan::Step::Create) || waiting.contains(&mp.name))
        .map(|mp| mp.name.as_str())
        .collect();
    // Everything that would fail after objects exist, said at once, before any does.
    let here = crate::envfile::check_this_host(env, &creating);
    let mut unusable = apply::unusable(env, &plan, images);
    // A machine whose engine cannot be reached (a VM's engine is asked once it runs).
    for name in &creating {
        let Some(m) = env.machines.get(*name) else {
            continue;
        };
        if m.place.vm_host().is_none() {
            if let Err(e) = backends.get(m) {
                let why = match e {
                    crate::backend::BackendError::Engine { message, .. } => message,
                    other => other.to_string(),
                };
                if !unusable.iter().any(|(n, _)| n == name) {
                    unusable.push((name.to_string(), why));
                }
            }
        }
    }
    if here.is_err() || !unusable.is_empty() {
        let mut problems: Vec<String> = here.err().map(|e| e.to_string()).into_iter().collect();
        if !unusable.is_empty() {
            let list: Vec<String> = unusable
                .iter()
                .map(|(m, why)| format!("  machine `{m}`: {why}"))
                .collect();
            problems.push(format!(
                "{} machine{} cannot be made:\n{}",
                unusable.len(),
                if unusable.len() == 1 { "" } else { "s" },
                list.join("\n")
            ));
        }
        anyhow::bail!("nothing was created:\n{}", problems.join("\n"));
    }
    run_plan(
        p,
        o,
        backends,
        &plan,
        &rec,
        parallel,
        (images, late),
        cancel,
        None,
    )
    .await
}

/// `up`: builds and imports the boxes, then brings the environment to its Envfile under
/// the lock (`held` by the caller, or taken once the plan is made). When boxes must be
/// built, machines whose bases are ready do not wait for those builds: the run starts once
/// every base that needs no build is prepared and some base is, and a machine on a box
/// still being built is planned once the box is (see [`pipelined`]).
pub(crate) async fn up(
    p: &Printer,
    file: Option<&std::path::Path>,
    parallel: Option<usize>,
    held: Option<crate::state::EnvLock>,
    cancel: watch::Receiver<bool>,
) -> Code {
    let project = crate::throwaway::open_project(file)?;
    let backends = Backends::connect(&project.env, &project.ctx()).await?;
    let bases = apply::bases(&project.env, &backends);
    let built: BTreeSet<String> = match crate::boxes::Store::open_default() {
        Ok(store) => bases
            .values()
            .flatten()
            .filter(|b| apply::must_be_built(&project.env, &store, b))
            .cloned()
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    if built.is_empty() {
        let images = super::session::showing_boxes(
            &project.env,
            p,
            apply::resolve_images(&project.env, &backends),
        )
        .await;
        let o = super::session::opened(project)?;
        let lock = match held {
            Some(l) => l,
            None => o.project.state.lock()?,
        };
        return converge(p, &o, &backends, &images, None, lock, parallel, cancel).await;
    }
    pipelined(
        p,
        project,
        &backends,
        (&bases, &built),
        held,
        parallel,
        cancel,
    )
    .await
}

/// [`up`] while the boxes in `built` are built: bases are prepared in the background; the
/// plan is made once [`may_start`] says so, with the machines on boxes not yet prepared
/// left for later; the run ends when they are done too.
async fn pipelined(
    p: &Printer,
    project: crate::project::Project,
    backends: &Backends,
    (bases, built): (&BTreeMap<apply::BaseKey, Option<String>>, &BTreeSet<String>),
    held: Option<crate::state::EnvLock>,
    parallel: Option<usize>,
    cancel: watch::Receiver<bool>,
) -> Code {
    // The preparation reads the environment while the session is opened beside it.
    let env = project.env.clone();
    let (tx, rx) = watch::channel(apply::Images::new());
    let prep = async move {
        apply::resolve_images_into(&env, backends, &tx).await;
    };
    let run = async move {
        let mut seen = rx.clone();
        let images = super::session::showing_boxes(&project.env, p, async {
            loop {
                if may_start(&seen.borrow_and_update(), bases, built) {
                    break;
                }
                if seen.changed().await.is_err() {
                    break;
                }
            }
            seen.borrow().clone()
        })
        .await;
        let done = |b: &str| {
            bases
                .iter()
                .filter(|(_, x)| x.as_deref() == Some(b))
                .all(|(k, _)| images.contains_key(k))
        };
        let late: BTreeMap<apply::BaseKey, String> = bases
            .iter()
            .filter_map(|(k, b)| {
                b.as_ref()
                    .filter(|b| !done(b))
                    .map(|b| (k.clone(), b.clone()))
            })
            .collect();
        // The hashes count the boxes built by now; those of machines on boxes still being
        // built are made again once they are.
        let o = super::session::opened(project)?;
        let lock = match held {
            Some(l) => l,
            None => o.project.state.lock()?,
        };
        let rehash = || {
            o.project
                .hash()
                .map(|r| r.machines)
                .map_err(|e| e.to_string())
        };
        let late = apply::LateImages {
            rx: rx.clone(),
            late,
            rehash: &rehash,
        };
        let late = (!late.late.is_empty()).then_some(&late);
        converge(p, &o, backends, &images, late, lock, parallel, cancel).await
    };
    tokio::pin!(prep);
    tokio::pin!(run);
    let mut prepared = false;
    loop {
        tokio::select! {
            code = &mut run => return code,
            () = &mut prep, if !prepared => prepared = true,
        }
    }
}

/// Whether a run may start with the bases prepared in `images`: every base that needs no
/// build is prepared, and either every base is, or some base is prepared, on a box that
/// needs no build or whose every base is prepared and well. A box whose bases failed
/// (all prepared, one not well) so stops nothing from being created before the others
/// are known; one that fails after the start fails its machines only.
fn may_start(
    images: &apply::Images,
    bases: &BTreeMap<apply::BaseKey, Option<String>>,
    built: &BTreeSet<String>,
) -> bool {
    let slow = |b: &Option<String>| b.as_ref().is_some_and(|b| built.contains(b));
    if !bases
        .iter()
        .filter(|(_, b)| !slow(b))
        .all(|(k, _)| images.contains_key(k))
    {
        return false;
    }
    if bases.keys().all(|k| images.contains_key(k)) {
        return true;
    }
    let fast_ok = bases
        .iter()
        .any(|(k, b)| !slow(b) && matches!(images.get(k), Some(Ok(_))));
    let box_ok = |name: &String| {
        let mut keys = bases
            .iter()
            .filter(|(_, b)| b.as_ref() == Some(name))
            .map(|(k, _)| k)
            .peekable();
        keys.peek().is_some() && keys.all(|k| matches!(images.get(k), Some(Ok(_))))
    };
    fast_ok || built.iter().any(box_ok)
}

/// Runs a plan with progress and Ctrl-C handling; prints the summary; the exit code.
/// `snapshot` names the snapshot that `Save` and `Restore` steps act on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_plan(
    p: &Printer,
    o: &Session,
    backends: &Backends,
    plan: &Plan,
    rec: &Recorder,
    parallel: Option<usize>,
    (images, late): (&apply::Images, Option<&apply::LateImages<'_>>),
    cancel: watch::Receiver<bool>,
    snapshot: Option<&str>,
) -> Code {
    let env = &o.project.env;
    announce(p, plan);
    let names: Vec<String> = plan
        .machines
        .iter()
        .filter(|m| m.change != Change::Keep || !m.steps.is_empty())
        .map(|m| m.name.clone())
        .collect();
    let progress = std::sync::Arc::new(Progress::new(p, &names));
    // What the engines report from below (a box imported late, for a container in a VM).
    let _shown = progress.install();
    let cache = crate::cache::Policy::current();
    let a = apply::ApplyCtx {
        env,
        ctx: &o.ctx,
        backends,
        rec,
        progress: &progress,
        parallel: parallel.unwrap_or(env.settings.parallel as usize),
        images,
        late,
        snapshot,
        cache: &cache,
    };
    let report = apply::apply(&a, plan, cancel).await;
    progress.close();
    let report = report?;
    if report.ok() {
        // Boxes built during the run count with their digests now.
        let hash = match late {
            Some(_) => o.project.hash()?.hash,
            None => o.env_hash.clone(),
        };
        rec.set_env_hash(Some(hash.0))?;
    }
    summarize(p, &report);
    Ok(exit_code(&report))
}

/// The plan, before it runs: a JSON event, or its lines that change something.
fn announce(p: &Printer, plan: &Plan) {
    if p.json {
        p.line(serde_json::json!({"event": "plan", "plan": plan}).to_string());
        return;
    }
    for l in plan::render(plan) {
        if !l.starts_with("= ") {
            p.note(l);
        }
    }
}

/// The run's end: a JSON event, or every error and a count.
fn summarize(p: &Printer, report: &apply::ApplyReport) {
    if p.json {
        p.line(
            serde_json::json!({"event": "summary", "changed": true, "ok": report.ok(), "report": report})
                .to_string(),
        );
        return;
    }
    let failed: Vec<&str> = report
        .machines
        .iter()
        .filter_map(|m| m.error.as_deref())
        .collect();
    for e in &failed {
        p.error(e);
    }
    let done = report
        .machines
        .iter()
        .filter(|m| m.outcome == apply::Outcome::Done)
        .count();
    p.note(format!(
        "{done} machine{} changed, {} failed or skipped{}",
        if done == 1 { "" } else { "s" },
        failed.len(),
        if report.interrupted {
            ", interrupted"
        } else {
            ""
        }
    ));
}

/// 130 when interrupted (as a shell reports Ctrl-C), 0 when every machine came up, else 1.
pub(crate) fn exit_code(report: &apply::ApplyReport) -> i32 {
    if report.interrupted {
        130
    } else if report.ok() {
        0
    } else {
        1
    }
}

/// `hdev provision [MACHINE]`: runs provisioning again on running machines.
pub(crate) async fn provision(p: &Printer, o: &Session, machine: Option<&str>) -> Code {
    let lock = o.project.state.lock()?;
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    let backends = o.connect().await?;
    let observed = backends.observe(&o.ctx).await?;
    let plan = plan::provision_plan(env, &o.hashes, &observed, &backends.available(), machine)?;
    run_steps(p, o, &backends, &plan, lock, state, None).await
}

/// Runs a plan of steps on machines that exist (no images to resolve, default
/// parallelism), recording into the state and stopping cleanly on Ctrl-C.
pub(crate) async fn run_steps(
    p: &Printer,
    o: &Session,
    backends: &Backends,
    plan: &Plan,
    lock: crate::state::EnvLock,
    state: crate::state::State,
    snapshot: Option<&str>,
) -> Code {
    let rec = Recorder::new(o.project.state.clone(), lock, state);
    let cancel = ctrl_c(p);
    run_plan(
        p,
        o,
        backends,
        plan,
        &rec,
        None,
        (&apply::Images::new(), None),
        cancel,
        snapshot,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envfile::{load_source, SourceFile};
    use std::path::Path;

    #[test]
    fn a_run_starts_once_the_bases_needing_no_build_and_a_whole_box_are_prepared() {
        let text = r#"
[env]
name = "e"

[box.quick]
recipe = "q"

[box.big]
recipe = "b"

[box.other]
recipe = "o"

[machine.web]
backend = "docker"
box = "quick"

[machine.vm]
backend = "libvirt"
box = "big"

[machine.ct]
backend = "docker"
box = "big"

[machine.x]
backend = "docker"
box = "other"

[machine.img]
backend = "docker"
image = "local:1"
"#;
        let env = load_source(
            &SourceFile::new(Path::new("E"), "E", text),
            Path::new("/"),
            false,
        )
        .unwrap();
        let key = |m: &str| apply::BaseKey::of(&env, &env.machines[m]);
        let bases: BTreeMap<apply::BaseKey, Option<String>> = env
            .machines
            .values()
            .map(|m| {
                let b = match &m.base {
                    crate::envfile::Base::Box(b) => Some(b.clone()),
                    crate::envfile::Base::Image(_) => None,
                };
                (apply::BaseKey::of(&env, m), b)
            })
            .collect();
        let ok = || Ok(crate::backend::Resolved::Image("i".into()));
        // `big` and `other` are built; `quick` is in the store, `img` a local image.
        let built: BTreeSet<String> = ["big".to_string(), "other".to_string()].into();
        let mut images = apply::Images::new();
        assert!(!may_start(&images, &bases, &built), "nothing prepared");
        images.insert(key("web"), ok());
        assert!(!may_start(&images, &bases, &built), "the image not yet");
        images.insert(key("img"), ok());
        assert!(
            may_start(&images, &bases, &built),
            "machines on ready bases go"
        );
        // Only boxes being built: one whose every base is prepared and well starts it.
        let built: BTreeSet<String> = ["big", "other", "quick"].map(String::from).into();
        let mut images = apply::Images::new();
        images.insert(key("img"), Err("not in the engine".into()));
        images.insert(key("ct"), ok());
        assert!(!may_start(&images, &bases, &built), "half of `big`");
        images.insert(key("vm"), Err("no disk".into()));
        assert!(
            !may_start(&images, &bases, &built),
            "`big` failed on one engine: nothing starts before the rest is known"
        );
        images.insert(key("x"), ok());
        assert!(
            may_start(&images, &bases, &built),
            "`other` is whole and well"
        );
        images.insert(key("web"), ok());
        images.remove(&key("x"));
        images.insert(key("x"), Err("build failed".into()));
        assert!(
            may_start(&images, &bases, &built),
            "all prepared: start (and fail)"
        );
    }
}
