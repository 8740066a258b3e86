//! The session an operation works in: the project opened once (Envfile, hashes, instance),
//! its engines, its state and the lock on it, and cancellation (Ctrl-C).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use tokio::sync::watch;

use crate::apply;
use crate::backend::{Backends, EnvCtx};
use crate::envfile::hash::EnvHash;
use crate::output::Printer;
use crate::project::Project;
use crate::state::State;

/// The session an operation works in: the environment opened once, with its per-machine
/// hashes and the names that place its objects in the engines.
pub(crate) struct Session {
    pub project: Project,
    pub hashes: BTreeMap<String, EnvHash>,
    pub env_hash: EnvHash,
    pub ctx: EnvCtx,
}

pub(crate) fn open(file: Option<&Path>) -> anyhow::Result<Session> {
    opened(crate::throwaway::open_project(file)?)
}

/// An opened project with its hashes.
pub(crate) fn opened(project: Project) -> anyhow::Result<Session> {
    let report = project.hash()?;
    let ctx = project.ctx();
    Ok(Session {
        project,
        hashes: report.machines,
        env_hash: report.hash,
        ctx,
    })
}

/// An opened project with its boxes built and imported first, so that the per-machine
/// hashes count the boxes' real digests; the images too (a release, a throwaway copy;
/// `up` builds boxes while machines on ready ones come up: see `ops::up::up`).
pub(crate) async fn with_images(
    project: Project,
    p: &Printer,
) -> anyhow::Result<(Session, Backends, apply::Images)> {
    let backends = Backends::connect(&project.env, &project.ctx()).await?;
    let images = showing_boxes(
        &project.env,
        p,
        apply::resolve_images(&project.env, &backends),
    )
    .await;
    Ok((opened(project)?, backends, images))
}

/// Runs `work` (preparing images) with box builds, imports and uploads showing how they
/// go, each box on a line of its own.
pub(crate) async fn showing_boxes<T>(
    env: &crate::envfile::Env,
    p: &Printer,
    work: impl std::future::Future<Output = T>,
) -> T {
    if !p.json && !env.boxes.is_empty() {
        p.note("preparing images");
    }
    let progress = std::sync::Arc::new(crate::progress::Progress::new(p, &[]));
    let out = {
        let _shown = progress.install();
        work.await
    };
    progress.close();
    out
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

/// A watch that turns true on the first Ctrl-C; a second one exits at once with 130.
pub(crate) fn ctrl_c(p: &Printer) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let p = *p;
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            p.note("interrupted: no new work starts; press Ctrl-C again to quit at once");
            tx.send_replace(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                crate::host::exit_now(130);
            }
        }
    });
    rx
}

/// Fails with the known names when `name` is not a machine of the environment.
pub(crate) fn check_machine(env: &crate::envfile::Env, name: &str) -> anyhow::Result<()> {
    Ok(crate::plan::check_machine(env, name)?)
}

impl Session {
    /// Connects to the engines the environment needs.
    pub(crate) async fn connect(&self) -> anyhow::Result<Backends> {
        Ok(Backends::connect(&self.project.env, &self.ctx).await?)
    }
}
