//! The recording test double of the [`Engine`] contract: machines, networks and captured
//! states held in memory, every call recorded as `"op machine"`, and failures injected by
//! call. The fast test tier runs the application's rules over it, without any daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{
    BackendError, BaseRequest, BaseSource, CachedState, Captured, Counts, Discovery, Engine,
    EnvCtx, ExecOutcome, Found, LineSink, LogLine, LogSink, MachineSpec, NetSpec, ObjectKind,
    Observation, ObservedMachine, ObservedNetwork, Resolved, RunState, StatePart,
};
use crate::boxes::Store;
use crate::envfile::Backend;
use crate::snapshot::changes::Kind;
use crate::snapshot::{missing, Drift, BASELINE};

#[derive(Debug, Clone)]
struct FakeMachine {
    name: String,
    instance: String,
    dir: String,
    hash: String,
    running: bool,
    /// Files the machine holds now (what `exec "touch F"` adds to).
    files: BTreeSet<String>,
    /// Captured states: name -> files then.
    states: BTreeMap<String, BTreeSet<String>>,
    addresses: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u32,
    machines: BTreeMap<String, FakeMachine>,
    /// (instance, network) -> subnet.
    networks: BTreeMap<(String, String), Option<String>>,
    calls: Vec<String>,
    /// Calls (`"create api"`) that fail.
    fail: BTreeSet<String>,
    /// The provisioned-state cache: per-machine hash -> files then.
    cache: BTreeMap<String, BTreeSet<String>>,
}

/// Where the fake keeps the cache entry of a hash.
const CACHE_PREFIX: &str = "fake-cache:";

/// An in-memory engine of kind `kind`.
pub struct FakeBackend {
    kind: Backend,
    inner: Mutex<Inner>,
}

impl FakeBackend {
    pub fn new(kind: Backend) -> FakeBackend {
        FakeBackend {
            kind,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Makes `call` (`"op machine"`) fail from now on.
    pub fn fail(&self, call: &str) {
        self.with(|i| i.fail.insert(call.to_string()));
    }

    /// Lets every call succeed again.
    pub fn heal(&self) {
        self.with(|i| i.fail.clear());
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.with(|i| i.calls.clone())
    }

    pub fn clear_calls(&self) {
        self.with(|i| i.calls.clear());
    }

    /// Records a call on machine id `id` (or object `id`); fails when asked to.
    fn call(&self, op: &str, id: &str) -> Result<(), BackendError> {
        self.with(|i| {
            let who = i
                .machines
                .get(id)
                .map_or(id, |m| m.name.as_str())
                .to_string();
            let c = format!("{op} {who}");
            i.calls.push(c.clone());
            if i.fail.contains(&c) {
                return Err(BackendError::Engine {
                    action: op.to_string(),
                    message: format!("injected failure of `{c}`"),
                });
            }
            Ok(())
        })
    }

    fn machine<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut FakeMachine) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.with(|i| match i.machines.get_mut(id) {
            Some(m) => f(m),
            None => Err(BackendError::NotFound {
                what: "machine",
                name: id.to_string(),
            }),
        })
    }
}

impl Engine for FakeBackend {
    fn kind(&self) -> Backend {
        self.kind
    }

    async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        let kind = self.kind;
        Ok(self.with(|i| {
            let mut o = Observation::default();
            for (id, m) in i
                .machines
                .iter()
                .filter(|(_, m)| m.instance == ctx.instance)
            {
                o.machines.insert(
                    m.name.clone(),
                    ObservedMachine {
                        name: m.name.clone(),
                        backend: kind,
                        id: id.clone(),
                        state: if m.running {
                            RunState::Running
                        } else {
                            RunState::Stopped
                        },
                        hash: Some(m.hash.clone()),
                        addresses: m.addresses.clone(),
                        ports: Vec::new(),
                        engine: None,
                    },
                );
                if m.states.contains_key(BASELINE) {
                    o.baselines.insert(m.name.clone());
                }
            }
            for ((_, n), subnet) in i
                .networks
                .iter()
                .filter(|((inst, _), _)| *inst == ctx.instance)
            {
                o.networks.insert(
                    n.clone(),
                    ObservedNetwork {
                        name: n.clone(),
                        engine_name: format!("{}-{n}", ctx.instance),
                        subnet: subnet.clone(),
                        bridge: None,
                    },
                );
            }
            o
        }))
    }

    async fn ensure_network(
        &self,
        ctx: &EnvCtx,
        net: Option<&NetSpec>,
    ) -> Result<(), BackendError> {
        let name = net.map_or("_default", |n| n.name.as_str()).to_string();
        self.call("network", &name)?;
        let subnet = net.map(|n| format!("{}/{}", n.subnet.network(), n.subnet.prefix));
        self.with(|i| i.networks.insert((ctx.instance.clone(), name), subnet));
        Ok(())
    }

    async fn prepare(&self, _store: &Store, req: &BaseRequest) -> Result<Resolved, BackendError> {
        self.call("prepare", &req.machine)?;
        Ok(Resolved::Image(match &req.source {
            BaseSource::Stored(b) => b.manifest.name.clone(),
            BaseSource::Reference(r) => r.clone(),
        }))
    }

    async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError> {
        self.call("create", &spec.name)?;
        Ok(self.with(|i| {
            i.next += 1;
            let id = format!("fake-{}-{}", spec.name, i.next);
            let files = match &spec.base {
                Resolved::Image(r) => r
                    .strip_prefix(CACHE_PREFIX)
                    .and_then(|h| i.cache.get(h).cloned())
                    .unwrap_or_default(),
                _ => BTreeSet::new(),
            };
            i.machines.insert(
                id.clone(),
                FakeMachine {
                    name: spec.name.clone(),
                    instance: ctx.instance.clone(),
                    dir: ctx.dir.to_string_lossy().into_owned(),
                    hash: spec.hash.clone(),
                    running: false,
                    files,
                    states: BTreeMap::new(),
                    addresses: spec
                        .networks
                        .iter()
                        .filter_map(|n| n.address.map(|a| (n.name.clone(), a.to_string())))
                        .collect(),
                },
            );
            id
        }))
    }

    async fn start(&self, id: &str) -> Result<(), BackendError> {
        self.call("start", id)?;
        self.machine(id, |m| {
            m.running = true;
            Ok(())
        })
    }

    async fn stop(&self, id: &str) -> Result<(), BackendError> {
        self.call("stop", id)?;
        self.machine(id, |m| {
            m.running = false;
            Ok(())
        })
    }

    async fn remove(&self, id: &str) -> Result<(), BackendError> {
        self.call("remove", id)?;
        self.with(|i| i.machines.remove(id));
        Ok(())
    }

    /// `touch PATH` adds a file, `false` fails, anything else succeeds; output is the
    /// command itself.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        self.call("exec", id)?;
        let script = cmd.last().cloned().unwrap_or_default();
        let exit_code = self.machine(id, |m| {
            if !m.running {
                return Err(BackendError::NotRunning {
                    machine: m.name.clone(),
                    state: "stopped".into(),
                });
            }
            if let Some(path) = script.strip_prefix("touch ") {
                m.files.insert(path.trim().to_string());
            }
            Ok(i64::from(script.trim() == "false"))
        })?;
        sink(&script);
        Ok(ExecOutcome {
            exit_code,
            tail: vec![script],
        })
    }

    async fn copy_in(&self, id: &str, dest: &str, _tar: Vec<u8>) -> Result<(), BackendError> {
        self.call("copy", id)?;
        self.machine(id, |m| {
            m.files.insert(dest.to_string());
            Ok(())
        })
    }

    async fn interactive(
        &self,
        id: &str,
        cmd: &[String],
        _tty: bool,
        _size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        Ok(self.exec(id, cmd, &|_| {}).await?.exit_code)
    }

    async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(BTreeMap::from([("ansible_host".into(), id.to_string())]))
    }

    async fn logs(
        &self,
        id: &str,
        _follow: bool,
        _tail: Option<u32>,
        sink: LogSink<'_>,
    ) -> Result<(), BackendError> {
        self.call("logs", id)?;
        sink(LogLine {
            stderr: false,
            text: format!("log of {id}"),
        });
        Ok(())
    }

    async fn capture(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<Captured, BackendError> {
        self.call(&format!("capture:{name}"), id)?;
        self.machine(id, |m| {
            m.states.insert(name.to_string(), m.files.clone());
            Ok(Captured {
                id: id.to_string(),
                location: format!("fake:{}:{name}", spec.name),
            })
        })
    }

    async fn cache_find(&self, hash: &str) -> Result<Option<String>, BackendError> {
        Ok(self.with(|i| {
            i.cache
                .contains_key(hash)
                .then(|| format!("{CACHE_PREFIX}{hash}"))
        }))
    }

    async fn cache_keep(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        env: &str,
    ) -> Result<Option<(String, CachedState)>, BackendError> {
        self.call("cache_keep", id)?;
        let files = self.machine(id, |m| Ok(m.files.clone()))?;
        let size = files.len() as u64;
        self.with(|i| i.cache.insert(spec.hash.clone(), files));
        Ok(Some((
            id.to_string(),
            CachedState {
                hash: spec.hash.clone(),
                location: format!("{CACHE_PREFIX}{}", spec.hash),
                machine: spec.name.clone(),
                env: env.to_string(),
                size,
                created: 0,
            },
        )))
    }

    async fn cache_list(&self) -> Result<Vec<CachedState>, BackendError> {
        Ok(self.with(|i| {
            i.cache
                .iter()
                .map(|(h, f)| CachedState {
                    hash: h.clone(),
                    location: format!("{CACHE_PREFIX}{h}"),
                    machine: String::new(),
                    env: String::new(),
                    size: f.len() as u64,
                    created: 0,
                })
                .collect()
        }))
    }

    async fn cache_remove(&self, location: &str) -> Result<(), BackendError> {
        let hash = location.strip_prefix(CACHE_PREFIX).unwrap_or(location);
        self.with(|i| i.cache.remove(hash));
        Ok(())
    }

    async fn restore(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        self.call(&format!("restore:{name}"), id)?;
        self.machine(id, |m| {
            let files = m
                .states
                .get(name)
                .ok_or_else(|| BackendError::from(missing(&spec.name, name)))?;
            m.files = files.clone();
            m.running = true;
            Ok(id.to_string())
        })
    }

    async fn drift(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        self.machine(id, |m| {
            let base = m
                .states
                .get(BASELINE)
                .ok_or_else(|| BackendError::from(missing(machine, BASELINE)))?;
            let added = m.files.difference(base).map(|f| (f.clone(), Kind::Added));
            let deleted = base
                .difference(&m.files)
                .map(|f| (f.clone(), Kind::Deleted));
            Ok(Drift::from_changes(added.chain(deleted)))
        })
    }

    async fn states(
        &self,
        ctx: &EnvCtx,
        _observed: &Observation,
    ) -> Result<Vec<StatePart>, BackendError> {
        let kind = self.kind;
        Ok(self.with(|i| {
            i.machines
                .values()
                .filter(|m| m.instance == ctx.instance)
                .flat_map(|m| {
                    m.states.keys().map(|s| StatePart {
                        name: s.clone(),
                        machine: m.name.clone(),
                        backend: kind,
                        created: 0,
                        own_bytes: 0,
                        chain_bytes: 0,
                    })
                })
                .collect()
        }))
    }

    async fn delete_state(
        &self,
        _ctx: &EnvCtx,
        _machine: &str,
        id: Option<&str>,
        name: &str,
    ) -> Result<bool, BackendError> {
        let Some(id) = id else { return Ok(false) };
        self.machine(id, |m| Ok(m.states.remove(name).is_some()))
    }

    async fn discover(&self, instance: Option<&str>) -> Result<Discovery, BackendError> {
        Ok(self.with(|i| {
            let found = i
                .machines
                .iter()
                .filter(|(_, m)| instance.is_none_or(|w| w == m.instance))
                .map(|(id, m)| Found {
                    backend: self.kind,
                    kind: ObjectKind::Container,
                    id: id.clone(),
                    instance: m.instance.clone(),
                    dir: m.dir.clone(),
                    place: None,
                })
                .collect();
            Discovery {
                found,
                unreachable: Vec::new(),
            }
        }))
    }

    async fn remove_found(&self, found: &[Found]) -> Result<Counts, BackendError> {
        for f in found {
            self.remove(&f.id).await?;
        }
        Ok(Counts::of(found))
    }
}
