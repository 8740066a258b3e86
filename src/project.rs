//! A project: the loaded Envfile, its `.hdev/` folder and its unique instance name.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::envfile::hash::{self, HashReport};
use crate::envfile::{self, Env, LoadError};
use crate::lockfile::{self, LockError, Lockfile};
use crate::state::StateDir;

pub struct Project {
    pub env: Env,
    pub state: StateDir,
    /// Name of this copy of the environment in Docker and libvirt: the env name and a
    /// short digest of the Envfile's folder, so two checkouts never collide.
    pub instance: String,
}

/// Why a project could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// No Envfile where one was looked for.
    #[error("no `Envfile` in `{}` or any folder above it; create one with `hdev init`", .0.display())]
    NotFound(PathBuf),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A host file named by the Envfile could not be read for hashing.
    #[error("cannot read an input of the environment: {0}")]
    Input(std::io::Error),
}

/// Finds the Envfile: the given path, or `Envfile` in the current folder or above.
pub fn find_envfile(given: Option<&Path>) -> Result<PathBuf, ProjectError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut dir: Option<&Path> = Some(&cwd);
    while let Some(d) = dir {
        let candidate = d.join(envfile::ENVFILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ProjectError::NotFound(cwd))
}

/// The default instance name of an environment in a folder.
pub fn instance_name(env: &Env) -> String {
    let digest = Sha256::digest(env.dir.to_string_lossy().as_bytes());
    format!("{}-{}", env.settings.name, &hex::encode(digest)[..6])
}

impl Project {
    pub fn open(file: Option<&Path>) -> Result<Project, ProjectError> {
        let path = find_envfile(file)?;
        let env = envfile::load(&path)?;
        let instance = std::env::var("HDEV_INSTANCE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| instance_name(&env));
        Ok(Project {
            state: StateDir::new(&env.dir),
            env,
            instance,
        })
    }

    pub fn lock_path(&self) -> PathBuf {
        lockfile::path_for(&self.env.file)
    }

    pub fn lockfile(&self) -> Result<Option<Lockfile>, ProjectError> {
        Ok(lockfile::read(&self.lock_path())?)
    }

    /// The environment hash, with boxes counted as `Envfile.lock` pins them.
    pub fn hash(&self) -> Result<HashReport, ProjectError> {
        let lock = self.lockfile()?;
        self.hash_with(lock.as_ref())
    }

    pub fn hash_with(&self, lock: Option<&Lockfile>) -> Result<HashReport, ProjectError> {
        let boxes = crate::boxes::resolve_digests(&self.env, lock).map_err(ProjectError::Input)?;
        let inputs = hash::read_inputs(&self.env, boxes).map_err(ProjectError::Input)?;
        Ok(hash::compute(&self.env, &inputs))
    }
}
