//! Box digests and fast file hashing, with a cache keyed by file identity.
//!
//! Boxes are large (a Debian disk is gigabytes), and `hdev hash` must not read them again
//! while they are unchanged. Hashing reads big blocks on a second thread so that reading
//! and hashing overlap; the cache remembers a file's digest under its device, inode, size
//! and modification time, which change whenever its bytes can have changed.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A box's content digest: the sha256 of its manifest, as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoxDigest(String);

impl BoxDigest {
    /// The digest of some bytes (a manifest).
    pub fn of(bytes: &[u8]) -> Self {
        BoxDigest(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses `HEX` or `sha256:HEX` (64 hex digits, any case).
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.trim().strip_prefix("sha256:").unwrap_or(s.trim());
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| BoxDigest(hex.to_ascii_lowercase()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, used in image tags and short listings.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// Whether `query` names this digest: a prefix of at least 7 hex digits.
    pub fn matches(&self, query: &str) -> bool {
        let q = query.strip_prefix("sha256:").unwrap_or(query);
        q.len() >= 7 && self.0.starts_with(&q.to_ascii_lowercase())
    }
}

impl fmt::Display for BoxDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// Block size for hashing: large enough that system calls cost nothing next to the hash.
const BLOCK: usize = 4 << 20;

/// Hashes everything `reader` yields, reading on a helper thread while this one hashes.
/// Returns the hex digest and the number of bytes.
pub fn hash_reader<R: Read + Send>(mut reader: R) -> std::io::Result<(String, u64)> {
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; BLOCK]);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                match read_full(&mut reader, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if full_tx.send(Ok((buf, n))).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let mut h = Sha256::new();
        let mut total = 0u64;
        for item in full_rx {
            let (buf, n) = item?;
            h.update(&buf[..n]);
            total += n as u64;
            // The reader may have finished already; a closed channel is fine.
            let _ = empty_tx.send(buf);
        }
        Ok((hex::encode(h.finalize()), total))
    })
}

/// Reads until `buf` is full or the input ends.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes a file's bytes (no cache).
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    hash_reader(std::fs::File::open(path)?)
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The hex digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            hex::encode(self.hasher.finalize()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileIdentity {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One remembered digest: what a file was when it was read, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub identity: FileIdentity,
    /// sha256 of the file's bytes.
    pub sha256: String,
    /// For a box archive: its verified box digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_digest: Option<BoxDigest>,
}

/// The digest cache: absolute path -> entry, in one JSON file, written atomically.
#[derive(Debug, Clone)]
pub struct DigestCache {
    file: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<PathBuf, CacheEntry>,
}

impl DigestCache {
    pub fn new(file: PathBuf) -> Self {
        DigestCache { file }
    }

    fn load(&self) -> CacheFile {
        // A damaged or newer cache is only a cache: start again.
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
            .filter(|c| c.version == 1)
            .unwrap_or_default()
    }

    /// The entry for `path` if the file is still what it was when it was read.
    pub fn lookup(&self, path: &Path) -> Option<CacheEntry> {
        let path = std::fs::canonicalize(path).ok()?;
        let now = FileIdentity::of(&path).ok()?;
        let e = self.load().entries.remove(&path)?;
        (e.identity == now).then_some(e)
    }

    /// Remembers an entry (best effort: a cache that cannot be written is not an error).
    pub fn store(&self, path: &Path, entry: CacheEntry) {
        let Ok(path) = std::fs::canonicalize(path) else {
            return;
        };
        let mut c = self.load();
        c.version = 1;
        c.entries.insert(path, entry);
        if let Ok(bytes) = serde_json::to_vec_pretty(&c) {
            let _ = crate::state::write_atomic(&self.file, &bytes);
        }
    }

    /// Drops entries whose files are gone or changed; returns how many.
    pub fn prune(&self) -> usize {
        let mut c = self.load();
        let before = c.entries.len();
        c.entries.retain(|p, e| {
            FileIdentity::of(p)
                .map(|i| i == e.identity)
                .unwrap_or(false)
        });
        let removed = before - c.entries.len();
        if removed > 0 {
            if let Ok(bytes) = serde_json::to_vec_pretty(&c) {
                let _ = crate::state::write_atomic(&self.file, &bytes);
            }
        }
        removed
    }

    /// The sha256 of a file's bytes, from the cache when the file is unchanged.
    pub fn file_sha256(&self, path: &Path) -> std::io::Result<String> {
        if let Some(e) = self.lookup(path) {
            return Ok(e.sha256);
        }
        let before = FileIdentity::of(path)?;
        let (sha256, _) = hash_file(path)?;
        // Only remember what was read if the file did not change while it was read.
        if FileIdentity::of(path)? == before {
            self.store(
                path,
                CacheEntry {
                    identity: before,
                    sha256: sha256.clone(),
                    box_digest: None,
                },
            );
        }
        Ok(sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_reader_matches_one_shot_digest() {
        let data: Vec<u8> = (0..(BLOCK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let (hex, n) = hash_reader(&data[..]).expect("hash");
        assert_eq!(n, data.len() as u64);
        assert_eq!(hex, hex::encode(Sha256::digest(&data)));
        let (empty, n) = hash_reader(&b""[..]).expect("hash");
        assert_eq!(n, 0);
        assert_eq!(empty, hex::encode(Sha256::digest(b"")));
    }

    #[test]
    fn digest_parses_and_matches_prefixes() {
        let d = BoxDigest::of(b"x");
        assert_eq!(BoxDigest::parse(&d.to_string()), Some(d.clone()));
        assert_eq!(BoxDigest::parse(&d.hex().to_uppercase()), Some(d.clone()));
        assert!(BoxDigest::parse("abc").is_none());
        assert!(d.matches(&d.hex()[..7]));
        assert!(!d.matches(&d.hex()[..6]));
    }

    #[test]
    fn cache_notices_a_changed_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"one").expect("write");
        let cache = DigestCache::new(dir.path().join("cache.json"));
        let a = cache.file_sha256(&f).expect("hash");
        assert!(cache.lookup(&f).is_some());
        std::fs::write(&f, b"two!").expect("write");
        assert!(cache.lookup(&f).is_none());
        let b = cache.file_sha256(&f).expect("hash");
        assert_ne!(a, b);
        assert_eq!(b, hex::encode(Sha256::digest(b"two!")));
    }
}
