//! Importing a box's disk (and kernel and initrd) into libvirt as read-only base volumes.
//!
//! Machines never write to a box: each VM gets its own qcow2 overlay on the base volume.
//! The volumes live in the storage pool `hdev` and are uploaded through libvirt's stream
//! API, so a remote libvirt works like the local one. A volume counts as imported only
//! once its upload finished (a marker in the store says so); a half-uploaded volume left
//! by an interrupted command is deleted and uploaded again.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use crate::boxes::ensure::{blocking, ensure_box_in, key_lock, LibvirtArtifacts};
use crate::boxes::manifest::Boot;
use crate::boxes::{BoxDigest, BoxError, Store, StoredBox};
use crate::envfile::Env;

/// The storage pool that holds base volumes (shared with the libvirt backend's overlays).
pub const POOL: &str = "hdev";

/// A box's base volumes in libvirt.
#[derive(Debug, Clone, Serialize)]
pub struct BaseVolumes {
    pub name: String,
    pub digest: BoxDigest,
    /// Path of the read-only qcow2 base; machines overlay it.
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub boot: Boot,
}

/// Folder of a new `hdev` pool: libvirt's own images folder for a system connection
/// (qemu runs as its own user there and cannot reach a home folder), the user's
/// libvirt images folder for a session connection.
pub fn default_pool_dir(uri: &str) -> PathBuf {
    if uri.contains("/session") {
        directories::BaseDirs::new()
            .map(|b| b.data_dir().join("libvirt/images/hdev"))
            .unwrap_or_else(|| PathBuf::from("/var/lib/libvirt/images/hdev"))
    } else {
        PathBuf::from("/var/lib/libvirt/images/hdev")
    }
}

/// The base volumes of `[box.NAME]` on the libvirt at `uri`: the box is built or added
/// when the store has none, verified, and uploaded once.
pub async fn libvirt_base(uri: &str, env: &Env, box_name: &str) -> Result<BaseVolumes, BoxError> {
    libvirt_base_in(&Store::open_default()?, uri, env, box_name).await
}

/// [`libvirt_base`] with an explicit store.
pub async fn libvirt_base_in(
    store: &Store,
    uri: &str,
    env: &Env,
    box_name: &str,
) -> Result<BaseVolumes, BoxError> {
    let b = ensure_box_in(store, env, box_name).await?;
    import_box(store, uri, &b).await
}

/// The base volume of a libvirt machine's `image = "FILE"` (a cloud qcow2 or a
/// vagrant-libvirt box), imported into the store and uploaded once.
pub async fn libvirt_image_base_in(
    store: &Store,
    uri: &str,
    env: &Env,
    image: &str,
) -> Result<BaseVolumes, BoxError> {
    let b = crate::boxes::ensure::ensure_image_in(store, env, image).await?;
    import_box(store, uri, &b).await
}

/// Uploads a stored box's libvirt artifacts into the pool unless they are there.
pub async fn import_box(store: &Store, uri: &str, b: &StoredBox) -> Result<BaseVolumes, BoxError> {
    let arts = LibvirtArtifacts::of(b)?;
    let lock = key_lock(&format!("libvirt\0{uri}\0{}", b.digest));
    let _held = lock.lock().await;
    let (store, uri, label) = (store.clone(), uri.to_string(), b.label());
    blocking(move || {
        let _file_lock = store.lock(&format!("libvirt-{}", arts.digest.short()))?;
        let err = |action: String| {
            let name = label.clone();
            move |e: virt::error::Error| BoxError::Libvirt {
                name,
                action,
                message: e.to_string(),
            }
        };
        super::quiet();
        let conn = Connect::open(Some(&uri)).map_err(err(format!("connecting to `{uri}`")))?;
        let result = (|| {
            let pool = ensure_pool(&conn, &uri).map_err(err(format!("pool `{POOL}`")))?;
            let host = host_key(&conn, &uri);
            let base = format!("hdev-box-{}-{}", arts.name, arts.digest.short());
            let up = |src: &Path, suffix: &str| {
                upload_once(
                    &store,
                    &host,
                    &pool,
                    src,
                    &format!("{base}{suffix}"),
                    &label,
                )
            };
            let disk = up(&arts.disk, ".qcow2")?;
            let kernel = arts
                .kernel
                .as_deref()
                .map(|k| up(k, "-vmlinuz"))
                .transpose()?;
            let initrd = arts
                .initrd
                .as_deref()
                .map(|i| up(i, "-initrd"))
                .transpose()?;
            Ok(BaseVolumes {
                name: arts.name.clone(),
                digest: arts.digest.clone(),
                disk,
                kernel,
                initrd,
                boot: arts.boot,
            })
        })();
        drop(conn);
        result
    })
    .await
}

fn is_not_found(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(ErrorNumber::NoStorageVolume | ErrorNumber::NoStoragePool)
    )
}

/// The `hdev` pool, defined, built and started when missing.
pub fn ensure_pool(conn: &Connect, uri: &str) -> Result<StoragePool, virt::error::Error> {
    let pool = match conn.lookup_storage_pool_by_name(POOL) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => {
            let xml = format!(
                "<pool type='dir'><name>{POOL}</name><target><path>{}</path></target></pool>",
                default_pool_dir(uri).display()
            );
            match conn.define_storage_pool_xml(&xml, 0) {
                Ok(p) => {
                    p.build(0)?;
                    let _ = p.set_autostart(true);
                    p
                }
                // Another process defined it meanwhile.
                Err(_) => conn.lookup_storage_pool_by_name(POOL)?,
            }
        }
        Err(e) => return Err(e),
    };
    if !pool.is_active()? {
        if let Err(e) = pool.create(0) {
            if !pool.is_active()? {
                return Err(e);
            }
        }
    }
    // Best effort: every volume hdev uses is made through libvirtd, which knows it without
    // a refresh; and libvirt refuses one while another client streams into the pool ("has
    // asynchronous jobs running"), which must not fail this command.
    let _ = pool.refresh(0);
    Ok(pool)
}

/// The libvirt host behind a connection: its host UUID and name, so one host reached through
/// two URIs (`qemu:///system`, `qemu+ssh://host/system`) shares its uploads; the URI
/// where the capabilities say none.
pub(super) fn host_key(conn: &Connect, uri: &str) -> String {
    conn.capabilities()
        .ok()
        .and_then(|caps| {
            let host = caps.find("<host>")?;
            let s = caps[host..].find("<uuid>")? + host + "<uuid>".len();
            let e = caps[s..].find("</uuid>")? + s;
            let name = conn.hostname().unwrap_or_default();
            Some(format!("host:{}@{name}", caps[s..e].trim()))
        })
        .unwrap_or_else(|| uri.to_string())
}

/// The marker saying volume `vol` on the host `host` (see [`host_key`]) was uploaded
/// completely.
pub(super) fn marker(store: &Store, host: &str, vol: &str) -> PathBuf {
    let key = BoxDigest::of(host.as_bytes());
    store
        .root()
        .join("imports")
        .join("libvirt")
        .join(key.short())
        .join(vol)
}

fn upload_once(
    store: &Store,
    host: &str,
    pool: &StoragePool,
    src: &Path,
    vol_name: &str,
    label: &str,
) -> Result<PathBuf, BoxError> {
    let err = |action: String| {
        let name = label.to_string();
        move |e: virt::error::Error| BoxError::Libvirt {
            name,
            action,
            message: e.to_string(),
        }
    };
    let mark = marker(store, host, vol_name);
    match pool.lookup_storage_vol_by_name(vol_name) {
        Ok(v) if mark.exists() => {
            return v
                .path()
                .map(PathBuf::from)
                .map_err(err(format!("path of volume `{vol_name}`")));
        }
        // Left by an interrupted upload: start again.
        Ok(v) => v
            .delete(0)
            .map_err(err(format!("deleting the incomplete volume `{vol_name}`")))?,
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(err(format!("looking up volume `{vol_name}`"))(e)),
    }
    let size = std::fs::metadata(src).map_err(BoxError::io(src))?.len();
    let xml = format!(
        "<volume><name>{vol_name}</name><capacity unit='bytes'>{size}</capacity>\
         <allocation unit='bytes'>0</allocation><target><format type='raw'/>\
         <permissions><mode>0444</mode></permissions></target></volume>"
    );
    let vol = StorageVol::create_xml(pool, &xml, 0)
        .map_err(err(format!("creating volume `{vol_name}`")))?;
    if let Err(e) = upload(&vol, src, size, label, vol_name) {
        let _ = vol.delete(0);
        return Err(e);
    }
    let _ = pool.refresh(0);
    if let Some(d) = mark.parent() {
        std::fs::create_dir_all(d).map_err(BoxError::io(d))?;
    }
    std::fs::write(&mark, src.display().to_string()).map_err(BoxError::io(&mark))?;
    vol.path()
        .map(PathBuf::from)
        .map_err(err(format!("path of volume `{vol_name}`")))
}

/// Sends all of `bytes` down an upload stream (the caller aborts it on an error).
pub(crate) fn send_all(stream: &Stream, bytes: &[u8]) -> Result<(), virt::error::Error> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.send(&bytes[sent..])? {
            k if k > 0 => sent += k as usize,
            _ => {}
        }
    }
    Ok(())
}

fn upload(
    vol: &StorageVol,
    src: &Path,
    size: u64,
    label: &str,
    vol_name: &str,
) -> Result<(), BoxError> {
    let err = |action: &str, e: virt::error::Error| BoxError::Libvirt {
        name: label.to_string(),
        action: format!("{action} `{vol_name}`"),
        message: e.to_string(),
    };
    let conn = vol.connect().map_err(|e| err("connection of", e))?;
    let stream = Stream::new(&conn, 0).map_err(|e| err("opening a stream to", e))?;
    vol.upload(&stream, 0, size, 0)
        .map_err(|e| err("starting the upload of", e))?;
    let f = std::fs::File::open(src).map_err(BoxError::io(src))?;
    // Its bytes as they go, on the box's line (the label is `NAME@DIGEST`).
    let subject = format!("box {}", label.split('@').next().unwrap_or(label));
    let what = format!("uploading `{vol_name}` to libvirt");
    let mut f = crate::progress::Counting::new(f, &subject, &what, Some(size));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = stream.abort();
                return Err(BoxError::Io {
                    path: src.to_path_buf(),
                    source: e,
                });
            }
        };
        if let Err(e) = send_all(&stream, &buf[..n]) {
            let _ = stream.abort();
            return Err(err("uploading", e));
        }
    }
    stream
        .finish()
        .map_err(|e| err("finishing the upload of", e))
}

/// Removes a box's base volumes from the pool (for `box remove`); missing ones are fine.
pub fn remove_volumes(store: &Store, uri: &str, b: &StoredBox) -> Result<usize, BoxError> {
    let err = |e: virt::error::Error| BoxError::Libvirt {
        name: b.label(),
        action: "removing base volumes".into(),
        message: e.to_string(),
    };
    super::quiet();
    let conn = Connect::open(Some(uri)).map_err(err)?;
    let pool = match conn.lookup_storage_pool_by_name(POOL) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Ok(0),
        Err(e) => return Err(err(e)),
    };
    let base = format!("hdev-box-{}-{}", b.manifest.name, b.digest.short());
    let host = host_key(&conn, uri);
    let mut n = 0;
    for suffix in [".qcow2", "-vmlinuz", "-initrd"] {
        let name = format!("{base}{suffix}");
        if let Ok(v) = pool.lookup_storage_vol_by_name(&name) {
            v.delete(0).map_err(err)?;
            n += 1;
        }
        let _ = std::fs::remove_file(marker(store, &host, &name));
    }
    Ok(n)
}
