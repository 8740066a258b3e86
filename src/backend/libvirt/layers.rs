//! A VM's disk as a chain of qcow2 layers, for baselines and snapshots without copying.
//!
//! The domain always runs on a thin top overlay. Capturing a state turns the current top
//! into a read-only layer (a libvirt external snapshot) with a fresh top above it. When
//! the VM runs, the snapshot also saves its memory to a file beside the layer, and the
//! guest carries on: `up` does not reboot it.
//!
//! Returning to a state powers the VM off and puts a new empty top on that state's layer.
//! When the state has its memory, the VM is then restored from it: the guest resumes
//! where it was when the state was taken, with no boot, so the cost is one empty qcow2
//! file and reading the memory file back (it grows with the VM's memory, never with its
//! disk). A state taken while the VM was off has no memory, and the VM boots instead.
//!
//! Every layer, memory file and top is a volume of the `hdev` pool named
//! `<domain>.<...>`, so the domain's `destroy` (which removes every volume named after the
//! domain) and `gc` remove them. Which layer holds which state is recorded in the domain's
//! hdev metadata (`layers='baseline=VOL@TIME@MEM;NAME=VOL@TIME'`): libvirtd, not a local
//! file, is the truth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_vol::StorageVol;

use super::xml::{esc, parse_metadata, METADATA_NS, METADATA_PREFIX};
use super::{call, lookup, LibvirtBackend, LibvirtError, POOL};

/// A state's layer as the metadata records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Volume name in the pool.
    pub volume: String,
    /// Unix time it was captured.
    pub created: i64,
    /// The memory file (a libvirt save image) when the VM was running at capture time.
    pub memory: Option<String>,
}

/// A recorded layer with its disk use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerUse {
    pub name: String,
    pub layer: Layer,
    /// Bytes the layer itself holds (its memory file included).
    pub own: u64,
    /// Bytes of the whole chain under and including it (the box base excluded).
    pub chain: u64,
}

/// Parses the `layers` metadata attribute.
pub fn parse_layers(s: &str) -> BTreeMap<String, Layer> {
    s.split(';')
        .filter_map(|kv| {
            let (name, rest) = kv.split_once('=')?;
            let mut parts = rest.split('@');
            let volume = parts.next()?.to_string();
            let created = parts.next()?.parse().ok()?;
            let memory = parts.next().filter(|m| !m.is_empty()).map(str::to_string);
            Some((
                name.to_string(),
                Layer {
                    volume,
                    created,
                    memory,
                },
            ))
        })
        .collect()
}

pub fn format_layers(layers: &BTreeMap<String, Layer>) -> String {
    layers
        .iter()
        .map(|(n, l)| match &l.memory {
            Some(m) => format!("{n}={}@{}@{m}", l.volume, l.created),
            None => format!("{n}={}@{}", l.volume, l.created),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The file of the domain's first disk.
pub fn disk_source(xml: &str) -> Option<String> {
    let disk = xml.find("device='disk'")?;
    let rest = &xml[disk..];
    let start = rest.find("<source file='")? + "<source file='".len();
    let end = rest[start..].find('\'')?;
    Some(rest[start..start + end].to_string())
}

/// The domain XML with its first disk on `new_top`, and without the backing chain libvirt
/// recorded for the old top (libvirt would open that chain instead of the new file's).
pub fn with_top(xml: &str, old_top: &str, new_top: &str) -> String {
    let x = xml.replacen(
        &format!("<source file='{}'", esc(old_top)),
        &format!("<source file='{}'", esc(new_top)),
        1,
    );
    let Some(disk) = x.find("device='disk'") else {
        return x;
    };
    let Some(end) = x[disk..].find("</disk>").map(|e| disk + e) else {
        return x;
    };
    let section = &x[disk..end];
    let Some(b) = section.find("<backingStore") else {
        return x;
    };
    let stripped = match section.rfind("</backingStore>") {
        Some(e) => format!(
            "{}{}",
            &section[..b],
            &section[e + "</backingStore>".len()..]
        ),
        None => {
            let close = section[b..].find("/>").map_or(section.len(), |c| b + c + 2);
            format!("{}{}", &section[..b], &section[close..])
        }
    };
    format!("{}{stripped}{}", &x[..disk], &x[end..])
}

/// The hdev metadata element with `layers` set, as `virDomainSetMetadata` takes it.
pub fn metadata_element(xml: &str, layers: &BTreeMap<String, Layer>) -> String {
    let mut attrs = parse_metadata(xml);
    attrs.insert("layers".into(), format_layers(layers));
    super::xml::metadata_element(&attrs)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

pub(super) fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn layers_of(d: &Domain) -> Result<(String, BTreeMap<String, Layer>), LibvirtError> {
    let xml = d
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .map_err(call("domain XML"))?;
    let layers = parse_layers(parse_metadata(&xml).get("layers").map_or("", |s| s));
    Ok((xml, layers))
}

fn set_layers(d: &Domain, xml: &str, layers: &BTreeMap<String, Layer>) -> Result<(), LibvirtError> {
    let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if d.is_active().unwrap_or(false) {
        flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    set_machine_metadata(d, &metadata_element(xml, layers), flags)
        .map_err(call("record layers in the domain's metadata"))
}

/// Sets hdev's metadata element of domain `d` to `element` (see
/// [`super::xml::metadata_element`]), in its definition and/or running domain (`flags`).
pub(super) fn set_machine_metadata(
    d: &Domain,
    element: &str,
    flags: u32,
) -> Result<(), virt::error::Error> {
    d.set_metadata(
        virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
        Some(element),
        Some(METADATA_PREFIX),
        Some(METADATA_NS),
        flags,
    )
    .map(|_| ())
}

/// A read-only virtio disk for `file`, told apart by `serial`.
fn readonly_disk(file: &str, serial: &str) -> String {
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vdz' bus='virtio'/><readonly/><serial>{}</serial></disk>",
        esc(file),
        esc(serial)
    )
}

/// The backing file of a volume, from its XML.
fn backing_of(v: &StorageVol) -> Option<String> {
    let x = v.xml_desc(0).ok()?;
    let b = x.find("<backingStore>")?;
    let rest = &x[b..];
    let s = rest.find("<path>")? + "<path>".len();
    let e = rest[s..].find("</path>")?;
    Some(rest[s..s + e].to_string())
}

/// Restores a domain from a memory file taken when its top was `layer`, running on
/// `new_top` (a fresh overlay of that layer, so the disk is exactly what the memory
/// expects).
fn restore_memory(c: &Connect, file: &str, layer: &str, new_top: &str) -> Result<(), LibvirtError> {
    let saved = c
        .save_image_xml_desc(file, virt::sys::VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)
        .map_err(call(format!("read memory image `{file}`")))?;
    let old_top = disk_source(&saved).unwrap_or_default();
    if file_name(&old_top) != layer {
        return Err(LibvirtError::NotFound {
            what: "memory image of layer",
            name: layer.to_string(),
        });
    }
    restore_on(c, file, &saved, new_top)
}

/// Restores a domain from memory image `file` (saved with the definition `saved`),
/// running on disk `top` in place of the one it was saved on.
fn restore_on(c: &Connect, file: &str, saved: &str, top: &str) -> Result<(), LibvirtError> {
    let old_top = disk_source(saved).unwrap_or_default();
    let dxml = with_top(saved, &old_top, top);
    c.restore_domain_flags(file, Some(&dxml), virt::sys::VIR_DOMAIN_SAVE_RUNNING)
        .map_err(call(format!("restore memory from `{file}`")))
}

/// Restores a domain from memory image `file` of an earlier domain of the same identity
/// and UUID, running on disk `top` (an overlay of the layer saved with the image).
pub(super) fn resume_from(c: &Connect, file: &str, top: &str) -> Result<(), LibvirtError> {
    let saved = c
        .save_image_xml_desc(file, virt::sys::VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)
        .map_err(call(format!("read memory image `{file}`")))?;
    restore_on(c, file, &saved, top)
}

/// Deletes the domain's volumes that neither the top nor any recorded layer needs.
fn prune(
    c: &Connect,
    domain: &str,
    top: &str,
    layers: &BTreeMap<String, Layer>,
) -> Result<(), LibvirtError> {
    let pool = c
        .lookup_storage_pool_by_name(POOL)
        .map_err(call("pool `hdev`"))?;
    let _ = pool.refresh(0);
    let prefix = format!("{domain}.");
    let vols: BTreeMap<String, StorageVol> = pool
        .list_volumes()
        .map_err(call("list volumes"))?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .filter_map(|n| pool.lookup_storage_vol_by_name(&n).ok().map(|v| (n, v)))
        .collect();
    let mut keep: BTreeSet<String> = layers.values().map(|l| l.volume.clone()).collect();
    keep.extend(layers.values().filter_map(|l| l.memory.clone()));
    keep.insert(file_name(top));
    // The seed disks are no layers, but the domain still uses them.
    keep.insert(format!("{domain}.seed.iso"));
    keep.insert(format!("{domain}.seed.tar"));
    let mut todo: Vec<String> = keep.iter().cloned().collect();
    while let Some(n) = todo.pop() {
        if let Some(b) = vols.get(&n).and_then(backing_of).map(|p| file_name(&p)) {
            if keep.insert(b.clone()) {
                todo.push(b);
            }
        }
    }
    for (n, v) in &vols {
        if !keep.contains(n) {
            v.delete(0).map_err(call(format!("delete volume `{n}`")))?;
        }
    }
    Ok(())
}

/// Puts a fresh top above the domain's current one (a libvirt external snapshot, its
/// metadata not kept); with `memory` and the domain running, its memory is saved beside
/// it and the guest carries on. The old top's path and the memory volume's name.
pub(super) fn new_top(
    c: &Connect,
    d: &Domain,
    domain: &str,
    memory: bool,
) -> Result<(String, Option<String>), LibvirtError> {
    let (xml, _) = layers_of(d)?;
    let top = disk_source(&xml).ok_or_else(|| LibvirtError::NotFound {
        what: "disk of domain",
        name: domain.to_string(),
    })?;
    let dir = Path::new(&top).parent().unwrap_or(Path::new("/"));
    let id = unique();
    let new_top = dir.join(format!("{domain}.{id}.qcow2"));
    let running = d.is_active().unwrap_or(false);
    let memory = (running && memory).then(|| format!("{domain}.{id}.mem"));
    let memory_el = match &memory {
        Some(m) => format!(
            "<memory snapshot='external' file='{}'/>",
            esc(&dir.join(m).to_string_lossy())
        ),
        None => "<memory snapshot='no'/>".to_string(),
    };
    let snap = format!(
        "<domainsnapshot><name>hdev-{id}</name>{memory_el}<disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/><source file='{}'/></disk></disks></domainsnapshot>",
        esc(&new_top.to_string_lossy())
    );
    let mut flags = virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA;
    if running {
        flags |= virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
    }
    if memory.is_none() {
        flags |= virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
    }
    d.create_snapshot_xml(&snap, flags)
        .map_err(call(format!("capture the state of `{domain}`")))?;
    if let Ok(pool) = c.lookup_storage_pool_by_name(POOL) {
        let _ = pool.refresh(0);
    }
    Ok((top, memory))
}

impl LibvirtBackend {
    /// Turns the domain's current top into the layer of state `name` and puts a fresh top
    /// on it. When the domain runs, its memory is saved with the layer and it carries on
    /// (paused only while the memory is written). The guest should have flushed its writes.
    pub async fn capture_layer(&self, domain: &str, name: &str) -> Result<Layer, LibvirtError> {
        let (domain, name) = (domain.to_string(), name.to_string());
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (top, memory) = new_top(c, &d, &domain, true)?;
            let layer = Layer {
                volume: file_name(&top),
                created: now(),
                memory,
            };
            let (xml, mut layers) = layers_of(&d)?;
            layers.insert(name, layer.clone());
            set_layers(&d, &xml, &layers)?;
            Ok(layer)
        })
        .await
    }

    /// Makes the domain's current top read-only, with a fresh top above it, without its
    /// memory and without recording a state: the volume name of the layer it left, which
    /// nothing writes any more (for a copy of the disk as it is). The guest should have
    /// flushed its writes.
    pub async fn freeze_top(&self, domain: &str) -> Result<String, LibvirtError> {
        let domain = domain.to_string();
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (top, _) = new_top(c, &d, &domain, false)?;
            Ok(file_name(&top))
        })
        .await
    }

    /// Powers the domain off and puts a fresh top on the layer of state `name`. When the
    /// state has its memory, the domain is restored from it and runs on (returns true);
    /// otherwise it is left off for the caller to boot (false). The old top and layers
    /// nothing needs any more are deleted.
    pub async fn reset_to_layer(&self, domain: &str, name: &str) -> Result<bool, LibvirtError> {
        let (domain, name) = (domain.to_string(), name.to_string());
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (xml, layers) = layers_of(&d)?;
            let layer = layers.get(&name).ok_or_else(|| LibvirtError::NotFound {
                what: "snapshot layer",
                name: format!("{name} of {domain}"),
            })?;
            if d.is_active().map_err(call("domain state"))? {
                // The top is thrown away, so there is nothing to shut down cleanly.
                d.destroy().map_err(call(format!("power off `{domain}`")))?;
            }
            let old_top = disk_source(&xml).unwrap_or_default();
            let pool = c.lookup_storage_pool_by_name(POOL).map_err(call("pool `hdev`"))?;
            let _ = pool.refresh(0);
            let base = pool
                .lookup_storage_vol_by_name(&layer.volume)
                .map_err(call(format!("layer `{}`", layer.volume)))?;
            let capacity = base.info().map_err(call("layer size"))?.capacity;
            let base_path = base.path().map_err(call("layer path"))?;
            let vol_name = format!("{domain}.{}.qcow2", unique());
            let vx = format!(
                "<volume><name>{vol_name}</name><capacity unit='bytes'>{capacity}</capacity><target><format type='qcow2'/><permissions><mode>0600</mode></permissions></target><backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
                esc(&base_path)
            );
            let v = StorageVol::create_xml(&pool, &vx, 0)
                .map_err(call(format!("create top `{vol_name}`")))?;
            let new_top = v.path().map_err(call("volume path"))?;
            let new_xml = with_top(&xml, &old_top, &new_top);
            c.define_domain_xml(&new_xml).map_err(call("redefine domain"))?;
            let memory = layer
                .memory
                .as_ref()
                .and_then(|m| pool.lookup_storage_vol_by_name(m).ok())
                .and_then(|v| v.path().ok());
            let resumed = match memory {
                Some(file) => {
                    restore_memory(c, &file, &layer.volume, &new_top)?;
                    // The running definition comes from the memory image, taken before the
                    // layer was recorded: record the layers in it again.
                    set_layers(&lookup(c, &domain)?, &new_xml, &layers)?;
                    true
                }
                None => false,
            };
            prune(c, &domain, &new_top, &layers)?;
            Ok(resumed)
        })
        .await
    }

    /// Forgets state `name` and deletes its layer unless the chain still needs it.
    /// Returns whether the state was recorded.
    pub async fn drop_layer(&self, domain: &str, name: &str) -> Result<bool, LibvirtError> {
        let (domain, name) = (domain.to_string(), name.to_string());
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (xml, mut layers) = layers_of(&d)?;
            let had = layers.remove(&name).is_some();
            if had {
                set_layers(&d, &xml, &layers)?;
            }
            let top = disk_source(&xml).unwrap_or_default();
            prune(c, &domain, &top, &layers)?;
            Ok(had)
        })
        .await
    }

    /// The recorded layers of a domain with their disk use.
    /// The file of state `name`'s disk layer (in the folder of the domain's disk).
    pub async fn layer_file(&self, domain: &str, name: &str) -> Result<String, LibvirtError> {
        let (domain, name) = (domain.to_string(), name.to_string());
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (xml, layers) = layers_of(&d)?;
            let layer = layers.get(&name).ok_or_else(|| LibvirtError::NotFound {
                what: "snapshot layer",
                name: name.clone(),
            })?;
            let top = disk_source(&xml).ok_or_else(|| LibvirtError::NotFound {
                what: "disk of domain",
                name: domain.clone(),
            })?;
            let dir = Path::new(&top).parent().unwrap_or(Path::new("/"));
            Ok(dir.join(&layer.volume).to_string_lossy().into_owned())
        })
        .await
    }

    /// Attaches the qcow2 `file` to the running domain as a read-only virtio disk with
    /// `serial` (target `vdz`), for the guest to read; one left by an interrupted command
    /// is taken away first. [`LibvirtBackend::detach_readonly`] takes it away.
    pub async fn attach_readonly(
        &self,
        domain: &str,
        file: &str,
        serial: &str,
    ) -> Result<(), LibvirtError> {
        let _ = self.detach_readonly(domain, file, serial).await;
        let (domain, xml) = (domain.to_string(), readonly_disk(file, serial));
        self.blocking(move |c| {
            lookup(c, &domain)?
                .attach_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(call(format!("attach a read-only disk to `{domain}`")))
        })
        .await
    }

    /// Takes the disk of [`LibvirtBackend::attach_readonly`] away, waiting (10 s at most)
    /// until the domain no longer lists it.
    pub async fn detach_readonly(
        &self,
        domain: &str,
        file: &str,
        serial: &str,
    ) -> Result<(), LibvirtError> {
        let (d, xml, s) = (
            domain.to_string(),
            readonly_disk(file, serial),
            serial.to_string(),
        );
        self.blocking(move |c| {
            let dom = lookup(c, &d)?;
            let listed = |dom: &Domain| {
                dom.xml_desc(0)
                    .map(|x| x.contains(&format!("<serial>{}</serial>", esc(&s))))
                    .unwrap_or(false)
            };
            if !listed(&dom) {
                return Ok(());
            }
            dom.detach_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(call(format!("detach the read-only disk from `{d}`")))?;
            for _ in 0..100 {
                if !listed(&dom) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(LibvirtError::Call {
                action: format!("detach the read-only disk from `{d}`"),
                message: "the guest did not let it go within 10 s".into(),
            })
        })
        .await
    }

    pub async fn layers(&self, domain: &str) -> Result<Vec<LayerUse>, LibvirtError> {
        let domain = domain.to_string();
        self.blocking(move |c| {
            let d = lookup(c, &domain)?;
            let (_, layers) = layers_of(&d)?;
            let pool = c
                .lookup_storage_pool_by_name(POOL)
                .map_err(call("pool `hdev`"))?;
            let _ = pool.refresh(0);
            let prefix = format!("{domain}.");
            let own = |n: &str| -> (u64, Option<String>) {
                match pool.lookup_storage_vol_by_name(n) {
                    Ok(v) => (
                        v.info().map(|i| i.allocation).unwrap_or(0),
                        backing_of(&v).map(|p| file_name(&p)),
                    ),
                    Err(_) => (0, None),
                }
            };
            let mut out = Vec::new();
            for (name, layer) in layers {
                let (disk, mut next) = own(&layer.volume);
                let memory = layer.memory.as_deref().map_or(0, |m| own(m).0);
                let size = disk + memory;
                let mut chain = size;
                let mut seen = 0;
                while let Some(n) = next.filter(|n| n.starts_with(&prefix) && seen < 1000) {
                    let (s, b) = own(&n);
                    chain += s;
                    next = b;
                    seen += 1;
                }
                out.push(LayerUse {
                    name,
                    layer,
                    own: size,
                    chain,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_round_trip_through_metadata() {
        let mut m = BTreeMap::new();
        m.insert(
            "baseline".to_string(),
            Layer {
                volume: "hdev-e-1-vm.qcow2".into(),
                created: 17,
                memory: Some("hdev-e-1-vm.17.mem".into()),
            },
        );
        m.insert(
            "before-upgrade".to_string(),
            Layer {
                volume: "hdev-e-1-vm.123.qcow2".into(),
                created: 18,
                memory: None,
            },
        );
        assert_eq!(parse_layers(&format_layers(&m)), m);
        let xml = "<domain><metadata><hdev:machine xmlns:hdev=\"https://hdev.dev/xmlns/machine/1\" env=\"e-1\" machine=\"vm\"/></metadata><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/p/hdev-e-1-vm.qcow2' index='1'/></disk></devices></domain>";
        assert_eq!(disk_source(xml).as_deref(), Some("/p/hdev-e-1-vm.qcow2"));
        let el = metadata_element(xml, &m);
        assert!(
            el.starts_with("<machine env='e-1' layers='baseline="),
            "{el}"
        );
        assert_eq!(parse_layers(&parse_metadata(&el)["layers"]), m);
    }

    #[test]
    fn a_new_top_drops_the_recorded_backing_chain() {
        let xml = "<disk type='file' device='disk'>\n<source file='/p/t1.qcow2'/>\n<backingStore type='file'>\n<source file='/p/l.qcow2'/>\n<backingStore/>\n</backingStore>\n<target dev='vda'/>\n</disk><disk device='cdrom'><backingStore/></disk>";
        let got = with_top(xml, "/p/t1.qcow2", "/p/t2.qcow2");
        assert_eq!(
            got,
            "<disk type='file' device='disk'>\n<source file='/p/t2.qcow2'/>\n\n<target dev='vda'/>\n</disk><disk device='cdrom'><backingStore/></disk>"
        );
    }
}
