//! Bringing an environment to its Envfile: planning against what the engines hold and
//! running the plan (the body of `up`, `up --at`, `update`, `ci` and `release`), and the
//! targeted plans of `provision`, `baseline`, `reset` and snapshots.

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
pub(crate) async fn converge(
    p: &Printer,
    o: &Session,
    backends: &Backends,
    images: &apply::Images,
    lock: crate::state::EnvLock,
    parallel: Option<usize>,
    cancel: watch::Receiver<bool>,
) -> Code {
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    // So that `gc` also looks on the libvirt hosts this environment uses.
    super::teardown::remember_uris(env);
    let plan = make_plan(o, backends, &state).await?;
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
    let creating: Vec<&str> = plan
        .machines
        .iter()
        .filter(|mp| mp.steps.contains(&plan::Step::Create))
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
    run_plan(p, o, backends, &plan, &rec, parallel, images, cancel, None).await
}

/// `up`: builds and imports the boxes, then brings the environment to its Envfile under
/// the lock (`held` by the caller, or taken once the boxes are ready).
pub(crate) async fn up(
    p: &Printer,
    file: Option<&std::path::Path>,
    parallel: Option<usize>,
    held: Option<crate::state::EnvLock>,
    cancel: watch::Receiver<bool>,
) -> Code {
    let (o, backends, images) = super::session::open_with_images(file, p).await?;
    let lock = match held {
        Some(l) => l,
        None => o.project.state.lock()?,
    };
    converge(p, &o, &backends, &images, lock, parallel, cancel).await
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
    images: &apply::Images,
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
        snapshot,
        cache: &cache,
    };
    let report = apply::apply(&a, plan, cancel).await;
    progress.close();
    let report = report?;
    if report.ok() {
        rec.set_env_hash(Some(o.env_hash.0.clone()))?;
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
        &apply::Images::new(),
        cancel,
        snapshot,
    )
    .await
}
