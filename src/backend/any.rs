//! The one enum that dispatches the [`Engine`] contract, and the set of engines one
//! command uses. A new engine is one more arm in [`AnyBackend`] and in `dispatch!`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    docker, libvirt, BackendError, BaseRequest, CachedState, Captured, Counts, Discovery, Engine,
    EnvCtx, ExecOutcome, Found, LineSink, LogSink, MachineSpec, NetSpec, Observation, Resolved,
    StatePart,
};
use crate::boxes::Store;
use crate::envfile::{topology, Backend, Env, Machine};
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
    fn boot_log(&self, id: &str) -> Option<std::path::PathBuf> {
        dispatch!(self, b => Engine::boot_log(b, id))
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
    async fn drift_deep(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        dispatch!(self, b => Engine::drift_deep(b, machine, id).await)
    }
    async fn cache_find(&self, hash: &str) -> Result<Option<String>, BackendError> {
        dispatch!(self, b => Engine::cache_find(b, hash).await)
    }
    async fn cache_keep(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        env: &str,
    ) -> Result<Option<(String, CachedState)>, BackendError> {
        dispatch!(self, b => Engine::cache_keep(b, ctx, spec, id, env).await)
    }
    async fn cache_list(&self) -> Result<Vec<CachedState>, BackendError> {
        dispatch!(self, b => Engine::cache_list(b).await)
    }
    async fn cache_remove(&self, location: &str) -> Result<(), BackendError> {
        dispatch!(self, b => Engine::cache_remove(b, location).await)
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

/// Which engine: its kind and, for Docker, its endpoint (`None`: this machine's). One
/// libvirt engine reaches every libvirt URI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineKey {
    pub kind: Backend,
    pub at: Option<String>,
}

impl EngineKey {
    /// The Docker engine at `at`.
    pub fn docker(at: Option<&str>) -> EngineKey {
        EngineKey {
            kind: Backend::Docker,
            at: at.map(str::to_string),
        }
    }

    /// The engine of kind `kind` that holds a machine placed at Docker endpoint `at`.
    pub fn of(kind: Backend, at: Option<&str>) -> EngineKey {
        match kind {
            Backend::Docker => EngineKey::docker(at),
            Backend::Libvirt => EngineKey { kind, at: None },
        }
    }

    /// The engine that holds a machine.
    pub fn machine(m: &Machine) -> EngineKey {
        EngineKey::of(m.backend, m.place.docker.as_deref())
    }
}

impl std::fmt::Display for EngineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{} at {at}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl AnyBackend {
    /// The key this engine is found by.
    pub fn key(&self) -> EngineKey {
        match self {
            AnyBackend::Docker(d) => EngineKey::docker(d.endpoint()),
            other => EngineKey::of(other.kind(), None),
        }
    }
}

/// The engines one command uses: every Docker engine the environment places machines on
/// (and this machine's), and libvirt.
#[derive(Default)]
pub struct Backends {
    map: BTreeMap<EngineKey, AnyBackend>,
    /// Why an engine the environment needs could not be connected.
    errors: BTreeMap<EngineKey, String>,
    /// The Docker engines inside the environment's VMs (`host = "VM"`), by VM: connected
    /// once the VM runs (at connection, or when a machine in it is first needed).
    in_vms: BTreeMap<String, tokio::sync::OnceCell<AnyBackend>>,
    /// The instance whose VMs those are.
    instance: String,
}

/// How long connecting waits for the engine inside a running VM.
const VM_ENGINE_AT_CONNECT: std::time::Duration = std::time::Duration::from_secs(20);

impl Backends {
    /// Connects to the engines the environment's machines need (this machine's Docker
    /// always, since leftovers live there); an engine that cannot be reached or is
    /// missing from this build is reported per machine by [`Backends::get`].
    pub async fn connect(env: &Env, ctx: &EnvCtx) -> Result<Backends, BackendError> {
        let mut out = Backends {
            instance: ctx.instance.clone(),
            ..Backends::default()
        };
        out.connect_dockers(&topology::host_docker_engines(env))
            .await?;
        if env.machines.values().any(|m| m.backend == Backend::Libvirt) {
            match libvirt::machines::Vms::connect(env).await {
                Ok(v) => out.insert(AnyBackend::Libvirt(Box::new(v))),
                // Not in this build: its machines are `unavailable`, not unreachable.
                Err(BackendError::Unavailable { .. }) => {}
                Err(e) => {
                    out.errors
                        .insert(EngineKey::of(Backend::Libvirt, None), e.to_string());
                }
            }
        }
        for e in topology::docker_engines(env) {
            if let Some(vm) = topology::vm_of_engine(e.as_deref()) {
                out.in_vms
                    .insert(vm.to_string(), tokio::sync::OnceCell::new());
            }
        }
        // The engines of VMs that run now (bounded: status must not wait for a VM that
        // is still booting); the others when their machines are needed.
        let vms: Vec<String> = out.in_vms.keys().cloned().collect();
        for vm in vms {
            let reached = tokio::time::timeout(VM_ENGINE_AT_CONNECT, out.reach_vm_engine(&vm));
            let why = match reached.await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "the Docker engine in VM `{vm}` did not answer in {} s",
                    VM_ENGINE_AT_CONNECT.as_secs()
                ),
            };
            let at = crate::envfile::vm_endpoint(&vm);
            out.errors.insert(EngineKey::docker(Some(&at)), why);
        }
        Ok(out)
    }

    /// The Docker engine inside VM `vm`, connected (through SSH) if it is not yet: the VM
    /// must run.
    pub async fn reach_vm_engine(&self, vm: &str) -> Result<&AnyBackend, BackendError> {
        let cell = self.in_vms.get(vm).ok_or_else(|| BackendError::NotFound {
            what: "VM that hosts containers",
            name: vm.to_string(),
        })?;
        cell.get_or_try_init(|| async {
            let Some(AnyBackend::Libvirt(v)) = self.map.get(&EngineKey::of(Backend::Libvirt, None))
            else {
                return Err(BackendError::Unreachable {
                    backend: Backend::Libvirt,
                    message: format!("VM `{vm}` hosts containers, and libvirt is not connected"),
                });
            };
            let target = v.target(&super::vm_domain(&self.instance, vm)).await?;
            let endpoint = crate::envfile::vm_endpoint(vm);
            let d = docker::DockerBackend::connect_in_vm(vm, &endpoint, &target).await?;
            Ok(AnyBackend::Docker(d))
        })
        .await
    }

    /// Reaches the Docker engine inside VM `vm` again after the VM restarted or returned
    /// to a snapshot (the SSH session behind the connection is gone then).
    pub async fn refresh_vm_engine(&self, vm: &str) -> Result<(), BackendError> {
        match self.in_vms.get(vm).and_then(|c| c.get()) {
            Some(AnyBackend::Docker(d)) => d.reconnect().await,
            _ => self.reach_vm_engine(vm).await.map(|_| ()),
        }
    }

    /// Connects to the Docker engines at `endpoints` at once, and to this machine's. This
    /// machine's is required when it is among them (or alone); others that cannot be
    /// reached are recorded.
    async fn connect_dockers(
        &mut self,
        endpoints: &BTreeSet<Option<String>>,
    ) -> Result<(), BackendError> {
        let mut all = endpoints.clone();
        let local_needed = all.contains(&None) || all.is_empty();
        all.insert(None);
        let tries = all
            .iter()
            .map(|at| async move { (at, docker::DockerBackend::connect_to(at.as_deref()).await) });
        for (at, r) in futures_util::future::join_all(tries).await {
            match r {
                Ok(d) => self.insert(AnyBackend::Docker(d)),
                Err(e) if at.is_none() && local_needed => return Err(e),
                Err(e) => {
                    self.errors
                        .insert(EngineKey::docker(at.as_deref()), e.to_string());
                }
            }
        }
        Ok(())
    }

    /// Connects to find and remove objects: the Docker engines at `endpoints` and this
    /// machine's, and libvirt on every URI in `uris` (those that cannot be reached are
    /// reported by discovery); `env` when the objects are one environment's.
    pub async fn connect_all(
        uris: &BTreeSet<String>,
        endpoints: &BTreeSet<Option<String>>,
        env: Option<&Env>,
    ) -> Result<Backends, BackendError> {
        let mut out = Backends::default();
        out.connect_dockers(endpoints).await?;
        match libvirt::machines::Vms::at_uris(uris, env).await {
            Ok(v) => out.insert(AnyBackend::Libvirt(Box::new(v))),
            Err(e) => {
                out.errors
                    .insert(EngineKey::of(Backend::Libvirt, None), e.to_string());
            }
        }
        Ok(out)
    }

    /// Adds an engine (replacing one with the same key).
    pub fn insert(&mut self, b: AnyBackend) {
        let key = b.key();
        self.errors.remove(&key);
        self.map.insert(key, b);
    }

    /// The engine of a machine, or why it is not there.
    pub fn get(&self, m: &Machine) -> Result<&AnyBackend, BackendError> {
        self.get_at(&m.name, &EngineKey::machine(m))
    }

    /// The engine `key` for machine `name`, or why it is not there.
    pub fn get_at(&self, name: &str, key: &EngineKey) -> Result<&AnyBackend, BackendError> {
        let in_vm = key
            .at
            .as_deref()
            .and_then(|a| topology::vm_of_engine(Some(a)))
            .and_then(|vm| self.in_vms.get(vm))
            .and_then(|c| c.get());
        in_vm
            .or_else(|| self.map.get(key))
            .ok_or_else(|| match self.errors.get(key) {
                // The message already says which engine and what to do.
                Some(message) => BackendError::Engine {
                    action: format!("machine `{name}`"),
                    message: message.clone(),
                },
                None => BackendError::Unavailable {
                    machine: name.to_string(),
                    backend: key.kind,
                },
            })
    }

    /// The engine that holds an observed machine.
    pub fn get_observed(&self, m: &super::ObservedMachine) -> Result<&AnyBackend, BackendError> {
        self.get_at(&m.name, &EngineKey::of(m.backend, m.engine.as_deref()))
    }

    /// Why an engine of a kind could not be connected, if one could not.
    pub fn error(&self, kind: Backend) -> Option<&str> {
        self.errors
            .iter()
            .find(|(k, _)| k.kind == kind)
            .map(|(_, e)| e.as_str())
    }

    /// Engines that could not be connected, with why.
    pub fn errors(&self) -> impl Iterator<Item = (&EngineKey, &str)> {
        self.errors.iter().map(|(k, e)| (k, e.as_str()))
    }

    /// The engine of a kind on this machine, when connected.
    pub fn get_kind(&self, kind: Backend) -> Option<&AnyBackend> {
        self.map.get(&EngineKey::of(kind, None))
    }

    /// The engine `key` that `what` (a host, a network, a machine) needs, or why it is
    /// not there.
    pub fn engine(&self, what: &str, key: &EngineKey) -> Result<&AnyBackend, BackendError> {
        self.map.get(key).ok_or_else(|| match self.errors.get(key) {
            Some(message) => BackendError::Engine {
                action: what.to_string(),
                message: message.clone(),
            },
            None => BackendError::Unreachable {
                backend: key.kind,
                message: format!("{what}: not connected"),
            },
        })
    }

    /// The Docker engine at `at` (`None`: this machine's) that `what` needs for what only
    /// Docker does (swarms, anchors, keepers), or why it is not there.
    pub fn docker(
        &self,
        what: &str,
        at: Option<&str>,
    ) -> Result<&docker::DockerBackend, BackendError> {
        match self.engine(what, &EngineKey::docker(at))? {
            AnyBackend::Docker(d) => Ok(d),
            _ => Err(BackendError::Unavailable {
                machine: what.to_string(),
                backend: Backend::Docker,
            }),
        }
    }

    /// The kinds of engine this build has and the environment uses: connected, or
    /// failed to connect (their machines are unreachable, not unavailable).
    pub fn available(&self) -> BTreeSet<Backend> {
        self.map
            .keys()
            .chain(self.errors.keys())
            .map(|k| k.kind)
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &AnyBackend> {
        self.map
            .values()
            .chain(self.in_vms.values().filter_map(|c| c.get()))
    }

    /// Brings the Docker engines that share overlay networks into one swarm (or checks
    /// that they are in one, unless the environment lets hdev form it); returns the
    /// endpoint of the engine that manages it, where overlay networks are made.
    pub async fn ensure_swarm(&self, env: &Env) -> Result<Option<String>, BackendError> {
        let engines: BTreeSet<Option<String>> = topology::network_engines(env)
            .into_values()
            .filter(|e| e.len() > 1)
            .flatten()
            .collect();
        let mut members = Vec::new();
        for at in &engines {
            let host = topology::host_of_engine(env, at.as_deref());
            let engine = self.docker(&format!("host {host}"), at.as_deref())?;
            let advertise = env
                .layout
                .hosts
                .get(&host)
                .and_then(|h| h.advertise.clone());
            members.push(docker::swarm::Member {
                host,
                advertise,
                engine,
            });
        }
        if members.is_empty() {
            return Ok(None);
        }
        let create = env.layout.swarm == crate::envfile::SwarmMode::Create;
        let i = docker::swarm::ensure(&members, create).await?;
        Ok(members[i].engine.endpoint().map(str::to_string))
    }

    /// What every engine has for the environment instance. A network seen by several
    /// engines (an overlay) is one network.
    pub async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        let mut all = Observation::default();
        let looks = self.all().map(|b| b.observe(ctx));
        for o in futures_util::future::join_all(looks).await {
            let o = o?;
            all.machines.extend(o.machines);
            for (name, n) in o.networks {
                all.networks.entry(name).or_insert(n);
            }
            all.baselines.extend(o.baselines);
        }
        Ok(all)
    }
}

/// One line of `hdev doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Whether each engine can be reached (libvirt at `libvirt_uri`).
pub async fn probes(libvirt_uri: &str) -> Vec<Probe> {
    vec![docker::probe().await, libvirt::probe(libvirt_uri).await]
}
