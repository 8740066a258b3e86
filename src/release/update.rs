//! Moving an environment to a release (`hdev up --at TAG`, `hdev update [TAG]`).
//!
//! The tagged tree is unpacked into `.hdev/releases/<tag>-<commit>/` beside the Envfile and
//! kept there, not in a temporary folder: synced folders and provisioning files of the
//! release must outlive the command that brings it up. The release's Envfile is then
//! opened as this folder's environment (same instance, same state), so planning against
//! it recreates exactly the machines whose per-machine hash differs. Which release the
//! environment runs is recorded in `.hdev/release.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{find, materialize, repo_of, ReleaseError, Tag};
use crate::project::{Placement, Project};
use crate::state::StateDir;

/// Version of `release.json`.
pub(crate) const RECORD_VERSION: u32 = 1;

/// What `.hdev/release.json` says: the release the environment was last moved to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ReleaseRecord {
    pub version: u32,
    pub tag: String,
    pub commit: String,
    /// Environment hash of the release.
    pub hash: String,
    /// Where the release's tree is unpacked.
    pub dir: PathBuf,
}

/// A release unpacked for good, with its project opened as the home folder's environment.
pub(crate) struct Release {
    pub tag: Tag,
    pub dir: PathBuf,
    pub project: Project,
}

fn safe_name(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Unpacks `tag` (once) under `home/.hdev/releases/` and opens its Envfile (at the same
/// place in the tree as `envfile`) under `instance`, with `home`'s state folder.
pub(crate) fn open_release(
    envfile: &Path,
    home: &Path,
    instance: &str,
    tag: Option<&str>,
) -> Result<Release, ReleaseError> {
    let (repo, rel) = repo_of(home)?;
    let tag = match tag {
        Some(t) => find(&repo, t)?,
        None => super::latest(&repo)?,
    };
    let short = &tag.commit[..tag.commit.len().min(12)];
    let dir = home
        .join(".hdev")
        .join("releases")
        .join(format!("{}-{short}", safe_name(&tag.name)));
    if !dir.join(".hdev-complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        materialize(&repo, &tag.commit, &dir)?;
        std::fs::write(dir.join(".hdev-complete"), &tag.commit).map_err(|source| {
            ReleaseError::Unpack {
                tag: tag.name.clone(),
                source,
            }
        })?;
    }
    let file_name = envfile.file_name().unwrap_or_else(|| "Envfile".as_ref());
    let path = dir.join(&rel).join(file_name);
    if !path.exists() {
        return Err(ReleaseError::NoEnvfile {
            tag: tag.name.clone(),
            path: rel.join(file_name).display().to_string(),
        });
    }
    let project = Project::open_placed(
        &path,
        Placement {
            instance: Some(instance.to_string()),
            state: Some(StateDir::new(home)),
            home: Some(home.to_path_buf()),
            hosts_from: Some(home.to_path_buf()),
            no_local: true,
        },
    )
    .map_err(|e| ReleaseError::Project {
        tag: tag.name.clone(),
        source: Box::new(e),
    })?;
    Ok(Release { tag, dir, project })
}

fn record_path(state: &StateDir) -> PathBuf {
    state.root.join("release.json")
}

/// Records the release the environment now runs.
pub(crate) fn record(state: &StateDir, r: &ReleaseRecord) -> Result<(), crate::state::StateError> {
    let mut bytes =
        serde_json::to_vec_pretty(r).map_err(|source| crate::state::StateError::Corrupt {
            path: record_path(state),
            source,
        })?;
    bytes.push(b'\n');
    crate::state::write_atomic(&record_path(state), &bytes)
}
