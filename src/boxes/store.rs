//! The box store: verified boxes, unpacked, in the user's data folder.
//!
//! Each box lives in `boxes/<digest>/` (its manifest and artifacts), so backends use the
//! files in place: Docker streams the root file system from there, libvirt overlays the
//! disk. Anything half-done (a download, a build, an archive being unpacked) lives in
//! `tmp/` and is renamed into `boxes/` only once every digest matched; `box prune` clears
//! what an interrupted command left in `tmp/`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::archive;
use super::digest::{BoxDigest, CacheEntry, DigestCache, FileIdentity};
use super::manifest::{Manifest, MANIFEST};
use super::recipe::Recipe;
use super::BoxError;

/// A box in the store.
#[derive(Debug, Clone, Serialize)]
pub struct StoredBox {
    pub digest: BoxDigest,
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// When the box entered this store (its manifest file's modification time). Kept
    /// outside the manifest, so that it never changes a digest; orders a name's versions.
    #[serde(skip)]
    pub stored: Option<std::time::SystemTime>,
}

impl StoredBox {
    /// Path of an artifact, when the box has one for `provider`.
    pub fn artifact(&self, provider: &str) -> Option<PathBuf> {
        self.manifest
            .artifacts
            .get(provider)
            .map(|a| self.dir.join(&a.path))
    }

    /// [`StoredBox::stored`] as RFC 3339 UTC, for listings.
    pub fn stored_rfc3339(&self) -> Option<String> {
        let secs = self
            .stored?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(super::manifest::rfc3339(secs as i64))
    }

    /// Newest first: the later stored, then the later created.
    fn newest_first(a: &StoredBox, b: &StoredBox) -> std::cmp::Ordering {
        (b.stored, &b.manifest.created, &b.digest).cmp(&(a.stored, &a.manifest.created, &a.digest))
    }

    /// `name@short-digest`, for messages.
    pub fn label(&self) -> String {
        format!("{}@{}", self.manifest.name, self.digest.short())
    }
}

/// The store's root folder and what lives under it.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held per-box lock file; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// The store in `HDEV_HOME`, or in the XDG data folder (`~/.local/share/hdev`).
    pub fn open_default() -> Result<Store, BoxError> {
        if let Some(h) = std::env::var_os("HDEV_HOME").filter(|h| !h.is_empty()) {
            return Ok(Store::at(PathBuf::from(h)));
        }
        let dirs = directories::ProjectDirs::from("", "", "hdev").ok_or(BoxError::NoHome)?;
        Ok(Store::at(dirs.data_dir().to_path_buf()))
    }

    pub fn at(root: PathBuf) -> Store {
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn boxes_dir(&self) -> PathBuf {
        self.root.join("boxes")
    }

    /// Work folder on the store's file system, so that finished work is renamed in.
    pub fn tmp_dir(&self) -> Result<PathBuf, BoxError> {
        let d = self.root.join("tmp");
        std::fs::create_dir_all(&d).map_err(BoxError::io(&d))?;
        Ok(d)
    }

    pub fn cache(&self) -> DigestCache {
        DigestCache::new(self.root.join("cache").join("digests.json"))
    }

    /// Takes the store's lock for box `name`, waiting for another process holding it.
    pub fn lock(&self, name: &str) -> Result<StoreLock, BoxError> {
        let file = self.lock_file(&format!("box-{name}"))?;
        fs4::fs_std::FileExt::lock_exclusive(&file)
            .map_err(BoxError::io(self.root.join("locks")))?;
        Ok(StoreLock { _file: file })
    }

    /// Every stored box, sorted by name, then newest first.
    pub fn list(&self) -> Result<Vec<StoredBox>, BoxError> {
        let dir = self.boxes_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(BoxError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(BoxError::io(&dir))?;
            let Some(digest) = e.file_name().to_str().and_then(BoxDigest::parse) else {
                continue;
            };
            if let Ok(b) = self.load(&digest) {
                out.push(b);
            }
        }
        out.sort_by(|a, b| {
            a.manifest
                .name
                .cmp(&b.manifest.name)
                .then_with(|| StoredBox::newest_first(a, b))
        });
        Ok(out)
    }

    /// Reads a stored box's manifest (without re-hashing artifacts).
    pub fn load(&self, digest: &BoxDigest) -> Result<StoredBox, BoxError> {
        let dir = self.boxes_dir().join(digest.hex());
        let p = dir.join(MANIFEST);
        let bytes =
            crate::envfile::read_text(&p, archive::MAX_MANIFEST).map_err(BoxError::io(&p))?;
        let manifest =
            Manifest::parse(bytes.as_bytes()).map_err(|message| BoxError::InvalidArchive {
                archive: p.display().to_string(),
                message,
            })?;
        let stored = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
        Ok(StoredBox {
            digest: digest.clone(),
            manifest,
            dir,
            stored,
        })
    }

    /// Boxes named by `query`: a box name, or a digest (prefix of 7+ hex digits).
    pub fn find(&self, query: &str) -> Result<Vec<StoredBox>, BoxError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|b| b.manifest.name == query || b.digest.matches(query))
            .collect())
    }

    /// Exactly one box named by `query` (the newest, when a name has several versions).
    pub fn find_one(&self, query: &str) -> Result<StoredBox, BoxError> {
        let found = self.find(query)?;
        let by_digest: Vec<_> = found.iter().filter(|b| b.digest.matches(query)).collect();
        if by_digest.len() > 1 {
            return Err(BoxError::Ambiguous {
                query: query.to_string(),
                matches: by_digest.iter().map(|b| b.label()).collect(),
            });
        }
        found.into_iter().next().ok_or_else(|| BoxError::NotFound {
            query: query.to_string(),
        })
    }

    /// The newest stored box built from a recipe with this digest.
    pub fn by_recipe(&self, recipe_digest: &str) -> Result<Option<StoredBox>, BoxError> {
        let mut found: Vec<StoredBox> = self
            .list()?
            .into_iter()
            .filter(|b| {
                b.manifest
                    .recipe
                    .as_ref()
                    .is_some_and(|r| r.digest == recipe_digest)
            })
            .collect();
        found.sort_by(StoredBox::newest_first);
        Ok(found.into_iter().next())
    }

    /// Moves a fully checked folder into the store under its digest. If the box is
    /// there already, the new copy is dropped.
    pub(crate) fn commit(
        &self,
        partial: tempfile::TempDir,
        digest: &BoxDigest,
    ) -> Result<StoredBox, BoxError> {
        let boxes = self.boxes_dir();
        std::fs::create_dir_all(&boxes).map_err(BoxError::io(&boxes))?;
        let dest = boxes.join(digest.hex());
        if !dest.join(MANIFEST).exists() {
            // Written through a private temp file; the box is readable like its artifacts.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                partial.path().join(MANIFEST),
                std::fs::Permissions::from_mode(0o644),
            );
            let src = partial.keep();
            if let Err(e) = std::fs::rename(&src, &dest) {
                let _ = std::fs::remove_dir_all(&src);
                if !dest.join(MANIFEST).exists() {
                    return Err(BoxError::Io {
                        path: dest,
                        source: e,
                    });
                }
            }
            if let Ok(d) = File::open(&boxes) {
                let _ = d.sync_all();
            }
        }
        let b = self.load(digest)?;
        // Every artifact was hashed on its way in: remember it, so using the box soon
        // after does not read it again.
        let cache = self.cache();
        for a in b.manifest.artifacts.values() {
            let p = b.dir.join(&a.path);
            if let Ok(identity) = FileIdentity::of(&p) {
                if identity.size == a.size {
                    cache.store(
                        &p,
                        CacheEntry {
                            identity,
                            sha256: a.sha256.clone(),
                            box_digest: None,
                        },
                    );
                }
            }
        }
        Ok(b)
    }

    /// Adds a box archive read from `reader`, hashing it while it is unpacked into a
    /// partial folder; only a box whose digests all match is renamed into the store.
    pub fn add_reader<R: Read>(
        &self,
        reader: R,
        source: &str,
        expected: Option<&BoxDigest>,
    ) -> Result<StoredBox, BoxError> {
        let _work = self.work_guard()?;
        let tmp = self.tmp_dir()?;
        let partial = tempfile::Builder::new()
            .prefix("add-")
            .suffix(".partial")
            .tempdir_in(&tmp)
            .map_err(BoxError::io(&tmp))?;
        let (_, digest) = archive::read_archive(
            reader,
            source,
            Some(partial.path()),
            expected,
            archive::size_limit(),
        )?;
        self.commit(partial, &digest)
    }

    /// Adds a box archive file, remembering its digest in the cache.
    pub fn add_file(
        &self,
        path: &Path,
        expected: Option<&BoxDigest>,
    ) -> Result<StoredBox, BoxError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.add_file_as(path, expected, &name)
    }

    /// [`Store::add_file`], its progress (bytes read) reported as box `name`'s.
    pub fn add_file_as(
        &self,
        path: &Path,
        expected: Option<&BoxDigest>,
        name: &str,
    ) -> Result<StoredBox, BoxError> {
        let before = FileIdentity::of(path).map_err(BoxError::io(path))?;
        let f = File::open(path).map_err(BoxError::io(path))?;
        let total = f.metadata().ok().map(|m| m.len());
        let f = crate::progress::Counting::new(
            f,
            &format!("box {name}"),
            &format!("reading `{}`", path.display()),
            total,
        );
        let b = self.add_reader(
            std::io::BufReader::with_capacity(1 << 20, f),
            &path.display().to_string(),
            expected,
        )?;
        self.remember(path, before, &b.digest);
        Ok(b)
    }

    /// Records in the digest cache that the file at `path` is box `digest`.
    pub(crate) fn remember(&self, path: &Path, identity: FileIdentity, digest: &BoxDigest) {
        if FileIdentity::of(path).ok().as_ref() == Some(&identity) {
            self.cache().store(
                path,
                CacheEntry {
                    identity,
                    sha256: String::new(),
                    box_digest: Some(digest.clone()),
                },
            );
        }
    }

    /// The verified digest of a box archive file, from the cache when the file is
    /// unchanged since it was last verified; otherwise read and checked in full.
    pub fn archive_digest(&self, path: &Path) -> Result<BoxDigest, BoxError> {
        if let Some(d) = self.cache().lookup(path).and_then(|e| e.box_digest) {
            return Ok(d);
        }
        let before = FileIdentity::of(path).map_err(BoxError::io(path))?;
        let f = File::open(path).map_err(BoxError::io(path))?;
        let (_, digest) = archive::read_archive(
            std::io::BufReader::with_capacity(1 << 20, f),
            &path.display().to_string(),
            None,
            None,
            archive::size_limit(),
        )?;
        self.remember(path, before, &digest);
        Ok(digest)
    }

    /// Builds a box from a recipe into the store. `log` receives the script's output.
    pub fn build(&self, recipe: &Recipe) -> Result<StoredBox, BoxError> {
        let _work = self.work_guard()?;
        let tmp = self.tmp_dir()?;
        let partial = tempfile::Builder::new()
            .prefix(&format!("build-{}-", recipe.name))
            .suffix(".partial")
            .tempdir_in(&tmp)
            .map_err(BoxError::io(&tmp))?;
        let log = self.build_log(&recipe.name)?;
        let manifest = {
            // How it goes: the stage, debootstrap's package counts, the bytes written and
            // the log's last line (live, or every 10 s where nothing shows it live).
            let subject = format!("box {}", recipe.name);
            crate::progress::report(
                &subject,
                crate::progress::Update::Status(&format!("building (log: {})", log.display())),
            );
            let mut watcher = BuildWatcher::new(log.clone(), partial.path().to_path_buf());
            let _watch =
                crate::progress::Watch::start(subject, crate::progress::Watch::tick(), move |t| {
                    watcher.message(t)
                });
            recipe.build(partial.path(), &log)?
        };
        // Keep only the artifacts: scripts may leave other files behind.
        let keep: Vec<&str> = manifest
            .artifacts
            .values()
            .map(|a| a.path.as_str())
            .collect();
        for e in std::fs::read_dir(partial.path()).map_err(BoxError::io(partial.path()))? {
            let e = e.map_err(BoxError::io(partial.path()))?;
            if !keep.iter().any(|k| e.file_name() == **k) {
                let p = e.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(BoxError::io(&p))?;
            }
        }
        let bytes = manifest.to_bytes();
        crate::state::write_atomic(&partial.path().join(MANIFEST), &bytes).map_err(|e| {
            BoxError::Io {
                path: partial.path().join(MANIFEST),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        self.commit(partial, &BoxDigest::of(&bytes))
    }

    /// Where the build log of box `name` goes.
    pub fn build_log(&self, name: &str) -> Result<PathBuf, BoxError> {
        let d = self.root.join("logs");
        std::fs::create_dir_all(&d).map_err(BoxError::io(&d))?;
        Ok(d.join(format!("build-{name}.log")))
    }

    /// The box built from `recipe` as it is now: from the store, or built once (other
    /// processes building the same box are waited for through the store's lock).
    pub fn ensure_recipe(&self, recipe: &Recipe) -> Result<(StoredBox, bool), BoxError> {
        let digest = recipe.digest()?;
        if let Some(b) = self.by_recipe(&digest)? {
            return Ok((b, false));
        }
        let _lock = self.lock(&recipe.name)?;
        if let Some(b) = self.by_recipe(&digest)? {
            return Ok((b, false));
        }
        Ok((self.build(recipe)?, true))
    }

    /// Re-reads every artifact of a stored box and checks it against the manifest, and
    /// the manifest against the box's digest.
    pub fn verify(&self, b: &StoredBox) -> Result<(), BoxError> {
        check_manifest(b)?;
        for (provider, a) in &b.manifest.artifacts {
            let p = b.dir.join(&a.path);
            let (sha, size) = super::digest::hash_file(&p).map_err(BoxError::io(&p))?;
            if sha != a.sha256 || size != a.size {
                return Err(BoxError::DigestMismatch {
                    what: format!(
                        "artifact `{provider}` (`{}`) of box `{}`",
                        a.path,
                        b.label()
                    ),
                    expected: format!("sha256:{} ({} bytes)", a.sha256, a.size),
                    actual: format!("sha256:{sha} ({size} bytes)"),
                });
            }
        }
        Ok(())
    }

    /// Removes a stored box: renamed out of `boxes/` first, so it vanishes at once.
    pub fn remove(&self, b: &StoredBox) -> Result<(), BoxError> {
        let _work = self.work_guard()?;
        let tmp = self.tmp_dir()?;
        let trash = tmp.join(format!("remove-{}.partial", b.digest.hex()));
        std::fs::rename(&b.dir, &trash).map_err(BoxError::io(&b.dir))?;
        std::fs::remove_dir_all(&trash).map_err(BoxError::io(&trash))
    }

    /// A shared hold on `tmp/`, taken by every command that works there, so that
    /// `prune` never removes the partial folder of a command still running.
    pub(crate) fn work_guard(&self) -> Result<StoreLock, BoxError> {
        let file = self.lock_file("tmp")?;
        fs4::fs_std::FileExt::lock_shared(&file).map_err(BoxError::io(self.root.join("locks")))?;
        Ok(StoreLock { _file: file })
    }

    fn lock_file(&self, name: &str) -> Result<File, BoxError> {
        let d = self.root.join("locks");
        std::fs::create_dir_all(&d).map_err(BoxError::io(&d))?;
        let p = d.join(format!("{name}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(BoxError::io(&p))
    }

    /// Removes what interrupted commands left in `tmp/`, and stale cache entries.
    /// Returns the removed paths, or None when another command is working in `tmp/`.
    pub fn prune_leftovers(&self) -> Result<Option<Vec<PathBuf>>, BoxError> {
        let tmp = self.tmp_dir()?;
        let file = self.lock_file("tmp")?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => {
                return Err(BoxError::Io {
                    path: tmp,
                    source: e,
                })
            }
        }
        let mut removed = Vec::new();
        for e in std::fs::read_dir(&tmp).map_err(BoxError::io(&tmp))? {
            let p = e.map_err(BoxError::io(&tmp))?.path();
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(BoxError::io(&p))?;
            removed.push(p);
        }
        self.cache().prune();
        Ok(Some(removed))
    }
}

/// Checks that a stored box's manifest still has the box's digest.
pub fn check_manifest(b: &StoredBox) -> Result<(), BoxError> {
    let mp = b.dir.join(MANIFEST);
    let bytes = std::fs::read(&mp).map_err(BoxError::io(&mp))?;
    let actual = BoxDigest::of(&bytes);
    if actual != b.digest {
        return Err(BoxError::DigestMismatch {
            what: format!("manifest of box `{}`", b.label()),
            expected: b.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Follows a box build: reads its log as it grows and looks at what it wrote so far.
struct BuildWatcher {
    log: PathBuf,
    out: PathBuf,
    read: u64,
    parsed: crate::progress::BuildLog,
}

impl BuildWatcher {
    fn new(log: PathBuf, out: PathBuf) -> BuildWatcher {
        BuildWatcher {
            log,
            out,
            read: 0,
            parsed: Default::default(),
        }
    }

    /// `building for N s: STAGE (COUNTS), N MiB written: LAST LINE`, what of it is known.
    fn message(&mut self, elapsed: std::time::Duration) -> String {
        use std::io::{Seek, SeekFrom};
        if let Ok(mut f) = File::open(&self.log) {
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(self.read)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                self.read += buf.len() as u64;
                self.parsed.feed(&String::from_utf8_lossy(&buf));
            }
        }
        let mut s = format!("building for {} s", elapsed.as_secs());
        let written = disk_usage(&self.out);
        if written > 0 {
            s.push_str(&format!(
                ", {} written",
                crate::progress::human_bytes(written)
            ));
        }
        let summary = self.parsed.summary();
        if !summary.is_empty() {
            s.push_str(": ");
            s.push_str(&summary);
        }
        s
    }
}

/// The bytes the files under `dir` take on disk (a sparse disk image counts what it holds).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
