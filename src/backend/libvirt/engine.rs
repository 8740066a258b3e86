//! The libvirt engine behind the [`Engine`] contract: each method is a short call into
//! the modules that hold the mechanism (`machines`, `volumes`, `snapshot`, `discover`).

use std::collections::BTreeMap;

use super::machines::Vms;
use super::{console, discover, snapshot, volumes};
use crate::backend::{
    BackendError, BaseRequest, BaseSource, CachedState, Captured, Counts, Discovery, Engine,
    EnvCtx, ExecOutcome, Found, LineSink, LogSink, MachineSpec, NetSpec, Observation, Probe,
    Resolved, StatePart,
};
use crate::boxes::Store;
use crate::envfile::Backend;
use crate::snapshot::Drift;

impl Vms {
    /// The connection whose pool holds the cache: that of VMs that name none.
    fn cache_conn(&self) -> Option<&super::LibvirtBackend> {
        self.conns.get(self.uri_of(None))
    }
}

/// The box store, where the cache's completion markers live beside the upload markers.
fn cache_store() -> Result<Store, BackendError> {
    Store::open_default().map_err(|e| engine("open the box store", e))
}

fn engine(action: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Engine {
        action: action.into(),
        message: e.to_string(),
    }
}

impl Engine for Vms {
    fn kind(&self) -> Backend {
        Backend::Libvirt
    }

    async fn observe(&self, ctx: &EnvCtx) -> Result<Observation, BackendError> {
        let (vms, baselines) = Vms::observe(self, &ctx.instance).await?;
        Ok(Observation {
            machines: vms.into_iter().map(|m| (m.name.clone(), m)).collect(),
            baselines: baselines.into_iter().collect(),
            ..Observation::default()
        })
    }

    /// VMs plug into the bridges of the network host (Docker); networks on remote hosts
    /// are made when their first VM is created.
    async fn ensure_network(
        &self,
        _ctx: &EnvCtx,
        _net: Option<&NetSpec>,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    async fn prepare(&self, store: &Store, req: &BaseRequest) -> Result<Resolved, BackendError> {
        let BaseSource::Stored(b) = &req.source else {
            return Err(BackendError::Box {
                machine: req.machine.clone(),
                name: format!("{:?}", req.source),
                message: "a VM boots from a box or a disk image file, not an engine image".into(),
            });
        };
        let uri = self.uri_of(req.place.as_deref());
        // The box's own words: it names the box and what it lacks.
        Ok(Resolved::Volumes(volumes::import_box(store, uri, b).await?))
    }

    async fn create(&self, ctx: &EnvCtx, spec: &MachineSpec) -> Result<String, BackendError> {
        Vms::create(self, ctx, spec).await
    }

    async fn start(&self, id: &str) -> Result<(), BackendError> {
        Vms::start(self, id).await
    }

    async fn stop(&self, id: &str) -> Result<(), BackendError> {
        Vms::stop(self, id).await
    }

    async fn remove(&self, id: &str) -> Result<(), BackendError> {
        Vms::remove(self, id).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        Vms::exec(self, id, cmd, sink).await
    }

    async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        Vms::copy_in(self, id, dest, tar).await
    }

    async fn interactive(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        _size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        let mut c = self.ssh_command(id, cmd, tty).await?;
        // Waited for here, as hdev always did: the session owns the terminal until it ends.
        let status = c.status().map_err(|e| engine("run ssh", e))?;
        Ok(i64::from(status.code().unwrap_or(255)))
    }

    async fn ansible_vars(&self, id: &str) -> Result<BTreeMap<String, String>, BackendError> {
        Vms::ansible_vars(self, id).await
    }

    fn boot_log(&self, id: &str) -> Option<std::path::PathBuf> {
        Some(self.console_log(id))
    }

    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u32>,
        sink: LogSink<'_>,
    ) -> Result<(), BackendError> {
        console::follow(&self.console_log(id), follow, tail, sink).await
    }

    async fn capture(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<Captured, BackendError> {
        let layer = snapshot::capture(self, &spec.name, id, name).await;
        // Taking a memory state may restore the VM from it: the shared connection's
        // network state is not the guest's any more.
        self.close_shared(id);
        let layer = layer?;
        Ok(Captured {
            id: id.to_string(),
            location: layer,
        })
    }

    async fn restore(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        self.close_shared(id);
        snapshot::restore(self, &spec.name, id, name).await?;
        self.close_shared(id);
        Ok(id.to_string())
    }

    async fn drift(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        snapshot::drift(self, machine, id).await
    }

    async fn drift_deep(&self, machine: &str, id: &str) -> Result<Drift, BackendError> {
        snapshot::drift_deep(self, machine, id).await
    }

    async fn states(
        &self,
        _ctx: &EnvCtx,
        observed: &Observation,
    ) -> Result<Vec<StatePart>, BackendError> {
        let mut out = Vec::new();
        let vms = observed
            .machines
            .values()
            .filter(|m| m.backend == Backend::Libvirt);
        for m in vms {
            let layers = self
                .lv_for(&m.id)
                .layers(&m.id)
                .await
                .map_err(|e| engine("list layers", e))?;
            for l in layers {
                out.push(StatePart {
                    name: l.name,
                    machine: m.name.clone(),
                    backend: Backend::Libvirt,
                    created: l.layer.created,
                    own_bytes: l.own,
                    chain_bytes: l.chain,
                });
            }
        }
        Ok(out)
    }

    async fn delete_state(
        &self,
        _ctx: &EnvCtx,
        _machine: &str,
        id: Option<&str>,
        name: &str,
    ) -> Result<bool, BackendError> {
        let Some(id) = id else { return Ok(false) };
        self.lv_for(id)
            .drop_layer(id, name)
            .await
            .map_err(|e| engine("delete layer", e))
    }

    /// The entry is looked for on the connection of VMs that name none: the cache serves
    /// this host's VMs.
    async fn cache_find(&self, hash: &str) -> Result<Option<String>, BackendError> {
        let Some(lv) = self.cache_conn() else {
            return Ok(None);
        };
        lv.cache_find(&cache_store()?, hash)
            .await
            .map_err(|e| engine("provisioned-state cache", e))
    }

    /// The guest flushes its writes; its baseline (disk and memory) is copied into the
    /// cache, or without one its disk is frozen and copied. The domain runs on (its id
    /// unchanged).
    async fn cache_keep(
        &self,
        _ctx: &EnvCtx,
        spec: &MachineSpec,
        id: &str,
        env: &str,
    ) -> Result<Option<(String, CachedState)>, BackendError> {
        let store = cache_store()?;
        let out = self.exec(id, &["sync".to_string()], &|_: &str| {}).await?;
        if out.exit_code != 0 {
            return Err(engine(
                "flush the guest's writes",
                format!("`sync` exited {}", out.exit_code),
            ));
        }
        let state = self
            .lv_for(id)
            .cache_keep(
                &store,
                id,
                &spec.hash,
                &spec.name,
                env,
                crate::backend::ssh::HostKey::read(&self.state_root, id),
            )
            .await
            .map_err(|e| engine("keep the provisioned state", e))?;
        Ok(Some((id.to_string(), state)))
    }

    async fn cache_list(&self) -> Result<Vec<CachedState>, BackendError> {
        let Some(lv) = self.cache_conn() else {
            return Ok(Vec::new());
        };
        lv.cache_list(&cache_store()?)
            .await
            .map_err(|e| engine("provisioned-state cache", e))
    }

    async fn cache_remove(&self, location: &str) -> Result<(), BackendError> {
        let Some(lv) = self.cache_conn() else {
            return Ok(());
        };
        lv.cache_remove(&cache_store()?, location)
            .await
            .map_err(|e| engine("provisioned-state cache", e))
    }

    async fn discover(&self, instance: Option<&str>) -> Result<Discovery, BackendError> {
        discover::discover(self, instance).await
    }

    async fn remove_found(&self, found: &[Found]) -> Result<Counts, BackendError> {
        discover::remove(self, found).await
    }
}

/// Whether libvirtd answers at `uri`, and which it is (for `hdev doctor`).
pub async fn probe(uri: &str) -> Probe {
    fn ver(v: u32) -> String {
        format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
    }
    let uri = uri.to_string();
    super::quiet();
    let r = tokio::task::spawn_blocking(move || match virt::connect::Connect::open(Some(&uri)) {
        Ok(c) => (
            true,
            format!(
                "{uri}: libvirt {}, {} {}",
                c.lib_version().map(ver).unwrap_or_default(),
                c.driver_type().unwrap_or_default(),
                c.hyp_version().map(ver).unwrap_or_default()
            ),
        ),
        Err(e) => (
            false,
            format!("cannot connect to `{uri}`: {e}; start libvirtd (`bash .ci/setup`)"),
        ),
    })
    .await;
    let (ok, detail) = r.unwrap_or_else(|e| (false, e.to_string()));
    Probe {
        name: "libvirt".into(),
        ok,
        detail,
    }
}
