//! Throwaway copies of an environment, for `hdev ci` and `hdev release`.
//!
//! A copy is the environment of an Envfile (this folder's, or one checked out from git)
//! under a unique instance name (`<env>-ci-<random>`), with its own state folder
//! `.hdev/ci/<instance>/` beside the developer's `.hdev/state.json`, its networks moved to
//! free ranges and its host ports left to the engine (see [`net`]). So a copy never
//! touches the developer's environment, and two copies on one engine never collide.
//!
//! The process that runs a copy holds its state lock from creation to teardown. A copy
//! whose lock is free and that was not kept on purpose was left by a killed run; the next
//! `hdev ci` removes it ([`idle`]), and so does `hdev gc` ([`idle_at`]). Everything a copy
//! creates is labelled with the copy's folder as `hdev.dir`, so `hdev gc` also collects it
//! once the folder is gone.

pub(crate) mod net;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::docker::DockerBackend;
use crate::backend::BackendError;
use crate::envfile::Ipv4Net;
use crate::project::{find_envfile, Placement, Project, ProjectError};
use crate::state::{StateDir, StateError};

/// Held by the process that runs a copy, from creation to teardown (a file lock, so it
/// goes away with the process however it ends).
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: std::fs::File,
}

fn run_lock(root: &Path) -> Result<Option<RunLock>, StateError> {
    let path = root.join("run.lock");
    std::fs::create_dir_all(root).map_err(|source| StateError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => Ok(Some(RunLock { _file: file })),
        Ok(false) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// Version of `copy.json`.
pub(crate) const COPY_VERSION: u32 = 1;

/// Why a throwaway copy could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ThrowawayError {
    /// The copy's folder or record could not be written or read.
    #[error(transparent)]
    State(#[from] StateError),
    /// Every candidate block for a network overlaps a network or route that exists.
    #[error("no free /{prefix} for network `{network}` of the throwaway copy; remove unused Docker networks (`hdev gc`) or use a smaller subnet")]
    NoFreeSubnet { network: String, prefix: u8 },
    /// Another hdev process held the host-wide subnet lock for too long.
    #[error("waited {secs}s for the subnet lock `{}` held by another hdev process", path.display())]
    SubnetLock { path: PathBuf, secs: u64 },
    /// The engine refused a request.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The copy's Envfile could not be opened.
    #[error(transparent)]
    Project(#[from] Box<ProjectError>),
}

/// What `copy.json` records about a copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CopyRecord {
    pub version: u32,
    pub instance: String,
    /// The Envfile the copy was brought up from.
    pub envfile: PathBuf,
    /// What it copies: `working tree`, `commit <sha>`.
    pub source: String,
    /// Envfile network -> the subnet the copy uses instead.
    #[serde(default)]
    pub subnets: BTreeMap<String, Ipv4Net>,
    /// Kept on purpose (`--keep-on-failure`): not swept by the next run.
    #[serde(default)]
    pub kept: bool,
}

/// A throwaway copy's folder and record.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub root: PathBuf,
    pub record: CopyRecord,
}

/// Where a folder's copies live.
pub(crate) fn copies_root(env_dir: &Path) -> PathBuf {
    env_dir.join(".hdev").join("ci")
}

/// A fresh instance name: `<env>-ci-` and 8 random hex digits.
pub(crate) fn new_instance(env_name: &str) -> String {
    format!("{env_name}-ci-{}", hex::encode(random_bytes::<4>()))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        use sha2::{Digest, Sha256};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let d = Sha256::digest(format!("{}:{}", std::process::id(), now.as_nanos()));
        b.copy_from_slice(&d[..N]);
    }
    b
}

fn seed_of(instance: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(instance.as_bytes());
    let mut s = [0u8; 8];
    s.copy_from_slice(&d[..8]);
    u64::from_le_bytes(s)
}

impl Copy {
    /// Creates the folder of a new copy of `envfile` under `home_dir` and takes its lock;
    /// nothing exists in the engines yet.
    pub(crate) fn create(
        home_dir: &Path,
        instance: &str,
        envfile: &Path,
        source: &str,
    ) -> Result<(Copy, RunLock), ThrowawayError> {
        // The developer's `.hdev/` may not exist yet: keep it out of git as `StateDir` does.
        let top = home_dir.join(".hdev");
        std::fs::create_dir_all(&top).map_err(|source| StateError::Io {
            path: top.clone(),
            source,
        })?;
        if !top.join(".gitignore").exists() {
            crate::state::write_atomic(
                &top.join(".gitignore"),
                b"# hdev's local state: keys, logs, machine records\n*\n",
            )?;
        }
        let root = copies_root(home_dir).join(instance);
        let lock = run_lock(&root)?.ok_or_else(|| StateError::Locked {
            path: root.join("run.lock"),
        })?;
        let copy = Copy {
            root,
            record: CopyRecord {
                version: COPY_VERSION,
                instance: instance.to_string(),
                envfile: std::fs::canonicalize(envfile).unwrap_or_else(|_| envfile.into()),
                source: source.to_string(),
                subnets: BTreeMap::new(),
                kept: false,
            },
        };
        copy.save()?;
        Ok((copy, lock))
    }

    pub(crate) fn state(&self) -> StateDir {
        StateDir {
            root: self.root.clone(),
        }
    }

    pub(crate) fn save(&self) -> Result<(), StateError> {
        let mut bytes =
            serde_json::to_vec_pretty(&self.record).map_err(|source| StateError::Corrupt {
                path: self.root.join("copy.json"),
                source,
            })?;
        bytes.push(b'\n');
        crate::state::write_atomic(&self.root.join("copy.json"), &bytes)
    }

    /// Opens the copy's project: its Envfile under its instance, state folder and home,
    /// with its networks moved as recorded.
    pub(crate) fn open(&self) -> Result<Project, ProjectError> {
        let mut project = Project::open_placed(
            &self.record.envfile,
            Placement {
                instance: Some(self.record.instance.clone()),
                state: Some(self.state()),
                home: Some(self.root.clone()),
                // The project it copies (`HOME/.hdev/ci/INSTANCE`): its hosts place the copy.
                hosts_from: self.root.ancestors().nth(3).map(Path::to_path_buf),
                // A copy runs with overrides only when `--use` asks for them.
                no_local: true,
            },
        )?;
        let subnets = self.record.subnets.clone();
        project.adjust(|env| net::relocate(env, &subnets));
        Ok(project)
    }

    /// Chooses free subnets for the copy's networks and creates them, under a host-wide
    /// lock so that two copies starting at once never pick the same block; records the
    /// choice and moves `project`'s networks to it.
    pub(crate) async fn place_networks(
        &mut self,
        project: &mut Project,
        backends: &crate::backend::Backends,
    ) -> Result<(), ThrowawayError> {
        if project.env.networks.is_empty() {
            project.adjust(|env| net::relocate(env, &BTreeMap::new()));
            return Ok(());
        }
        let _host_lock = host_lock().await?;
        // Every engine's networks count: an overlay's subnet must be free on all hosts.
        let mut taken = Vec::new();
        for b in backends.all() {
            if let crate::backend::AnyBackend::Docker(docker) = b {
                taken.extend(engine_subnets(docker).await?);
            }
        }
        taken.extend(net::host_routes());
        taken.extend(project.env.networks.values().map(|n| n.subnet));
        let subnets = net::choose(
            &project.env.networks,
            &taken,
            seed_of(&self.record.instance),
        )?;
        self.record.subnets = subnets.clone();
        self.save()?;
        project.adjust(|env| net::relocate(env, &subnets));
        let ctx = project.ctx();
        for n in project.env.networks.keys() {
            crate::apply::place_network(&project.env, &ctx, backends, n, true).await?;
        }
        Ok(())
    }

    /// Removes the copy's folder (after its objects are gone).
    pub(crate) fn remove_dir(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Opens the project a command addresses: the environment of the Envfile (found as
/// [`find_envfile`] does), or, when `HDEV_INSTANCE` names a throwaway copy of its folder
/// (a kept `hdev ci` run, or the copy a `hdev ci -- CMD` command runs against), that copy.
/// It is here rather than in `project` because only this module knows copies, and copies
/// are opened as projects: so `project` never imports `throwaway`.
pub(crate) fn open_project(file: Option<&Path>) -> Result<Project, ProjectError> {
    open_project_from(file, None)
}

/// [`open_project`] for an Envfile checked out from the project in folder `origin`
/// (a tagged release), placed on the hosts that project remembers.
pub(crate) fn open_project_from(
    file: Option<&Path>,
    origin: Option<&Path>,
) -> Result<Project, ProjectError> {
    let path = find_envfile(file)?;
    let instance = std::env::var("HDEV_INSTANCE")
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(i) = &instance {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(copy) = find(dir, i) {
            return copy.open();
        }
    }
    Project::open_placed(
        &path,
        Placement {
            instance,
            hosts_from: origin.map(Path::to_path_buf),
            ..Placement::default()
        },
    )
}

/// The copy named `instance` of the environment in `env_dir`, if there is one.
pub(crate) fn find(env_dir: &Path, instance: &str) -> Option<Copy> {
    let root = copies_root(env_dir).join(instance);
    let record: CopyRecord = crate::state::read_json(&root.join("copy.json")).ok()??;
    Some(Copy { root, record })
}

/// Every copy of the environment in `env_dir`, by instance name.
pub(crate) fn list(env_dir: &Path) -> Vec<Copy> {
    let Ok(entries) = std::fs::read_dir(copies_root(env_dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().filter_map(|n| find(env_dir, n)).collect()
}

/// Copies no process runs: left by a killed run, or kept (with `include_kept`), each with
/// its run lock taken so that nothing starts on it while it is removed.
pub(crate) fn idle(env_dir: &Path, include_kept: bool) -> Vec<(Copy, RunLock)> {
    list(env_dir)
        .into_iter()
        .filter(|c| include_kept || !c.record.kept)
        .filter_map(|c| run_lock(&c.root).ok().flatten().map(|l| (c, l)))
        .collect()
}

/// The copy whose folder is `root`, when no process runs it and it was not kept: left by
/// a killed run. Its run lock is taken, so nothing starts on it while it is removed.
pub(crate) fn idle_at(root: &Path) -> Option<(Copy, RunLock)> {
    let record: CopyRecord = crate::state::read_json(&root.join("copy.json")).ok()??;
    if record.kept {
        return None;
    }
    let lock = run_lock(root).ok().flatten()?;
    Some((
        Copy {
            root: root.to_path_buf(),
            record,
        },
        lock,
    ))
}

/// Every subnet of every network in the engine.
async fn engine_subnets(docker: &DockerBackend) -> Result<Vec<Ipv4Net>, BackendError> {
    let nets = docker
        .client()
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(crate::backend::docker::map_err(
            "list networks",
            "networks",
            "",
        ))?;
    Ok(nets
        .into_iter()
        .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
        .filter_map(|c| c.subnet)
        .filter_map(|s| parse_net(&s))
        .collect())
}

fn parse_net(s: &str) -> Option<Ipv4Net> {
    let (a, p) = s.split_once('/')?;
    Some(Ipv4Net {
        addr: a.parse().ok()?,
        prefix: p.parse().ok().filter(|p: &u8| *p <= 32)?,
    })
}

/// The host-wide lock held while a copy chooses and creates its networks.
async fn host_lock() -> Result<std::fs::File, ThrowawayError> {
    let path = std::env::temp_dir().join("hdev-subnets.lock");
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let limit = Duration::from_secs(60);
    let t0 = Instant::now();
    loop {
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => return Ok(file),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io(e).into()),
        }
        if t0.elapsed() > limit {
            return Err(ThrowawayError::SubnetLock {
                path,
                secs: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl From<ProjectError> for ThrowawayError {
    fn from(e: ProjectError) -> Self {
        ThrowawayError::Project(Box::new(e))
    }
}
