//! Writing an archive: the index first, then the files, then the boxes. Entries carry no
//! owner, time or order of the writer's choosing (owner 0, time 0, paths sorted), so the
//! same environment with the same boxes gives the same archive, byte for byte.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{BoxEntry, ExportError, FileEntry, HashingReader, Index, ENV_PREFIX, FORMAT, INDEX};
use crate::boxes::digest::hash_file;
use crate::boxes::{archive, StoredBox};

/// Where a file's bytes come from: the environment's folder, or made for the archive (a
/// lock file written for it).
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// What goes into an archive.
#[derive(Debug)]
pub(crate) struct Packing {
    pub name: String,
    pub hash: String,
    pub machines: BTreeMap<String, String>,
    /// The Envfile's path among `files`.
    pub envfile: String,
    /// Relative path (`/`-separated) -> content.
    pub files: BTreeMap<String, Content>,
    pub boxes: PackedBoxes,
}

/// Box digest -> its names, and the stored box when the archive carries it.
pub(crate) type PackedBoxes = BTreeMap<String, (Vec<String>, Option<StoredBox>)>;

/// Adds every file and link at `root/rel` (the file itself, or a folder's tree without
/// following links) to `out`, leaving out the paths in `skip`.
pub(crate) fn tree_files(
    root: &Path,
    rel: &str,
    skip: &[PathBuf],
    out: &mut BTreeMap<String, Content>,
) -> Result<(), ExportError> {
    let abs = root.join(rel);
    if skip.contains(&abs) {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(&abs).map_err(ExportError::io(&abs))?;
    if !meta.is_dir() {
        out.insert(rel.to_string(), Content::Path(abs));
        return Ok(());
    }
    let mut names: Vec<String> = std::fs::read_dir(&abs)
        .map_err(ExportError::io(&abs))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(ExportError::io(&abs))?;
    names.sort();
    for n in names {
        let child = if rel.is_empty() || rel == "." {
            n
        } else {
            format!("{}/{n}", rel.trim_end_matches('/'))
        };
        tree_files(root, &child, skip, out)?;
    }
    Ok(())
}

/// Writes the archive to `out` (replacing it only once complete), with box archives made
/// in `work` on the way. Returns its index.
pub(crate) fn write(p: Packing, out: &Path, work: &Path) -> Result<Index, ExportError> {
    let files: Vec<(FileEntry, &Content)> = p
        .files
        .iter()
        .map(|(path, c)| Ok((entry_of(path, c)?, c)))
        .collect::<Result<_, ExportError>>()?;
    let tmp = tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(work)
        .map_err(ExportError::io(work))?;
    let mut boxes = Vec::new();
    let mut box_files = Vec::new();
    for (digest, (names, stored)) in &p.boxes {
        let mut e = BoxEntry {
            names: names.clone(),
            digest: digest.clone(),
            included: stored.is_some(),
            size: 0,
            sha256: String::new(),
        };
        if let Some(b) = stored {
            let f = tmp.path().join(format!("{}.box", b.digest.hex()));
            archive::write_archive(&b.manifest, &b.dir, &f)?;
            (e.sha256, e.size) = hash_file(&f).map_err(ExportError::io(&f))?;
            box_files.push((e.member(), f, e.size, e.sha256.clone()));
        }
        boxes.push(e);
    }
    let index = Index {
        format: FORMAT,
        name: p.name,
        hash: p.hash,
        machines: p.machines,
        envfile: p.envfile,
        files: files.iter().map(|(e, _)| e.clone()).collect(),
        boxes,
        written_by: format!("hdev {}", env!("CARGO_PKG_VERSION")),
    };
    let parent = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = tempfile::NamedTempFile::new_in(parent).map_err(ExportError::io(parent))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, file.as_file()));
    let json = serde_json::to_vec_pretty(&index).expect("an index serializes");
    append(&mut b, INDEX, json.len() as u64, 0o644, &json[..]).map_err(ExportError::io(out))?;
    for (e, c) in &files {
        add_file(&mut b, e, c, out)?;
    }
    for (member, f, size, sha) in &box_files {
        let opened = std::fs::File::open(f).map_err(ExportError::io(f))?;
        add_checked(&mut b, member, *size, sha, opened, f, out)?;
    }
    b.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(ExportError::io(out))?;
    publish(file, out)?;
    Ok(index)
}

/// The index entry of one file: its size, digest and executable bit, or a link's target
/// (which must stay inside the folder).
fn entry_of(path: &str, c: &Content) -> Result<FileEntry, ExportError> {
    let mut e = FileEntry {
        path: path.to_string(),
        link: None,
        size: 0,
        sha256: String::new(),
        executable: false,
    };
    match c {
        Content::Bytes(bytes) => {
            e.size = bytes.len() as u64;
            (e.sha256, _) = HashingReader::new(&bytes[..])
                .finish()
                .expect("reading memory");
        }
        Content::Path(abs) => {
            let meta = std::fs::symlink_metadata(abs).map_err(ExportError::io(abs))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(abs).map_err(ExportError::io(abs))?;
                let from = Path::new(path).parent().unwrap_or(Path::new(""));
                if target.is_absolute()
                    || archive::inside(Path::new(""), &from.join(&target)).is_none()
                {
                    return Err(ExportError::Refused(format!(
                        "`{path}` is a link to `{}`, outside the environment's folder",
                        target.display()
                    )));
                }
                e.link = Some(target.to_string_lossy().into_owned());
            } else if meta.is_file() {
                (e.sha256, e.size) = hash_file(abs).map_err(ExportError::io(abs))?;
                e.executable = meta.permissions().mode() & 0o111 != 0;
            } else {
                return Err(ExportError::Refused(format!(
                    "`{path}` is neither a file, a folder nor a link"
                )));
            }
        }
    }
    Ok(e)
}

fn add_file<W: Write>(
    b: &mut tar::Builder<W>,
    e: &FileEntry,
    c: &Content,
    out: &Path,
) -> Result<(), ExportError> {
    let name = format!("{ENV_PREFIX}{}", e.path);
    let mode = if e.executable { 0o755 } else { 0o644 };
    match (c, &e.link) {
        (_, Some(target)) => {
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, &name, target)
                .map_err(ExportError::io(out))
        }
        (Content::Bytes(bytes), None) => {
            append(b, &name, e.size, mode, &bytes[..]).map_err(ExportError::io(out))
        }
        (Content::Path(abs), None) => {
            let opened = std::fs::File::open(abs).map_err(ExportError::io(abs))?;
            add_checked(b, &name, e.size, &e.sha256, opened, abs, out)
        }
    }
}

/// Appends `size` bytes of `data`, refusing them when they are not what was hashed
/// before (a file that changed while the archive was written).
fn add_checked<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    sha: &str,
    data: R,
    src: &Path,
    out: &Path,
) -> Result<(), ExportError> {
    let mut r = HashingReader::new(data.take(size));
    append(b, name, size, 0o644, &mut r).map_err(ExportError::io(out))?;
    let (got, n) = r.finish().map_err(ExportError::io(src))?;
    if n != size || got != sha {
        return Err(ExportError::Refused(format!(
            "`{}` changed while it was being archived; export again",
            src.display()
        )));
    }
    Ok(())
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mode: u32,
    data: R,
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Regular, size, mode);
    b.append_data(&mut h, name, data)
}

/// Makes the written archive readable by others (an archive is meant to be shared) and
/// puts it at `out`.
fn publish(file: tempfile::NamedTempFile, out: &Path) -> Result<(), ExportError> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(ExportError::io(out))?;
    file.persist(out)
        .map_err(|e| ExportError::io(out)(e.error))?;
    Ok(())
}
