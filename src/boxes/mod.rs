//! Boxes: hdev's versioned, content-addressed bases for machines.
//!
//! A box is one tar archive: a manifest (name, version, created, and each artifact's
//! provider, path and sha256) followed by the artifacts, a root file system for Docker and
//! a qcow2 disk (with kernel and initrd where it boots directly) for libvirt. Its digest is
//! the sha256 of the manifest. Boxes are built from recipes in `boxes/` or added from a
//! file or URL, verified on the way into the store, and imported into each backend once.

pub mod archive;
pub mod digest;
pub mod ensure;
pub mod import;
pub mod manifest;
pub mod recipe;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::envfile::hash::BoxInput;
use crate::envfile::{BoxSource, Env};

pub use digest::BoxDigest;

pub use ensure::{
    ensure_box, ensure_box_in, libvirt_artifacts, libvirt_artifacts_in, LibvirtArtifacts,
};
pub use manifest::Manifest;
pub use recipe::Recipe;
pub use store::{Store, StoredBox};

/// Why a box could not be built, added, verified, found or imported.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    /// A file or folder could not be read or written.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Neither `HDEV_HOME` nor a home folder is known, so there is no store.
    #[error("cannot find a data folder for the box store; set `HDEV_HOME`")]
    NoHome,
    /// A recipe's `box.toml` is missing or wrong.
    #[error("recipe `{recipe}`: {message}")]
    Recipe { recipe: String, message: String },
    /// A recipe's build script failed or did not write its artifacts.
    #[error("building box from recipe `{recipe}` failed: {message}; see `{}`", log.display())]
    Build {
        recipe: String,
        message: String,
        log: PathBuf,
    },
    /// A box archive is not in hdev's format or is damaged.
    #[error("`{archive}` is not a valid box: {message}")]
    InvalidArchive { archive: String, message: String },
    /// An archive entry would be written outside the target, or is a device file.
    #[error("`{archive}` is refused: entry `{entry}` is unsafe: {reason}")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: String,
    },
    /// An archive expands past the size limit.
    #[error("`{archive}` is refused: it expands past the limit of {limit} bytes (set `HDEV_BOX_MAX_BYTES` to change it)")]
    TooLarge { archive: String, limit: u64 },
    /// A compressed archive expands far more than real boxes do: a compression bomb.
    #[error("`{archive}` is refused: it expands to more than {ratio} times its compressed size of {compressed} bytes, which real boxes never do (a compression bomb?); set `HDEV_BOX_MAX_RATIO` to allow more")]
    Bomb {
        archive: String,
        compressed: u64,
        ratio: u64,
    },
    /// A digest differs from the one expected: the box is corrupt or was tampered with.
    #[error("{what} is corrupt or was tampered with: expected {expected}, actual {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// No stored box has this name or digest.
    #[error("no box `{query}` in the store; see `hdev box list`")]
    NotFound { query: String },
    /// A digest prefix names several boxes.
    #[error("`{query}` names several boxes ({}); give more digits", matches.join(", "))]
    Ambiguous { query: String, matches: Vec<String> },
    /// The Envfile declares no such box.
    #[error("the Envfile declares no box `{name}`")]
    UnknownBox { name: String },
    /// The box has no artifact for this backend.
    #[error("box `{name}` has no `{provider}` artifact (it has: {})", have.join(", "))]
    NoArtifact {
        name: String,
        provider: String,
        have: Vec<String>,
    },
    /// A box could not be downloaded.
    #[error("cannot download `{url}`: {message}")]
    Download { url: String, message: String },
    /// Docker refused or failed an operation on a box image.
    #[error("docker: {action} for box `{name}`: {source}")]
    Docker {
        name: String,
        action: String,
        source: bollard::errors::Error,
    },
    /// libvirt refused or failed an operation on a box volume.
    #[error("libvirt: {action} for box `{name}`: {message}")]
    Libvirt {
        name: String,
        action: String,
        message: String,
    },
    /// A background task panicked or was cancelled.
    #[error("a box task did not finish: {0}")]
    Task(String),
}

impl BoxError {
    /// Maps an I/O error to [`BoxError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> BoxError {
        let path = path.as_ref().to_path_buf();
        move |source| BoxError::Io { path, source }
    }
}

/// Box name -> the digest `Envfile.lock` pins it to. Plain data, so that boxes know
/// nothing of the lock file, which is written from what they resolve.
pub type Pins = BTreeMap<String, String>;

/// The digest each box of the environment counts with in the hash, and where it came
/// from: the Envfile's own `sha256`, then its pin in `Envfile.lock` (`pins`), then the box
/// in the store (for a recipe: built from the recipe as it is now; for a file: the file's
/// verified digest, cached by file identity), then the recipe's content when it was never
/// built.
pub fn resolve_digests(env: &Env, pins: &Pins) -> std::io::Result<BTreeMap<String, BoxInput>> {
    let store = Store::open_default().ok();
    let mut out = BTreeMap::new();
    for (name, b) in &env.boxes {
        let input = if let Some(d) = &b.sha256 {
            BoxInput {
                digest: format!("sha256:{d}"),
                from: "Envfile".into(),
            }
        } else if let Some(digest) = pins.get(name) {
            BoxInput {
                digest: digest.clone(),
                from: "Envfile.lock".into(),
            }
        } else {
            match &b.source {
                BoxSource::Recipe(p) => recipe_input(store.as_ref(), &env.resolve(p), p)?,
                BoxSource::File(p) => file_input(store.as_ref(), &env.resolve(p), p)?,
                BoxSource::Url(u) => BoxInput {
                    digest: "unresolved".into(),
                    from: format!("`{u}` (not downloaded)"),
                },
            }
        };
        out.insert(name.clone(), input);
    }
    Ok(out)
}

/// Every digest that stands for box `name` as it is now: for a recipe, both the recipe's
/// content digest (what a lock written before the first build pins) and the digest of the
/// box built from it; otherwise the one digest [`resolve_digests`] finds. `up --locked`
/// accepts a pin that is any of them.
pub fn current_digests(env: &Env, name: &str) -> std::io::Result<Vec<String>> {
    let Some(b) = env.boxes.get(name) else {
        return Ok(Vec::new());
    };
    let store = Store::open_default().ok();
    let mut out = Vec::new();
    match &b.source {
        BoxSource::Recipe(p) => {
            let recipe = Recipe::load(&env.resolve(p), p).map_err(to_io)?;
            let digest = recipe.digest().map_err(to_io)?;
            if let Some(s) = &store {
                if let Some(built) = s.by_recipe(&digest).map_err(to_io)? {
                    out.push(built.digest.to_string());
                }
            }
            out.push(digest);
        }
        _ => {
            let mut one = env.clone();
            one.boxes.retain(|n, _| n == name);
            out.extend(
                resolve_digests(&one, &Pins::new())?
                    .into_values()
                    .map(|b| b.digest),
            );
        }
    }
    Ok(out)
}

fn to_io(e: BoxError) -> std::io::Error {
    match e {
        BoxError::Io { path, source } => {
            std::io::Error::new(source.kind(), format!("{}: {source}", path.display()))
        }
        other => std::io::Error::other(other.to_string()),
    }
}

fn recipe_input(store: Option<&Store>, dir: &Path, shown: &str) -> std::io::Result<BoxInput> {
    let recipe = Recipe::load(dir, shown).map_err(to_io)?;
    let digest = recipe.digest().map_err(to_io)?;
    if let Some(s) = store {
        if let Some(b) = s.by_recipe(&digest).map_err(to_io)? {
            return Ok(BoxInput {
                digest: b.digest.to_string(),
                from: format!("store, built from recipe `{shown}`"),
            });
        }
    }
    Ok(BoxInput {
        digest,
        from: format!("recipe `{shown}` (not built yet)"),
    })
}

fn file_input(store: Option<&Store>, path: &Path, shown: &str) -> std::io::Result<BoxInput> {
    let cache_home;
    let store = match store {
        Some(s) => s,
        None => {
            cache_home = Store::at(std::env::temp_dir().join("hdev-cache"));
            &cache_home
        }
    };
    if ensure::is_box_archive(path).map_err(to_io)? {
        let d = store.archive_digest(path).map_err(to_io)?;
        return Ok(BoxInput {
            digest: d.to_string(),
            from: format!("box file `{shown}`"),
        });
    }
    // A cloud qcow2 or vagrant box: counted by its bytes.
    let sha = store.cache().file_sha256(path)?;
    Ok(BoxInput {
        digest: format!("sha256:{sha}"),
        from: format!("content of `{shown}`"),
    })
}
