//! Getting the box a machine names: from the store, or built, added or downloaded once.
//!
//! Twenty machines coming up in parallel may all name one box; it must be built and
//! imported once. A process-wide async lock per box serialises callers inside one hdev,
//! and the store's lock file does the same across processes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::digest::{hash_file, BoxDigest, CacheEntry, FileIdentity};
use super::manifest::{self, Boot, MANIFEST};
use super::{BoxError, Recipe, Store, StoredBox};
use crate::envfile::{BoxDef, BoxSource, Env};

type KeyLocks = Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// The in-process lock for `key` (a box, or a box's import into a backend).
pub(crate) fn key_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<KeyLocks> = OnceLock::new();
    let locks = LOCKS.get_or_init(Default::default);
    let mut map = match locks.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key.to_string()).or_default().clone()
}

/// Runs blocking store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BoxError> + Send + 'static,
) -> Result<T, BoxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BoxError::Task(e.to_string()))?
}

/// The stored, verified box that `[box.NAME]` of `env` stands for: built from its recipe
/// when the store has none for the recipe as it is now, added from its file, or
/// downloaded from its URL. A box that differs from a pinned `sha256` is refused.
pub async fn ensure_box(env: &Env, box_name: &str) -> Result<StoredBox, BoxError> {
    ensure_box_in(&Store::open_default()?, env, box_name).await
}

/// [`ensure_box`] with an explicit store.
pub async fn ensure_box_in(
    store: &Store,
    env: &Env,
    box_name: &str,
) -> Result<StoredBox, BoxError> {
    let def = env
        .boxes
        .get(box_name)
        .cloned()
        .ok_or_else(|| BoxError::UnknownBox {
            name: box_name.to_string(),
        })?;
    let store = store.clone();
    let key = format!("{}\0{:?}", store.root().display(), def.source);
    let lock = key_lock(&key);
    let _held = lock.lock().await;
    let dir = env.dir.clone();
    blocking(move || ensure_blocking(&store, &def, &dir)).await
}

fn ensure_blocking(store: &Store, def: &BoxDef, dir: &Path) -> Result<StoredBox, BoxError> {
    let pinned = match &def.sha256 {
        Some(s) => Some(BoxDigest::parse(s).ok_or_else(|| BoxError::Recipe {
            recipe: def.name.clone(),
            message: format!("`sha256 = \"{s}\"` is not 64 hex digits"),
        })?),
        None => None,
    };
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let b = match &def.source {
        BoxSource::Recipe(p) => match pinned_in_store(store, def, pinned.as_ref(), &resolve(p))? {
            Some(b) => b,
            None => {
                let recipe = Recipe::load(&resolve(p), p)?;
                store.ensure_recipe(&recipe)?.0
            }
        },
        BoxSource::File(p) => add_file_once(store, &resolve(p), pinned.as_ref(), &def.name)?,
        BoxSource::Url(u) => match pinned.as_ref().and_then(|d| store.load(d).ok()) {
            Some(b) => b,
            None => {
                let _lock = store.lock(&def.name)?;
                match pinned.as_ref().and_then(|d| store.load(d).ok()) {
                    Some(b) => b,
                    None => download(store, u, pinned.as_ref())?,
                }
            }
        },
    };
    if let Some(want) = &pinned {
        if *want != b.digest {
            return Err(BoxError::DigestMismatch {
                what: format!("box `{}`", def.name),
                expected: want.to_string(),
                actual: b.digest.to_string(),
            });
        }
    }
    verify_cached(store, &b)?;
    Ok(b)
}

/// The stored box a recipe box is pinned to (by its `sha256`, else by `Envfile.lock`),
/// when the store holds it: a pin wins over the recipe as it is now (as in the hash), and
/// no recipe runs, so an environment unpacked from an export comes up offline. A pinned
/// box that is not stored, with no recipe folder to build it from, is an error that says
/// how to get the box.
fn pinned_in_store(
    store: &Store,
    def: &BoxDef,
    sha256: Option<&BoxDigest>,
    recipe: &Path,
) -> Result<Option<StoredBox>, BoxError> {
    let (pin, by) = match (sha256, def.pin.as_deref().and_then(BoxDigest::parse)) {
        (Some(d), _) => (d.clone(), "its `sha256`"),
        (None, Some(d)) => (d, "Envfile.lock"),
        (None, None) => return Ok(None),
    };
    if let Ok(b) = store.load(&pin) {
        return Ok(Some(b));
    }
    if recipe.exists() {
        return Ok(None);
    }
    Err(BoxError::Recipe {
        recipe: def.name.clone(),
        message: format!(
            "box `{}` is pinned to {pin} by {by}, which is not in the box store, and its recipe folder `{}` is not here; add that box (`hdev box add FILE`) or bring the recipe back",
            def.name,
            recipe.display()
        ),
    })
}

/// The stored box for a libvirt machine's `image = "FILE"`: a standard cloud qcow2
/// (booted with a cloud-init NoCloud seed) or a vagrant-libvirt `.box`, imported once and
/// found again through the digest cache while the file is unchanged.
pub async fn ensure_image_in(store: &Store, env: &Env, image: &str) -> Result<StoredBox, BoxError> {
    let path = env.resolve(image);
    let name: String = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("image")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let lock = key_lock(&format!(
        "{}\0image\0{}",
        store.root().display(),
        path.display()
    ));
    let _held = lock.lock().await;
    let store = store.clone();
    blocking(move || {
        let b = add_file_once(&store, &path, None, &name)?;
        verify_cached(&store, &b)?;
        Ok(b)
    })
    .await
}

/// Adds a box file unless the store has it already (known through the digest cache).
fn add_file_once(
    store: &Store,
    path: &Path,
    pinned: Option<&BoxDigest>,
    name: &str,
) -> Result<StoredBox, BoxError> {
    let cached = store.cache().lookup(path).and_then(|e| e.box_digest);
    if let Some(b) = cached.and_then(|d| store.load(&d).ok()) {
        return Ok(b);
    }
    let _lock = store.lock(name)?;
    if is_box_archive(path)? {
        store.add_file_as(path, pinned, name)
    } else {
        super::import::import_file(store, path, name, pinned)
    }
}

/// Whether `path` starts like an hdev box archive (a tar whose first entry is the manifest).
pub fn is_box_archive(path: &Path) -> Result<bool, BoxError> {
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).map_err(BoxError::io(path))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(BoxError::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    let name = MANIFEST.as_bytes();
    Ok(n == 512 && head.starts_with(name) && head[name.len()] == 0 && &head[257..262] == b"ustar")
}

/// Downloads a box with `curl`, hashing and unpacking it as it arrives.
pub fn download(
    store: &Store,
    url: &str,
    pinned: Option<&BoxDigest>,
) -> Result<StoredBox, BoxError> {
    let err = |message: String| BoxError::Download {
        url: url.to_string(),
        message,
    };
    let mut child = std::process::Command::new("curl")
        .args(["-fsSL", "--proto", "=http,https", "--retry", "2", "--"])
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run `curl`: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| err("no output from `curl`".into()))?;
    let added = store.add_reader(
        std::io::BufReader::with_capacity(1 << 20, stdout),
        url,
        pinned,
    );
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("`curl` did not finish: {e}")))?;
    match added {
        // The archive was refused while curl was still sending it (tampered, too big):
        // curl then fails to write (exit 23), and the refusal is what to say.
        Err(refused) if out.status.success() || out.status.code() == Some(23) => Err(refused),
        _ if !out.status.success() => {
            Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
        added => added,
    }
}

/// Checks a stored box before use: the manifest against the digest, and each artifact
/// against the manifest, re-reading only artifacts whose file identity is not cached.
pub fn verify_cached(store: &Store, b: &StoredBox) -> Result<(), BoxError> {
    super::store::check_manifest(b)?;
    let cache = store.cache();
    for (provider, a) in &b.manifest.artifacts {
        let p = b.dir.join(&a.path);
        if cache.lookup(&p).is_some_and(|e| e.sha256 == a.sha256) {
            continue;
        }
        let before = FileIdentity::of(&p).map_err(BoxError::io(&p))?;
        let (sha, size) = hash_file(&p).map_err(BoxError::io(&p))?;
        if sha != a.sha256 || size != a.size {
            return Err(BoxError::DigestMismatch {
                what: format!(
                    "artifact `{provider}` (`{}`) of box `{}`",
                    a.path,
                    b.label()
                ),
                expected: format!("sha256:{}", a.sha256),
                actual: format!("sha256:{sha}"),
            });
        }
        cache.store(
            &p,
            CacheEntry {
                identity: before,
                sha256: sha,
                box_digest: None,
            },
        );
    }
    Ok(())
}

/// The files a libvirt machine boots from.
#[derive(Debug, Clone, Serialize)]
pub struct LibvirtArtifacts {
    pub name: String,
    pub digest: BoxDigest,
    /// The qcow2 disk (read-only base; machines overlay it).
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub boot: Boot,
}

impl LibvirtArtifacts {
    /// The libvirt artifacts of a stored box.
    pub fn of(b: &StoredBox) -> Result<Self, BoxError> {
        let disk = b
            .artifact(manifest::LIBVIRT_DISK)
            .ok_or_else(|| BoxError::NoArtifact {
                name: b.manifest.name.clone(),
                provider: manifest::LIBVIRT_DISK.into(),
                have: b
                    .manifest
                    .providers()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            })?;
        let kernel = b.artifact(manifest::LIBVIRT_KERNEL);
        let initrd = b.artifact(manifest::LIBVIRT_INITRD);
        let boot = b.manifest.boot.unwrap_or(if kernel.is_some() {
            Boot::Kernel
        } else {
            Boot::Disk
        });
        Ok(LibvirtArtifacts {
            name: b.manifest.name.clone(),
            digest: b.digest.clone(),
            disk,
            kernel,
            initrd,
            boot,
        })
    }
}

/// The disk (and kernel and initrd) of `[box.NAME]`, building or adding the box first.
pub async fn libvirt_artifacts(env: &Env, box_name: &str) -> Result<LibvirtArtifacts, BoxError> {
    libvirt_artifacts_in(&Store::open_default()?, env, box_name).await
}

/// [`libvirt_artifacts`] with an explicit store.
pub async fn libvirt_artifacts_in(
    store: &Store,
    env: &Env,
    box_name: &str,
) -> Result<LibvirtArtifacts, BoxError> {
    let b = ensure_box_in(store, env, box_name).await?;
    LibvirtArtifacts::of(&b)
}
