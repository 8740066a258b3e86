//! The libvirt engine in a build without the `libvirt` feature: its types have no values,
//! so no VM is ever connected, and machines that name libvirt are reported unavailable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::backend::{
    BackendError, BaseRequest, Captured, Counts, Discovery, Engine, EnvCtx, ExecOutcome, Found,
    LineSink, LogSink, MachineSpec, NetSpec, Observation, Probe, Resolved, StatePart,
};
use crate::boxes::Store;
use crate::envfile::{Backend, Env};
use crate::snapshot::Drift;

/// A VM's base volumes (none without libvirt).
#[derive(Debug, Clone, serde::Serialize)]
pub enum BaseVolumes {}

pub mod machines {
    //! No VMs without libvirt.
    pub use super::Vms;
}

/// No VM engine in this build.
pub enum Vms {}

impl Vms {
    pub async fn connect(_env: &Env) -> Result<Vms, BackendError> {
        Err(unavailable())
    }

    pub async fn at_uris(
        _uris: &std::collections::BTreeSet<String>,
        _env: Option<&Env>,
    ) -> Result<Vms, BackendError> {
        Err(unavailable())
    }

    pub fn console_log(&self, _domain: &str) -> PathBuf {
        match *self {}
    }

    pub async fn target(&self, _id: &str) -> Result<crate::backend::ssh::SshTarget, BackendError> {
        match *self {}
    }
}

fn unavailable() -> BackendError {
    BackendError::Engine {
        action: "libvirt".into(),
        message: "this hdev was built without the `libvirt` feature".into(),
    }
}

pub async fn probe(_uri: &str) -> Probe {
    Probe {
        name: "libvirt".into(),
        ok: false,
        detail: "this hdev was built without the `libvirt` feature".into(),
    }
}

impl Engine for Vms {
    fn kind(&self) -> Backend {
        Backend::Libvirt
    }
    async fn observe(&self, _: &EnvCtx) -> Result<Observation, BackendError> {
        match *self {}
    }
    async fn ensure_network(&self, _: &EnvCtx, _: Option<&NetSpec>) -> Result<(), BackendError> {
        match *self {}
    }
    async fn prepare(&self, _: &Store, _: &BaseRequest) -> Result<Resolved, BackendError> {
        match *self {}
    }
    async fn create(&self, _: &EnvCtx, _: &MachineSpec) -> Result<String, BackendError> {
        match *self {}
    }
    async fn start(&self, _: &str) -> Result<(), BackendError> {
        match *self {}
    }
    async fn stop(&self, _: &str) -> Result<(), BackendError> {
        match *self {}
    }
    async fn remove(&self, _: &str) -> Result<(), BackendError> {
        match *self {}
    }
    async fn exec(
        &self,
        _: &str,
        _: &[String],
        _: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        match *self {}
    }
    async fn copy_in(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), BackendError> {
        match *self {}
    }
    async fn interactive(
        &self,
        _: &str,
        _: &[String],
        _: bool,
        _: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        match *self {}
    }
    async fn ansible_vars(&self, _: &str) -> Result<BTreeMap<String, String>, BackendError> {
        match *self {}
    }
    async fn logs(
        &self,
        _: &str,
        _: bool,
        _: Option<u32>,
        _: LogSink<'_>,
    ) -> Result<(), BackendError> {
        match *self {}
    }
    async fn capture(
        &self,
        _: &EnvCtx,
        _: &MachineSpec,
        _: &str,
        _: &str,
    ) -> Result<Captured, BackendError> {
        match *self {}
    }
    async fn restore(
        &self,
        _: &EnvCtx,
        _: &MachineSpec,
        _: &str,
        _: &str,
    ) -> Result<String, BackendError> {
        match *self {}
    }
    async fn drift(&self, _: &str, _: &str) -> Result<Drift, BackendError> {
        match *self {}
    }
    async fn states(&self, _: &EnvCtx, _: &Observation) -> Result<Vec<StatePart>, BackendError> {
        match *self {}
    }
    async fn delete_state(
        &self,
        _: &EnvCtx,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<bool, BackendError> {
        match *self {}
    }
    async fn discover(&self, _: Option<&str>) -> Result<Discovery, BackendError> {
        match *self {}
    }
    async fn remove_found(&self, _: &[Found]) -> Result<Counts, BackendError> {
        match *self {}
    }
}
