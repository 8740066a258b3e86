//! Commands that act on machines: plan, up, provision, status, exec, ssh, logs, halt,
//! destroy, gc. Each is a thin function over the core (plan, apply, backend).

mod console;
mod interact;
mod status;
mod teardown;
pub(crate) mod vms;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use tokio::sync::watch;

use super::CmdResult;
use crate::apply::{self, Recorder};
use crate::backend::{Backends, EnvCtx};
use crate::envfile::hash::EnvHash;
use crate::output::Printer;
use crate::plan::{self, Change, MachinePlan, Plan, Step};
use crate::progress::Progress;
use crate::project::Project;
use crate::state::State;

pub use interact::{exec, logs, ssh};
pub use status::status;
pub use teardown::{destroy, gc, halt};

/// An opened environment with its per-machine hashes.
pub(crate) struct Opened {
    pub project: Project,
    pub hashes: BTreeMap<String, EnvHash>,
    pub env_hash: EnvHash,
    pub ctx: EnvCtx,
}

pub(crate) fn open(file: Option<&Path>) -> anyhow::Result<Opened> {
    opened(crate::throwaway::open_project(file)?)
}

/// An opened project with its hashes.
pub(crate) fn opened(project: Project) -> anyhow::Result<Opened> {
    let report = project.hash()?;
    let ctx = project.ctx();
    Ok(Opened {
        project,
        hashes: report.machines,
        env_hash: report.hash,
        ctx,
    })
}

/// Like [`open`], but builds and imports the boxes first, so that the per-machine hashes
/// count the boxes' real digests; returns the images too.
async fn open_with_images(
    file: Option<&Path>,
    p: &Printer,
) -> anyhow::Result<(Opened, Backends, apply::Images)> {
    with_images(crate::throwaway::open_project(file)?, p).await
}

/// [`open_with_images`] for a project already opened (a release, a throwaway copy).
pub(crate) async fn with_images(
    project: Project,
    p: &Printer,
) -> anyhow::Result<(Opened, Backends, apply::Images)> {
    let backends = Backends::connect(Some(&project.env)).await?;
    if !p.json && !project.env.boxes.is_empty() {
        p.note("preparing images");
    }
    let images = apply::resolve_images(&project.env, &backends).await;
    Ok((opened(project)?, backends, images))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn load_state(project: &Project) -> anyhow::Result<State> {
    let mut st = project
        .state
        .load()?
        .unwrap_or_else(|| State::new(&project.instance));
    if st.instance != project.instance {
        // Another instance name (HDEV_INSTANCE) means other objects: records do not carry.
        st = State::new(&project.instance);
    }
    Ok(st)
}

/// `hdev plan`: what `up` would do.
pub fn plan_cmd(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let state = load_state(&o.project)?;
    runtime()?.block_on(async {
        let backends = Backends::connect(Some(&o.project.env)).await?;
        let observed = backends.observe(&o.ctx).await?;
        let plan = plan::plan(
            &o.project.env,
            &o.hashes,
            &observed,
            &state,
            &backends.available(),
        );
        if p.json {
            p.json(&plan);
        } else {
            for l in plan::render(&plan) {
                p.line(l);
            }
        }
        Ok(0)
    })
}

/// A watch that turns true on the first Ctrl-C; a second one exits at once with 130.
pub(crate) fn ctrl_c(p: &Printer) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let p = *p;
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            p.note("interrupted: no new work starts; press Ctrl-C again to quit at once");
            tx.send_replace(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    rx
}

/// `hdev up`.
pub fn up(p: &Printer, file: Option<&Path>, parallel: Option<usize>) -> CmdResult {
    let rt = runtime()?;
    rt.block_on(async {
        let (o, backends, images) = open_with_images(file, p).await?;
        let lock = o.project.state.lock()?;
        let cancel = ctrl_c(p);
        converge(p, &o, &backends, &images, lock, parallel, cancel).await
    })
}

/// Plans an opened environment against the engines and runs the plan: the body of `up`,
/// shared by `up --at`, `update`, `ci` and `release`. The caller holds the state lock.
pub(crate) async fn converge(
    p: &Printer,
    o: &Opened,
    backends: &Backends,
    images: &apply::Images,
    lock: crate::state::EnvLock,
    parallel: Option<usize>,
    cancel: watch::Receiver<bool>,
) -> CmdResult {
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    // So that `gc` also looks on the libvirt hosts this environment uses.
    vms::remember_uris(env);
    let observed = backends.observe(&o.ctx).await?;
    let plan = plan::plan(env, &o.hashes, &observed, &state, &backends.available());
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
    run_plan(p, o, backends, &plan, &rec, parallel, images, cancel, None).await
}

/// Runs a plan with progress and Ctrl-C handling; prints the summary; the exit code.
/// `snapshot` names the snapshot that `Save` and `Restore` steps act on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_plan(
    p: &Printer,
    o: &Opened,
    backends: &Backends,
    plan: &Plan,
    rec: &Recorder,
    parallel: Option<usize>,
    images: &apply::Images,
    cancel: watch::Receiver<bool>,
    snapshot: Option<&str>,
) -> CmdResult {
    let env = &o.project.env;
    if p.json {
        p.line(serde_json::json!({"event": "plan", "plan": plan}).to_string());
    } else {
        for l in plan::render(plan) {
            if !l.starts_with("= ") {
                p.note(l);
            }
        }
    }
    let names: Vec<String> = plan
        .machines
        .iter()
        .filter(|m| m.change != Change::Keep || !m.steps.is_empty())
        .map(|m| m.name.clone())
        .collect();
    let progress = Progress::new(p, &names);
    let parallel = parallel.unwrap_or(env.settings.parallel as usize);
    let a = apply::ApplyCtx {
        env,
        ctx: &o.ctx,
        backends,
        rec,
        progress: &progress,
        parallel,
        images,
        snapshot,
    };
    let report = apply::apply(&a, plan, cancel).await;
    progress.close();
    let report = report?;
    if report.ok() {
        rec.set_env_hash(Some(o.env_hash.0.clone()))?;
    }
    let failed: Vec<_> = report
        .machines
        .iter()
        .filter(|m| m.error.is_some())
        .collect();
    if p.json {
        p.line(
            serde_json::json!({"event": "summary", "changed": true, "ok": report.ok(), "report": report})
                .to_string(),
        );
    } else {
        for m in &failed {
            if let Some(e) = &m.error {
                eprintln!("{} {e}", p.red("error:"));
            }
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
    Ok(if report.interrupted {
        130
    } else if report.ok() {
        0
    } else {
        1
    })
}

/// `hdev provision [MACHINE]`: runs provisioning again on running machines.
pub fn provision(p: &Printer, file: Option<&Path>, machine: Option<&str>) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let state = load_state(&o.project)?;
    let env = &o.project.env;
    if let Some(m) = machine {
        check_machine(env, m)?;
    }
    runtime()?.block_on(async {
        let backends = Backends::connect(Some(env)).await?;
        let observed = backends.observe(&o.ctx).await?;
        let mut machines = Vec::new();
        for m in env.topo_order() {
            let target = machine.is_none_or(|t| t == m.name);
            let obs = observed.machines.get(&m.name);
            let mut mp = MachinePlan::untouched(
                m,
                obs.map(|o| o.id.clone()),
                o.hashes
                    .get(&m.name)
                    .map(|h| h.0.clone())
                    .unwrap_or_default(),
            );
            if target {
                match obs {
                    Some(ob) if ob.state == crate::backend::RunState::Running => {
                        mp.change = Change::Finish;
                        mp.reason = "provisioning asked for".into();
                        mp.steps = vec![Step::Provision, Step::Baseline];
                        if m.healthcheck.is_some() {
                            mp.steps.push(Step::Health);
                        }
                    }
                    _ if !backends.available().contains(&m.backend) => {
                        mp.change = Change::Unavailable;
                    }
                    _ if machine.is_some() => {
                        anyhow::bail!("machine `{}` is not running; run `hdev up` first", m.name)
                    }
                    _ => {}
                }
            }
            machines.push(mp);
        }
        let plan = Plan {
            networks: vec![],
            machines,
        };
        run_steps(p, &o, &backends, &plan, lock, state, None).await
    })
}

/// Runs a plan of steps on machines that exist (no images to resolve, default
/// parallelism), recording into the state and stopping cleanly on Ctrl-C.
pub(crate) async fn run_steps(
    p: &Printer,
    o: &Opened,
    backends: &Backends,
    plan: &Plan,
    lock: crate::state::EnvLock,
    state: crate::state::State,
    snapshot: Option<&str>,
) -> CmdResult {
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

/// Fails with the known names when `name` is not a machine of the environment.
pub(crate) fn check_machine(env: &crate::envfile::Env, name: &str) -> anyhow::Result<()> {
    if env.machines.contains_key(name) {
        return Ok(());
    }
    let names: Vec<&str> = env.machines.keys().map(String::as_str).collect();
    let near = names
        .iter()
        .find(|n| strsim::levenshtein(n, name) <= 2)
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    anyhow::bail!(
        "no machine `{name}` in the Envfile{near}\nhelp: machines are: {}",
        names.join(", ")
    )
}
