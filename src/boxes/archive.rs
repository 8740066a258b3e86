//! Box archives: one tar file, the manifest first, then the artifacts it lists.
//!
//! Reading an archive is where untrusted bytes meet the file system, so it is strict:
//! every entry must be a regular file named in the manifest, sizes are checked before a
//! byte is written, each artifact is hashed while it is written, and the total is capped.
//! [`safe_extract`] does the same for general trees (vagrant boxes), refusing entries that
//! would land outside the target, links that point out of it, and device files.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::digest::{BoxDigest, HashingWriter};
use super::manifest::{Artifact, Manifest, MANIFEST};
use super::BoxError;

/// Largest manifest accepted; real ones are a few hundred bytes.
pub(super) const MAX_MANIFEST: u64 = 1 << 20;

/// Default cap on what one archive may expand to (override: `HDEV_BOX_MAX_BYTES`).
pub const DEFAULT_LIMIT: u64 = 64 << 30;

/// How many times its compressed size a compressed box may expand to (override:
/// `HDEV_BOX_MAX_RATIO`): disks and file systems compress 2 to 5 times; a bomb, a
/// thousand.
pub const DEFAULT_RATIO: u64 = 32;

/// Compressed archives expanding to less than this are not held to the ratio.
const RATIO_FLOOR: u64 = 64 << 20;

/// The ratio in force.
pub fn ratio_limit() -> u64 {
    std::env::var("HDEV_BOX_MAX_RATIO")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_RATIO)
}

/// The expansion cap for a compressed archive of `compressed` bytes: the size limit, and
/// at most [`ratio_limit`] times its size (but never below 64 MiB). `Some` when the
/// ratio is what binds.
pub fn compressed_limit(compressed: u64) -> (u64, Option<u64>) {
    let by_ratio = compressed.saturating_mul(ratio_limit()).max(RATIO_FLOOR);
    let limit = size_limit();
    match by_ratio < limit {
        true => (by_ratio, Some(ratio_limit())),
        false => (limit, None),
    }
}

/// The expansion cap in force.
pub fn size_limit() -> u64 {
    std::env::var("HDEV_BOX_MAX_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_LIMIT)
}

/// Writes a box archive: `manifest` first, then each artifact read from `dir`.
pub fn write_archive(manifest: &Manifest, dir: &Path, out: &Path) -> Result<(), BoxError> {
    let parent = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(BoxError::io(parent))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    let bytes = manifest.to_bytes();
    append(&mut b, MANIFEST, bytes.len() as u64, &bytes[..]).map_err(BoxError::io(out))?;
    let mut arts: Vec<_> = manifest.artifacts.values().collect();
    arts.sort_by(|a, b| a.path.cmp(&b.path));
    for a in arts {
        let src = dir.join(&a.path);
        let f = std::fs::File::open(&src).map_err(BoxError::io(&src))?;
        append(&mut b, &a.path, a.size, f).map_err(BoxError::io(&src))?;
    }
    let w = b.into_inner().map_err(BoxError::io(out))?;
    w.into_inner()
        .map_err(|e| BoxError::Io {
            path: out.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(BoxError::io(out))?;
    // A temp file is private; an archive is meant to be shared.
    use std::os::unix::fs::PermissionsExt;
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(out).map_err(|e| BoxError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn append<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: R,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data.take(size))
}

/// Reads a box archive from `reader`, checking everything; writes the artifacts into
/// `dest` when given (which must exist and be empty). Refuses the box when `expected`
/// is given and differs from the manifest's digest, before any artifact is read.
pub fn read_archive<R: Read>(
    reader: R,
    source: &str,
    dest: Option<&Path>,
    expected: Option<&BoxDigest>,
    limit: u64,
) -> Result<(Manifest, BoxDigest), BoxError> {
    let r = Reading {
        source,
        dest,
        limit,
    };
    let mut ar = tar::Archive::new(reader);
    let mut entries = ar.entries().map_err(|e| r.invalid(e.to_string()))?;
    let (manifest, digest) = r.manifest(&mut entries, expected)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| r.invalid(e.to_string()))?;
        r.artifact(entry, &manifest, &mut seen, &mut total)?;
    }
    for (provider, a) in &manifest.artifacts {
        if !seen.contains(&a.path) {
            return Err(r.invalid(format!("artifact `{provider}` (`{}`) is missing", a.path)));
        }
    }
    Ok((manifest, digest))
}

/// One archive being read: its name (for messages), where its artifacts go (nowhere when
/// only checking), and the cap on what it may expand to.
struct Reading<'a> {
    source: &'a str,
    dest: Option<&'a Path>,
    limit: u64,
}

impl Reading<'_> {
    fn invalid(&self, message: String) -> BoxError {
        BoxError::InvalidArchive {
            archive: self.source.to_string(),
            message,
        }
    }

    fn too_large(&self) -> BoxError {
        BoxError::TooLarge {
            archive: self.source.to_string(),
            limit: self.limit,
        }
    }

    /// Reads the first entry, which must be the manifest: checked like any entry, capped
    /// in size, its digest compared with `expected` before it is even parsed, and the
    /// total it announces capped before the manifest is written into `dest`.
    fn manifest<R: Read>(
        &self,
        entries: &mut tar::Entries<'_, R>,
        expected: Option<&BoxDigest>,
    ) -> Result<(Manifest, BoxDigest), BoxError> {
        let first = entries
            .next()
            .ok_or_else(|| self.invalid("the archive is empty".into()))?
            .map_err(|e| self.invalid(e.to_string()))?;
        let name = entry_name(&first);
        check_entry(&first, self.source, Path::new(""))?;
        if name != MANIFEST {
            return Err(self.invalid(format!("the first entry is `{name}`, not `{MANIFEST}`")));
        }
        if first.size() > MAX_MANIFEST {
            return Err(self.invalid(format!("`{MANIFEST}` is larger than 1 MiB")));
        }
        let mut bytes = Vec::new();
        first
            .take(MAX_MANIFEST)
            .read_to_end(&mut bytes)
            .map_err(|e| self.invalid(e.to_string()))?;
        let digest = BoxDigest::of(&bytes);
        if let Some(want) = expected {
            if *want != digest {
                return Err(BoxError::DigestMismatch {
                    what: format!("box `{}`", self.source),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let manifest =
            Manifest::parse(&bytes).map_err(|m| self.invalid(format!("{MANIFEST}: {m}")))?;
        if manifest.size() > self.limit {
            return Err(self.too_large());
        }
        if let Some(d) = self.dest {
            crate::state::write_atomic(&d.join(MANIFEST), &bytes)
                .map_err(|e| self.invalid(e.to_string()))?;
        }
        Ok((manifest, digest))
    }

    /// Checks an entry after the manifest before a byte of it is written: a safe regular
    /// path, listed in the manifest, not seen before, of the listed size, within the cap
    /// (`total` counts what was accepted so far). Then copies it.
    fn artifact<R: Read>(
        &self,
        mut entry: tar::Entry<'_, R>,
        manifest: &Manifest,
        seen: &mut std::collections::BTreeSet<String>,
        total: &mut u64,
    ) -> Result<(), BoxError> {
        check_entry(&entry, self.source, Path::new(""))?;
        let name = entry_name(&entry);
        let Some((provider, art)) = manifest.artifacts.iter().find(|(_, a)| a.path == name) else {
            return Err(self.invalid(format!("entry `{name}` is not listed in the manifest")));
        };
        if !seen.insert(name.clone()) {
            return Err(self.invalid(format!("entry `{name}` appears twice")));
        }
        if entry.size() != art.size {
            return Err(self.invalid(format!(
                "artifact `{provider}` (`{name}`) is {} bytes, the manifest says {}",
                entry.size(),
                art.size
            )));
        }
        *total += art.size;
        if *total > self.limit {
            return Err(self.too_large());
        }
        self.copy_artifact(&mut entry, &name, provider, art)
    }

    /// Copies an accepted artifact into `dest` (or nowhere), hashing it as it is written,
    /// and refuses it when it is short or its digest is not the manifest's.
    fn copy_artifact<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        provider: &str,
        art: &Artifact,
    ) -> Result<(), BoxError> {
        let sink: Box<dyn Write> = match self.dest {
            Some(d) => {
                let p = d.join(name);
                Box::new(std::io::BufWriter::with_capacity(
                    1 << 20,
                    std::fs::File::create_new(&p).map_err(BoxError::io(&p))?,
                ))
            }
            None => Box::new(std::io::sink()),
        };
        let mut w = HashingWriter::new(sink);
        let n = std::io::copy(&mut entry.by_ref().take(art.size), &mut w)
            .map_err(|e| self.invalid(format!("reading `{name}`: {e}")))?;
        let (sha, _, mut inner) = w.finish();
        inner
            .flush()
            .map_err(|e| self.invalid(format!("writing `{name}`: {e}")))?;
        if n != art.size {
            return Err(self.invalid(format!("artifact `{name}` is truncated")));
        }
        if sha != art.sha256 {
            return Err(BoxError::DigestMismatch {
                what: format!("artifact `{provider}` (`{name}`) of box `{}`", self.source),
                expected: format!("sha256:{}", art.sha256),
                actual: format!("sha256:{sha}"),
            });
        }
        Ok(())
    }
}

pub(crate) fn entry_name<R: Read>(e: &tar::Entry<'_, R>) -> String {
    String::from_utf8_lossy(&e.path_bytes()).into_owned()
}

/// Refuses an entry that would escape `root` (absolute, `..`), a link pointing out of it,
/// and anything that is not a file, folder or link. `root` is where the entry's path is
/// resolved from, relative to the extraction target.
pub(crate) fn check_entry<R: Read>(
    e: &tar::Entry<'_, R>,
    source: &str,
    root: &Path,
) -> Result<(), BoxError> {
    let name = entry_name(e);
    let unsafe_entry = |reason: &str| BoxError::UnsafeEntry {
        archive: source.to_string(),
        entry: name.clone(),
        reason: reason.to_string(),
    };
    let path = root.join(Path::new(&name));
    if Path::new(&name).is_absolute() {
        return Err(unsafe_entry("it is an absolute path"));
    }
    if inside(Path::new(""), &path).is_none() {
        return Err(unsafe_entry("it leads out of the target folder (`..`)"));
    }
    use tar::EntryType as T;
    match e.header().entry_type() {
        T::Regular | T::Continuous | T::Directory => Ok(()),
        // GNU long names and PAX headers are consumed by the reader, never seen here.
        T::Symlink | T::Link => {
            let target = e
                .link_name_bytes()
                .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
                .ok_or_else(|| unsafe_entry("it is a link without a target"))?;
            if target.is_absolute() {
                return Err(unsafe_entry("it is a link to an absolute path"));
            }
            // A symlink resolves from its own folder, a hard link from the archive root.
            let base = if e.header().entry_type() == T::Symlink {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                root.to_path_buf()
            };
            if inside(Path::new(""), &base.join(&target)).is_none() {
                return Err(unsafe_entry(
                    "it is a link pointing out of the target folder",
                ));
            }
            Ok(())
        }
        T::Char | T::Block => Err(unsafe_entry("it is a device file")),
        T::Fifo => Err(unsafe_entry("it is a named pipe")),
        other => Err(unsafe_entry(&format!(
            "it has an unsupported type ({other:?})"
        ))),
    }
}

/// Normalises `p` lexically under `base`; None when a `..` climbs above `base`.
pub(crate) fn inside(base: &Path, p: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                out.pop();
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Extracts a general tar into `dest` (which must exist), refusing unsafe entries and
/// stopping past `limit` bytes. On error `dest` may hold part of the tree: callers extract
/// into a partial folder and remove it.
pub fn safe_extract<R: Read>(
    reader: R,
    source: &str,
    dest: &Path,
    limit: u64,
) -> Result<u64, BoxError> {
    let invalid = |message: String| BoxError::InvalidArchive {
        archive: source.to_string(),
        message,
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(false);
    ar.set_unpack_xattrs(false);
    let mut total = 0u64;
    for entry in ar.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        check_entry(&entry, source, Path::new(""))?;
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(BoxError::TooLarge {
                archive: source.to_string(),
                limit,
            });
        }
        // Checked above; `unpack_in` checks again and never writes outside `dest`.
        let ok = entry
            .unpack_in(dest)
            .map_err(|e| invalid(format!("extracting `{}`: {e}", entry_name(&entry))))?;
        if !ok {
            return Err(BoxError::UnsafeEntry {
                archive: source.to_string(),
                entry: entry_name(&entry),
                reason: "it leads out of the target folder".into(),
            });
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_normalises_and_refuses_climbing_out() {
        assert_eq!(
            inside(Path::new(""), Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(inside(Path::new(""), Path::new("a/../..")), None);
        assert_eq!(inside(Path::new(""), Path::new("/etc")), None);
    }

    #[test]
    fn safe_extract_keeps_links_that_stay_inside() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "d/file", &b"hi"[..]).expect("file");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "d/link", "file").expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "up", "d/../d/file").expect("link");
        let bytes = b.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        let n = safe_extract(&bytes[..], "t.tar", dir.path(), 1 << 20).expect("extract");
        assert_eq!(n, 2);
        assert_eq!(
            std::fs::read(dir.path().join("d/link")).expect("read"),
            b"hi"
        );
        assert_eq!(std::fs::read(dir.path().join("up")).expect("read"), b"hi");
        let err = safe_extract(&bytes[..], "t.tar", dir.path(), 1).expect_err("limit");
        assert!(matches!(err, BoxError::TooLarge { .. }), "{err}");
    }
}
