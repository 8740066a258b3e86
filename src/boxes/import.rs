//! Turning boxes made elsewhere into hdev boxes: a standard cloud qcow2 image (configured
//! at first boot through cloud-init's NoCloud seed) and a vagrant-libvirt `.box`.
//!
//! Both become ordinary stored boxes with a `libvirt-disk` artifact, so the rest of hdev
//! (digests, `box list`, the libvirt base volume) treats them like built ones.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use super::archive::{safe_extract, size_limit};
use super::digest::{BoxDigest, HashingWriter};
use super::manifest::{self, Artifact, Boot, Manifest, FORMAT_VERSION, MANIFEST};
use super::{BoxError, Store, StoredBox};

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// What kind of file a non-hdev box is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// A qcow2 disk image.
    Qcow2,
    /// A gzip-compressed tar (vagrant boxes usually are).
    TarGz,
    /// An uncompressed tar.
    Tar,
}

/// Recognises a file by its first bytes.
pub fn sniff(path: &Path) -> Result<Option<Foreign>, BoxError> {
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).map_err(BoxError::io(path))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(BoxError::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(if head.starts_with(QCOW2_MAGIC) {
        Some(Foreign::Qcow2)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(Foreign::TarGz)
    } else if n == 512 && &head[257..262] == b"ustar" {
        Some(Foreign::Tar)
    } else {
        None
    })
}

/// Adds a cloud qcow2 or a vagrant-libvirt box under `name`.
pub fn import_file(
    store: &Store,
    path: &Path,
    name: &str,
    pinned: Option<&BoxDigest>,
) -> Result<StoredBox, BoxError> {
    let shown = path.display().to_string();
    if !manifest::is_box_name(name) {
        return Err(BoxError::InvalidArchive {
            archive: shown,
            message: format!(
                "`{name}` is not a usable box name (letters, digits, `-`, `_`, `.`); give one with `--name`"
            ),
        });
    }
    let identity = super::digest::FileIdentity::of(path).map_err(BoxError::io(path))?;
    let kind = sniff(path)?.ok_or_else(|| BoxError::InvalidArchive {
        archive: shown.clone(),
        message: "it is neither an hdev box, a qcow2 image nor a vagrant box".into(),
    })?;
    let _work = store.work_guard()?;
    let tmp = store.tmp_dir()?;
    let partial = tempfile::Builder::new()
        .prefix("import-")
        .suffix(".partial")
        .tempdir_in(&tmp)
        .map_err(BoxError::io(&tmp))?;
    let disk = partial.path().join("disk.qcow2");
    let origin = match kind {
        Foreign::Qcow2 => import_qcow2(path, &disk, &shown, name)?,
        Foreign::TarGz | Foreign::Tar => {
            import_vagrant(kind, path, partial.path(), &disk, &shown, name)?
        }
    };
    let m = disk_manifest(path, name, origin, &disk)?;
    let digest = write_manifest(&m, partial.path(), pinned, name, &shown)?;
    let b = store.commit(partial, &digest)?;
    store.remember(path, identity, &b.digest);
    Ok(b)
}

/// What the manifest says about where an imported disk came from.
struct Origin {
    version: String,
    description: String,
    boot: Boot,
}

/// Copies a cloud qcow2 image to `disk`, within the size limit.
fn import_qcow2(path: &Path, disk: &Path, shown: &str, name: &str) -> Result<Origin, BoxError> {
    let f = std::fs::File::open(path).map_err(BoxError::io(path))?;
    let total = f.metadata().ok().map(|m| m.len());
    let mut f = reading(f, path, name, total);
    copy_limited(&mut f, disk, shown)?;
    Ok(Origin {
        version: "cloud".to_string(),
        description: format!("cloud image `{shown}` (cloud-init NoCloud)"),
        boot: Boot::CloudInit,
    })
}

/// Extracts a vagrant box (refusing unsafe entries, within the size limit) into a folder
/// of `partial`, checks it is a libvirt qcow2 box, and moves its disk to `disk`.
fn import_vagrant(
    kind: Foreign,
    path: &Path,
    partial: &Path,
    disk: &Path,
    shown: &str,
    name: &str,
) -> Result<Origin, BoxError> {
    let x = partial.join("x");
    std::fs::create_dir(&x).map_err(BoxError::io(&x))?;
    let f = std::fs::File::open(path).map_err(BoxError::io(path))?;
    let total = f.metadata().ok().map(|m| m.len());
    let r = std::io::BufReader::with_capacity(1 << 20, reading(f, path, name, total));
    if kind == Foreign::TarGz {
        let compressed = std::fs::metadata(path).map_err(BoxError::io(path))?.len();
        let (limit, ratio) = super::archive::compressed_limit(compressed);
        match (
            safe_extract(flate2::read::GzDecoder::new(r), shown, &x, limit),
            ratio,
        ) {
            (Err(BoxError::TooLarge { .. }), Some(ratio)) => {
                return Err(BoxError::Bomb {
                    archive: shown.to_string(),
                    compressed,
                    ratio,
                })
            }
            (r, _) => r?,
        };
    } else {
        safe_extract(r, shown, &x, size_limit())?;
    }
    let version = vagrant_check(&x, shown)?;
    let img = x.join("box.img");
    std::fs::rename(&img, disk).map_err(BoxError::io(&img))?;
    std::fs::remove_dir_all(&x).map_err(BoxError::io(&x))?;
    Ok(Origin {
        version,
        description: format!("vagrant-libvirt box `{shown}`"),
        boot: Boot::Disk,
    })
}

/// `f` (the file at `path`), its bytes read reported as box `name`'s progress.
fn reading(
    f: std::fs::File,
    path: &Path,
    name: &str,
    total: Option<u64>,
) -> crate::progress::Counting<std::fs::File> {
    crate::progress::Counting::new(
        f,
        &format!("box {name}"),
        &format!("importing `{}`", path.display()),
        total,
    )
}

/// The manifest of an imported box: its one `libvirt-disk` artifact, hashed from `disk`.
fn disk_manifest(
    path: &Path,
    name: &str,
    origin: Origin,
    disk: &Path,
) -> Result<Manifest, BoxError> {
    let (sha256, size) = super::digest::hash_file(disk).map_err(BoxError::io(disk))?;
    let created = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| manifest::rfc3339(d.as_secs() as i64))
        .unwrap_or_else(manifest::now_rfc3339);
    Ok(Manifest {
        format: FORMAT_VERSION,
        name: name.to_string(),
        version: origin.version,
        // The file's own time: the same file always gives the same box digest.
        created,
        description: Some(origin.description),
        recipe: None,
        boot: Some(origin.boot),
        packages: vec![],
        artifacts: BTreeMap::from([(
            manifest::LIBVIRT_DISK.to_string(),
            Artifact {
                path: "disk.qcow2".into(),
                sha256,
                size,
            },
        )]),
    })
}

/// Writes the manifest into `partial` and returns the box digest, refusing the box when
/// `pinned` is given and differs.
fn write_manifest(
    m: &Manifest,
    partial: &Path,
    pinned: Option<&BoxDigest>,
    name: &str,
    shown: &str,
) -> Result<BoxDigest, BoxError> {
    let bytes = m.to_bytes();
    let digest = BoxDigest::of(&bytes);
    if let Some(want) = pinned {
        if *want != digest {
            return Err(BoxError::DigestMismatch {
                what: format!("box `{name}` from `{shown}`"),
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    crate::state::write_atomic(&partial.join(MANIFEST), &bytes).map_err(|e| BoxError::Io {
        path: partial.join(MANIFEST),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(digest)
}

/// Copies `src` to a new file `dest`, refusing more than the size limit.
fn copy_limited<R: Read>(src: &mut R, dest: &Path, shown: &str) -> Result<u64, BoxError> {
    let limit = size_limit();
    let out = std::fs::File::create_new(dest).map_err(BoxError::io(dest))?;
    let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let n = std::io::copy(&mut src.take(limit + 1), &mut w).map_err(BoxError::io(dest))?;
    if n > limit {
        return Err(BoxError::TooLarge {
            archive: shown.to_string(),
            limit,
        });
    }
    let (_, _, mut inner) = w.finish();
    inner.flush().map_err(BoxError::io(dest))?;
    Ok(n)
}

/// Checks a vagrant box's `metadata.json` says libvirt and qcow2; returns its version.
fn vagrant_check(dir: &Path, shown: &str) -> Result<String, BoxError> {
    let invalid = |message: String| BoxError::InvalidArchive {
        archive: shown.to_string(),
        message,
    };
    let p = dir.join("metadata.json");
    let text = crate::envfile::read_text(&p, super::archive::MAX_MANIFEST).map_err(|e| {
        invalid(format!(
            "it is neither an hdev box (whose first entry is `{}`) nor a vagrant box (which has a `metadata.json`: {e})",
            MANIFEST
        ))
    })?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("`metadata.json`: {e}")))?;
    let provider = meta.get("provider").and_then(|v| v.as_str()).unwrap_or("");
    if provider != "libvirt" {
        return Err(invalid(format!(
            "it is a vagrant box for provider `{provider}`; only `libvirt` boxes can be used"
        )));
    }
    if let Some(f) = meta.get("format").and_then(|v| v.as_str()) {
        if f != "qcow2" {
            return Err(invalid(format!("its disk format is `{f}`, not `qcow2`")));
        }
    }
    let img = dir.join("box.img");
    if !std::fs::symlink_metadata(&img).is_ok_and(|m| m.is_file()) {
        return Err(invalid("it has no `box.img` disk".into()));
    }
    Ok(meta
        .get("version")
        .map(|v| v.to_string().trim_matches('"').to_string())
        .unwrap_or_else(|| "vagrant".into()))
}
