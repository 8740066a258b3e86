//! The one enum that dispatches the [`Engine`] contract, and the set of engines one
//! command uses. A new engine is one more arm in [`AnyBackend`] and in `dispatch!`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    docker, libvirt, BackendError, BaseRequest, Captured, Counts, Discovery, Engine, EnvCtx,
    ExecOutcome, Found, LineSink, LogSink, MachineSpec, NetSpec, Observation, Resolved, StatePart,
};
use crate::boxes::Store;
use crate::envfile::{Backend, Env, Machine};
use crate::snapshot::Drift;

/// An engine, whichever it is.
pub enum AnyBackend {
    Docker(docker::DockerBackend),
    Libvirt(Box<libvirt::machines::Vms>),
    /// The recording test double.
    #[cfg(test)]
    Fake(super::fake::FakeBackend),
}

/// Calls the same method on whichever engine `$self` holds.
macro_rules! dispatch {
    ($self:expr, $b:ident => $call:expr) => {
        match $self {
            AnyBackend::Docker($b) => $call,
            AnyBackend::Libvirt($b) => {
                let $b: &libvirt::machines::Vms = $b;
                $call
            }
            #[cfg(test)]
            AnyBackend::Fake($b) => $call,
        }
    };
}

impl Engine for AnyBackend {
    fn kind(&self) -> Backend {
        dispatch!(self, b => Engine::kind(b))
    }
    async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        dispatch!(self, b => Engine::observe(b, ctx).await)
    }
    async fn ensure_network(
        &self,
        ctx: &EnvCtx,
        net: Option<&NetSpec>,
    ) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::ensure_network(b, ctx, net).await)
    }
    async fn prepare(&self, store: &Store, req: &BaseRequest) -> Result<Resolved, BackendError> {
        dispatch!(self, b => Engine::prepare(b, store, req).await)
    }
    async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError> {
        dispatch!(self, b => Engine::create(b, ctx, spec).await)
    }
    async fn start(&self, id: &str) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::start(b, id).await)
    }
    async fn stop(&self, id: &str) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::stop(b, id).await)
    }
    async fn remove(&self, id: &str) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::remove(b, id).await)
    }
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        dispatch!(self, b => Engine::exec(b, id, cmd, sink).await)
    }
    async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::copy_in(b, id, dest, tar).await)
    }
    async fn interactive(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        dispatch!(self, b => Engine::interactive(b, id, cmd, tty, size).await)
    }
    async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        dispatch!(self, b => Engine::ansible_vars(b, id).await)
    }
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u32>,
        sink: LogSink<'_>,
    ) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::logs(b, id, follow, tail, sink).await)
    }
    async fn capture(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<Captured, BackendError> {
        dispatch!(self, b => Engine::capture(b, ctx, spec, id, name).await)
    }
    async fn restore(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        dispatch!(self, b => Engine::restore(b, ctx, spec, id, name).await)
    }
    async fn drift(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        dispatch!(self, b => Engine::drift(b, machine, id).await)
    }
    async fn states(
        &self,
        ctx: &EnvCtx,
        observed: &Observation,
    ) -> Result<Vec<StatePart>, BackendError> {
        dispatch!(self, b => Engine::states(b, ctx, observed).await)
    }
    async fn delete_state(
        &self,
        ctx: &EnvCtx,
        machine: &str,
        id: Option<&str>,
        name: &str,
    ) -> Result<bool, BackendError> {
        dispatch!(self, b => Engine::delete_state(b, ctx, machine, id, name).await)
    }
    async fn discover(&self, instance: Option<&str>) -> Result<Discovery, BackendError> {
        dispatch!(self, b => Engine::discover(b, instance).await)
    }
    async fn remove_found(&self, found: &[Found]) -> Result<Counts, BackendError> {
        dispatch!(self, b => Engine::remove_found(b, found).await)
    }
}

/// The engines one command uses, keyed by kind.
#[derive(Default)]
pub struct Backends {
    map: BTreeMap<Backend, AnyBackend>,
    /// Why an engine the environment needs could not be connected.
    errors: BTreeMap<Backend, String>,
}

impl Backends {
    /// Connects to the engines the environment's machines need (Docker always, since
    /// networks and leftovers live there); an engine that cannot be reached or is missing
    /// from this build is reported per machine by [`Backends::get`].
    pub async fn connect(env: &Env) -> Result<Backends, BackendError> {
        let mut out = Backends::default();
        out.insert(AnyBackend::Docker(docker::DockerBackend::connect().await?));
        if env.machines.values().any(|m| m.backend == Backend::Libvirt) {
            match libvirt::machines::Vms::connect(env).await {
                Ok(v) => out.insert(AnyBackend::Libvirt(Box::new(v))),
                Err(e) => {
                    out.errors.insert(Backend::Libvirt, e.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Connects to find and remove objects: Docker, and libvirt on every URI in `uris`
    /// (those that cannot be reached are reported by discovery); `env` when the objects
    /// are one environment's.
    pub async fn connect_all(
        uris: &BTreeSet<String>,
        env: Option<&Env>,
    ) -> Result<Backends, BackendError> {
        let mut out = Backends::default();
        out.insert(AnyBackend::Docker(docker::DockerBackend::connect().await?));
        match libvirt::machines::Vms::at_uris(uris, env).await {
            Ok(v) => out.insert(AnyBackend::Libvirt(Box::new(v))),
            Err(e) => {
                out.errors.insert(Backend::Libvirt, e.to_string());
            }
        }
        Ok(out)
    }

    /// Adds an engine (replacing one of the same kind).
    pub fn insert(&mut self, b: AnyBackend) {
        self.errors.remove(&b.kind());
        self.map.insert(b.kind(), b);
    }

    /// The engine of a machine, or why it is not there.
    pub fn get(&self, m: &Machine) -> Result<&AnyBackend, BackendError> {
        self.get_named(&m.name, m.backend)
    }

    /// The engine of kind `kind` for machine `name`, or why it is not there.
    pub fn get_named(&self, name: &str, kind: Backend) -> Result<&AnyBackend, BackendError> {
        self.map
            .get(&kind)
            .ok_or_else(|| match self.errors.get(&kind) {
                Some(message) => BackendError::Unreachable {
                    backend: kind,
                    message: format!("machine `{name}`: {message}"),
                },
                None => BackendError::Unavailable {
                    machine: name.to_string(),
                    backend: kind,
                },
            })
    }

    /// Why an engine could not be connected, if it could not.
    pub fn error(&self, kind: Backend) -> Option<&str> {
        self.errors.get(&kind).map(String::as_str)
    }

    /// The engine of a kind, when connected.
    pub fn get_kind(&self, kind: Backend) -> Option<&AnyBackend> {
        self.map.get(&kind)
    }

    pub fn available(&self) -> BTreeSet<Backend> {
        self.map.keys().copied().collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &AnyBackend> {
        self.map.values()
    }

    /// The engine that hosts the environment's networks (Docker's bridges; VMs plug in).
    pub fn network_host(&self) -> Option<&AnyBackend> {
        self.map.get(&Backend::Docker)
    }

    /// What every engine has for the environment instance.
    pub async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        let mut all = Observation::default();
        for b in self.map.values() {
            let o = b.observe(ctx).await?;
            all.machines.extend(o.machines);
            all.networks.extend(o.networks);
            all.baselines.extend(o.baselines);
        }
        Ok(all)
    }
}

/// One line of `hdev doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Whether each engine can be reached (libvirt at `libvirt_uri`).
pub async fn probes(libvirt_uri: &str) -> Vec<Probe> {
    vec![docker::probe().await, libvirt::probe(libvirt_uri).await]
}
