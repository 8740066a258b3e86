//! The provisioned-state cache on libvirt: a VM's disk as its first boot and its
//! provisioning left it, kept as a qcow2 layer over the box's base volume, in the `hdev`
//! pool as `hdev-cache-<hash>.qcow2`, with the memory of the guest at that instant as
//! `hdev-cache-<hash>.mem` when there is one.
//!
//! What is kept is the VM's baseline: its layer (read-only since it was taken) and its
//! memory image, copied byte for byte through libvirt streams. The layer's header names
//! the box's base volume by path, which every VM of the box shares. A VM without a
//! baseline has its top frozen instead (a live disk-only external snapshot puts a fresh
//! top above it, so nothing writes it any more) and only its disk is kept. A marker
//! beside the box upload markers (written after the copy, readable by its user only)
//! tells a complete entry from one an interruption left; it also records whose machine
//! it was, and for the memory: the identity of the domain it was saved from, its UUID
//! and the host key its guest runs with.
//!
//! A VM of any environment whose machine has that per-machine hash is created on an
//! overlay of the layer and not provisioned again. When its domain's identity (see
//! `xml::identity`: name, addresses, MACs, key, memory size, everything but the disk's
//! top) is the saved one's, as for `up` after `destroy` in the same folder, it resumes
//! from the memory: no boot, and the host key pinned for it is the one in the image.
//! Otherwise (another folder, a `ci` copy: other MACs, addresses and key) it boots, and
//! the box's `hdev-guest-init` applies the new machine's name, key, addresses and host
//! key, so nothing of the first instance's identity stays in force.
//!
//! The volumes' names start with no domain's name, so `destroy` and `gc` pass them by;
//! only `hdev cache prune` (or the cache's bound) removes them, and only once no volume
//! of the pool stands on the layer: until then the entry is marked removed and no longer
//! served. The markers are the box store's, so another user's entries (another store)
//! are neither served nor removed.

use std::path::Path;

use serde::{Deserialize, Serialize};
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::layers::{file_name, layers_of, new_top};
use super::vm::KeptMemory;
use super::volumes::{ensure_pool, host_key, marker, send_all};
use super::{call, is_not_found, lookup, LibvirtBackend, LibvirtError};
use crate::backend::ssh::HostKey;
use crate::backend::CachedState;
use crate::boxes::Store;
use crate::snapshot::BASELINE;

/// Name prefix of cache volumes.
const PREFIX: &str = "hdev-cache-";

/// The volume of the entry of `hash`.
pub(super) fn volume_name(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    format!("{PREFIX}{hex}.qcow2")
}

/// The memory volume of the entry whose disk is volume `vol`.
fn memory_name(vol: &str) -> String {
    format!("{}.mem", vol.strip_suffix(".qcow2").unwrap_or(vol))
}

/// What the marker of a complete entry records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    hash: String,
    machine: String,
    env: String,
    created: i64,
    /// Pruned while VMs still stood on it: the volume goes once none does.
    #[serde(default)]
    removed: bool,
    /// The guest's memory at the instant of the disk, when it was kept.
    #[serde(default)]
    memory: Option<SavedMemory>,
}

/// What resuming the kept memory needs beside the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedMemory {
    /// The image's volume.
    volume: String,
    /// Identity and UUID of the domain it was saved from.
    identity: String,
    uuid: String,
    /// The host key its guest runs with.
    host_key: HostKey,
}

fn read_marker(store: &Store, host: &str, vol: &str) -> Option<Marker> {
    let text = std::fs::read_to_string(marker(store, host, vol)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The backing file a volume's header names, if any.
fn backing_of(v: &StorageVol) -> Option<String> {
    let x = v.xml_desc(0).ok()?;
    let rest = &x[x.find("<backingStore>")?..];
    let s = rest.find("<path>")? + "<path>".len();
    let e = rest[s..].find("</path>")?;
    Some(rest[s..s + e].to_string())
}

/// A complete entry of `vol` whose base is still in the pool: its path.
fn usable(c: &Connect, pool: &StoragePool, store: &Store, host: &str, vol: &str) -> Option<String> {
    let v = pool.lookup_storage_vol_by_name(vol).ok()?;
    if read_marker(store, host, vol)?.removed {
        return None;
    }
    let base = backing_of(&v)?;
    c.lookup_storage_vol_by_path(&base).ok()?;
    v.path().ok()
}

/// Whether a volume of the pool stands on the one at `path` (names it as its backing).
fn has_dependents(pool: &StoragePool, path: &str) -> bool {
    pool.list_volumes().unwrap_or_default().iter().any(|n| {
        pool.lookup_storage_vol_by_name(n)
            .ok()
            .and_then(|v| backing_of(&v))
            .is_some_and(|b| b == path)
    })
}

/// Deletes volume `vol` and its marker when no volume stands on it any more; otherwise
/// marks the entry removed (no longer served) for a later pass to finish.
fn remove_entry(
    pool: &StoragePool,
    store: &Store,
    host: &str,
    vol: &str,
) -> Result<(), LibvirtError> {
    let mark = marker(store, host, vol);
    let v = match pool.lookup_storage_vol_by_name(vol) {
        Ok(v) => v,
        Err(e) if is_not_found(&e) => {
            let _ = std::fs::remove_file(&mark);
            return Ok(());
        }
        Err(e) => return Err(call(format!("look up `{vol}`"))(e)),
    };
    let path = v.path().map_err(call(format!("path of `{vol}`")))?;
    if has_dependents(pool, &path) {
        if let Some(mut m) = read_marker(store, host, vol) {
            m.removed = true;
            write_marker(&mark, &m)?;
        }
        return Ok(());
    }
    if let Ok(m) = pool.lookup_storage_vol_by_name(&memory_name(vol)) {
        m.delete(0)
            .map_err(call(format!("delete `{}`", memory_name(vol))))?;
    }
    v.delete(0).map_err(call(format!("delete `{vol}`")))?;
    let _ = std::fs::remove_file(&mark);
    Ok(())
}

/// Finishes removals that waited for VMs standing on their volume.
fn sweep(pool: &StoragePool, store: &Store, host: &str) {
    for vol in pool.list_volumes().unwrap_or_default() {
        if vol.starts_with(PREFIX) && read_marker(store, host, &vol).is_some_and(|m| m.removed) {
            let _ = remove_entry(pool, store, host, &vol);
        }
    }
}

fn write_marker(mark: &Path, m: &Marker) -> Result<(), LibvirtError> {
    // It may hold a guest's private host key: the state's writer makes it its user's only
    // (a temporary file of mode 0600, renamed), whole or not at all.
    let text = serde_json::to_string(m).unwrap_or_default();
    crate::state::write_informative(mark, text.as_bytes()).map_err(|e| match e {
        crate::state::StateError::Io { path, source } => LibvirtError::Io { path, source },
        other => LibvirtError::Io {
            path: mark.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Holds the lock of the entry whose marker is `mark` until dropped.
fn lock_entry(mark: &Path) -> Result<std::fs::File, LibvirtError> {
    let io = |source| LibvirtError::Io {
        path: mark.to_path_buf(),
        source,
    };
    if let Some(d) = mark.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(mark.with_extension("lock"))
        .map_err(io)?;
    fs4::fs_std::FileExt::lock_exclusive(&f).map_err(io)?;
    Ok(f)
}

/// What a kept entry is copied from: a disk layer nothing writes any more, and the memory
/// image taken at the same instant (with what resuming it needs), if there is one.
struct Source {
    layer: String,
    memory: Option<(String, String, String)>,
}

/// The VM's baseline (its layer, and its memory when the domain records its identity);
/// without a baseline, its top frozen now (disk only).
fn source_of(c: &Connect, domain: &str) -> Result<Source, LibvirtError> {
    let d = lookup(c, domain)?;
    let (xml, layers) = layers_of(&d)?;
    if let Some(b) = layers.get(BASELINE) {
        let identity = super::xml::parse_metadata(&xml).remove("identity");
        let uuid = d.uuid_string().ok();
        let memory = match (&b.memory, identity, uuid) {
            (Some(m), Some(i), Some(u)) => Some((m.clone(), i, u)),
            _ => None,
        };
        return Ok(Source {
            layer: b.volume.clone(),
            memory,
        });
    }
    let (top, _) = new_top(c, &d, domain, false)?;
    Ok(Source {
        layer: file_name(&top),
        memory: None,
    })
}

/// Copies volume `src` into a new volume `dst` byte for byte; the bytes copied.
fn copy_volume(
    c: &Connect,
    pool: &StoragePool,
    src: &StorageVol,
    dst: &str,
) -> Result<u64, LibvirtError> {
    let size = src.info().map_err(call("volume size"))?.allocation;
    let xml = format!(
        "<volume><name>{dst}</name><capacity unit='bytes'>{size}</capacity>\
         <allocation unit='bytes'>0</allocation><target><format type='raw'/>\
         <permissions><mode>0600</mode></permissions></target></volume>"
    );
    let out = StorageVol::create_xml(pool, &xml, 0).map_err(call(format!("create `{dst}`")))?;
    let copied = (|| {
        let down = Stream::new(c, 0).map_err(call("open a stream"))?;
        let up = Stream::new(c, 0).map_err(call("open a stream"))?;
        src.download(&down, 0, 0, 0)
            .map_err(call("read the frozen layer"))?;
        out.upload(&up, 0, 0, 0)
            .map_err(call(format!("write `{dst}`")))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match down.recv(&mut buf) {
                Ok(n) if n > 0 => n as usize,
                Ok(_) => break,
                Err(e) => {
                    let _ = up.abort();
                    return Err(call("read the frozen layer")(e));
                }
            };
            if let Err(e) = send_all(&up, &buf[..n]) {
                let _ = down.abort();
                return Err(call(format!("write `{dst}`"))(e));
            }
            total += n as u64;
        }
        down.finish()
            .map_err(call("finish reading the frozen layer"))?;
        up.finish()
            .map_err(call(format!("finish writing `{dst}`")))?;
        Ok(total)
    })();
    if copied.is_err() {
        let _ = out.delete(0);
    }
    copied
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl LibvirtBackend {
    /// The path of the cache entry of `hash`, when the pool holds a complete one whose
    /// box base is still there.
    pub async fn cache_find(
        &self,
        store: &Store,
        hash: &str,
    ) -> Result<Option<String>, LibvirtError> {
        let (store, vol, uri) = (store.clone(), volume_name(hash), self.uri.clone());
        self.blocking(move |c| {
            let pool = ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            let _ = pool.refresh(0);
            Ok(usable(c, &pool, &store, &host_key(c, &uri), &vol))
        })
        .await
    }

    /// Copies domain `domain`'s baseline (its disk layer, and its memory image when
    /// `guest_key` says what its guest runs with) into the entry of `hash`; without a
    /// baseline, freezes its top (the guest has flushed its writes) and copies that. An
    /// entry another run kept meanwhile stands.
    pub async fn cache_keep(
        &self,
        store: &Store,
        domain: &str,
        hash: &str,
        machine: &str,
        env: &str,
        guest_key: Option<HostKey>,
    ) -> Result<CachedState, LibvirtError> {
        let (store, uri, domain) = (store.clone(), self.uri.clone(), domain.to_string());
        let mut m = Marker {
            hash: hash.to_string(),
            machine: machine.to_string(),
            env: env.to_string(),
            created: now(),
            removed: false,
            memory: None,
        };
        self.blocking(move |c| {
            let pool = ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            let host = host_key(c, &uri);
            let vol = volume_name(&m.hash);
            let mem = memory_name(&vol);
            let mark = marker(&store, &host, &vol);
            // One keep of an entry at a time (two `up`s of one hash in two folders): the
            // second finds the first's entry complete.
            let _lock = lock_entry(&mark)?;
            if let Some(path) = usable(c, &pool, &store, &host, &vol) {
                return Ok(state(&m, path, entry_size(&pool, &vol)));
            }
            sweep(&pool, &store, &host);
            if let Ok(v) = pool.lookup_storage_vol_by_name(&vol) {
                // Not a complete entry of this store: left by an interrupted copy (then
                // nothing stands on it), or another user's (then VMs may).
                let path = v.path().map_err(call(format!("path of `{vol}`")))?;
                if has_dependents(&pool, &path) {
                    return Err(LibvirtError::Call {
                        action: format!("keep `{vol}`"),
                        message: "a volume of that name, not an entry of this box store, has VMs standing on it".into(),
                    });
                }
                v.delete(0).map_err(call(format!("replace `{vol}`")))?;
            }
            if let Ok(v) = pool.lookup_storage_vol_by_name(&mem) {
                v.delete(0).map_err(call(format!("replace `{mem}`")))?;
            }
            let _ = std::fs::remove_file(&mark);
            let source = source_of(c, &domain)?;
            let _ = pool.refresh(0);
            let src = pool
                .lookup_storage_vol_by_name(&source.layer)
                .map_err(call(format!("layer `{}`", source.layer)))?;
            copy_volume(c, &pool, &src, &vol)?;
            if let (Some((image, identity, uuid)), Some(host_key)) = (source.memory, guest_key) {
                let src = pool
                    .lookup_storage_vol_by_name(&image)
                    .map_err(call(format!("memory image `{image}`")))?;
                if let Err(e) = copy_volume(c, &pool, &src, &mem) {
                    if let Ok(v) = pool.lookup_storage_vol_by_name(&vol) {
                        let _ = v.delete(0);
                    }
                    return Err(e);
                }
                m.memory = Some(SavedMemory {
                    volume: mem.clone(),
                    identity,
                    uuid,
                    host_key,
                });
            }
            let _ = pool.refresh(0);
            let path = pool
                .lookup_storage_vol_by_name(&vol)
                .and_then(|v| v.path())
                .map_err(call(format!("path of `{vol}`")))?;
            write_marker(&mark, &m)?;
            Ok(state(&m, path, entry_size(&pool, &vol)))
        })
        .await
    }

    /// The memory kept with the entry whose disk layer is at `disk`, when it has one and
    /// is still served.
    pub async fn cache_memory(&self, store: &Store, disk: &Path) -> Option<KeptMemory> {
        let (store, uri) = (store.clone(), self.uri.clone());
        let vol = file_name(&disk.to_string_lossy());
        if !vol.starts_with(PREFIX) {
            return None;
        }
        self.blocking(move |c| {
            let pool = ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            let m = read_marker(&store, &host_key(c, &uri), &vol)
                .filter(|m| !m.removed)
                .and_then(|m| m.memory);
            Ok(m.and_then(|m| {
                let path = pool
                    .lookup_storage_vol_by_name(&m.volume)
                    .ok()?
                    .path()
                    .ok()?;
                Some(KeptMemory {
                    path,
                    identity: m.identity,
                    uuid: m.uuid,
                    host_key: m.host_key,
                })
            }))
        })
        .await
        .ok()
        .flatten()
    }

    /// Every complete entry of the pool.
    pub async fn cache_list(&self, store: &Store) -> Result<Vec<CachedState>, LibvirtError> {
        let (store, uri) = (store.clone(), self.uri.clone());
        self.blocking(move |c| {
            let pool = ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            let _ = pool.refresh(0);
            let host = host_key(c, &uri);
            sweep(&pool, &store, &host);
            let mut out = Vec::new();
            for vol in pool.list_volumes().map_err(call("list volumes"))? {
                if !vol.starts_with(PREFIX) {
                    continue;
                }
                let (Some(m), Ok(v)) = (
                    read_marker(&store, &host, &vol).filter(|m| !m.removed),
                    pool.lookup_storage_vol_by_name(&vol),
                ) else {
                    continue;
                };
                if let Ok(path) = v.path() {
                    out.push(state(&m, path, entry_size(&pool, &vol)));
                }
            }
            out.sort_by(|a, b| a.hash.cmp(&b.hash));
            Ok(out)
        })
        .await
    }

    /// Removes the entry at `location` (a volume path): at once when no VM stands on it;
    /// otherwise it is no longer served, and its volume goes with the last VM on it (at
    /// the next `cache list`, `cache prune` or keep).
    pub async fn cache_remove(&self, store: &Store, location: &str) -> Result<(), LibvirtError> {
        let (store, uri) = (store.clone(), self.uri.clone());
        let vol = Path::new(location)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !vol.starts_with(PREFIX) {
            return Err(LibvirtError::NotFound {
                what: "cache volume",
                name: location.to_string(),
            });
        }
        self.blocking(move |c| {
            let pool = ensure_pool(c, &uri).map_err(call("pool `hdev`"))?;
            let _ = pool.refresh(0);
            remove_entry(&pool, &store, &host_key(c, &uri), &vol)
        })
        .await
    }
}

/// Bytes the entry whose disk is volume `vol` holds: its disk layer and its memory.
fn entry_size(pool: &StoragePool, vol: &str) -> u64 {
    [vol.to_string(), memory_name(vol)]
        .iter()
        .filter_map(|n| pool.lookup_storage_vol_by_name(n).ok()?.info().ok())
        .map(|i| i.allocation)
        .sum()
}

fn state(m: &Marker, path: String, size: u64) -> CachedState {
    CachedState {
        hash: m.hash.clone(),
        location: path,
        machine: m.machine.clone(),
        env: m.env.clone(),
        size,
        created: m.created,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_volume_names_the_whole_hash_and_no_domain() {
        let v = super::volume_name("sha256:0123abcd");
        assert_eq!(v, "hdev-cache-0123abcd.qcow2");
        // Domains are `hdev-ENV-INSTANCE-MACHINE` and own volumes `DOMAIN.…`.
        assert!(!v.contains(".qcow2.") && v.matches('.').count() == 1);
        assert_eq!(super::memory_name(&v), "hdev-cache-0123abcd.mem");
    }
}
