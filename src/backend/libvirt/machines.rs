//! The libvirt backend as `up`, `exec` and `destroy` use it: machine-level operations on
//! domains, with commands and files going over SSH.
//!
//! A VM's id is its domain name. Its SSH address is read back from the domain's metadata,
//! so commands reach a VM that an earlier hdev process created.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::remote;
use super::vm::{self, VmInputs};
use super::{LibvirtBackend, LibvirtError, ObservedVm, Started};
use crate::backend::ssh::{HostKey, SshKey, SshTarget};
use crate::backend::{
    BackendError, EnvCtx, ExecOutcome, LineSink, MachineSpec, ObservedMachine, Resolved, RunState,
    TAIL_LINES,
};
use crate::boxes::Store;
use crate::envfile::topology::{remote_host, remote_networks};
use crate::envfile::{Backend, Env};
use crate::host::{self, DomainType, KvmProbe};

/// Sets the guest's clock to now: for a guest resumed from memory, whose clock stood
/// still while it was saved.
pub(super) fn set_clock_command() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("date -u -s @{now} >/dev/null")
}

/// How long `halt` waits for an ACPI shutdown before forcing the VM off.
pub const HALT_TIMEOUT: Duration = Duration::from_secs(60);

/// VMs of one environment, on every libvirt connection its machines name; or, for `gc`,
/// the VMs of every environment on a set of connections. What it keeps of the Envfile is
/// connection settings, read once: machines come as owned [`MachineSpec`]s.
pub struct Vms {
    /// Connections by URI.
    pub(super) conns: BTreeMap<String, LibvirtBackend>,
    /// The connection of VMs that name none.
    default_uri: String,
    /// Which connection each VM machine of the environment lives on.
    machine_uris: BTreeMap<String, String>,
    /// Exact names and URIs of the environment's libvirt networks on remote hosts.
    remote_nets: BTreeMap<String, String>,
    /// The environment's folder, recorded in each domain's metadata (for `gc`).
    env_dir: PathBuf,
    key: Option<SshKey>,
    pub(super) state_root: PathBuf,
    probe: KvmProbe,
    /// Connections that could not be made (`gc` says so and goes on).
    pub(super) unreachable: Vec<String>,
}

fn err(e: LibvirtError) -> BackendError {
    match e {
        LibvirtError::Unreachable { message, .. } => BackendError::Unreachable {
            backend: Backend::Libvirt,
            message,
        },
        LibvirtError::NotFound { what, name } => BackendError::NotFound { what, name },
        other => BackendError::Engine {
            action: "libvirt".into(),
            message: other.to_string(),
        },
    }
}

fn engine(action: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Engine {
        action: action.into(),
        message: e.to_string(),
    }
}

pub use crate::backend::ssh::shell_quote;
pub use crate::envfile::topology::{machine_uri, uri_of, uris_of, DEFAULT_URI};

impl Vms {
    /// Connects for an environment; fails when libvirtd cannot be reached.
    pub async fn connect(env: &Env) -> Result<Vms, BackendError> {
        let mut conns = BTreeMap::new();
        for uri in uris_of(env) {
            let lv = LibvirtBackend::connect(&uri).await.map_err(err)?;
            conns.insert(uri, lv);
        }
        let state_root = env.dir.join(".hdev");
        let key = SshKey::ensure(&state_root).map_err(|e| engine("SSH key", e))?;
        Ok(Vms {
            conns,
            default_uri: uri_of(env),
            machine_uris: env
                .machines
                .values()
                .filter(|m| m.backend == Backend::Libvirt)
                .map(|m| (m.name.clone(), machine_uri(env, m)))
                .collect(),
            remote_nets: remote_networks(env),
            env_dir: env.dir.clone(),
            key: Some(key),
            state_root,
            probe: KvmProbe::read(),
            unreachable: Vec::new(),
        })
    }

    /// Connects to every URI in `uris` to find and remove what hdev made there (for one
    /// environment, `env`, whose remote networks are then known by name); one that cannot
    /// be reached is remembered (and reported by discovery), unless it is the default
    /// connection, which a machine without libvirt need not have.
    pub async fn at_uris(
        uris: &std::collections::BTreeSet<String>,
        env: Option<&Env>,
    ) -> Result<Vms, BackendError> {
        let mut conns = BTreeMap::new();
        let mut unreachable = Vec::new();
        for uri in uris {
            match LibvirtBackend::connect(uri).await {
                Ok(lv) => {
                    conns.insert(uri.clone(), lv);
                }
                Err(_) if uri == DEFAULT_URI => {}
                Err(e) => unreachable.push(format!("libvirt `{uri}`: {e}")),
            }
        }
        Ok(Vms {
            conns,
            default_uri: DEFAULT_URI.to_string(),
            machine_uris: BTreeMap::new(),
            remote_nets: env.map(remote_networks).unwrap_or_default(),
            env_dir: PathBuf::new(),
            key: None,
            state_root: PathBuf::new(),
            probe: KvmProbe::read(),
            unreachable,
        })
    }

    /// The environment's libvirt networks on remote hosts, by exact name and URI.
    pub(super) fn remote_network_names(&self, instance: &str) -> Vec<(String, String)> {
        self.remote_nets
            .iter()
            .map(|(net, uri)| (remote::network_name(instance, net), uri.clone()))
            .collect()
    }

    /// The URI of a connection: the one given, else the environment's default.
    pub(super) fn uri_of<'a>(&'a self, uri: Option<&'a str>) -> &'a str {
        uri.unwrap_or(&self.default_uri)
    }

    /// The connection at `uri` (the default one when `None`), else any.
    fn lv_at(&self, uri: Option<&str>) -> &LibvirtBackend {
        self.conns
            .get(self.uri_of(uri))
            .or_else(|| self.conns.values().next())
            .expect("Vms holds at least one connection")
    }

    /// The connection holding domain `id` (`hdev-INSTANCE-MACHINE`): the machine whose
    /// name ends the id, longest name first.
    pub fn lv_for(&self, id: &str) -> &LibvirtBackend {
        let uri = self
            .machine_uris
            .iter()
            .filter(|(name, _)| id.ends_with(&format!("-{name}")))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, uri)| uri.as_str());
        self.lv_at(uri)
    }

    /// The libvirt domain type a machine gets from the acceleration it asks for.
    fn domain_type(&self, spec: &MachineSpec) -> Result<DomainType, BackendError> {
        host::choose(spec.accel, &self.probe)
            .map_err(|e| engine(&format!("machine `{}`", spec.name), e))
    }

    fn observed(v: ObservedVm) -> ObservedMachine {
        ObservedMachine {
            name: v.machine,
            backend: Backend::Libvirt,
            id: v.domain,
            state: if v.running {
                RunState::Running
            } else {
                RunState::Stopped
            },
            hash: v.hash,
            addresses: v.addresses,
            ports: Vec::new(),
            engine: None,
        }
    }

    /// The environment's VMs, and the names of those that have a baseline layer.
    pub async fn observe(
        &self,
        instance: &str,
    ) -> Result<(Vec<ObservedMachine>, Vec<String>), BackendError> {
        let mut vms = Vec::new();
        for lv in self.conns.values() {
            vms.extend(lv.observe(Some(instance)).await.map_err(err)?);
        }
        let baselines = vms
            .iter()
            .filter(|v| v.baseline)
            .map(|v| v.machine.clone())
            .collect();
        Ok((vms.into_iter().map(Self::observed).collect(), baselines))
    }

    /// Defines the VM on an overlay of its box (not started); returns the domain name.
    pub async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError> {
        let Resolved::Volumes(base) = &spec.base else {
            return Err(BackendError::Box {
                machine: spec.name.clone(),
                name: String::new(),
                message: "no libvirt base volume was resolved".into(),
            });
        };
        let lv = self.lv_at(spec.place.as_deref());
        // VMs plug into the network host's bridges, named for the instance.
        let bridges: BTreeMap<String, String> = spec
            .networks
            .iter()
            .map(|n| {
                let bridge = crate::backend::docker::bridge_name(&ctx.instance, &n.name);
                (n.name.clone(), bridge)
            })
            .collect();
        let layout = vm::layout(&ctx.instance, spec, &bridges).map_err(err)?;
        // On a remote host, the machine's networks are libvirt networks there.
        for n in spec.networks.iter().filter(|n| n.remote.is_some()) {
            lv.ensure_network(
                &remote::network_name(&ctx.instance, &n.name),
                remote::network_xml(&ctx.instance, &self.env_dir, n),
            )
            .await
            .map_err(err)?;
        }
        // Created on a kept layer: its memory too, if the cache has it.
        let memory = match Store::open_default() {
            Ok(store) => lv.cache_memory(&store, &base.disk).await,
            Err(_) => None,
        };
        let resumes = vm::define(
            lv,
            VmInputs {
                spec,
                instance: &ctx.instance,
                env_dir: &self.env_dir,
                base,
                layout: &layout,
                key: self.key()?,
                host_key: &HostKey::ensure(&self.state_root, &layout.domain)
                    .map_err(|e| engine("SSH host key", e))?,
                domain_type: self.domain_type(spec)?,
                console_log: vm::console_log(&self.state_root, &layout.domain),
                memory: memory.as_ref(),
            },
        )
        .await
        .map_err(|e| engine(&format!("define VM `{}`", spec.name), e))?;
        if let Some(key) = resumes {
            HostKey::install(&self.state_root, &layout.domain, &key)
                .map_err(|e| engine("SSH host key", e))?;
        }
        Ok(layout.domain)
    }

    fn key(&self) -> Result<&SshKey, BackendError> {
        self.key
            .as_ref()
            .ok_or_else(|| engine("ssh", "this connection serves gc only"))
    }

    /// How to reach running VM `id` over SSH.
    pub async fn target(&self, id: &str) -> Result<SshTarget, BackendError> {
        let vms = self.lv_for(id).observe(None).await.map_err(err)?;
        let v = vms
            .into_iter()
            .find(|v| v.domain == id)
            .ok_or_else(|| BackendError::NotFound {
                what: "VM",
                name: id.to_string(),
            })?;
        if !v.running {
            return Err(BackendError::NotRunning {
                machine: v.machine,
                state: "stopped".into(),
            });
        }
        let host = v
            .addresses
            .values()
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| engine("reach the VM", format!("`{}` has no address", v.machine)))?;
        Ok(SshTarget {
            key: self.key()?.private.clone(),
            user: "root".into(),
            host,
            proxy: remote_host(&self.lv_for(id).uri).map(|r| r.proxy_command()),
            pin: HostKey::pin(&self.state_root, id),
            control: self.control(id),
        })
    }

    /// The control socket of the connection shared by the sessions to VM `id` (none for
    /// the connection `gc` uses).
    fn control(&self, id: &str) -> Option<PathBuf> {
        self.key.as_ref()?;
        crate::backend::ssh::control_path(&self.state_root, id)
    }

    /// Closes the connection shared with VM `id`: it stops, goes, or returns to a state
    /// whose network connections are not that one.
    pub fn close_shared(&self, id: &str) {
        if let Some(c) = self.control(id) {
            crate::backend::ssh::close_shared(&c);
        }
    }

    /// Starts the VM (resumed from a memory image, when it was defined so) and waits
    /// until it accepts SSH.
    pub async fn start(&self, id: &str) -> Result<(), BackendError> {
        self.close_shared(id);
        match self.lv_for(id).start(id).await.map_err(err)? {
            Started::Booted => self.wait_ready(id).await,
            // The first command that gets through sets the clock, which stood still since
            // the memory was saved.
            Started::Resumed(machine) => {
                crate::progress::report(
                    &machine,
                    crate::progress::Update::Status(
                        "resumed from the memory kept with its provisioned state: not booted",
                    ),
                );
                self.run_when_ready(id, &set_clock_command).await
            }
        }
    }

    /// Waits until a running VM is ready (see [`SshTarget::wait_ready`]), saying every
    /// 10 s how long and the console's last line (where no live progress shows the
    /// machine's console on its own line: see `apply`).
    pub async fn wait_ready(&self, id: &str) -> Result<(), BackendError> {
        let target = self.target(id).await?;
        let (what, console) = ("booting".to_string(), self.console_log(id));
        let _watch = (!crate::progress::installed()).then(|| {
            crate::progress::Watch::start(
                format!("VM `{id}`"),
                crate::progress::Watch::tick(),
                move |t| crate::progress::waiting(&what, t, crate::progress::last_line(&console)),
            )
        });
        target
            .wait_ready(vm::BOOT_TIMEOUT)
            .await
            .map_err(|e| engine(&format!("boot `{id}`"), e))
    }

    /// Runs `command()` over SSH as soon as the running VM answers (retrying until it
    /// succeeds, within the boot timeout).
    pub async fn run_when_ready(
        &self,
        id: &str,
        command: &dyn Fn() -> String,
    ) -> Result<(), BackendError> {
        let target = self.target(id).await?;
        target
            .run_when_ready(vm::BOOT_TIMEOUT, command)
            .await
            .map_err(|e| engine(&format!("boot `{id}`"), e))
    }

    pub async fn stop(&self, id: &str) -> Result<(), BackendError> {
        self.close_shared(id);
        self.lv_for(id)
            .halt(id, HALT_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(err)
    }

    pub async fn remove(&self, id: &str) -> Result<(), BackendError> {
        self.close_shared(id);
        self.lv_for(id).destroy(id).await.map_err(err)?;
        if self.key.is_none() {
            return Ok(()); // gc: no environment folder to tidy
        }
        HostKey::forget(&self.state_root, id).map_err(|e| engine("SSH host key", e))
    }

    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        let target = self.target(id).await?;
        let script = cmd
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let o = target
            .run_guarded(&script, sink, TAIL_LINES)
            .await
            .map_err(|e| engine("ssh", e))?;
        Ok(ExecOutcome {
            exit_code: o.exit_code,
            tail: o.tail,
        })
    }

    /// Unpacks a tar archive into an existing folder of the VM.
    pub async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        let target = self.target(id).await?;
        let script = format!("tar -x --no-same-owner -C {}", shell_quote(dest));
        let o = target
            .run(&script, Some(tar), &|_| {}, TAIL_LINES)
            .await
            .map_err(|e| engine("ssh", e))?;
        if o.exit_code != 0 {
            return Err(engine(
                &format!("copy files to `{dest}`"),
                o.tail.join("\n"),
            ));
        }
        Ok(())
    }

    /// The command that opens an interactive SSH session (or runs `cmd` with a terminal).
    pub async fn ssh_command(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<std::process::Command, BackendError> {
        Ok(self.target(id).await?.interactive(cmd, tty))
    }

    /// Inventory variables for ansible: SSH with the environment's key.
    pub async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        let t = self.target(id).await?;
        Ok(BTreeMap::from([
            ("ansible_host".to_string(), t.host.to_string()),
            ("ansible_user".to_string(), t.user.clone()),
            (
                "ansible_ssh_private_key_file".to_string(),
                t.key.display().to_string(),
            ),
            (
                "ansible_ssh_common_args".to_string(),
                t.options()
                    .iter()
                    .map(|o| format!("-o {}", shell_quote(o)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ]))
    }

    /// The console log of a VM, by domain name.
    pub fn console_log(&self, domain: &str) -> PathBuf {
        vm::console_log(&self.state_root, domain)
    }
}
