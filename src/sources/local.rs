//! A developer's working copy in place of a source: it must be a working copy of the
//! source's repository, and it counts by the git tree id of its files as they are (dirty
//! and untracked files included, ignored ones not), taken through a temporary index so
//! that the developer's own index is never touched.

use std::path::{Path, PathBuf};

use super::git;
use super::SourceError;

/// A working copy's files as the hash counts them.
#[derive(Debug, Clone)]
pub(crate) struct WorkingCopy {
    /// The top of the working copy.
    pub top: PathBuf,
    /// The tree id of its files as they are (of `subdir` when the source has one).
    pub tree: String,
    /// The commit checked out (`None` before the first commit).
    pub head: Option<String>,
    /// Whether its files differ from that commit.
    pub dirty: bool,
}

/// Why a path cannot stand for a source, in words for the user.
pub(crate) type Refusal = String;

/// Reads the working copy at `path` standing for a source whose repository has `pinned`
/// in `mirror` (when known).
pub(crate) fn read(
    path: &Path,
    subdir: Option<&str>,
    mirror: Option<(&Path, &str)>,
) -> Result<Result<WorkingCopy, Refusal>, SourceError> {
    if !path.is_dir() {
        return Ok(Err(format!("`{}` is not a folder", path.display())));
    }
    let top = match git::run(path, &["rev-parse", "--show-toplevel"]) {
        Ok(t) => PathBuf::from(t),
        Err(git::GitError::Failed { .. }) => {
            return Ok(Err(format!(
                "`{}` is not a git working copy",
                path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let same = std::fs::canonicalize(&top).ok() == std::fs::canonicalize(path).ok();
    if !same {
        return Ok(Err(format!(
            "`{}` is inside the working copy `{}`, not its top",
            path.display(),
            top.display()
        )));
    }
    let head = git::rev_parse(&top, "HEAD^{commit}")?;
    if let Some((mirror, pinned)) = mirror {
        if !same_repository(&top, head.as_deref(), mirror, pinned)? {
            return Ok(Err(format!(
                "`{}` is not a working copy of the source's repository (it shares no history with commit {})",
                path.display(),
                &pinned[..pinned.len().min(12)]
            )));
        }
    }
    let whole = tree_as_is(&top)?;
    let tree = match subdir.filter(|s| !s.is_empty()) {
        Some(s) => match git::tree_at(&top, &whole, s)? {
            Some(t) => t,
            None => {
                return Ok(Err(format!(
                    "`{}` has no folder `{s}` (the source's `subdir`)",
                    path.display()
                )))
            }
        },
        None => whole.clone(),
    };
    let head_tree = match &head {
        Some(h) => git::rev_parse(&top, &format!("{h}^{{tree}}"))?,
        None => None,
    };
    Ok(Ok(WorkingCopy {
        dirty: head_tree.as_deref() != Some(whole.as_str()),
        top,
        tree,
        head,
    }))
}

/// Whether the working copy holds the pinned commit, or shares a root commit with it.
fn same_repository(
    top: &Path,
    head: Option<&str>,
    mirror: &Path,
    pinned: &str,
) -> Result<bool, SourceError> {
    if git::has_commit(top, pinned)? {
        return Ok(true);
    }
    let Some(head) = head else {
        return Ok(false);
    };
    let ours = git::roots(top, head)?;
    let theirs = git::roots(mirror, pinned)?;
    Ok(ours.iter().any(|r| theirs.contains(r)))
}

/// The tree id of the working copy's files as they are, through a copy of its index.
fn tree_as_is(top: &Path) -> Result<String, SourceError> {
    let tmp = tempfile::tempdir().map_err(SourceError::io(Path::new("/tmp")))?;
    let index = tmp.path().join("index");
    let own = git::run(top, &["rev-parse", "--git-path", "index"])?;
    let own = top.join(own);
    if own.is_file() {
        // The developer's index as a start only makes `add` fast (its stat data).
        std::fs::copy(&own, &index).map_err(SourceError::io(&own))?;
    }
    let vars = [("GIT_INDEX_FILE", index.as_path())];
    git::run_with(top, &["add", "--all", "--", "."], &vars)?;
    Ok(git::run_with(top, &["write-tree"], &vars)?)
}
