//! Backends: the engines machines run on, behind one enum so that `up` can drive an
//! environment that mixes containers and VMs.
//!
//! A backend receives resolved machine specs (never the Envfile) and reports what exists
//! by the labels hdev put on it, so the engine, not `.hdev/state.json`, is the truth about
//! what is running. A machine whose backend is not part of this build (libvirt, for now)
//! gets [`BackendError::Unavailable`] naming the machine; the others go ahead.

pub mod docker;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::envfile::{Backend, Env, Machine, Network};

/// Label naming the environment instance an object belongs to.
pub const LABEL_ENV: &str = "hdev.env";
/// Label naming the machine a container (or baseline image) belongs to.
pub const LABEL_MACHINE: &str = "hdev.machine";
/// Label carrying the per-machine hash a container was created from.
pub const LABEL_HASH: &str = "hdev.hash";
/// Label carrying the environment's folder, so `gc` can tell dead environments.
pub const LABEL_DIR: &str = "hdev.dir";
/// Label naming the Envfile network a Docker network stands for.
pub const LABEL_NETWORK: &str = "hdev.network";
/// Label on images that hold a machine's state: `baseline` or a snapshot name.
pub const LABEL_SNAPSHOT: &str = "hdev.snapshot";

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The engine could not be reached at all.
    #[error("cannot reach the {backend} engine: {message}; is the daemon running? (`hdev doctor` checks)")]
    Unreachable { backend: Backend, message: String },
    /// The object asked for does not exist (a 404 from the engine).
    #[error("{what} `{name}` does not exist")]
    NotFound { what: &'static str, name: String },
    /// The machine names a backend that this build does not contain.
    #[error("machine `{machine}`: the {backend} backend is not available in this build")]
    Unavailable { machine: String, backend: Backend },
    /// The engine refused or failed a request.
    #[error("{action}: {message}")]
    Engine { action: String, message: String },
    /// A host file could not be read or packed.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The image a machine needs is not in the engine, and no registry can supply it.
    #[error("image `{image}` of machine `{machine}` is not in the local Docker engine; no registry is reachable, so name a `box` or import the image first")]
    ImageMissing { machine: String, image: String },
    /// The machine's box could not be turned into an image.
    #[error("box `{name}` of machine `{machine}`: {message}")]
    Box {
        machine: String,
        name: String,
        message: String,
    },
    /// The machine is not running, so it cannot run commands.
    #[error("machine `{machine}` is not running (it is {state}); run `hdev up` first")]
    NotRunning { machine: String, state: String },
}

/// Where a machine is, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// Created or exited: exists but does not run.
    Stopped,
    Paused,
    /// Restarting, being removed, dead: anything the engine is still busy with.
    Other,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Paused => "paused",
            RunState::Other => "busy",
        })
    }
}

/// One machine as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedMachine {
    pub name: String,
    pub backend: Backend,
    /// Container id or domain name.
    pub id: String,
    pub state: RunState,
    /// Hash label it was created with.
    pub hash: Option<String>,
    /// Envfile network name -> address.
    pub addresses: BTreeMap<String, String>,
    /// Published ports as `host_ip:host_port->guest/proto`.
    pub ports: Vec<String>,
}

/// One environment network as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedNetwork {
    /// Envfile network name.
    pub name: String,
    /// Engine object name.
    pub engine_name: String,
    pub subnet: Option<String>,
    /// Linux bridge the network uses.
    pub bridge: Option<String>,
}

/// Everything one environment has in the engines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub machines: BTreeMap<String, ObservedMachine>,
    pub networks: BTreeMap<String, ObservedNetwork>,
    /// Machines that have a baseline image.
    pub baselines: BTreeSet<String>,
}

/// Names and labels that place an object in an environment.
#[derive(Debug, Clone)]
pub struct EnvCtx {
    pub instance: String,
    pub dir: PathBuf,
}

/// What a machine is created from, resolved from the Envfile.
#[derive(Debug, Clone)]
pub struct MachineSpec<'a> {
    pub machine: &'a Machine,
    /// Per-machine hash, stored as a label.
    pub hash: String,
    /// Image reference (resolved from the box or given).
    pub image: String,
    /// Envfile networks the machine attaches to, in order.
    pub networks: Vec<&'a Network>,
    /// Host paths of the synced folders, resolved against the Envfile's folder.
    pub synced: Vec<(PathBuf, String, bool)>,
    /// `NAME:ADDRESS` entries for the machine's hosts file (VMs, which Docker's DNS does
    /// not know).
    pub extra_hosts: Vec<String>,
    /// Base volumes of a VM (libvirt machines only).
    #[cfg(feature = "libvirt")]
    pub volumes: Option<crate::boxes::libvirt::BaseVolumes>,
}

/// A backend instance, dispatched by enum so a VM backend can sit beside Docker.
pub enum AnyBackend {
    Docker(docker::DockerBackend),
    #[cfg(feature = "libvirt")]
    Libvirt(Box<libvirt::machines::Vms>),
}

impl AnyBackend {
    pub fn kind(&self) -> Backend {
        match self {
            AnyBackend::Docker(_) => Backend::Docker,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(_) => Backend::Libvirt,
        }
    }

    pub fn docker(&self) -> Option<&docker::DockerBackend> {
        match self {
            AnyBackend::Docker(d) => Some(d),
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(_) => None,
        }
    }
}

/// The backends one command uses, keyed by kind.
#[derive(Default)]
pub struct Backends {
    map: BTreeMap<Backend, AnyBackend>,
    /// Why a backend the environment needs could not be connected.
    errors: BTreeMap<Backend, String>,
}

impl Backends {
    /// Connects to the backends the environment's machines need (Docker always, since
    /// networks and leftovers live there); backends missing from this build are left out
    /// and reported per machine by [`Backends::get`].
    pub async fn connect(env: Option<&Env>) -> Result<Backends, BackendError> {
        let mut map = BTreeMap::new();
        map.insert(
            Backend::Docker,
            AnyBackend::Docker(docker::DockerBackend::connect().await?),
        );
        #[cfg_attr(not(feature = "libvirt"), allow(unused_mut))]
        let mut errors = BTreeMap::new();
        #[cfg(feature = "libvirt")]
        if let Some(env) =
            env.filter(|e| e.machines.values().any(|m| m.backend == Backend::Libvirt))
        {
            match libvirt::machines::Vms::connect(env).await {
                Ok(v) => {
                    map.insert(Backend::Libvirt, AnyBackend::Libvirt(Box::new(v)));
                }
                Err(e) => {
                    errors.insert(Backend::Libvirt, e.to_string());
                }
            }
        }
        #[cfg(not(feature = "libvirt"))]
        let _ = env;
        Ok(Backends { map, errors })
    }

    /// The backend of a machine, or why it is not there.
    pub fn get(&self, m: &Machine) -> Result<&AnyBackend, BackendError> {
        self.map
            .get(&m.backend)
            .ok_or_else(|| match self.errors.get(&m.backend) {
                Some(message) => BackendError::Unreachable {
                    backend: m.backend,
                    message: format!("machine `{}`: {message}", m.name),
                },
                None => BackendError::Unavailable {
                    machine: m.name.clone(),
                    backend: m.backend,
                },
            })
    }

    /// The VM backend, when connected.
    #[cfg(feature = "libvirt")]
    pub fn libvirt(&self) -> Option<&libvirt::machines::Vms> {
        match self.map.get(&Backend::Libvirt) {
            Some(AnyBackend::Libvirt(v)) => Some(v),
            _ => None,
        }
    }

    /// The backend of a kind, when this build has it.
    pub fn get_kind(&self, kind: Backend) -> Option<&AnyBackend> {
        self.map.get(&kind)
    }

    pub fn available(&self) -> BTreeSet<Backend> {
        self.map.keys().copied().collect()
    }

    pub fn docker(&self) -> Option<&docker::DockerBackend> {
        self.map.get(&Backend::Docker).and_then(AnyBackend::docker)
    }

    /// What every backend has for the environment instance.
    pub async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        let mut all = Observation::default();
        for b in self.map.values() {
            let o = match b {
                AnyBackend::Docker(d) => d.observe(&ctx.instance).await?,
                #[cfg(feature = "libvirt")]
                AnyBackend::Libvirt(v) => {
                    let (vms, baselines) = v.observe(&ctx.instance).await?;
                    Observation {
                        machines: vms.into_iter().map(|m| (m.name.clone(), m)).collect(),
                        baselines: baselines.into_iter().collect(),
                        ..Observation::default()
                    }
                }
            };
            all.machines.extend(o.machines);
            all.networks.extend(o.networks);
            all.baselines.extend(o.baselines);
        }
        Ok(all)
    }
}

/// Output of a command run in a machine, delivered line by line as it arrives.
pub type LineSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// The result of a command run in a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// The last lines of output (stdout and stderr interleaved), for error messages.
    pub tail: Vec<String>,
}

/// How many lines of output an [`ExecOutcome`] keeps.
pub const TAIL_LINES: usize = 40;

/// Operations every backend offers; the enum dispatches to the engine in use.
impl AnyBackend {
    pub async fn ensure_network(
        &self,
        ctx: &EnvCtx,
        net: Option<&Network>,
    ) -> Result<(), BackendError> {
        match self {
            AnyBackend::Docker(d) => d.ensure_network(ctx, net).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(_) => Ok(()),
        }
    }

    /// Creates a machine (not started); returns its engine id.
    pub async fn create(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec<'_>,
    ) -> Result<String, BackendError> {
        match self {
            AnyBackend::Docker(d) => d.create_machine(ctx, spec).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.create(ctx, spec).await,
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), BackendError> {
        match self {
            AnyBackend::Docker(d) => d.start(id).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.start(id).await,
        }
    }

    pub async fn stop(&self, id: &str) -> Result<(), BackendError> {
        match self {
            AnyBackend::Docker(d) => d.stop(id, 5).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.stop(id).await,
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), BackendError> {
        match self {
            AnyBackend::Docker(d) => d.remove(id).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.remove(id).await,
        }
    }

    /// Runs `cmd` in the machine to its end, streaming output lines to `sink`.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        match self {
            AnyBackend::Docker(d) => d.exec(id, cmd, sink).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.exec(id, cmd, sink).await,
        }
    }

    /// Inventory variables with which ansible reaches the machine.
    pub async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        match self {
            AnyBackend::Docker(_) => Ok(BTreeMap::from([
                (
                    "ansible_connection".to_string(),
                    "community.docker.docker".to_string(),
                ),
                ("ansible_host".to_string(), id.to_string()),
            ])),
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.ansible_vars(id).await,
        }
    }

    /// Unpacks a tar archive into an existing folder of the machine.
    pub async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        match self {
            AnyBackend::Docker(d) => d.copy_in(id, dest, tar).await,
            #[cfg(feature = "libvirt")]
            AnyBackend::Libvirt(v) => v.copy_in(id, dest, tar).await,
        }
    }
}
