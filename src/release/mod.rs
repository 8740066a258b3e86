//! Releases: git tags of the repository that holds the Envfile.
//!
//! A release's environment is whatever its tag holds, so its hash is computed from a
//! copy of the tagged tree (`git archive`), never from the working tree. git is driven
//! through its command line: the libgit2 and gitoxide crates would pull in a libc that
//! the virt crate cannot share.

pub(crate) mod cite;
pub(crate) mod gatekeeper;
pub(crate) mod update;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::envfile::hash::HashReport;
use crate::project::{Project, ProjectError};
use crate::throwaway::open_project_from;

/// Why a release operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReleaseError {
    /// git could not be run at all.
    #[error("cannot run git: {0}; install git")]
    NoGit(std::io::Error),
    /// The Envfile is not inside a git repository.
    #[error("`{}` is not inside a git repository; releases are git tags", .0.display())]
    NotARepo(PathBuf),
    /// A git command failed.
    #[error("`git {args}` failed: {message}")]
    Git { args: String, message: String },
    /// The tag does not exist.
    #[error("no release `{tag}`; `hdev releases` lists them")]
    NoSuchTag { tag: String },
    /// The repository has no tags.
    #[error("the repository has no tags yet; `hdev release TAG` makes one")]
    NoTags,
    /// The tagged tree has no Envfile at the expected path.
    #[error("release `{tag}` has no `{path}`")]
    NoEnvfile { tag: String, path: String },
    /// Extracting the tagged tree failed.
    #[error("cannot unpack release `{tag}`: {source}")]
    Unpack { tag: String, source: std::io::Error },
    /// `hdev release` needs a clean tree: the tag must name exactly what was tested.
    #[error("`{}` has uncommitted changes; commit or stash them: a release tags exactly what its tests ran on", repo.display())]
    Dirty { repo: PathBuf },
    /// The tag to make exists already.
    #[error("tag `{tag}` exists already; releases are never moved, pick a new version")]
    TagExists { tag: String },
    /// git would not accept the name as a tag.
    #[error("`{tag}` is not a valid tag name")]
    BadTagName { tag: String },
    /// The environment at the tag is invalid or unreadable.
    #[error("release `{tag}`: {source}")]
    Project {
        tag: String,
        source: Box<ProjectError>,
    },
}

fn git(repo: &Path, args: &[&str]) -> Result<String, ReleaseError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(ReleaseError::NoGit)?;
    if !out.status.success() {
        return Err(ReleaseError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The repository holding `dir`, and `dir`'s path inside it.
pub(crate) fn repo_of(dir: &Path) -> Result<(PathBuf, PathBuf), ReleaseError> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])
        .map_err(|_| ReleaseError::NotARepo(dir.to_path_buf()))?;
    let top = PathBuf::from(top.trim());
    let top = std::fs::canonicalize(&top).unwrap_or(top);
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let rel = dir
        .strip_prefix(&top)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    Ok((top, rel))
}

/// One tag, newest version first in lists.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Tag {
    pub name: String,
    pub commit: String,
    /// Committer date of the tagged commit, ISO 8601.
    pub date: String,
    /// Environment hash recorded in the tag message by `hdev release`, if any.
    pub recorded_hash: Option<String>,
}

/// Tags, highest version first.
pub(crate) fn tags(repo: &Path) -> Result<Vec<Tag>, ReleaseError> {
    let out = git(
        repo,
        &[
            "for-each-ref",
            "--sort=-v:refname",
            "--format=%(refname:short)%00%(*objectname)%(objectname)%00%(*committerdate:iso-strict)%(committerdate:iso-strict)%00%(contents)%00%00",
            "refs/tags",
        ],
    )?;
    let mut v = Vec::new();
    for rec in out
        .split("\0\0")
        .map(|r| r.trim_start_matches('\n'))
        .filter(|r| !r.is_empty())
    {
        let mut f = rec.split('\0');
        let (Some(name), Some(objs), Some(dates)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let message = f.next().unwrap_or("");
        // For an annotated tag both the peeled (*) and the tag's own fields print; the
        // commit is the first 40 hex digits either way.
        let commit = objs.get(..40).unwrap_or(objs).to_string();
        let date = dates.get(..25).unwrap_or(dates).to_string();
        v.push(Tag {
            name: name.to_string(),
            commit,
            date,
            recorded_hash: recorded_hash(message),
        });
    }
    Ok(v)
}

/// The hash line `hdev release` writes into a tag message.
pub(crate) fn recorded_hash(message: &str) -> Option<String> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("environment-hash: "))
        .map(|s| s.trim().to_string())
}

/// The tag `update` moves to when none is named: the highest version.
pub(crate) fn latest(repo: &Path) -> Result<Tag, ReleaseError> {
    tags(repo)?.into_iter().next().ok_or(ReleaseError::NoTags)
}

pub(crate) fn find(repo: &Path, tag: &str) -> Result<Tag, ReleaseError> {
    tags(repo)?
        .into_iter()
        .find(|t| t.name == tag)
        .ok_or_else(|| ReleaseError::NoSuchTag {
            tag: tag.to_string(),
        })
}

/// Whether the working tree has uncommitted changes (untracked files included).
pub(crate) fn is_dirty(repo: &Path) -> Result<bool, ReleaseError> {
    Ok(!git(repo, &["status", "--porcelain"])?.trim().is_empty())
}

/// Unpacks the tree of `rev` into `dest`.
pub(crate) fn materialize(repo: &Path, rev: &str, dest: &Path) -> Result<(), ReleaseError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", rev])
        .output()
        .map_err(ReleaseError::NoGit)?;
    if !out.status.success() {
        return Err(ReleaseError::Git {
            args: format!("archive {rev}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let unpack = |source| ReleaseError::Unpack {
        tag: rev.to_string(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(unpack)?;
    let mut archive = tar::Archive::new(std::io::Cursor::new(out.stdout));
    archive.set_preserve_permissions(true);
    // git archive only writes paths inside the tree; `unpack` also refuses any that
    // would escape `dest`.
    archive.unpack(dest).map_err(unpack)
}

/// A tagged release unpacked into a temporary folder, with its project opened.
pub(crate) struct Checkout {
    pub tag: Tag,
    /// Holds the unpacked tree: it is removed when the checkout is dropped.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
    pub project: Project,
}

/// Unpacks `tag` and opens the Envfile at the same place in the tree as `envfile`.
pub(crate) fn checkout(envfile: &Path, tag: &str) -> Result<Checkout, ReleaseError> {
    let env_dir = crate::envfile::folder_of(envfile);
    let (repo, rel) = repo_of(env_dir)?;
    let tag = find(&repo, tag)?;
    let dir = tempfile::Builder::new()
        .prefix("hdev-release-")
        .tempdir()
        .map_err(|source| ReleaseError::Unpack {
            tag: tag.name.clone(),
            source,
        })?;
    materialize(&repo, &tag.commit, dir.path())?;
    let file_name = envfile.file_name().unwrap_or_else(|| "Envfile".as_ref());
    let path = dir.path().join(&rel).join(file_name);
    if !path.exists() {
        return Err(ReleaseError::NoEnvfile {
            tag: tag.name.clone(),
            path: rel.join(file_name).display().to_string(),
        });
    }
    let project =
        open_project_from(Some(&path), Some(env_dir)).map_err(|e| ReleaseError::Project {
            tag: tag.name.clone(),
            source: Box::new(e),
        })?;
    Ok(Checkout { tag, dir, project })
}

/// The environment hash of a tagged release.
pub(crate) fn hash_at(envfile: &Path, tag: &str) -> Result<(Tag, HashReport), ReleaseError> {
    let c = checkout(envfile, tag)?;
    let report = c.project.hash().map_err(|e| ReleaseError::Project {
        tag: c.tag.name.clone(),
        source: Box::new(e),
    })?;
    Ok((c.tag, report))
}
