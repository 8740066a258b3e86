//! The libvirt backend: VMs as libvirt domains, each on a qcow2 overlay of its box's
//! read-only base volume, plugged into the environment's Linux bridges.
//!
//! libvirt's C API blocks, so every call runs on tokio's blocking pool. Everything hdev
//! defines carries metadata in hdev's XML namespace naming its environment, machine and
//! hash, so `status` and `gc` read the truth from libvirtd itself.

mod cache;
mod console;
mod discover;
mod engine;
mod guest;
pub mod layers;
pub mod machines;
pub mod remote;
pub mod seed;
mod snapshot;
pub mod vm;
pub mod volumes;
pub mod xml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::storage_vol::StorageVol;

pub use xml::{domain_name, DomainSpec};

use layers::{resume_from, set_machine_metadata};

/// How a domain came to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Booted (or it ran already).
    Booted,
    /// Resumed from a memory image: its clock stood still since the image was saved.
    /// The domain's machine.
    Resumed(String),
}

pub use engine::probe;
pub use machines::Vms;
pub use volumes::{BaseVolumes, POOL};

/// Why a libvirt operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// libvirtd could not be reached at the URI.
    #[error(
        "cannot connect to libvirt at `{uri}`: {message}; {}",
        crate::backend::reach_hint(crate::envfile::Backend::Libvirt, message)
    )]
    Unreachable { uri: String, message: String },
    /// A domain, volume or pool that was asked for does not exist.
    #[error("{what} `{name}` does not exist in libvirt")]
    NotFound { what: &'static str, name: String },
    /// libvirt refused or failed a request.
    #[error("libvirt: {action}: {message}")]
    Call { action: String, message: String },
    /// A host file for the pool could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The blocking task running a libvirt call was lost.
    #[error("a libvirt call was interrupted: {0}")]
    Join(String),
}

/// Stops libvirt printing every error on stderr itself (its default handler): hdev reports
/// the ones that matter in its own words (a refused connection included), and a volume
/// that is not there yet is expected. Once per process, before the first connection.
pub(crate) fn quiet() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(virt::error::clear_error_callback);
}

fn is_not_found(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(
            ErrorNumber::NoDomain | ErrorNumber::NoStorageVolume | ErrorNumber::NoStoragePool
        )
    )
}

fn call(action: impl Into<String>) -> impl FnOnce(virt::error::Error) -> LibvirtError {
    let action = action.into();
    move |e| LibvirtError::Call {
        action,
        message: e.message().to_string(),
    }
}

/// A VM as libvirtd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVm {
    pub domain: String,
    pub instance: String,
    pub machine: String,
    pub hash: Option<String>,
    pub dir: Option<String>,
    pub running: bool,
    /// Envfile network -> address, as recorded when the VM was defined.
    pub addresses: BTreeMap<String, String>,
    /// Whether a baseline layer is recorded.
    pub baseline: bool,
}

#[derive(Clone)]
pub struct LibvirtBackend {
    pub uri: String,
    conn: Arc<Connect>,
}

impl LibvirtBackend {
    pub async fn connect(uri: &str) -> Result<LibvirtBackend, LibvirtError> {
        quiet();
        let u = uri.to_string();
        let conn = tokio::task::spawn_blocking(move || Connect::open(Some(&u)))
            .await
            .map_err(|e| LibvirtError::Join(e.to_string()))?
            .map_err(|e| LibvirtError::Unreachable {
                uri: uri.to_string(),
                message: e.message().to_string(),
            })?;
        Ok(LibvirtBackend {
            uri: uri.to_string(),
            conn: Arc::new(conn),
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn))
            .await
            .map_err(|e| LibvirtError::Join(e.to_string()))?
    }

    /// Creates the machine's overlay on `base`; an existing overlay is kept.
    pub async fn ensure_overlay(
        &self,
        name: &str,
        base: &Path,
        capacity: Option<u64>,
    ) -> Result<PathBuf, LibvirtError> {
        let vol_name = format!("{name}.qcow2");
        let base = base.to_path_buf();
        let uri = self.uri.clone();
        self.blocking(move |c| {
            let pool = volumes::ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            if let Ok(v) = pool.lookup_storage_vol_by_name(&vol_name) {
                return Ok(PathBuf::from(v.path().map_err(call("volume path"))?));
            }
            let capacity_xml = capacity
                .map(|b| format!("<capacity unit='bytes'>{b}</capacity>"))
                .unwrap_or_default();
            let xml = format!(
                "<volume><name>{vol_name}</name>{capacity_xml}<target><format type='qcow2'/><permissions><mode>0600</mode></permissions></target><backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
                base.display()
            );
            let v = StorageVol::create_xml(&pool, &xml, 0).map_err(call(format!("create overlay `{vol_name}`")))?;
            Ok(PathBuf::from(v.path().map_err(call("volume path"))?))
        })
        .await
    }

    /// Writes a machine's seed disk into the pool as volume `vol_name` (replacing an older
    /// one) through a libvirt stream, so remote hosts get it too. Only its owner reads it:
    /// it holds the VM's host key.
    pub async fn put_seed(&self, vol_name: &str, iso: Vec<u8>) -> Result<PathBuf, LibvirtError> {
        let vol_name = vol_name.to_string();
        let uri = self.uri.clone();
        self.blocking(move |c| {
            let pool = volumes::ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            if let Ok(old) = pool.lookup_storage_vol_by_name(&vol_name) {
                old.delete(0).map_err(call(format!("replace `{vol_name}`")))?;
            }
            let xml = format!(
                "<volume><name>{vol_name}</name><capacity unit='bytes'>{}</capacity><target><format type='raw'/><permissions><mode>0600</mode></permissions></target></volume>",
                iso.len()
            );
            let v = StorageVol::create_xml(&pool, &xml, 0)
                .map_err(call(format!("create `{vol_name}`")))?;
            let stream = virt::stream::Stream::new(c, 0).map_err(call("open a stream"))?;
            v.upload(&stream, 0, iso.len() as u64, 0)
                .map_err(call(format!("upload `{vol_name}`")))?;
            if let Err(e) = volumes::send_all(&stream, &iso) {
                let _ = stream.abort();
                return Err(call(format!("upload `{vol_name}`"))(e));
            }
            stream.finish().map_err(call(format!("upload `{vol_name}`")))?;
            Ok(PathBuf::from(v.path().map_err(call("volume path"))?))
        })
        .await
    }

    /// Defines the domain, replacing an older definition of the same name.
    pub async fn define(&self, xml: String) -> Result<(), LibvirtError> {
        self.blocking(move |c| {
            c.define_domain_xml(&xml).map_err(call("define domain"))?;
            Ok(())
        })
        .await
    }

    /// Starts a defined domain that is shut off: from the memory image its metadata names
    /// for its first start (see `xml::Resume`), if that image can be restored on its disk,
    /// otherwise by booting. The image is named once: a later start boots.
    pub async fn start(&self, domain: &str) -> Result<Started, LibvirtError> {
        let name = domain.to_string();
        self.blocking(move |c| {
            let d = lookup(c, &name)?;
            if d.is_active().map_err(call("domain state"))? {
                return Ok(Started::Booted);
            }
            let xml = d
                .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(call("domain XML"))?;
            let mut meta = xml::parse_metadata(&xml);
            let machine = meta.get("machine").cloned().unwrap_or_default();
            let Some(image) = meta.remove("resume") else {
                d.create().map_err(call(format!("start `{name}`")))?;
                return Ok(Started::Booted);
            };
            // Named no more, whatever comes of it.
            let element = xml::metadata_element(&meta);
            set_machine_metadata(&d, &element, virt::sys::VIR_DOMAIN_AFFECT_CONFIG)
                .map_err(call("record the domain's metadata"))?;
            let top = layers::disk_source(&xml).unwrap_or_default();
            if resume_from(c, &image, &top).is_ok() {
                // The running definition is the image's: its metadata becomes the
                // domain's own again.
                if let Ok(d) = lookup(c, &name) {
                    let _ = set_machine_metadata(&d, &element, virt::sys::VIR_DOMAIN_AFFECT_LIVE);
                }
                return Ok(Started::Resumed(machine));
            }
            d.create().map_err(call(format!("start `{name}`")))?;
            Ok(Started::Booted)
        })
        .await
    }

    /// Every domain hdev defined, for one instance or (with `None`) for all.
    pub async fn observe(&self, instance: Option<&str>) -> Result<Vec<ObservedVm>, LibvirtError> {
        let want = instance.map(str::to_string);
        self.blocking(move |c| {
            let mut out = Vec::new();
            for d in c.list_all_domains(0).map_err(call("list domains"))? {
                let Ok(x) = d.xml_desc(0) else { continue };
                let meta = xml::parse_metadata(&x);
                let (Some(env), Some(machine)) = (meta.get("env"), meta.get("machine")) else {
                    continue;
                };
                if want.as_deref().is_some_and(|w| w != env) {
                    continue;
                }
                out.push(ObservedVm {
                    domain: d.name().map_err(call("domain name"))?,
                    instance: env.clone(),
                    machine: machine.clone(),
                    hash: meta.get("hash").cloned(),
                    dir: meta.get("dir").cloned(),
                    running: d.is_active().unwrap_or(false),
                    addresses: meta
                        .get("addresses")
                        .map(|a| xml::parse_addresses(a))
                        .unwrap_or_default(),
                    baseline: meta.get("layers").is_some_and(|l| {
                        layers::parse_layers(l).contains_key(crate::snapshot::BASELINE)
                    }),
                });
            }
            out.sort_by(|a, b| a.domain.cmp(&b.domain));
            Ok(out)
        })
        .await
    }

    /// ACPI shutdown, then a forced stop when the guest has not gone down in `timeout`.
    /// Returns whether the stop had to be forced.
    pub async fn halt(&self, domain: &str, timeout: Duration) -> Result<bool, LibvirtError> {
        let name = domain.to_string();
        let n = name.clone();
        let active = self
            .blocking(move |c| {
                let d = lookup(c, &n)?;
                let active = d.is_active().map_err(call("domain state"))?;
                if active {
                    d.shutdown().map_err(call(format!("shut down `{n}`")))?;
                }
                Ok(active)
            })
            .await?;
        if !active {
            return Ok(false);
        }
        let start = Instant::now();
        while start.elapsed() < timeout {
            let n = name.clone();
            let still = self
                .blocking(move |c| lookup(c, &n)?.is_active().map_err(call("domain state")))
                .await?;
            if !still {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let n = name.clone();
        self.blocking(move |c| {
            let d = lookup(c, &n)?;
            if d.is_active().map_err(call("domain state"))? {
                d.destroy().map_err(call(format!("stop `{n}`")))?;
            }
            Ok(())
        })
        .await?;
        Ok(true)
    }

    /// Removes the domain and every volume named after it. Missing pieces are fine: a
    /// destroy after an interrupted up finishes what is there.
    pub async fn destroy(&self, domain: &str) -> Result<(), LibvirtError> {
        let name = domain.to_string();
        self.blocking(move |c| {
            match c.lookup_domain_by_name(&name) {
                Ok(d) => {
                    if d.is_active().unwrap_or(false) {
                        d.destroy().map_err(call(format!("stop `{name}`")))?;
                    }
                    d.undefine_flags(
                        virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                            | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM,
                    )
                    .map_err(call(format!("undefine `{name}`")))?;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(call(format!("look up `{name}`"))(e)),
            }
            if let Ok(pool) = c.lookup_storage_pool_by_name(POOL) {
                let _ = pool.refresh(0);
                for vol in pool.list_volumes().map_err(call("list volumes"))? {
                    // `NAME.qcow2` and its layers `NAME.<state>.qcow2`; never `NAME-2...`, another
                    // machine's.
                    if vol.starts_with(&format!("{name}.")) {
                        if let Ok(v) = pool.lookup_storage_vol_by_name(&vol) {
                            v.delete(0)
                                .map_err(call(format!("delete volume `{vol}`")))?;
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

fn lookup(c: &Connect, name: &str) -> Result<Domain, LibvirtError> {
    c.lookup_domain_by_name(name).map_err(|e| {
        if is_not_found(&e) {
            LibvirtError::NotFound {
                what: "domain",
                name: name.to_string(),
            }
        } else {
            call(format!("look up `{name}`"))(e)
        }
    })
}
