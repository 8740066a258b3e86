//! Reading an archive: the index first (bounded, checked), then each entry against it,
//! written only once it is known to be listed, safe and of the listed size, and refused
//! when its digest is not the listed one. Boxes go into the store through the store's own
//! careful reader, against their listed digests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{
    BoxEntry, ExportError, FileEntry, HashingReader, Index, BOX_PREFIX, ENV_PREFIX, FORMAT, INDEX,
    MAX_INDEX,
};
use crate::boxes::{archive, BoxDigest, Store};

/// What reading an archive did.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub index: Index,
    /// Box digests added to the store from the archive.
    pub added: Vec<String>,
    /// Box digests the store already held (their bytes were checked all the same).
    pub present: Vec<String>,
}

/// Reads the archive's index only.
pub(crate) fn read_index(file: &Path) -> Result<Index, ExportError> {
    let f = std::fs::File::open(file).map_err(ExportError::io(file))?;
    let mut ar = tar::Archive::new(BufReader::new(f));
    let source = file.display().to_string();
    let mut entries = ar.entries().map_err(|e| invalid(&source, damaged(&e)))?;
    first_index(&mut entries, &source)
}

/// Reads the whole archive: the environment's files into `dest` (an empty folder; `None`
/// checks them without writing) and its boxes into `store`.
pub(crate) fn unpack(
    file: &Path,
    dest: Option<&Path>,
    store: &Store,
) -> Result<Unpacked, ExportError> {
    let f = std::fs::File::open(file).map_err(ExportError::io(file))?;
    let source = file.display().to_string();
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    let mut entries = ar.entries().map_err(|e| invalid(&source, damaged(&e)))?;
    let index = first_index(&mut entries, &source)?;
    let mut r = Reader {
        source: &source,
        dest,
        store,
        files: index.files.iter().map(|f| (f.path.as_str(), f)).collect(),
        boxes: index
            .boxes
            .iter()
            .filter(|b| b.included)
            .map(|b| (b.member(), b))
            .collect(),
        seen: BTreeSet::new(),
        total: 0,
        added: Vec::new(),
        present: Vec::new(),
    };
    for entry in entries {
        let entry = entry.map_err(|e| invalid(&source, damaged(&e)))?;
        r.entry(entry)?;
    }
    r.complete()?;
    let (added, present) = (r.added, r.present);
    Ok(Unpacked {
        index,
        added,
        present,
    })
}

fn invalid(source: &str, message: String) -> ExportError {
    ExportError::Invalid {
        archive: source.to_string(),
        message,
    }
}

fn damaged(e: &std::io::Error) -> String {
    format!("it is truncated or damaged ({e})")
}

/// The first entry, which must be the index: bounded in size, of a format this hdev
/// reads, listing only safe paths, each once.
fn first_index<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    source: &str,
) -> Result<Index, ExportError> {
    let first = entries
        .next()
        .ok_or_else(|| invalid(source, "it is empty".into()))?
        .map_err(|e| invalid(source, damaged(&e)))?;
    let name = archive::entry_name(&first);
    if name != INDEX {
        return Err(invalid(
            source,
            format!("it is no hdev export: its first entry is `{name}`, not `{INDEX}`"),
        ));
    }
    let size = first.size();
    if size > MAX_INDEX {
        return Err(invalid(source, format!("`{INDEX}` is larger than 8 MiB")));
    }
    let mut bytes = Vec::new();
    first
        .take(MAX_INDEX)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(source, damaged(&e)))?;
    if bytes.len() as u64 != size {
        return Err(invalid(
            source,
            "it is truncated: its index is cut short".into(),
        ));
    }
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(source, format!("`{INDEX}` is not a valid index: {e}")))?;
    if index.format > FORMAT {
        return Err(invalid(
            source,
            format!(
                "it was written by a newer hdev (format {}; this one reads {FORMAT}); upgrade hdev",
                index.format
            ),
        ));
    }
    check_paths(&index, source)?;
    Ok(index)
}

fn check_paths(index: &Index, source: &str) -> Result<(), ExportError> {
    let mut paths = BTreeSet::new();
    for f in &index.files {
        let p = Path::new(&f.path);
        if f.path.is_empty() || p.is_absolute() || archive::inside(Path::new(""), p).is_none() {
            return Err(invalid(
                source,
                format!("the index lists an unsafe path `{}`", f.path),
            ));
        }
        if !paths.insert(f.path.as_str()) {
            return Err(invalid(
                source,
                format!("the index lists `{}` twice", f.path),
            ));
        }
    }
    if !paths.contains(index.envfile.as_str()) {
        return Err(invalid(
            source,
            format!(
                "the index names the Envfile `{}` but does not list it",
                index.envfile
            ),
        ));
    }
    for b in &index.boxes {
        if BoxDigest::parse(&b.digest).is_none() {
            return Err(invalid(
                source,
                format!(
                    "the index lists a box digest `{}` that is not one",
                    b.digest
                ),
            ));
        }
    }
    Ok(())
}

struct Reader<'a> {
    source: &'a str,
    dest: Option<&'a Path>,
    store: &'a Store,
    files: BTreeMap<&'a str, &'a FileEntry>,
    boxes: BTreeMap<String, &'a BoxEntry>,
    seen: BTreeSet<String>,
    total: u64,
    added: Vec<String>,
    present: Vec<String>,
}

impl Reader<'_> {
    fn entry<R: Read>(&mut self, entry: tar::Entry<'_, R>) -> Result<(), ExportError> {
        archive::check_entry(&entry, self.source, Path::new(""))?;
        let name = archive::entry_name(&entry);
        if !self.seen.insert(name.clone()) {
            return Err(invalid(
                self.source,
                format!("entry `{name}` appears twice"),
            ));
        }
        if let Some(rel) = name.strip_prefix(ENV_PREFIX) {
            let Some(&f) = self.files.get(rel) else {
                return Err(self.unlisted(&name));
            };
            return self.file(entry, f);
        }
        if name.starts_with(BOX_PREFIX) {
            let Some(&b) = self.boxes.get(&name) else {
                return Err(self.unlisted(&name));
            };
            return self.boxed(entry, b);
        }
        Err(self.unlisted(&name))
    }

    fn unlisted(&self, name: &str) -> ExportError {
        invalid(
            self.source,
            format!("entry `{name}` is not listed in its index"),
        )
    }

    /// One file or link of the environment, written into `dest` when there is one.
    fn file<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        f: &FileEntry,
    ) -> Result<(), ExportError> {
        let kind = entry.header().entry_type();
        let target = self.dest.map(|d| d.join(&f.path));
        if let Some(t) = &target {
            self.parents(t)?;
        }
        if let Some(link) = &f.link {
            let found = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            if kind != tar::EntryType::Symlink || found.as_deref() != Some(link.as_str()) {
                return Err(invalid(
                    self.source,
                    format!("`{}` is not the link its index lists", f.path),
                ));
            }
            if let Some(t) = &target {
                std::os::unix::fs::symlink(link, t).map_err(ExportError::io(t))?;
            }
            return Ok(());
        }
        if kind != tar::EntryType::Regular || entry.size() != f.size {
            return Err(invalid(
                self.source,
                format!(
                    "`{}` is not the {}-byte file its index lists",
                    f.path, f.size
                ),
            ));
        }
        self.total = self.total.saturating_add(f.size);
        if self.total > archive::size_limit() {
            return Err(crate::boxes::BoxError::TooLarge {
                archive: self.source.to_string(),
                limit: archive::size_limit(),
            }
            .into());
        }
        let sink: Box<dyn Write> = match &target {
            Some(t) => Box::new(std::fs::File::create_new(t).map_err(ExportError::io(t))?),
            None => Box::new(std::io::sink()),
        };
        let mut w = crate::boxes::digest::HashingWriter::new(sink);
        std::io::copy(&mut entry.by_ref().take(f.size), &mut w)
            .map_err(|e| invalid(self.source, damaged(&e)))?;
        let (sha, n, _) = w.finish();
        if n != f.size {
            return Err(invalid(
                self.source,
                format!("it is truncated: `{}` is cut short", f.path),
            ));
        }
        if sha != f.sha256 {
            return Err(invalid(
                self.source,
                format!(
                    "`{}` has been altered: its SHA-256 is {sha}, its index says {}",
                    f.path, f.sha256
                ),
            ));
        }
        if let Some(t) = &target {
            let mode = if f.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(t, std::fs::Permissions::from_mode(mode))
                .map_err(ExportError::io(t))?;
        }
        Ok(())
    }

    /// Makes the folders above `target`, refusing to go through a link (an archive
    /// could otherwise write through a link it placed earlier).
    fn parents(&self, target: &Path) -> Result<(), ExportError> {
        let dest = self.dest.expect("only called with a destination");
        let Some(parent) = target.parent() else {
            return Ok(());
        };
        let rel = parent.strip_prefix(dest).unwrap_or(Path::new(""));
        let mut at = dest.to_path_buf();
        for c in rel.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(invalid(
                        self.source,
                        format!("`{}` would be written through a link", target.display()),
                    ))
                }
                Ok(_) => {}
                Err(_) => std::fs::create_dir(&at).map_err(ExportError::io(&at))?,
            }
        }
        Ok(())
    }

    /// One box archive: added to the store against its listed digest (or only checked
    /// when the store holds it), and its bytes against the index.
    fn boxed<R: Read>(
        &mut self,
        entry: tar::Entry<'_, R>,
        b: &BoxEntry,
    ) -> Result<(), ExportError> {
        if entry.size() != b.size {
            return Err(invalid(
                self.source,
                format!(
                    "box {} is not the {}-byte archive its index lists",
                    b.digest, b.size
                ),
            ));
        }
        let digest = BoxDigest::parse(&b.digest).expect("checked with the index");
        let mut r = HashingReader::new(entry);
        if self.store.load(&digest).is_ok() {
            self.present.push(b.digest.clone());
        } else {
            let label = format!("box {} in `{}`", digest.short(), self.source);
            self.store.add_reader(&mut r, &label, Some(&digest))?;
            self.added.push(b.digest.clone());
        }
        let (sha, n) = r.finish().map_err(|e| invalid(self.source, damaged(&e)))?;
        if n != b.size {
            return Err(invalid(
                self.source,
                format!("it is truncated: box {} is cut short", b.digest),
            ));
        }
        if sha != b.sha256 {
            return Err(invalid(
                self.source,
                format!("the archive of box {} has been altered", b.digest),
            ));
        }
        Ok(())
    }

    /// Every listed entry was read.
    fn complete(&self) -> Result<(), ExportError> {
        let missing = self
            .files
            .keys()
            .map(|p| format!("{ENV_PREFIX}{p}"))
            .chain(self.boxes.keys().cloned())
            .find(|m| !self.seen.contains(m));
        match missing {
            Some(m) => Err(invalid(
                self.source,
                format!("it is truncated or incomplete: `{m}` is missing"),
            )),
            None => Ok(()),
        }
    }
}
