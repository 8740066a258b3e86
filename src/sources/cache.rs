//! The cache of sources in hdev's store: one bare mirror per repository
//! (`$HDEV_HOME/sources/<digest of the URL>.git`, fetched into, never cloned twice) and one
//! read-only folder per tree id (`$HDEV_HOME/sources/trees/<tree id>/`).
//!
//! Trees are kept by their id rather than checked out per environment: a tree id names
//! its content exactly, so one export serves every environment, throwaway copy and
//! release at that commit, is made once (written to a temporary folder and renamed in,
//! so a reader never sees half of it), and can never be stale.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::git::{self, GitError};
use super::SourceError;

/// The sources part of the store.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache in the default store (`HDEV_HOME`, or the XDG data folder).
    pub(crate) fn open_default() -> Result<Cache, SourceError> {
        let store =
            crate::boxes::Store::open_default().map_err(|e| SourceError::Store(e.to_string()))?;
        Ok(Cache {
            root: store.root().join("sources"),
        })
    }

    /// The mirror of repository `url` (whether or not it exists yet).
    pub(crate) fn mirror(&self, url: &str) -> Mirror {
        let digest = hex::encode(Sha256::digest(url.as_bytes()));
        Mirror {
            url: url.to_string(),
            path: self.root.join(format!("{}.git", &digest[..16])),
        }
    }

    /// The folder holding tree `tree`'s files (whether or not it exists yet).
    pub(crate) fn tree_dir(&self, tree: &str) -> PathBuf {
        self.root.join("trees").join(tree)
    }

    /// Tree `tree` of `mirror` as a folder, exported once.
    pub(crate) fn export(&self, mirror: &Mirror, tree: &str) -> Result<PathBuf, SourceError> {
        let dest = self.tree_dir(tree);
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = self.root.join("trees");
        std::fs::create_dir_all(&parent).map_err(SourceError::io(&parent))?;
        let tmp = tempfile::tempdir_in(&parent).map_err(SourceError::io(&parent))?;
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&mirror.path)
            .args(["archive", "--format=tar", tree])
            .output()
            .map_err(|e| SourceError::Git(GitError::Spawn(e)))?;
        if !out.status.success() {
            return Err(SourceError::Git(GitError::Failed {
                args: format!("archive {tree}"),
                dir: mirror.path.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }));
        }
        let files = tmp.path().join("t");
        tar::Archive::new(&out.stdout[..])
            .unpack(&files)
            .map_err(SourceError::io(&files))?;
        match std::fs::rename(&files, &dest) {
            Ok(()) => Ok(dest),
            // Another process exported it first: the same files.
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(SourceError::io(&dest)(e)),
        }
    }
}

/// A bare mirror of one repository.
#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    pub url: String,
    pub path: PathBuf,
}

impl Mirror {
    pub(crate) fn exists(&self) -> bool {
        self.path.join("HEAD").is_file()
    }

    /// Fetches every ref of the repository into the mirror, making it first if needed.
    pub(crate) fn fetch(&self) -> Result<(), SourceError> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(SourceError::io(parent))?;
        let _held = lock(&self.path)?;
        if !self.exists() {
            let tmp = tempfile::tempdir_in(parent).map_err(SourceError::io(parent))?;
            let into = tmp.path().join("m.git");
            let into_s = into.to_string_lossy();
            git::run(
                parent,
                &["clone", "--mirror", "--quiet", "--", &self.url, &into_s],
            )
            .map_err(|e| self.unreachable(e))?;
            std::fs::rename(&into, &self.path).map_err(SourceError::io(&self.path))?;
            return Ok(());
        }
        git::run(&self.path, &["fetch", "--prune", "--quiet", "origin"])
            .map_err(|e| self.unreachable(e))?;
        Ok(())
    }

    fn unreachable(&self, e: GitError) -> SourceError {
        SourceError::Fetch {
            url: self.url.clone(),
            why: e,
        }
    }

    /// The commit a ref names in the mirror, if it names one.
    pub(crate) fn commit_of(
        &self,
        pin: &crate::envfile::GitRef,
    ) -> Result<Option<String>, SourceError> {
        use crate::envfile::GitRef;
        if !self.exists() {
            return Ok(None);
        }
        let spec = match pin {
            GitRef::Rev(r) => format!("{r}^{{commit}}"),
            GitRef::Tag(t) => format!("refs/tags/{t}^{{commit}}"),
            GitRef::Branch(b) => format!("refs/heads/{b}^{{commit}}"),
        };
        Ok(git::rev_parse(&self.path, &spec)?)
    }

    /// The tree of `commit` (its `subdir`), if there is one.
    pub(crate) fn tree_of(
        &self,
        commit: &str,
        subdir: Option<&str>,
    ) -> Result<Option<String>, SourceError> {
        Ok(git::tree_at(&self.path, commit, subdir.unwrap_or(""))?)
    }

    pub(crate) fn has_commit(&self, commit: &str) -> Result<bool, SourceError> {
        Ok(self.exists() && git::has_commit(&self.path, commit)?)
    }
}

/// Held while a mirror is made or fetched into, so that two hdev processes never fetch
/// into one mirror at once.
fn lock(mirror: &Path) -> Result<std::fs::File, SourceError> {
    let path = mirror.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(SourceError::io(&path))?;
    fs4::fs_std::FileExt::lock_exclusive(&f).map_err(SourceError::io(&path))?;
    Ok(f)
}
