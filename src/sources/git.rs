//! The system `git`, run as a child process: hdev never handles credentials, so whatever
//! the user's git setup does (SSH agent, credential helpers) is what fetches.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a git command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    /// `git` could not be started.
    #[error("cannot run `git`: {0}; install git (Debian: `apt-get install git`)")]
    Spawn(std::io::Error),
    /// git ran and refused.
    #[error("`git {args}` failed in `{}`: {stderr}", dir.display())]
    Failed {
        args: String,
        dir: PathBuf,
        stderr: String,
    },
}

/// `git ARGS` in `dir`; its standard output, trimmed, when it succeeds.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    run_with(dir, args, &[])
}

/// [`run`] with extra environment variables.
pub(crate) fn run_with(
    dir: &Path,
    args: &[&str],
    vars: &[(&str, &Path)],
) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args).stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The object `spec` names (`rev-parse --verify`), or `None` when there is none.
pub(crate) fn rev_parse(dir: &Path, spec: &str) -> Result<Option<String>, GitError> {
    match run(dir, &["rev-parse", "--verify", "--quiet", spec]) {
        Ok(id) if !id.is_empty() => Ok(Some(id)),
        Ok(_) => Ok(None),
        Err(GitError::Failed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tree at `path` in commit `commit` (`path` empty: the commit's own tree).
pub(crate) fn tree_at(dir: &Path, commit: &str, path: &str) -> Result<Option<String>, GitError> {
    if path.is_empty() {
        return rev_parse(dir, &format!("{commit}^{{tree}}"));
    }
    // `REV:PATH` takes everything after the colon as the path: check the kind apart.
    let Some(id) = rev_parse(dir, &format!("{commit}:{path}"))? else {
        return Ok(None);
    };
    let kind = run(dir, &["cat-file", "-t", &id]).unwrap_or_default();
    Ok((kind == "tree").then_some(id))
}

/// Whether commit `id` is in the repository at `dir`.
pub(crate) fn has_commit(dir: &Path, id: &str) -> Result<bool, GitError> {
    Ok(rev_parse(dir, &format!("{id}^{{commit}}"))?.is_some())
}

/// One entry of a tree: its path and whether it is a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: String,
    pub folder: bool,
}

/// Every path in tree `tree`, folders included.
pub(crate) fn ls_tree(dir: &Path, tree: &str) -> Result<Vec<Entry>, GitError> {
    let out = run(dir, &["ls-tree", "-r", "-t", "-z", "--full-tree", tree])?;
    Ok(out
        .split('\0')
        .filter_map(|line| {
            let (meta, path) = line.split_once('\t')?;
            let kind = meta.split(' ').nth(1)?;
            Some(Entry {
                path: path.to_string(),
                folder: kind == "tree",
            })
        })
        .collect())
}

/// The root commits of `rev`'s history.
pub(crate) fn roots(dir: &Path, rev: &str) -> Result<Vec<String>, GitError> {
    let out = run(dir, &["rev-list", "--max-parents=0", rev])?;
    Ok(out.lines().map(str::to_string).collect())
}
