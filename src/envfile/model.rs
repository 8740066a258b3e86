//! The validated environment: what an Envfile means once every check has passed.
//!
//! Nothing here is parsed or checked again downstream: backends, planning and hashing take
//! these types as given. Spans are kept only where later checks point back into the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the Envfile meaning; part of every hash so that a change in how hdev reads an
/// Envfile can never be mistaken for the same environment.
/// An environment that declares no source is hashed as in version 1 (see docs/HASH.md),
/// so that every hash recorded before sources existed still holds.
pub const SCHEMA_VERSION: u32 = 2;

/// How the paths of an Envfile name a file of a source: `source:NAME/PATH`.
pub const SOURCE_PREFIX: &str = "source:";

/// The source and the path inside it that `written` names, when it names one
/// (`source:scheduler/deploy.sh` is `("scheduler", "deploy.sh")`, `source:scheduler` is
/// `("scheduler", "")`).
pub fn source_ref(written: &str) -> Option<(&str, &str)> {
    let rest = written.strip_prefix(SOURCE_PREFIX)?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// Which commit of its repository a source stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GitRef {
    /// A commit, by its id (or a prefix of it).
    Rev(String),
    /// A tag, which should not move.
    Tag(String),
    /// A branch, which moves: `Envfile.lock` pins where it was.
    Branch(String),
}

impl GitRef {
    /// The key the Envfile writes it with.
    pub fn key(&self) -> &'static str {
        match self {
            GitRef::Rev(_) => "rev",
            GitRef::Tag(_) => "tag",
            GitRef::Branch(_) => "branch",
        }
    }

    /// The written value.
    pub fn value(&self) -> &str {
        match self {
            GitRef::Rev(v) | GitRef::Tag(v) | GitRef::Branch(v) => v,
        }
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key(), self.value())
    }
}

/// A `[source.NAME]`: a sub-project's git repository at one commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceDef {
    pub name: String,
    /// URL or path of the repository, as written (a relative path is relative to the
    /// Envfile's folder).
    pub git: String,
    pub pin: GitRef,
    /// The folder of the repository the source is (default: its root).
    pub subdir: Option<String>,
    /// Where `rev`/`tag`/`branch` is written, for errors found in the repository.
    #[serde(skip)]
    pub span: Range<usize>,
}

/// One place where the Envfile names a path in a source, checked against the source's
/// tree once the source is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUse {
    pub source: String,
    /// The path inside the source (empty: the source's root).
    pub path: String,
    /// Whether it must be a file (a script, a playbook) rather than a file or a folder.
    pub file_only: bool,
    pub span: Range<usize>,
}

/// The sources of an environment: what the Envfile declares, where it uses them, and,
/// once resolved outside the model, the folder that holds each one's files.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub defs: BTreeMap<String, SourceDef>,
    pub uses: Vec<SourceUse>,
    /// Source name -> the folder with its files (filled by whoever resolves sources; a
    /// path in a source that is not resolved names nothing that exists).
    pub roots: BTreeMap<String, PathBuf>,
}

/// A whole environment.
#[derive(Debug, Clone)]
pub struct Env {
    /// Folder that holds the Envfile; relative paths in it are relative to this.
    pub dir: PathBuf,
    /// The Envfile itself.
    pub file: PathBuf,
    pub settings: EnvSettings,
    pub boxes: BTreeMap<String, BoxDef>,
    pub networks: BTreeMap<String, Network>,
    /// Machines after `count` expansion, keyed by their instance name (`osd-2`).
    pub machines: BTreeMap<String, Machine>,
    pub tests: Vec<TestCheck>,
    /// Where machines run: hosts and the swarm. Never part of a hash.
    pub layout: Layout,
    /// Sub-projects from git (`[source.NAME]`) and where the Envfile refers into them.
    pub sources: Sources,
}

/// Where an environment's machines run: the hosts they are placed on (from the Envfile's
/// `[host.NAME]` tables and a hosts file, which wins) and how hosts form a swarm. Placement
/// is not part of the environment: the same Envfile on one host or on three has one hash.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layout {
    pub hosts: BTreeMap<String, Host>,
    pub swarm: SwarmMode,
    /// The hosts file the layout was read from, if any.
    pub file: Option<PathBuf>,
}

/// How a host's engines are reached. A host with neither engine is this machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// Docker endpoint: `unix:///…`, `tcp://host:port` or `ssh://user@host`.
    pub docker: Option<String>,
    /// libvirt URI of the host's VMs.
    pub libvirt_uri: Option<String>,
    /// Free-form labels (for people and tools reading the hosts file; `hdev doctor`
    /// shows them).
    pub labels: BTreeMap<String, String>,
    /// Address the host's engine advertises to the swarm (Docker picks one when absent).
    pub advertise: Option<String>,
}

/// Whether hdev may form the swarm that carries networks across hosts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SwarmMode {
    /// Use the swarm the engines are in; refuse when they are not in one.
    #[default]
    Existing,
    /// Initialise a swarm on the first host and join the others to it.
    Create,
}

/// The Docker endpoint scheme of a VM's own engine: `vm://NAME`.
pub const VM_ENDPOINT: &str = "vm://";

/// Where one machine runs, resolved from its `host`; not part of its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// The host's name (`None`: this machine).
    pub host: Option<String>,
    /// The Docker endpoint of the machine's container, or of a VM's anchor containers
    /// (`None`: this machine's engine).
    pub docker: Option<String>,
    /// The libvirt URI the host gives a VM (the machine's own `libvirt_uri` wins).
    pub libvirt_uri: Option<String>,
}

impl Place {
    /// A container in the Docker engine of the environment's VM `vm`.
    pub fn in_vm(vm: &str) -> Place {
        Place {
            host: Some(vm.to_string()),
            docker: Some(vm_endpoint(vm)),
            libvirt_uri: None,
        }
    }

    /// The VM whose Docker engine holds the machine, if it is in one.
    pub fn vm_host(&self) -> Option<&str> {
        vm_of_engine(self.docker.as_deref())
    }
}

/// The Docker endpoint of VM `vm`'s own engine.
pub fn vm_endpoint(vm: &str) -> String {
    format!("{VM_ENDPOINT}{vm}")
}

/// The VM whose own Docker engine `engine` is (`vm://NAME`), if it is one.
pub fn vm_of_engine(engine: Option<&str>) -> Option<&str> {
    engine?.strip_prefix(VM_ENDPOINT)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvSettings {
    pub name: String,
    pub description: Option<String>,
    /// libvirt connection for VMs, unless a machine names its own.
    pub libvirt_uri: Option<String>,
    /// How many machine operations run at once.
    pub parallel: u32,
    pub accel: Accel,
    /// Whether provisioning and synced folders may read host paths outside the Envfile's
    /// folder (`host_paths = true`); hashed only when set, so older hashes hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_paths: bool,
}

/// How a VM is accelerated.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM where it can really run guests, software emulation otherwise.
    Auto,
    Kvm,
    /// Software emulation (libvirt domain type `qemu`).
    Qemu,
}

/// Where a box comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BoxSource {
    /// Built by `hdev box build` from a recipe folder.
    Recipe(String),
    /// A box archive on disk.
    File(String),
    /// A box archive to download.
    Url(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoxDef {
    pub name: String,
    pub source: BoxSource,
    /// Expected box digest (hex sha256 of the manifest), when the Envfile pins one.
    pub sha256: Option<String>,
    pub version: Option<String>,
    /// The digest `Envfile.lock` pins the box to, when there is one (set by whoever reads
    /// the lock; never hashed: the hash counts the pin through the box's digest).
    #[serde(skip)]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network())
    }

    /// The first host address, taken by the bridge as the gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    /// The first address hdev assigns by itself: the upper half of the subnet is for
    /// machines without a fixed address (containers the third quarter, VMs the fourth),
    /// the lower half for the Envfile's fixed addresses.
    pub fn auto_start(&self) -> Ipv4Addr {
        let size = 1u64 << (32 - self.prefix);
        Ipv4Addr::from(u32::from(self.network()) + (size / 2) as u32)
    }

    /// The address `n` places after `a`.
    pub fn offset(a: Ipv4Addr, n: u32) -> Option<Ipv4Addr> {
        u32::from(a).checked_add(n).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Net,
    /// Encrypt the network's traffic between hosts (an overlay only); how the network is
    /// carried, not what the environment is, so not part of the hash.
    #[serde(skip)]
    pub encrypted: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Docker,
    Libvirt,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Docker => "docker",
            Backend::Libvirt => "libvirt",
        })
    }
}

/// What a machine starts from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// A box declared in `[box.NAME]`.
    Box(String),
    /// A local Docker image, or for libvirt a cloud qcow2 file.
    Image(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetAttach {
    pub network: String,
    /// Fixed address; assigned by the backend when absent.
    pub address: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMap {
    pub host_ip: Option<Ipv4Addr>,
    pub host: Option<u16>,
    pub guest: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        if let Some(h) = self.host {
            write!(f, "{h}:")?;
        }
        write!(f, "{}/{}", self.guest, self.protocol)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncedFolder {
    /// Host folder, as written (relative to the Envfile's folder unless absolute).
    pub host: String,
    pub guest: String,
    pub readonly: bool,
}

/// One provisioning step, run in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ProvisionStep {
    /// Inline shell commands, run with `sh -e`.
    Shell {
        name: Option<String>,
        inline: String,
    },
    /// A script file from the host, copied in and run with its arguments.
    Script {
        name: Option<String>,
        path: String,
        args: Vec<String>,
    },
    /// A host file or folder copied to `destination`.
    File {
        name: Option<String>,
        source: String,
        destination: String,
    },
    /// An ansible playbook run from the host against a generated inventory.
    Ansible {
        name: Option<String>,
        playbook: String,
        extra_vars: BTreeMap<String, String>,
    },
}

impl ProvisionStep {
    /// A short description for progress lines and errors.
    pub fn describe(&self) -> String {
        let (name, what) = match self {
            ProvisionStep::Shell { name, inline } => {
                let first = inline.lines().next().unwrap_or("").trim();
                (name, format!("shell `{first}`"))
            }
            ProvisionStep::Script { name, path, .. } => (name, format!("script `{path}`")),
            ProvisionStep::File {
                name,
                source,
                destination,
            } => (name, format!("file `{source}` -> `{destination}`")),
            ProvisionStep::Ansible { name, playbook, .. } => {
                (name, format!("ansible `{playbook}`"))
            }
        };
        match name {
            Some(n) => format!("{n} ({what})"),
            None => what,
        }
    }

    /// Host paths this step reads (relative to the Envfile's folder unless absolute, or
    /// `source:NAME/PATH`).
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            ProvisionStep::Shell { .. } => vec![],
            ProvisionStep::Script { path, .. } => vec![path],
            ProvisionStep::File { source, .. } => vec![source],
            ProvisionStep::Ansible { playbook, .. } => vec![playbook],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthCheck {
    pub command: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
}

/// One VM or container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Machine {
    /// Instance name: the definition name, or `NAME-i` for replicas.
    pub name: String,
    /// The `[machine.NAME]` this instance comes from.
    pub group: String,
    /// 1-based replica number when `count` > 1.
    pub replica: Option<u32>,
    pub backend: Backend,
    pub base: Base,
    pub cpus: u32,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Disk size in bytes (VMs).
    pub disk: Option<u64>,
    pub networks: Vec<NetAttach>,
    pub ports: Vec<PortMap>,
    pub synced_folders: Vec<SyncedFolder>,
    pub env: BTreeMap<String, String>,
    /// Main process of a container; a keep-alive init when absent.
    pub command: Option<Vec<String>>,
    pub provision: Vec<ProvisionStep>,
    /// Instance names this machine waits for.
    pub depends_on: Vec<String>,
    pub healthcheck: Option<HealthCheck>,
    pub libvirt_uri: Option<String>,
    pub accel: Option<Accel>,
    /// Where it runs (from `host`): placement, not part of the machine's hash.
    #[serde(skip)]
    pub place: Place,
}

impl Machine {
    /// The sources this machine reads: through its provisioning and its synced folders.
    pub fn sources(&self) -> std::collections::BTreeSet<&str> {
        let steps = self.provision.iter().flat_map(|s| s.inputs());
        let folders = self.synced_folders.iter().map(|s| s.host.as_str());
        steps
            .chain(folders)
            .filter_map(|p| source_ref(p).map(|(n, _)| n))
            .collect()
    }
}

/// An acceptance check from `[[test]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestCheck {
    pub name: String,
    pub machine: String,
    pub run: String,
    pub expect_exit: i32,
    /// Text the output must contain.
    pub expect_output: Option<String>,
    /// How long the command may run; `hdev test --timeout` decides when absent. Left out
    /// of the hash when absent, so environments without it keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Env {
    /// Machines in an order where every machine comes after what it depends on, ties broken
    /// by name.
    pub fn topo_order(&self) -> Vec<&Machine> {
        let mut done: std::collections::BTreeSet<&str> = Default::default();
        let mut out = Vec::with_capacity(self.machines.len());
        while out.len() < self.machines.len() {
            let before = out.len();
            for m in self.machines.values() {
                if !done.contains(m.name.as_str())
                    && m.depends_on.iter().all(|d| done.contains(d.as_str()))
                {
                    out.push(m);
                }
            }
            for m in &out[before..] {
                done.insert(m.name.as_str());
            }
            if out.len() == before {
                break; // validation rules out cycles; never loop forever regardless
            }
        }
        out
    }

    /// The schema version this environment's hash is taken at: 1 without sources.
    pub fn schema(&self) -> u32 {
        if self.sources.defs.is_empty() {
            1
        } else {
            SCHEMA_VERSION
        }
    }

    /// The sources machine `m` uses: through provisioning, synced folders and its box's
    /// recipe or file.
    pub fn sources_of<'a>(&'a self, m: &'a Machine) -> std::collections::BTreeSet<&'a str> {
        let mut out = m.sources();
        if let Base::Box(b) = &m.base {
            if let Some(BoxSource::Recipe(p) | BoxSource::File(p)) =
                self.boxes.get(b).map(|d| &d.source)
            {
                out.extend(source_ref(p).map(|(n, _)| n));
            }
        }
        out
    }

    /// Resolves a path from the Envfile: against the Envfile's folder, or, for
    /// `source:NAME/PATH`, against the folder that holds the source's files.
    pub fn resolve(&self, p: &str) -> PathBuf {
        if let Some((name, rest)) = source_ref(p) {
            let root = match self.sources.roots.get(name) {
                Some(r) => r.clone(),
                None => self.dir.join(".hdev").join("unresolved-source").join(name),
            };
            return if rest.is_empty() {
                root
            } else {
                root.join(rest)
            };
        }
        let p = std::path::Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}
