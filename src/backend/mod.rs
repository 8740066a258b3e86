//! Backends: the engines machines run on. [`Engine`] is the whole contract an engine
//! implements; [`AnyBackend`] (in `any.rs`) is the one enum that dispatches it, so `up` can
//! drive an environment that mixes containers and VMs.
//!
//! An engine receives owned, resolved machine specs ([`MachineSpec`], built in `spec.rs`)
//! and reports what exists by the labels hdev put on it, so the engine, not
//! `.hdev/state.json`, is the truth about what is running. A machine whose backend is not
//! part of this build gets [`BackendError::Unavailable`] naming the machine; the others
//! go ahead.
//!
//! Adding an engine: a folder beside `docker/` and `libvirt/` whose type implements
//! [`Engine`], one arm in `any.rs`'s enum and dispatch macro, and one variant of
//! `envfile::Backend` so an Envfile can name it.

pub mod anchor;
mod any;
#[cfg(test)]
pub(crate) mod contract;
pub mod docker;
#[cfg(test)]
pub(crate) mod fake;
// The one place the libvirt feature is looked at: without it, `libvirt` is a module whose
// engine type has no values, so every match on `AnyBackend` stays the same.
#[cfg_attr(not(feature = "libvirt"), path = "libvirt_absent.rs")]
pub mod libvirt;
mod spec;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::boxes::{Store, StoredBox};
use crate::envfile::Backend;
use crate::snapshot::{Drift, SnapshotError};

pub use any::{probes, AnyBackend, Backends, EngineKey, Probe};
pub use spec::{spec_for, MachineSpec, NetSpec, Resolved, SyncedFolder};

/// Label naming the environment instance an object belongs to.
/// The libvirt domain of a VM of an instance.
pub fn vm_domain(instance: &str, machine: &str) -> String {
    format!("hdev-{instance}-{machine}")
}

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
/// Label on a provisioned-state cache entry: the full per-machine hash it holds.
/// Label on a container whose baseline is the image it was created from (it has no
/// provisioning): that image's reference. Blank on images, so that containers created
/// from a snapshot image do not inherit it.
pub const LABEL_BASELINE_IMAGE: &str = "hdev.baseline.image";
/// Label on a provisioned-state cache entry: the full per-machine hash it holds.
pub const LABEL_CACHE: &str = "hdev.cache.hash";
/// Label on a cache entry: the machine it was provisioned as.
pub const LABEL_CACHE_MACHINE: &str = "hdev.cache.machine";
/// Label on a cache entry: the environment (its name, not its instance) it came from.
pub const LABEL_CACHE_ENV: &str = "hdev.cache.env";

/// What to do about an engine that cannot be reached, from why it cannot: a user who may
/// not use its socket is told which group to join, not to start a daemon that runs.
pub fn reach_hint(backend: Backend, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("permission denied") || m.contains("polkit") || m.contains("authentication") {
        let group = match backend {
            Backend::Docker => "docker",
            Backend::Libvirt => "libvirt",
        };
        let polkit = match backend {
            Backend::Libvirt => "; where no polkit runs, libvirtd's socket must be opened to that group (README: *On a laptop, as yourself*)",
            Backend::Docker => "",
        };
        format!("your user may not use the {backend} daemon's socket: add it to the `{group}` group (`sudo usermod -aG {group} $USER`, then log in again){polkit}")
    } else {
        "is the daemon running? (`hdev doctor` checks)".to_string()
    }
}

/// An error and its sources, `: `-separated (bollard's own message hides the cause, such
/// as a socket's permission).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The engine could not be reached at all.
    #[error("cannot reach the {backend} engine: {message}; {}", reach_hint(*backend, message))]
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
    /// A box could not be imported into the engine.
    #[error(transparent)]
    Boxes(Box<crate::boxes::BoxError>),
    /// A baseline or snapshot is missing, or the guest could not prepare one.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl From<crate::boxes::BoxError> for BackendError {
    fn from(e: crate::boxes::BoxError) -> Self {
        BackendError::Boxes(Box::new(e))
    }
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
    /// The Docker endpoint of the engine that holds it (`None`: this machine's, or a VM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
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

/// Output of a command run in a machine, delivered line by line as it arrives.
pub type LineSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A line of a machine's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stderr: bool,
    pub text: String,
}

/// Where log lines go.
pub type LogSink<'a> = &'a (dyn Fn(LogLine) + Send + Sync);

/// The result of a command run in a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// The last lines of output (stdout and stderr interleaved), for error messages.
    pub tail: Vec<String>,
}

/// How many lines of output an [`ExecOutcome`] keeps.
pub const TAIL_LINES: usize = 40;

/// Where a machine's base comes from, before an engine prepares it.
#[derive(Debug, Clone)]
pub enum BaseSource {
    /// A box from the store (built or added, verified), to import into the engine.
    Stored(Box<StoredBox>),
    /// An image the engine must already hold (no registry is reachable).
    Reference(String),
}

/// What [`Engine::prepare`] is asked for: one machine base, on one connection.
#[derive(Debug, Clone)]
pub struct BaseRequest {
    /// A machine that uses this base, for messages.
    pub machine: String,
    /// The engine connection it is prepared on (a libvirt URI), when the engine has several.
    pub place: Option<String>,
    pub source: BaseSource,
}

/// A state an engine captured: the machine's id afterwards (a container is recreated on
/// its baseline) and where the state lives (image id, layer volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub id: String,
    pub location: String,
}

/// A provisioned state an engine keeps in the provisioned-state cache: a machine as its
/// provisioning left it, to be created from by any environment whose machine has the
/// same per-machine hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedState {
    /// The full per-machine hash.
    pub hash: String,
    /// Where the engine holds it (an image id).
    pub location: String,
    /// The machine and environment it was provisioned as.
    pub machine: String,
    pub env: String,
    /// Bytes it adds to the base it was provisioned on.
    pub size: u64,
    /// When it was kept (seconds since the epoch).
    pub created: i64,
}

/// One machine's part of a named snapshot (or of the baseline).
#[derive(Debug, Clone, Serialize)]
pub struct StatePart {
    /// The snapshot's name (`baseline` included).
    pub name: String,
    pub machine: String,
    pub backend: Backend,
    /// Unix time it was captured.
    pub created: i64,
    /// Bytes it adds on top of what it was captured on.
    pub own_bytes: u64,
    /// Bytes of its whole chain of layers (VMs; the box excluded).
    pub chain_bytes: u64,
}

/// Kinds of object hdev creates in engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Vm,
    Container,
    Network,
    Volume,
    Image,
}

/// An object hdev made, found by its labels (or domain metadata), for `destroy` and `gc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The engine that holds it (and removes it).
    pub backend: Backend,
    pub kind: ObjectKind,
    /// Engine id or name.
    pub id: String,
    /// Environment instance it belongs to.
    pub instance: String,
    /// Folder of the environment that made it (empty when unknown).
    pub dir: String,
    /// Engine connection it lives on (a libvirt URI), when the engine has several.
    pub place: Option<String>,
}

/// How many objects of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub vms: usize,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub images: usize,
}

impl Counts {
    /// Counts of a list of found objects.
    pub fn of(found: &[Found]) -> Counts {
        let mut c = Counts::default();
        for f in found {
            *c.slot(f.kind) += 1;
        }
        c
    }

    fn slot(&mut self, kind: ObjectKind) -> &mut usize {
        match kind {
            ObjectKind::Vm => &mut self.vms,
            ObjectKind::Container => &mut self.containers,
            ObjectKind::Network => &mut self.networks,
            ObjectKind::Volume => &mut self.volumes,
            ObjectKind::Image => &mut self.images,
        }
    }

    pub fn total(&self) -> usize {
        self.vms + self.containers + self.networks + self.volumes + self.images
    }

    pub fn add(&mut self, other: Counts) {
        self.vms += other.vms;
        self.containers += other.containers;
        self.networks += other.networks;
        self.volumes += other.volumes;
        self.images += other.images;
    }
}

/// What an engine found for `gc` or `destroy`: its objects, and the connections it could
/// not look at (said, not fatal).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub found: Vec<Found>,
    pub unreachable: Vec<String>,
}

/// The engine contract: everything hdev asks of Docker, libvirt or the recording fake.
/// Ids are the engine's own (container id, domain name). Errors name the machine or object.
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// Which backend this is.
    fn kind(&self) -> Backend;

    /// Every machine, network and baseline the engine holds for the instance.
    async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError>;

    /// Creates an environment network the engine hosts (`None`: the default network).
    async fn ensure_network(&self, ctx: &EnvCtx, net: Option<&NetSpec>)
        -> Result<(), BackendError>;

    /// Prepares a machine base in the engine (imports a box, checks an image).
    async fn prepare(&self, store: &Store, req: &BaseRequest) -> Result<Resolved, BackendError>;

    /// Creates a machine (not started); returns its engine id.
    async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError>;

    /// Starts a machine and waits until it accepts commands.
    async fn start(&self, id: &str) -> Result<(), BackendError>;

    async fn stop(&self, id: &str) -> Result<(), BackendError>;

    /// Removes a machine and what only it used; gone already is fine.
    async fn remove(&self, id: &str) -> Result<(), BackendError>;

    /// Runs `cmd` in the machine to its end, streaming output lines to `sink`.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError>;

    /// Unpacks a tar archive into an existing folder of the machine.
    async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError>;

    /// Runs `cmd` (a login shell when empty) attached to this terminal; its exit code.
    async fn interactive(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError>;

    /// Inventory variables with which ansible reaches the machine.
    async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError>;

    /// The file where a machine's boot shows (a VM's serial console), if it has one: what
    /// `up` shows of a machine while it waits for it to answer.
    fn boot_log(&self, _id: &str) -> Option<PathBuf> {
        None
    }

    /// A machine's log (main process, or serial console), the last `tail` lines, then
    /// new ones while `follow`.
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u32>,
        sink: LogSink<'_>,
    ) -> Result<(), BackendError>;

    /// Captures state `name` (the baseline or a snapshot) of a machine.
    async fn capture(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<Captured, BackendError>;

    /// Returns a machine to state `name` and starts it; returns its id afterwards.
    async fn restore(
        &self,
        ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<String, BackendError>;

    /// Files added, changed and deleted in a machine since its baseline.
    async fn drift(&self, machine: &str, id: &str) -> Result<Drift, BackendError>;

    /// [`Engine::drift`] with file contents compared to the baseline's, so that a change
    /// that keeps a file's size and time is found too. The default is `drift` itself, for
    /// engines whose drift already lists every file written since the baseline (Docker's
    /// diff does: any write copies the file up).
    async fn drift_deep(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        self.drift(machine, id).await
    }

    /// Every captured state of the instance's machines.
    async fn states(
        &self,
        ctx: &EnvCtx,
        observed: &Observation,
    ) -> Result<Vec<StatePart>, BackendError>;

    /// Deletes state `name` of one machine; whether it existed.
    async fn delete_state(
        &self,
        ctx: &EnvCtx,
        machine: &str,
        id: Option<&str>,
        name: &str,
    ) -> Result<bool, BackendError>;

    /// The provisioned-state cache entry of per-machine hash `hash` (its location), if
    /// the engine holds one. Engines without a cache hold none.
    async fn cache_find(&self, _hash: &str) -> Result<Option<String>, BackendError> {
        Ok(None)
    }

    /// Keeps the provisioned machine `id` in the cache under its spec's hash, and moves
    /// the machine onto what was kept (so that its baseline is taken on it and shares
    /// it); returns the machine's id afterwards and the entry. `None`: the engine keeps
    /// no cache, and the machine is left as it was.
    async fn cache_keep(
        &self,
        _ctx: &EnvCtx,
        _spec: &MachineSpec,
        _id: &str,
        _env: &str,
    ) -> Result<Option<(String, CachedState)>, BackendError> {
        Ok(None)
    }

    /// Every entry of the provisioned-state cache the engine holds.
    async fn cache_list(&self) -> Result<Vec<CachedState>, BackendError> {
        Ok(Vec::new())
    }

    /// Removes the cache entry at `location` (machines created from it keep running).
    async fn cache_remove(&self, _location: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Objects hdev made, of one instance or of every one (for `gc`).
    async fn discover(&self, instance: Option<&str>) -> Result<Discovery, BackendError>;

    /// Removes found objects in the order the engine needs; how many went.
    async fn remove_found(&self, found: &[Found]) -> Result<Counts, BackendError>;
}
