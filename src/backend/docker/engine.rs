//! The Docker engine behind the [`Engine`] contract: each method is a short call into
//! the modules that hold the mechanism (`create`, `exec`, `image`, `snapshot`).

use std::collections::BTreeMap;

use super::{cache, image, snapshot, DockerBackend};
use crate::backend::{
    BackendError, BaseRequest, BaseSource, CachedState, Captured, Counts, Discovery, Engine,
    EnvCtx, ExecOutcome, Found, LineSink, LogSink, MachineSpec, NetSpec, Observation, Probe,
    Resolved, StatePart,
};
use crate::boxes::Store;
use crate::envfile::Backend;
use crate::snapshot::Drift;

/// How long `halt` gives a container's main process after SIGTERM.
const STOP_GRACE_SECS: i32 = 5;

impl Engine for DockerBackend {
    fn kind(&self) -> Backend {
        Backend::Docker
    }

    async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        DockerBackend::observe(self, &ctx.instance).await
    }

    async fn ensure_network(
        &self,
        ctx: &EnvCtx,
        net: Option<&NetSpec>,
    ) -> Result<(), BackendError> {
        DockerBackend::ensure_network(self, ctx, net).await
    }

    async fn prepare(&self, store: &Store, req: &BaseRequest) -> Result<Resolved, BackendError> {
        match &req.source {
            // The box's own words: it names the box and what it lacks.
            BaseSource::Stored(b) => Ok(Resolved::Image(
                image::import_box(store, self.client(), b).await?,
            )),
            BaseSource::Reference(i) => match self.image_exists(i).await? {
                true => Ok(Resolved::Image(i.clone())),
                false => Err(BackendError::ImageMissing {
                    machine: req.machine.clone(),
                    image: i.clone(),
                }),
            },
        }
    }

    async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError> {
        self.create_machine(ctx, spec).await
    }

    async fn start(&self, id: &str) -> Result<(), BackendError> {
        DockerBackend::start(self, id).await
    }

    async fn stop(&self, id: &str) -> Result<(), BackendError> {
        DockerBackend::stop(self, id, STOP_GRACE_SECS).await
    }

    async fn remove(&self, id: &str) -> Result<(), BackendError> {
        DockerBackend::remove(self, id).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        DockerBackend::exec(self, id, cmd, sink).await
    }

    async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        DockerBackend::copy_in(self, id, dest, tar).await
    }

    async fn interactive(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        let shell = ["/bin/sh".to_string(), "-l".to_string()];
        let cmd = if cmd.is_empty() { &shell[..] } else { cmd };
        self.exec_interactive(id, cmd, super::ExecOptions { tty, stdin: true }, size)
            .await
    }

    async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        let mut vars = BTreeMap::from([
            (
                "ansible_connection".to_string(),
                "community.docker.docker".to_string(),
            ),
            ("ansible_host".to_string(), id.to_string()),
        ]);
        // A container on another host's engine: the docker CLI is pointed there.
        if let Some(at) = self.cli_endpoint() {
            vars.insert("ansible_docker_extra_args".to_string(), format!("-H {at}"));
        }
        Ok(vars)
    }

    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u32>,
        sink: LogSink<'_>,
    ) -> Result<(), BackendError> {
        DockerBackend::logs(self, id, follow, tail, sink).await
    }

    async fn capture(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<Captured, BackendError> {
        snapshot::capture(self, ctx, spec, id, name).await
    }

    async fn restore(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        snapshot::restore(self, ctx, spec, id, name).await
    }

    async fn drift(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        snapshot::drift(self, machine, id).await
    }

    async fn states(
        &self,
        ctx: &EnvCtx,
        _observed: &Observation,
    ) -> Result<Vec<StatePart>, BackendError> {
        Ok(snapshot::list(self, &ctx.instance)
            .await?
            .into_iter()
            .map(|s| StatePart {
                name: s.name,
                machine: s.machine,
                backend: Backend::Docker,
                created: s.created,
                own_bytes: s.own_size,
                chain_bytes: s.own_size,
            })
            .collect())
    }

    async fn delete_state(
        &self,
        ctx: &EnvCtx,
        machine: &str,
        _id: Option<&str>,
        name: &str,
    ) -> Result<bool, BackendError> {
        Ok(snapshot::delete(self, &ctx.instance, machine, name).await)
    }

    async fn cache_find(&self, hash: &str) -> Result<Option<String>, BackendError> {
        Ok(cache::find(self, hash).await)
    }

    async fn cache_keep(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        env: &str,
    ) -> Result<Option<(String, CachedState)>, BackendError> {
        cache::keep(self, ctx, spec, id, env).await.map(Some)
    }

    async fn cache_list(&self) -> Result<Vec<CachedState>, BackendError> {
        cache::list(self).await
    }

    async fn cache_remove(&self, location: &str) -> Result<(), BackendError> {
        cache::remove(self, location).await
    }

    async fn discover(&self, instance: Option<&str>) -> Result<Discovery, BackendError> {
        Ok(Discovery {
            found: self.labelled(instance).await?,
            unreachable: Vec::new(),
        })
    }

    async fn remove_found(&self, found: &[Found]) -> Result<Counts, BackendError> {
        self.remove_labelled(found).await
    }
}

/// Whether the Docker engine answers, and which it is (for `hdev doctor`).
pub async fn probe() -> Probe {
    let result = async {
        let docker = bollard::Docker::connect_with_local_defaults()?;
        let docker = docker.negotiate_version().await?;
        let v = docker.version().await?;
        Ok::<_, bollard::errors::Error>(format!(
            "engine {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    };
    let (ok, detail) = match tokio::time::timeout(std::time::Duration::from_secs(10), result).await
    {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (
            false,
            format!("cannot reach the Docker engine: {e}; start dockerd (`bash .ci/setup`)"),
        ),
        Err(_) => (false, "the Docker engine did not answer within 10s".into()),
    };
    Probe {
        name: "docker".into(),
        ok,
        detail,
    }
}
