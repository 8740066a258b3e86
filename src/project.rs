//! A project: the loaded Envfile, its `.hdev/` folder and its unique instance name.
//!
//! Most commands open the project of a folder as it is (through `throwaway::open_project`,
//! which also finds the copy `HDEV_INSTANCE` names). Throwaway copies (`hdev ci`, `hdev
//! release`) and tagged releases (`hdev up --at`, `hdev update`) open the same or a
//! checked-out Envfile under another instance name, state folder or home: [`Placement`]
//! says where, so no command has to smuggle that through environment variables.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use std::collections::{BTreeMap, BTreeSet};

use crate::boxes::Pins;
use crate::envfile::hash::{self, HashReport};
use crate::envfile::Override;
use crate::envfile::{self, Env, LoadError};
use crate::lockfile::{self, LockError, Lockfile};
use crate::sources::{Request, Resolved, SourceError};
use crate::state::StateDir;

pub(crate) struct Project {
    pub env: Env,
    pub state: StateDir,
    /// Name of this copy of the environment in Docker and libvirt: the env name and a
    /// short digest of the Envfile's folder, so two checkouts never collide.
    pub instance: String,
    /// Folder the environment belongs to, labelled `hdev.dir` on what it creates (so `gc`
    /// collects it once the folder is gone): the Envfile's folder unless placed elsewhere.
    pub home: PathBuf,
    /// The environment as its Envfile says, kept when `env` was adjusted for a throwaway
    /// copy (subnets, host ports): hashes are taken from it, so a copy's machines carry the
    /// hashes of the environment they copy.
    original: Option<Box<Env>>,
    /// Each source resolved: its commit and tree, and a working copy in its place.
    pub sources: BTreeMap<String, Resolved>,
    /// `Envfile.local`'s overrides, when the project was opened without them (a
    /// throwaway copy): named so that the user knows they did not count.
    pub ignored_local: Vec<String>,
    /// The folder relative repository paths of sources are taken from, when not the
    /// Envfile's (see [`Placement::hosts_from`]).
    url_base: Option<PathBuf>,
}

/// Where a project lives when it is not simply its folder's environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placement {
    /// Instance name (default: [`instance_name`], or `HDEV_INSTANCE`).
    pub instance: Option<String>,
    /// State folder (default: `.hdev/` beside the Envfile).
    pub state: Option<StateDir>,
    /// Home folder for the `hdev.dir` label (default: the Envfile's folder).
    pub home: Option<PathBuf>,
    /// The folder whose remembered hosts file places the machines (default: the
    /// Envfile's): a tagged release checked out elsewhere runs on its project's hosts.
    pub hosts_from: Option<PathBuf>,
    /// Leave `Envfile.local` out (a throwaway copy runs with overrides only when `--use`
    /// asks for them).
    pub no_local: bool,
}

/// Why a project could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProjectError {
    /// No Envfile where one was looked for.
    #[error("no `Envfile` in `{}` or any folder above it; create one with `hdev init`", .0.display())]
    NotFound(PathBuf),
    /// An `Envfile` that is a folder.
    #[error("`{}` is a folder, not an Envfile; rename it, or name the Envfile with `-f FILE`", .0.display())]
    Folder(PathBuf),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The remembered hosts file is gone.
    #[error("the hosts file `{}` given earlier with `--hosts` cannot be read ({source}); give `--hosts FILE` again, or `--hosts none` to run every machine on this host", path.display())]
    HostsGone {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A host file named by the Envfile could not be read for hashing.
    #[error("cannot read an input of the environment: {0}")]
    Input(std::io::Error),
    /// A source could not be fetched or exported.
    #[error(transparent)]
    Source(SourceError),
}

impl From<SourceError> for ProjectError {
    fn from(e: SourceError) -> Self {
        match e {
            // Problems in the Envfile or Envfile.local are shown at their place.
            SourceError::Load(l) => ProjectError::Load(l),
            other => ProjectError::Source(other),
        }
    }
}

/// The overrides given on the command line (`--use NAME=PATH`), for this process.
static USE_ARGS: std::sync::OnceLock<Vec<Override>> = std::sync::OnceLock::new();

/// Sets the overrides for every project this process opens (`--use`).
pub(crate) fn set_use_args(given: Vec<Override>) {
    let _ = USE_ARGS.set(given);
}

/// The overrides `--use` gave.
pub(crate) fn use_args() -> &'static [Override] {
    USE_ARGS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Finds the Envfile: the given path, or `Envfile` in the current folder or above.
pub(crate) fn find_envfile(given: Option<&Path>) -> Result<PathBuf, ProjectError> {
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
        if candidate.is_dir() {
            return Err(ProjectError::Folder(candidate));
        }
        dir = d.parent();
    }
    Err(ProjectError::NotFound(cwd))
}

/// The default instance name of an environment in a folder.
pub(crate) fn instance_name(env: &Env) -> String {
    let digest = Sha256::digest(env.dir.to_string_lossy().as_bytes());
    format!("{}-{}", env.settings.name, &hex::encode(digest)[..6])
}

/// The hosts file named on the command line (`--hosts`), for this process.
static HOSTS_ARG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The word `--hosts` takes to forget a remembered hosts file.
pub(crate) const NO_HOSTS: &str = "none";

/// Sets the hosts file for every project this process opens (`--hosts FILE`).
pub(crate) fn set_hosts_arg(p: PathBuf) {
    let _ = HOSTS_ARG.set(p);
}

/// Where the hosts file last given for an Envfile's folder is remembered.
fn hosts_record(env_dir: &Path) -> PathBuf {
    env_dir.join(".hdev").join("hosts-file")
}

/// The hosts file an Envfile's machines are placed with: the one `--hosts` names (which
/// is then remembered beside the Envfile), else the one remembered, else none.
fn hosts_layout(
    envfile: &Path,
    from: Option<&Path>,
) -> Result<Option<envfile::Layout>, ProjectError> {
    let record = hosts_record(from.unwrap_or(envfile::folder_of(envfile)));
    let path = match HOSTS_ARG.get() {
        Some(p) if p.as_os_str() == NO_HOSTS => {
            let _ = std::fs::remove_file(&record);
            return Ok(None);
        }
        Some(p) => {
            let abs = std::fs::canonicalize(p).map_err(|source| LoadError::Io {
                path: p.clone(),
                source,
            })?;
            let text = abs.to_string_lossy();
            if std::fs::read_to_string(&record).ok().as_deref() != Some(&*text) {
                crate::state::write_atomic(&record, text.as_bytes())
                    .map_err(|e| ProjectError::Input(std::io::Error::other(e.to_string())))?;
            }
            abs
        }
        None => match std::fs::read_to_string(&record) {
            Ok(s) if !s.trim().is_empty() => PathBuf::from(s.trim()),
            _ => return Ok(None),
        },
    };
    match envfile::load_hosts_file(&path) {
        Err(LoadError::Io { path, source }) if HOSTS_ARG.get().is_none() => {
            Err(ProjectError::HostsGone { path, source })
        }
        r => Ok(Some(r?)),
    }
}

/// Gives each box the digest `lock` pins it to, so that `up` uses the pinned box when the
/// store has it, as the hash counts it.
fn pin_boxes(env: &mut Env, lock: &Lockfile) {
    for (name, digest) in lock.pins() {
        if let Some(b) = env.boxes.get_mut(&name) {
            b.pin = Some(digest);
        }
    }
}

impl Project {
    /// Opens the Envfile at `path` placed as given.
    pub(crate) fn open_placed(path: &Path, placement: Placement) -> Result<Project, ProjectError> {
        let hosts = hosts_layout(path, placement.hosts_from.as_deref())?;
        let mut env = envfile::load_with(path, hosts.as_ref())?;
        let local = envfile::load_local(&envfile::local_path(path))?;
        let ignored_local = match placement.no_local {
            true => local.iter().map(|o| o.source.clone()).collect(),
            false => Vec::new(),
        };
        let local = if placement.no_local {
            Vec::new()
        } else {
            local
        };
        let lock = lockfile::read(&lockfile::path_for(path))?;
        let req = Request {
            pins: lock
                .as_ref()
                .map(|l| l.source_pins(&env))
                .unwrap_or_default(),
            overrides: envfile::sources::merge_overrides(local, use_args()),
            base: placement.hosts_from.clone(),
            ..Request::default()
        };
        let sources = crate::sources::resolve(&mut env, &req)?;
        if let Some(l) = &lock {
            pin_boxes(&mut env, l);
        }
        Ok(Project {
            instance: placement.instance.unwrap_or_else(|| instance_name(&env)),
            state: placement.state.unwrap_or_else(|| StateDir::new(&env.dir)),
            home: placement.home.unwrap_or_else(|| env.dir.clone()),
            env,
            original: None,
            sources,
            ignored_local,
            url_base: placement.hosts_from,
        })
    }

    /// The overrides in force, as asked for.
    fn override_list(&self) -> BTreeMap<String, Override> {
        let local = match self.ignored_local.is_empty() {
            true => envfile::load_local(&envfile::local_path(&self.env.file)).unwrap_or_default(),
            false => Vec::new(),
        };
        envfile::sources::merge_overrides(local, use_args())
    }

    /// The sources a working copy stands for (`--use`, `Envfile.local`).
    pub(crate) fn overrides(&self) -> Vec<&str> {
        self.sources
            .iter()
            .filter(|(_, r)| r.local.is_some())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Fails when a working copy stands for a source: what `action` makes must not
    /// depend on a developer's files.
    pub(crate) fn refuse_overrides(&self, action: &str) -> Result<(), ProjectError> {
        let names = self.overrides();
        if names.is_empty() {
            return Ok(());
        }
        Err(ProjectError::Load(LoadError::Other(format!(
            "{action} refuses to run while a working copy stands for source{} {}\nhelp: drop `--use` and the entries of `{}`",
            if names.len() == 1 { "" } else { "s" },
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            envfile::display_name(&envfile::local_path(&self.env.file)),
        ))))
    }

    /// Resolves sources `names` (every source when empty) afresh: their repositories
    /// fetched, their refs followed, their lock pins left aside; the others keep theirs.
    pub(crate) fn update_sources(&mut self, names: &[String]) -> Result<(), ProjectError> {
        for n in names {
            if !self.env.sources.defs.contains_key(n) {
                let known: Vec<&str> = self.env.sources.defs.keys().map(String::as_str).collect();
                return Err(ProjectError::Load(LoadError::Other(format!(
                    "no source `{n}` in the Envfile; its sources: {}",
                    known.join(", ")
                ))));
            }
        }
        let refresh: BTreeSet<String> = match names.is_empty() {
            true => self.env.sources.defs.keys().cloned().collect(),
            false => names.iter().cloned().collect(),
        };
        let pins = self
            .sources
            .iter()
            .map(|(n, r)| {
                let pin = crate::sources::Pin {
                    commit: r.commit.clone(),
                    tree: r.tree.clone(),
                };
                (n.clone(), pin)
            })
            .collect();
        let req = Request {
            pins,
            refresh,
            overrides: self.override_list(),
            base: self.url_base.clone(),
            ..Request::default()
        };
        self.sources = crate::sources::resolve(&mut self.env, &req)?;
        Ok(())
    }

    /// Resolves the sources the lock does not pin (new ones, or ones whose Envfile entry
    /// changed), fetching their repositories: what `hdev lock` pins.
    pub(crate) fn resolve_unlocked(&mut self) -> Result<(), ProjectError> {
        let pinned = match self.lockfile()? {
            Some(l) => l.source_pins(&self.env),
            None => BTreeMap::new(),
        };
        let fresh: Vec<String> = self
            .env
            .sources
            .defs
            .keys()
            .filter(|n| !pinned.contains_key(*n))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        self.update_sources(&fresh)
    }

    /// Adjusts the environment for where this copy runs (other subnets, ephemeral host
    /// ports) without changing its hashes.
    pub(crate) fn adjust(&mut self, f: impl FnOnce(&mut Env)) {
        if self.original.is_none() {
            self.original = Some(Box::new(self.env.clone()));
        }
        f(&mut self.env);
    }

    /// Names and labels of what this project creates in the engines.
    pub(crate) fn ctx(&self) -> crate::backend::EnvCtx {
        crate::backend::EnvCtx {
            instance: self.instance.clone(),
            dir: self.home.clone(),
        }
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        lockfile::path_for(&self.env.file)
    }

    pub(crate) fn lockfile(&self) -> Result<Option<Lockfile>, ProjectError> {
        Ok(lockfile::read(&self.lock_path())?)
    }

    /// The environment hash, with boxes counted as `Envfile.lock` pins them.
    pub(crate) fn hash(&self) -> Result<HashReport, ProjectError> {
        let pins = self.lockfile()?.map(|l| l.pins()).unwrap_or_default();
        self.hash_with(&pins)
    }

    pub(crate) fn hash_with(&self, pins: &Pins) -> Result<HashReport, ProjectError> {
        let env = self.original.as_deref().unwrap_or(&self.env);
        let boxes = crate::boxes::resolve_digests(env, pins).map_err(ProjectError::Input)?;
        let mut inputs = hash::read_inputs(env, boxes).map_err(ProjectError::Input)?;
        inputs.sources = self
            .sources
            .iter()
            .map(|(n, r)| {
                let input = hash::SourceInput {
                    tree: r.counted_tree.clone(),
                    commit: r.local.is_none().then(|| r.commit.clone()),
                    local: r.local.is_some(),
                };
                (n.clone(), input)
            })
            .collect();
        Ok(hash::compute(env, &inputs))
    }

    /// The lock file the project's inputs call for now (what `hdev lock` would write).
    pub(crate) fn current_lock(&self) -> Result<Lockfile, ProjectError> {
        // The lock pins what the boxes are now, not what an older lock said.
        self.lock_with(&Pins::new())
    }

    /// The lock file the inputs call for now, with each box counted by its pin in `locked`
    /// where the pin still stands for the box ([`Lockfile::standing_pins`]), so that
    /// building a recipe box is not mistaken for a change of it.
    pub(crate) fn current_lock_against(&self, locked: &Lockfile) -> Result<Lockfile, ProjectError> {
        self.lock_with(&locked.standing_pins(&self.env))
    }

    /// What `hdev lock` writes, given the lock there is (`old`): with `update`, the named
    /// sources (all when none is named) moved to where their refs are now and the boxes
    /// kept at their pins; otherwise every input as it is, sources the lock does not pin
    /// resolved afresh (unless only `check`ing).
    pub(crate) fn next_lock(
        &mut self,
        update: Option<&[String]>,
        old: Option<&Lockfile>,
        check: bool,
    ) -> Result<Lockfile, ProjectError> {
        match (update, old) {
            (Some(names), Some(old)) => {
                self.update_sources(names)?;
                self.current_lock_against(old)
            }
            (Some(names), None) => {
                self.update_sources(names)?;
                self.current_lock()
            }
            (None, _) => {
                if !check {
                    self.resolve_unlocked()?;
                }
                self.current_lock()
            }
        }
    }

    /// The lock file of the inputs as they are, with boxes counted as `pins` pins them.
    fn lock_with(&self, pins: &Pins) -> Result<Lockfile, ProjectError> {
        let report = self.hash_with(pins)?;
        lockfile::of_inputs(&self.env, &report, pins, &self.sources).map_err(ProjectError::Input)
    }
}
