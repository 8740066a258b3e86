//! Environment archives: what `hdev export` writes and `hdev up --from` reads. One tar
//! whose first entry is an index (`hdev-export.json`: the environment hash, its machines'
//! hashes, every file with its size and SHA-256, every box by digest), then the
//! environment's files under `env/` and its boxes under `boxes/` (box archives, each
//! checked against its own digest as it is added to the store).
//!
//! Reading is as careful as reading a box: every entry must be listed in the index, once,
//! at a safe path, of the listed size and digest (checked while it is written); anything
//! listed and not found means a truncated archive.

mod read;
mod write;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) use read::{read_index, unpack, Unpacked};
pub(crate) use write::{tree_files, write, Content, PackedBoxes, Packing};

use crate::boxes::BoxError;

/// The archive's usual name: `NAME-HASH12.hdev.tar`.
pub(crate) fn file_name(name: &str, hash: &str) -> String {
    let short = crate::envfile::hash::EnvHash(hash.to_string())
        .short()
        .to_string();
    format!("{name}-{short}.hdev.tar")
}

/// The index's name: the archive's first entry.
pub(crate) const INDEX: &str = "hdev-export.json";
/// The format this hdev writes and the newest it reads.
pub(crate) const FORMAT: u32 = 1;
/// Where the environment's files are inside the archive.
const ENV_PREFIX: &str = "env/";
/// Where the boxes are inside the archive.
const BOX_PREFIX: &str = "boxes/";
/// The index may be this large at most.
const MAX_INDEX: u64 = 8 << 20;

/// What an archive holds, as its first entry says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Index {
    pub format: u32,
    /// The environment's name (`[env] name`).
    pub name: String,
    /// The environment hash the archive stands for.
    pub hash: String,
    /// Machine -> its hash.
    pub machines: BTreeMap<String, String>,
    /// The Envfile's path among `files`.
    pub envfile: String,
    pub files: Vec<FileEntry>,
    pub boxes: Vec<BoxEntry>,
    /// The hdev that wrote it.
    pub written_by: String,
}

/// A file (or a link) of the environment's folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Relative to the Envfile's folder, `/`-separated.
    pub path: String,
    /// A link's target (relative, staying inside the folder); files have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the bytes (empty for a link).
    pub sha256: String,
    pub executable: bool,
}

/// A box of the environment: its digest, and whether the archive carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct BoxEntry {
    /// The box's names in the Envfile (one digest may serve several).
    pub names: Vec<String>,
    /// `sha256:` + the box's digest (of its manifest).
    pub digest: String,
    pub included: bool,
    /// Size and hex SHA-256 of the box archive inside, when included.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub sha256: String,
}

impl BoxEntry {
    fn member(&self) -> String {
        format!(
            "{BOX_PREFIX}{}.box",
            self.digest.trim_start_matches("sha256:")
        )
    }
}

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The archive is not one hdev reads: damaged, truncated, tampered or hostile.
    #[error("`{archive}` is refused: {message}")]
    Invalid { archive: String, message: String },
    /// The environment cannot be exported as it is.
    #[error("cannot export the environment: {0}")]
    Refused(String),
    #[error(transparent)]
    Box(#[from] BoxError),
}

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ExportError {
        let path = path.into();
        move |source| ExportError::Io { path, source }
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// Reads what is left, then gives the hex digest and the count of everything read.
    fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.read))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
